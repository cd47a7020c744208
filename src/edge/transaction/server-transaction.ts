import type { SipMessage } from '../message/index.js';
import type { TransactionServices } from './services.js';
import { isReliableProtocol, responseTarget } from './response-target.js';
import { TransactionBase } from './transaction-base.js';
import type { CompletedRole, CompletedTransaction } from './completed-table.js';
import type {
  InboundMessage, SendTarget, SentInfo, ServerTransaction, ServerTransactionEvents, ServerTransactionState,
} from './types.js';

/** What the layer should do with an ACK that matched a server transaction. */
export type AckDisposition = 'absorbed' | 'pass-up';

/** Common machinery of the INVITE (17.2.1) and non-INVITE (17.2.2) server transactions. */
export abstract class ServerTransactionBase
  extends TransactionBase<ServerTransactionEvents, ServerTransactionState> implements ServerTransaction {
  readonly method: string;
  readonly reliable: boolean;
  readonly responseTarget: SendTarget;
  lastResponse: SipMessage | undefined;
  cancelTarget: ServerTransaction | undefined;
  cancelMatched = false;
  /** wire form of lastResponse, resent on request retransmissions */
  lastResponseWire: Buffer | undefined;

  constructor(
    services: TransactionServices,
    readonly request: InboundMessage,
    /** key in the layer's server table (17.2.3) */
    key: string,
    initialState: ServerTransactionState,
  ) {
    super(services, key, initialState);
    this.method = request.message.method ?? '';
    this.reliable = isReliableProtocol(request.flow.protocol);
    this.responseTarget = responseTarget(request);
  }

  /** true once the layer replaced this transaction by a compact record */
  get compacted(): boolean {
    return this.completedEntry !== undefined;
  }

  /** Called by the layer after registering the transaction and before emitting it to the TU. */
  abstract start(): void;
  /** The same request arrived again (17.2.1 / 17.2.2). */
  abstract handleRetransmission(inbound: InboundMessage): void;
  /** An ACK matched this transaction (INVITE only). */
  handleAck(_ack: InboundMessage): AckDisposition {
    return 'absorbed';
  }

  abstract respond(msg: SipMessage): Promise<SentInfo>;

  respond2xxRetransmit(_msg: SipMessage): Promise<SentInfo> {
    return Promise.reject(new Error(`respond2xxRetransmit() applies to INVITE server transactions, not ${this.method}`));
  }

  protected checkResponse(msg: SipMessage): number | Error {
    const status = msg.status;
    if (!msg.isResponse || status === undefined || !Number.isInteger(status) || status < 100 || status > 699) {
      return new Error('respond() needs a SIP response with a status 100-699');
    }
    return status;
  }

  /** Send (a response); a transport failure terminates the transaction (17.2.4) and rejects. */
  protected send(wire: Buffer): Promise<SentInfo> {
    return this.services.transmit(wire, this.responseTarget).catch((err: unknown) => {
      const error = err instanceof Error ? err : new Error(String(err));
      this.services.logger?.warn({ err: error, method: this.method, target: this.responseTarget }, 'server transaction: response could not be sent');
      this.terminate();
      throw error;
    });
  }

  /** Send a response and remember it as the one to repeat. */
  protected sendResponse(msg: SipMessage): Promise<SentInfo> {
    const wire = msg.serialise();
    this.lastResponse = msg;
    this.lastResponseWire = wire;
    return this.send(wire);
  }

  /** Repeat the last response (timer G, request retransmission); errors are logged and terminate. */
  protected resendLastResponse(): void {
    if (this.lastResponseWire === undefined) return;
    this.send(this.lastResponseWire).catch(() => undefined);
  }

  protected wrongState(status: number): Promise<SentInfo> {
    return Promise.reject(new Error(`${this.method} server transaction in state ${this.state} cannot send a ${status}`));
  }

  /**
   * The transaction only has to absorb retransmissions until `expiresAt` (or `lifetimeMs` from now): the layer
   * replaces it by a compact record (key, last response bytes, target) and drops its reference to this object, so
   * the parsed request and response, listeners and timers can be collected. This object stays usable by a TU that
   * holds it; it emits 'terminated' when the record expires only if something listened for 'terminated' or 'ack'
   * at this point (the layer keeps it alive for that).
   */
  protected compact(role: CompletedRole, lifetimeMs: number, expiresAt?: number): void {
    if (!this.canCompact()) return;
    this.timers.clearAll();
    this.onCompacted();
    const observed = this.observed('terminated', 'ack');
    this.completedEntry = this.services.compactServer(this, {
      key: this.key,
      role,
      wire: role === 'resend' ? this.lastResponseWire : undefined,
      target: role === 'resend' ? this.responseTarget : undefined,
      sentToTag: this.key.startsWith('2543|') ? this.lastResponse?.toTag ?? this.request.message.toTag : undefined,
      onExpired: observed ? () => this.finishCompacted() : undefined,
      expiresAt,
    }, lifetimeMs);
  }

  protected leaveLayer(completedEntry: CompletedTransaction | undefined): void {
    if (completedEntry !== undefined) this.services.forgetCompletedServer(completedEntry);
    else this.services.serverTerminated(this);
  }

  /** Release what the layer routes to this object (e.g. ACK-for-2xx keys) before it is compacted. */
  protected onCompacted(): void {}
}
