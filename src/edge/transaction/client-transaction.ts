import type { SipMessage } from '../message/index.js';
import { emitSafely, type TransactionServices } from './services.js';
import { isReliableProtocol } from './response-target.js';
import { TransactionBase } from './transaction-base.js';
import type { CompletedRole, CompletedTransaction } from './completed-table.js';
import type {
  ClientTransaction, ClientTransactionEvents, ClientTransactionState, InboundMessage, SendTarget, SentInfo,
} from './types.js';

/** Common machinery of the INVITE (17.1.1) and non-INVITE (17.1.2) client transactions. */
export abstract class ClientTransactionBase
  extends TransactionBase<ClientTransactionEvents, ClientTransactionState> implements ClientTransaction {
  readonly method: string;
  readonly reliable: boolean;
  readonly sent: Promise<SentInfo>;
  lastResponse: SipMessage | undefined;
  /** the request as sent (and retransmitted) */
  readonly wire: Buffer;
  /** flow of the first transmission: ACK and CANCEL must use the same connection (17.1.1.3, 9.1) */
  protected sentInfo: SentInfo | undefined;
  private settleSent!: { resolve: (info: SentInfo) => void; reject: (err: Error) => void };

  constructor(
    services: TransactionServices,
    readonly request: SipMessage,
    readonly target: SendTarget,
    readonly branch: string,
    /** key in the layer's client table (17.1.3) */
    key: string,
    initialState: ClientTransactionState,
  ) {
    super(services, key, initialState);
    this.method = request.method ?? '';
    this.reliable = isReliableProtocol(target.protocol);
    this.wire = request.serialise();
    this.sent = new Promise<SentInfo>((resolve, reject) => { this.settleSent = { resolve, reject }; });
    this.sent.catch(() => undefined);   // the rejection is also reported as 'transport-error'
  }

  /** Send the request for the first time and start the state machine's timers. */
  start(): void {
    this.services.transmit(this.wire, this.target).then(
      (info) => {
        this.sentInfo = info;
        this.settleSent.resolve(info);
      },
      (err: unknown) => {
        const error = err instanceof Error ? err : new Error(String(err));
        this.settleSent.reject(error);
        this.failTransport(error);
      },
    );
    this.startTimers();
  }

  /** The layer refused to create the transaction (limit): report it like a transport failure, asynchronously. */
  failWithoutSending(err: Error): void {
    this.settleSent.reject(err);
    queueMicrotask(() => this.failTransport(err));
  }

  abstract handleResponse(inbound: InboundMessage): void;
  protected abstract startTimers(): void;

  cancel(_cancelMsg?: SipMessage): Promise<ClientTransaction | undefined> {
    this.services.logger?.warn({ method: this.method }, 'transaction layer: cancel() on a non-INVITE client transaction ignored');
    return Promise.resolve(undefined);
  }

  /** Retransmission (timers A / E); a failure terminates the transaction (17.1.4). */
  protected retransmit(): void {
    this.services.transmit(this.wire, this.target).catch((err: unknown) => {
      this.failTransport(err instanceof Error ? err : new Error(String(err)));
    });
  }

  /** The target bound to the connection the request went out on (for ACK / CANCEL over TCP/TLS/WS). */
  protected sameFlowTarget(): SendTarget {
    if (this.reliable && this.sentInfo !== undefined) return { ...this.target, flowId: this.sentInfo.flow.id };
    return this.target;
  }

  /** RFC 3261 17.1.4: a transport failure terminates the transaction and is reported to the TU. */
  protected failTransport(err: Error): void {
    if (this.state === 'terminated') return;
    this.services.logger?.debug({ err, method: this.method, branch: this.branch }, 'client transaction transport error');
    emitSafely(this.services, () => this.emit('transport-error', err), 'transport-error');
    this.terminate();
  }

  protected timeout(): void {
    if (this.state === 'terminated') return;
    emitSafely(this.services, () => this.emit('timeout'), 'timeout');
    this.terminate();
  }

  protected passUp(inbound: InboundMessage): void {
    this.lastResponse = inbound.message;
    emitSafely(this.services, () => this.emit('response', inbound), 'response');
  }

  /**
   * Completed (17.1.1.2 / 17.1.2.2): from now on only retransmitted finals arrive. The layer replaces this object by a
   * compact record (key, and for INVITE the ACK bytes and target) until `lifetimeMs` (timer D / K) has passed. As
   * for server transactions, 'terminated' is still emitted then if something listened for it at this point.
   */
  protected compact(role: CompletedRole, lifetimeMs: number, ackWire?: Buffer, ackTarget?: SendTarget): void {
    if (!this.canCompact()) return;
    this.timers.clearAll();
    const observed = this.observed('terminated');
    this.completedEntry = this.services.compactClient(this, {
      key: this.key, role, wire: ackWire, target: ackTarget,
      onExpired: observed ? () => this.finishCompacted() : undefined,
    }, lifetimeMs);
  }

  protected leaveLayer(completedEntry: CompletedTransaction | undefined): void {
    if (completedEntry !== undefined) this.services.forgetCompletedClient(completedEntry);
    else this.services.clientTerminated(this);
  }
}
