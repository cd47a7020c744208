import { EventEmitter } from 'node:events';
import type { Logger } from 'pino';
import type { SipMessage } from '../message/index.js';
import { ClientInviteTransaction } from './client-invite.js';
import { ClientNonInviteTransaction } from './client-non-invite.js';
import type { ClientTransactionBase } from './client-transaction.js';
import { ackFor2xxKey, clientTransactionKey, isRfc3261Branch, serverTransactionKey } from './matching.js';
import { CompletedTransactionTable, type CompletedTransaction } from './completed-table.js';
import { buildResponse } from './response-builder.js';
import { TransientMap } from '../../shared/transient-map.js';
import { responseTarget } from './response-target.js';
import { ServerInviteTransaction } from './server-invite.js';
import { ServerNonInviteTransaction } from './server-non-invite.js';
import type { ServerTransactionBase } from './server-transaction.js';
import type { TransactionServices } from './services.js';
import { DEFAULT_TIMERS, DEFAULT_TIMER_D_MS } from './timers.js';
import type {
  ClientTransaction, InboundMessage, MalformedInbound, SendTarget, SentInfo, ServerTransaction,
  TransactionLayerOptions, TransactionTimers, TransactionTransport,
} from './types.js';

export const DEFAULT_MAX_TRANSACTIONS = 20_000;
const DEFAULT_MAX_PROCEEDING_MS = 600_000;

export interface TransactionLayerEvents {
  /** a new request and its server transaction (never ACK; retransmissions are absorbed) */
  request: [req: InboundMessage, stx: ServerTransaction];
  /** an ACK that is the TU's: for a 2xx (new branch), or matching an INVITE transaction in Accepted (RFC 6026) */
  ack: [ack: InboundMessage];
  /** a response matching no client transaction (e.g. a 2xx retransmitted after timer M) */
  'stray-response': [res: InboundMessage];
}

/**
 * RFC 3261 section 17 transaction layer with RFC 6026, over a TransportLayer. See index.ts for the contract.
 *
 * Matching (17.1.3 / 17.2.3): responses by top Via branch + CSeq method; requests by branch + sent-by + method
 * (ACK finds the INVITE); requests whose branch lacks the magic cookie, or is exactly "z9hG4bK"
 * (RFC 4475 badbranch.dat), are matched the RFC 2543 way (Request-URI, From tag, Call-ID, CSeq number, top Via;
 * an ACK's To tag must also equal the tag of the response we sent). The To tag of a retransmitted 2543 INVITE is
 * not compared.
 */
export class TransactionLayer extends EventEmitter<TransactionLayerEvents> {
  readonly timers: Readonly<TransactionTimers>;
  // TransientMap: a finished transaction is let go of at once, not kept by V8's replaced hash tables (see there)
  private readonly servers = new TransientMap<string, ServerTransactionBase>();
  private readonly clients = new TransientMap<string, ClientTransactionBase>();
  /** ACK for 2xx (new branch) -> the INVITE server transaction that sent the 2xx */
  private readonly acksFor2xx = new TransientMap<string, ServerInviteTransaction>();
  /** finished transactions reduced to what absorbing retransmissions needs (17.2.1/17.2.2 Completed etc.) */
  private readonly completedServers: CompletedTransactionTable;
  private readonly completedClients: CompletedTransactionTable;
  private readonly maxServerTransactions: number;
  private readonly maxClientTransactions: number;
  private readonly answerMalformed: boolean;
  private readonly logger: Logger | undefined;
  private readonly services: TransactionServices;
  private readonly onMessage = (inbound: InboundMessage): void => this.receive(inbound);
  private readonly onMalformed = (malformed: MalformedInbound): void => this.receiveMalformed(malformed);
  private stopped = false;

