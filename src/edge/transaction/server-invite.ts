import type { SipMessage } from '../message/index.js';
import { ServerTransactionBase, type AckDisposition } from './server-transaction.js';
import { buildResponse } from './response-builder.js';
import { ackFor2xxKey } from './matching.js';
import { emitSafely } from './services.js';
import type { TransactionServices } from './services.js';
import type { InboundMessage, SentInfo } from './types.js';

/**
 * RFC 3261 17.2.1 (figure 7) as updated by RFC 6026 (figure 5):
 * Proceeding -> Completed (300-699, timers G/H) -> Confirmed (ACK, timer I) -> Terminated
 *            -> Accepted (2xx, timer L; INVITE retransmissions absorbed, ACKs passed up) -> Terminated.
 */
export class ServerInviteTransaction extends ServerTransactionBase {
  /** Date.now() at which RFC 6026 timer L fires (Accepted only) */
  private acceptedUntil = 0;
  /** current timer G / 2xx retransmission interval */
  private retransmitInterval = 0;
  /** respond2xxRetransmit() is waiting for the ACK of this wire form */
  private awaitingAckFor2xx: Buffer | undefined;
  private readonly ackKeys: string[] = [];

  constructor(services: TransactionServices, request: InboundMessage, key: string) {
    super(services, request, key, 'proceeding');
  }

  start(): void {
    const delay = this.services.trying100DelayMs;
    if (delay <= 0) this.sendTrying();
    else this.timers.start('trying', delay, () => this.sendTrying());
    this.timers.start('proceeding-limit', this.services.maxProceedingMs, () => {
      this.services.logger?.warn('server INVITE transaction: TU sent no final response within maxProceedingMs');
      this.terminate();
    });
  }

  /** 17.2.1: the server transaction answers an INVITE with 100 Trying unless the TU responds first. */
  private sendTrying(): void {
    if (this.state !== 'proceeding' || this.lastResponse !== undefined) return;
    this.sendResponse(buildResponse(this.request.message, 100)).catch(() => undefined);
  }

  handleRetransmission(_inbound: InboundMessage): void {
    // Proceeding: repeat the last provisional; Completed: repeat the final; Accepted / Confirmed: absorb (RFC 6026 8.5).
    if (this.state === 'proceeding' || this.state === 'completed') this.resendLastResponse();
  }

  override handleAck(ack: InboundMessage): AckDisposition {
    if (this.state === 'completed') {
      // 17.2.1: ACK for the non-2xx final -> Confirmed; timer I = T4 unreliable, 0 reliable.
      this.state = 'confirmed';
      this.timers.stop('G');
      this.timers.stop('H');
      // Confirmed only absorbs retransmitted ACKs (and INVITEs) until timer I
      if (this.reliable) this.terminate();
      else this.compact('confirmed', this.services.timers.T4);
      return 'absorbed';
    }
    if (this.state === 'accepted') {
      this.ackFor2xxReceived(ack);
      return 'pass-up';   // RFC 6026 8.6: ACKs in Accepted go to the TU
    }
    return 'absorbed';
  }

  /** The ACK for our 2xx arrived (matched by branch in Accepted, or by dialog via ackFor2xxKey). */
  ackFor2xxReceived(ack: InboundMessage): void {
    this.timers.stop('2xx');
    this.awaitingAckFor2xx = undefined;
    emitSafely(this.services, () => this.emit('ack', ack), 'ack');
    // RFC 6026 Accepted: from now on INVITE retransmissions are absorbed and ACKs passed up until timer L
    if (this.state === 'accepted') {
      const lifetime = 64 * this.services.timers.T1;
      this.compact('accepted', lifetime, this.acceptedUntil);
    }
  }

