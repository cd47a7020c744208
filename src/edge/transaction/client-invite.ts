import type { SipMessage } from '../message/index.js';
import { ClientTransactionBase } from './client-transaction.js';
import { buildCancel, buildNon2xxAck } from './client-requests.js';
import type { TransactionServices } from './services.js';
import type { ClientTransaction, InboundMessage, SendTarget } from './types.js';

/**
 * RFC 3261 17.1.1 (figure 5) as updated by RFC 6026 (figure 3):
 * Calling -> Proceeding -> Completed (300-699, ACK sent by us, timer D) | Accepted (2xx, timer M) -> Terminated.
 */
export class ClientInviteTransaction extends ClientTransactionBase {
  /** current timer A interval */
  private retransmitInterval = 0;
  private ackWire: Buffer | undefined;
  private pendingCancel: { msg: SipMessage; resolve: (ctx: ClientTransaction | undefined) => void } | undefined;
  private cancelResult: Promise<ClientTransaction | undefined> | undefined;

  constructor(services: TransactionServices, request: SipMessage, target: SendTarget, branch: string, key: string) {
    super(services, request, target, branch, key, 'calling');
  }

  protected startTimers(): void {
    const { T1 } = this.services.timers;
    // 17.1.1.2: timer A (unreliable only) starts at T1 and doubles; timer B = 64*T1.
    if (!this.reliable) {
      this.retransmitInterval = T1;
      this.timers.start('A', T1, () => this.onTimerA());
    }
    this.timers.start('B', 64 * T1, () => {
      if (this.state === 'calling') this.timeout();
    });
  }

  private onTimerA(): void {
    if (this.state !== 'calling') return;
    this.retransmit();
    this.retransmitInterval *= 2;
    this.timers.start('A', this.retransmitInterval, () => this.onTimerA());
  }

  handleResponse(inbound: InboundMessage): void {
    const res = inbound.message;
    const status = res.status ?? 0;
    switch (this.state) {
      case 'calling':
      case 'proceeding':
        if (status >= 100 && status < 200) {
          if (this.state === 'calling') this.enterProceeding();
          this.passUp(inbound);
          this.sendPendingCancel();
        } else if (status >= 200 && status < 300) {
          this.enterFinal('accepted');
          // RFC 6026 8.4: timer M = 64*T1; 2xx retransmissions (and forked 2xx) keep being passed up meanwhile.
          this.timers.start('M', 64 * this.services.timers.T1, () => this.terminate());
          this.passUp(inbound);
        } else if (status >= 300 && status < 700) {
          this.enterFinal('completed');
          this.sendAck(res);
          this.passUp(inbound);
          // timer D: >= 32 s over unreliable transports, 0 over reliable ones (17.1.1.2); meanwhile a
          // retransmitted final gets the same ACK again
          if (this.reliable) this.terminate();
          else this.compact('ack', this.services.timerD, this.ackWire, this.sameFlowTarget());
        }
        return;
      case 'accepted':
        if (status >= 200 && status < 300) this.passUp(inbound);   // RFC 6026 8.4
        return;
      case 'completed':
        // 17.1.1.2: a retransmitted final is answered with the same ACK and not passed up.
        if (status >= 300 && status < 700 && this.ackWire !== undefined) this.sendAckWire();
        return;
      default:
        return;
    }
  }

  private enterProceeding(): void {
    this.state = 'proceeding';
    this.timers.stop('A');
    this.timers.stop('B');
    // safety valve against a TU that neither gets a final nor cancels (not in the RFC; see maxProceedingMs)
    this.timers.start('proceeding-limit', this.services.maxProceedingMs, () => {
      this.services.logger?.warn({ branch: this.branch }, 'client INVITE transaction stayed in Proceeding too long');
      this.timeout();
    });
  }

  private enterFinal(state: 'accepted' | 'completed'): void {
    this.state = state;
    this.timers.clearAll();
    this.dropPendingCancel();
  }

  /** 17.1.1.3: ACK for a 300-699 final, sent to the same address, port and transport (connection) as the INVITE. */
  private sendAck(res: SipMessage): void {
    this.ackWire = buildNon2xxAck(this.request, res).serialise();
    this.sendAckWire();
  }

  private sendAckWire(): void {
    if (this.ackWire === undefined) return;
    this.services.transmit(this.ackWire, this.sameFlowTarget()).catch((err: unknown) => {
      this.services.logger?.debug({ err, branch: this.branch }, 'could not send ACK for non-2xx final');
    });
  }

  /** RFC 3261 9.1: CANCEL only after a provisional response; none will be sent once a final arrived. */
  override cancel(cancelMsg?: SipMessage): Promise<ClientTransaction | undefined> {
    if (this.cancelResult !== undefined) return this.cancelResult;
    if (this.state !== 'calling' && this.state !== 'proceeding') return Promise.resolve(undefined);
    const msg = buildCancel(this.request, cancelMsg);
    this.cancelResult = new Promise<ClientTransaction | undefined>((resolve) => {
      this.pendingCancel = { msg, resolve };
    });
    if (this.state === 'proceeding') this.sendPendingCancel();
    return this.cancelResult;
  }

  private sendPendingCancel(): void {
    const pending = this.pendingCancel;
    if (pending === undefined) return;
    this.pendingCancel = undefined;
    let cancelCtx: ClientTransaction;
    try {
      cancelCtx = this.services.sendCancel(pending.msg, this.sameFlowTarget());
    } catch (err) {
      // e.g. a CANCEL transaction with this branch already exists
      this.services.logger?.warn({ err, branch: this.branch }, 'could not start the CANCEL transaction');
      pending.resolve(undefined);
      return;
    }
    // 9.1: no final 64*T1 after the CANCEL => the INVITE transaction is considered cancelled (TU: 408).
    this.timers.start('cancel', 64 * this.services.timers.T1, () => {
      if (this.state === 'calling' || this.state === 'proceeding') this.timeout();
    });
    pending.resolve(cancelCtx);
  }

  private dropPendingCancel(): void {
    const pending = this.pendingCancel;
    this.pendingCancel = undefined;
    pending?.resolve(undefined);
  }

  protected override onTerminated(): void {
    this.dropPendingCancel();
  }
}
