import type { SipMessage } from '../message/index.js';
import { ServerTransactionBase } from './server-transaction.js';
import type { TransactionServices } from './services.js';
import type { InboundMessage, SentInfo } from './types.js';

/** RFC 3261 17.2.2, figure 8: Trying -> Proceeding -> Completed -> Terminated. */
export class ServerNonInviteTransaction extends ServerTransactionBase {
  constructor(services: TransactionServices, request: InboundMessage, key: string) {
    super(services, request, key, 'trying');
  }

  start(): void {
    // Not in the RFC: the client gives up after 64*T1 (timer F), so a request the TU never answers is dropped then
    // instead of holding a slot forever.
    this.timers.start('abandon', 64 * this.services.timers.T1, () => {
      this.services.logger?.warn({ method: this.method }, 'server transaction: TU sent no final response within 64*T1');
      this.terminate();
    });
  }

  handleRetransmission(_inbound: InboundMessage): void {
    // Trying: discard; Proceeding / Completed: repeat the last response (17.2.2).
    if (this.state === 'proceeding' || this.state === 'completed') this.resendLastResponse();
  }

  respond(msg: SipMessage): Promise<SentInfo> {
    const status = this.checkResponse(msg);
    if (status instanceof Error) return Promise.reject(status);
    if (this.state !== 'trying' && this.state !== 'proceeding') return this.wrongState(status);
    if (status < 200) {
      this.state = 'proceeding';
      return this.sendResponse(msg);
    }
    this.state = 'completed';
    this.timers.stop('abandon');
    const sent = this.sendResponse(msg);
    // timer J = 64*T1 over unreliable transports (retransmitted requests get this final again), 0 over reliable ones
    if (this.reliable) this.terminate();
    else this.compact('resend', 64 * this.services.timers.T1);
    return sent;
  }
}