  constructor(private readonly transport: TransactionTransport, options: TransactionLayerOptions = {}) {
    super();
    this.timers = Object.freeze({
      T1: options.T1 ?? DEFAULT_TIMERS.T1,
      T2: options.T2 ?? DEFAULT_TIMERS.T2,
      T4: options.T4 ?? DEFAULT_TIMERS.T4,
    });
    this.maxServerTransactions = options.maxServerTransactions ?? DEFAULT_MAX_TRANSACTIONS;
    this.maxClientTransactions = options.maxClientTransactions ?? DEFAULT_MAX_TRANSACTIONS;
    this.answerMalformed = options.answerMalformed ?? true;
    this.logger = options.logger;
    const onError = (err: unknown): void => this.logger?.error({ err }, 'transaction layer: TU listener for terminated threw');
    this.completedServers = new CompletedTransactionTable({ maxEntries: options.maxCompletedTransactions, onError });
    this.completedClients = new CompletedTransactionTable({ maxEntries: options.maxCompletedTransactions, onError });
    this.services = {
      timers: this.timers,
      timerD: options.timerD ?? DEFAULT_TIMER_D_MS,
      trying100DelayMs: options.trying100DelayMs ?? 0,
      maxProceedingMs: options.maxProceedingMs ?? DEFAULT_MAX_PROCEEDING_MS,
      logger: this.logger,
      transmit: (buf, target) => this.transport.send(buf, target),
      clientTerminated: (ctx) => {
        if (this.clients.get(ctx.key) === ctx) this.clients.delete(ctx.key);
      },
      serverTerminated: (stx) => {
        if (this.servers.get(stx.key) === stx) this.servers.delete(stx.key);
      },
      expectAckFor2xx: (key, stx) => {
        if (stx instanceof ServerInviteTransaction) this.acksFor2xx.set(key, stx);
      },
      forgetAckFor2xx: (key, stx) => {
        if (this.acksFor2xx.get(key) === stx) this.acksFor2xx.delete(key);
      },
      sendCancel: (cancel, target) => this.startClientTransaction(cancel, target, true),
      compactServer: (stx, entry, lifetimeMs) => {
        if (this.servers.get(stx.key) === stx) this.servers.delete(stx.key);
        return this.completedServers.add(entry, lifetimeMs);
      },
      compactClient: (ctx, entry, lifetimeMs) => {
        if (this.clients.get(ctx.key) === ctx) this.clients.delete(ctx.key);
        return this.completedClients.add(entry, lifetimeMs);
      },
      forgetCompletedServer: (entry) => this.completedServers.forget(entry),
      forgetCompletedClient: (entry) => this.completedClients.forget(entry),
    };
    transport.on('message', this.onMessage);
    transport.on('malformed', this.onMalformed);
  }

  /** live transactions, active and completed (for metrics and leak checks) */
  get serverTransactionCount(): number { return this.servers.size + this.completedServers.size; }
  get clientTransactionCount(): number { return this.clients.size + this.completedClients.size; }
  /** transactions still waiting for a final response (what maxServerTransactions / maxClientTransactions bound) */
  get activeServerTransactionCount(): number { return this.servers.size; }
  get activeClientTransactionCount(): number { return this.clients.size; }
  /** finished transactions kept as compact records until their last timer */
  get completedTransactionCount(): number { return this.completedServers.size + this.completedClients.size; }
  /** INVITE server transactions waiting for (or having seen) the ACK of their 2xx */
  get pendingAckCount(): number { return this.acksFor2xx.size; }

  /**
   * Start a client transaction (17.1). `msg` must carry its top Via with a unique branch (generateBranch()).
   * Over maxClientTransactions the transaction reports 'transport-error' on the next microtask.
   * Throws (programming error) for ACK — send it with sendStateless — or a request without branch, or a branch
   * already in use for that method.
   */
  sendRequest(msg: SipMessage, target: SendTarget): ClientTransaction {
    return this.startClientTransaction(msg, target, false);
  }

  /** Send a message outside any transaction (ACK for 2xx, stateless responses). */
  sendStateless(msg: SipMessage, target: SendTarget): Promise<SentInfo> {
    return this.transport.send(msg.serialise(), target);
  }

  /** Detach from the transport and drop every transaction without emitting (shutdown). */
  stop(): void {
    if (this.stopped) return;
    this.stopped = true;
    this.transport.off('message', this.onMessage);
    this.transport.off('malformed', this.onMalformed);
    for (const stx of this.servers.valuesSnapshot()) stx.removeAllListeners().terminate();
    for (const ctx of this.clients.valuesSnapshot()) ctx.removeAllListeners().terminate();
    this.acksFor2xx.clear();
    this.completedServers.clear();
    this.completedClients.clear();
  }

