import { ClientTransactionBase } from './client-transaction.js';
import type { SipMessage } from '../message/index.js';
import type { TransactionServices } from './services.js';
import type { InboundMessage, SendTarget } from './types.js';

/** RFC 3261 17.1.2, figure 6: Trying -> Proceeding -> Completed -> Terminated. */
export class ClientNonInviteTransaction extends ClientTransactionBase {
  constructor(services: TransactionServices, request: SipMessage, target: SendTarget, branch: string, key: string) {
    super(services, request, target, branch, key, 'trying');
  }

  /** current timer E interval */
  private retransmitInterval = 0;

  protected startTimers(): void {
    const { T1 } = this.services.timers;
    // 17.1.2.2: timer E only over unreliable transports; timer F = 64*T1 always.
    if (!this.reliable) {
      this.retransmitInterval = T1;
      this.timers.start('E', T1, () => this.onTimerE());
    }
    this.timers.start('F', 64 * T1, () => this.timeout());
  }

  /** Timer E: retransmit; next interval min(2*E, T2) in Trying, T2 in Proceeding (17.1.2.2). */
  private onTimerE(): void {
    if (this.state !== 'trying' && this.state !== 'proceeding') return;
    this.retransmit();
    const { T2 } = this.services.timers;
    this.retransmitInterval = this.state === 'proceeding' ? T2 : Math.min(2 * this.retransmitInterval, T2);
    this.timers.start('E', this.retransmitInterval, () => this.onTimerE());
  }

  handleResponse(inbound: InboundMessage): void {
    const status = inbound.message.status ?? 0;
    if (this.state !== 'trying' && this.state !== 'proceeding') return;   // Completed absorbs retransmissions
    if (status >= 100 && status < 200) {
      this.state = 'proceeding';
      this.passUp(inbound);
      return;
    }
    if (status >= 200 && status < 700) {
      this.state = 'completed';
      this.timers.stop('E');
      this.timers.stop('F');
      this.passUp(inbound);
      // timer K = T4 over unreliable transports (retransmitted finals absorbed meanwhile), 0 over reliable ones (17.1.2.2)
      if (this.reliable) this.terminate();
      else this.compact('absorb', this.services.timers.T4);
    }
  }
}