  respond(msg: SipMessage): Promise<SentInfo> {
    const status = this.checkResponse(msg);
    if (status instanceof Error) return Promise.reject(status);
    if (this.state === 'accepted') {
      // RFC 6026 8.7: further 2xx (the TU's retransmissions) are sent; anything else is not.
      if (status >= 200 && status < 300) return this.send2xx(msg);
      return this.wrongState(status);
    }
    if (this.state !== 'proceeding') return this.wrongState(status);
    this.timers.stop('trying');
    if (status < 200) return this.sendResponse(msg);
    this.timers.stop('proceeding-limit');
    const { T1 } = this.services.timers;
    if (status < 300) {
      this.state = 'accepted';
      this.acceptedUntil = Date.now() + 64 * T1;
      this.timers.start('L', 64 * T1, () => this.onTimerL());
      return this.send2xx(msg);
    }
    this.state = 'completed';
    if (!this.reliable) {
      this.retransmitInterval = T1;
      this.timers.start('G', T1, () => this.onTimerG());
    }
    this.timers.start('H', 64 * T1, () => {
      if (this.state !== 'completed') return;
      emitSafely(this.services, () => this.emit('timeout'), 'timeout');
      this.terminate();
    });
    return this.sendResponse(msg);
  }

  override respond2xxRetransmit(msg: SipMessage): Promise<SentInfo> {
    const status = msg.status ?? 0;
    if (status < 200 || status >= 300) return Promise.reject(new Error('respond2xxRetransmit() needs a 2xx response'));
    const sent = this.respond(msg);
    if (this.state === 'accepted' && !this.compacted && this.lastResponseWire !== undefined) {
      // 13.3.1.4: retransmit the 2xx at T1, 2*T1 ... capped at T2, until the ACK arrives (unreliable only).
      this.awaitingAckFor2xx = this.lastResponseWire;
      if (!this.reliable) {
        this.retransmitInterval = this.services.timers.T1;
        this.timers.start('2xx', this.retransmitInterval, () => this.on2xxRetransmitTimer());
      }
    }
    return sent;
  }

  private send2xx(msg: SipMessage): Promise<SentInfo> {
    const key = ackFor2xxKey(this.request.message.callId, this.request.message.cseq?.seq, this.request.message.fromTag, msg.toTag);
    // once compacted, ACKs reach the TU through the layer's 'ack' event only
    if (key !== undefined && !this.compacted && !this.ackKeys.includes(key)) {
      this.ackKeys.push(key);
      this.services.expectAckFor2xx(key, this);
    }
    return this.sendResponse(msg);
  }

  /** Timer G: repeat the final, next interval min(2*G, T2) (17.2.1). */
  private onTimerG(): void {
    if (this.state !== 'completed') return;
    this.resendLastResponse();
    this.retransmitInterval = Math.min(2 * this.retransmitInterval, this.services.timers.T2);
    this.timers.start('G', this.retransmitInterval, () => this.onTimerG());
  }

  private on2xxRetransmitTimer(): void {
    const wire = this.awaitingAckFor2xx;
    if (this.state !== 'accepted' || wire === undefined) return;
    this.send(wire).catch(() => undefined);
    this.retransmitInterval = Math.min(2 * this.retransmitInterval, this.services.timers.T2);
    this.timers.start('2xx', this.retransmitInterval, () => this.on2xxRetransmitTimer());
  }

  /** RFC 6026 timer L: leave Accepted; 13.3.1.4: a 2xx still unacknowledged now means the session should end. */
  private onTimerL(): void {
    if (this.awaitingAckFor2xx !== undefined) {
      this.awaitingAckFor2xx = undefined;
      emitSafely(this.services, () => this.emit('ack-timeout'), 'ack-timeout');
    }
    this.terminate();
  }

  protected override onTerminated(): void {
    this.forgetAckKeys();
  }

  protected override onCompacted(): void {
    this.forgetAckKeys();
  }

  private forgetAckKeys(): void {
    for (const key of this.ackKeys) this.services.forgetAckFor2xx(key, this);
    this.ackKeys.length = 0;
  }
}