  private startClientTransaction(msg: SipMessage, target: SendTarget, isCancel: boolean): ClientTransactionBase {
    const method = msg.method;
    if (!msg.isRequest || method === undefined) throw new TypeError('sendRequest() needs a SIP request');
    if (method === 'ACK') throw new TypeError('ACK is not a transaction: use sendStateless()');
    const branch = msg.topViaBranch;
    const key = clientTransactionKey(branch, method);
    if (branch === undefined || key === undefined || !isRfc3261Branch(branch)) {
      throw new TypeError('sendRequest() needs a top Via with an RFC 3261 branch (generateBranch())');
    }
    if (this.clients.has(key) || this.completedClients.get(key) !== undefined) {
      throw new TypeError(`a ${method} client transaction with branch ${branch} already exists`);
    }
    const request = msg.clone();
    const ctx = method === 'INVITE'
      ? new ClientInviteTransaction(this.services, request, target, branch, key)
      : new ClientNonInviteTransaction(this.services, request, target, branch, key);
    // a CANCEL is let through the limit: refusing it would leave its INVITE ringing
    if (this.stopped || (!isCancel && this.clients.size >= this.maxClientTransactions)) {
      ctx.failWithoutSending(new Error(this.stopped ? 'transaction layer stopped' : 'too many client transactions'));
      return ctx;
    }
    this.clients.set(key, ctx);
    ctx.start();
    return ctx;
  }

  /** Entry point for every well-formed message from the transport; nothing thrown here reaches the transport. */
  private receive(inbound: InboundMessage): void {
    try {
      if (inbound.message.isResponse) this.receiveResponse(inbound);
      else if (inbound.message.isRequest) this.receiveRequest(inbound);
    } catch (err) {
      this.logger?.error({ err }, 'transaction layer: failed to process an inbound message');
    }
  }

  /** 17.1.3 */
  private receiveResponse(inbound: InboundMessage): void {
    const res = inbound.message;
    const key = clientTransactionKey(res.topViaBranch, res.cseq?.method);
    if (key === undefined) {
      this.emit('stray-response', inbound);
      return;
    }
    const ctx = this.clients.get(key);
    if (ctx !== undefined) {
      ctx.handleResponse(inbound);
      return;
    }
    const completed = this.completedClients.get(key);
    if (completed !== undefined) this.completedClientResponse(completed, inbound);
    else this.emit('stray-response', inbound);
  }

  /**
   * A response for a compacted client transaction: 17.1.2.2 (Completed absorbs retransmitted finals) and
   * 17.1.1.2 (a retransmitted 300-699 final to an INVITE gets the same ACK again).
   */
  private completedClientResponse(completed: CompletedTransaction, inbound: InboundMessage): void {
    if (completed.role !== 'ack' || completed.wire === undefined || completed.target === undefined) return;
    const status = inbound.message.status ?? 0;
    if (status < 300 || status > 699) return;
    this.transport.send(completed.wire, completed.target).catch((err: unknown) => {
      this.logger?.debug({ err }, 'could not resend the ACK for a non-2xx final');
    });
  }

  /** A request retransmission for a compacted server transaction (17.2.1 / 17.2.2, RFC 6026 8.5). */
  private completedServerRetransmission(completed: CompletedTransaction): void {
    if (completed.role !== 'resend' || completed.wire === undefined || completed.target === undefined) return;
    this.transport.send(completed.wire, completed.target).catch((err: unknown) => {
      // 17.2.4: a transport failure ends the transaction
      this.logger?.debug({ err }, 'could not resend the final response');
      this.completedServers.expire(completed);
    });
  }

  /** 17.2.3 */
  private receiveRequest(inbound: InboundMessage): void {
    const req = inbound.message;
    if (req.method === 'ACK') {
      this.receiveAck(inbound);
      return;
    }
    const key = serverTransactionKey(req);
    if (key === undefined) {
      this.logger?.debug({ method: req.method }, 'request without the fields transaction matching needs');
      this.respondStatelessly(inbound, 400, 'Bad Request');
      return;
    }
    const existing = this.servers.get(key);
    if (existing !== undefined) {
      existing.handleRetransmission(inbound);
      return;
    }
    const completed = this.completedServers.get(key);
    if (completed !== undefined) {
      this.completedServerRetransmission(completed);
      return;
    }
    if (this.servers.size >= this.maxServerTransactions) {
      this.logger?.warn({ method: req.method }, 'too many server transactions: 503');
      this.respondStatelessly(inbound, 503, 'Service Unavailable');
      return;
    }
    const stx = req.method === 'INVITE'
      ? new ServerInviteTransaction(this.services, inbound, key)
      : new ServerNonInviteTransaction(this.services, inbound, key);
    if (req.method === 'CANCEL') {
      // 9.2: the CANCEL matches the INVITE transaction with the same key, method INVITE
      const inviteKey = serverTransactionKey(req, 'INVITE');
      const invite = inviteKey === undefined ? undefined : this.servers.get(inviteKey);
      if (invite !== undefined && invite.state !== 'terminated') stx.cancelTarget = invite;
      stx.cancelMatched = stx.cancelTarget !== undefined || (inviteKey !== undefined && this.completedServers.get(inviteKey) !== undefined);
    }
    this.servers.set(key, stx);
    stx.start();
    this.emit('request', inbound, stx);
  }

  private receiveAck(inbound: InboundMessage): void {
    const ack = inbound.message;
    const key = serverTransactionKey(ack);
    const stx = key === undefined ? undefined : this.servers.get(key);
    const completed = key === undefined || stx !== undefined ? undefined : this.completedServers.get(key);
    if (stx instanceof ServerInviteTransaction && this.ackMatchesRfc2543(ack, stx)) {
      if (stx.handleAck(inbound) === 'absorbed') return;
    } else if (completed !== undefined && (completed.role === 'confirmed' || completed.role === 'accepted')
      && (isRfc3261Branch(ack.topViaBranch) || ack.toTag === completed.sentToTag)) {
      // 17.2.1: Confirmed absorbs the ACK; RFC 6026 8.6: in Accepted it goes to the TU
      if (completed.role === 'confirmed') return;
    } else {
      // ACK for a 2xx: a new transaction by branch, matched to the INVITE through the dialog (13.3.1.4)
      const dialogKey = ackFor2xxKey(ack.callId, ack.cseq?.seq, ack.fromTag, ack.toTag);
      const inviteStx = dialogKey === undefined ? undefined : this.acksFor2xx.get(dialogKey);
      inviteStx?.ackFor2xxReceived(inbound);
    }
    this.emit('ack', inbound);
  }

  /** 17.2.3: for RFC 2543 requests the ACK's To tag must equal the To tag of the response the transaction sent. */
  private ackMatchesRfc2543(ack: SipMessage, stx: ServerInviteTransaction): boolean {
    if (isRfc3261Branch(ack.topViaBranch)) return true;
    const sentTag = stx.lastResponse?.toTag ?? stx.request.message.toTag;
    return ack.toTag === sentTag;
  }

  private receiveMalformed(malformed: MalformedInbound): void {
    if (!this.answerMalformed) return;
    try {
      this.respondStatelessly(malformed, malformed.status, undefined);
    } catch (err) {
      this.logger?.debug({ err }, 'could not answer a malformed request');
    }
  }

  /** A response outside any transaction (8.2.6, 18.2.2); never for ACK, never without a Via to route it. */
  private respondStatelessly(inbound: Pick<InboundMessage, 'message' | 'flow'>, status: number, reason: string | undefined): void {
    const req = inbound.message;
    if (!req.isRequest || req.method === 'ACK' || req.get('Via') === undefined) return;
    const res = buildResponse(req, status, reason, { toTag: true });
    this.transport.send(res.serialise(), responseTarget(inbound)).catch((err: unknown) => {
      this.logger?.debug({ err, status }, 'stateless response could not be sent');
    });
  }
}
