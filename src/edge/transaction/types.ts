import type { EventEmitter } from 'node:events';
import type { Logger } from 'pino';
import type { SipMessage } from '../message/index.js';
import type { InboundMessage, MalformedInbound, SendTarget, SentInfo } from '../transport/index.js';

/** RFC 3261 section 17.1.1.1 / table 4: the base timer values, milliseconds. */
export interface TransactionTimers {
  /** RTT estimate, default 500 ms */
  T1: number;
  /** maximum retransmit interval for non-INVITE requests and INVITE responses, default 4 s */
  T2: number;
  /** maximum duration a message remains in the network, default 5 s */
  T4: number;
}

export interface TransactionLayerOptions extends Partial<TransactionTimers> {
  logger?: Logger;
  /**
   * server transactions still waiting for the TU's final response (Trying / Proceeding, and INVITE Completed
   * waiting for its ACK); a new request beyond this is answered 503 statelessly and not emitted (default 20000)
   */
  maxServerTransactions?: number;
  /** client transactions waiting for a final response; sendRequest beyond this emits 'transport-error' asynchronously (default 20000) */
  maxClientTransactions?: number;
  /**
   * finished transactions kept, per side (server / client), only to absorb retransmissions until their last timer
   * (J, I, L, K, D) fires: a compact record each (key, last response or ACK bytes, target). Beyond this the one
   * expiring first is dropped early. Default 500000.
   */
  maxCompletedTransactions?: number;
  /** timer D over unreliable transports (RFC 3261 17.1.1.2: at least 32 s), default 32000 */
  timerD?: number;
  /**
   * delay before the automatic 100 Trying to an INVITE (RFC 3261 17.2.1 allows up to 200 ms when the TU has
   * not answered); default 0 = sent immediately on receipt, as drachtio-server does.
   */
  trying100DelayMs?: number;
  /**
   * safety valve, not in the RFC: an INVITE transaction (client or server) that stays in Proceeding this long
   * without a final response is terminated ('timeout' on a client transaction), so a TU that never answers or
   * never cancels cannot leak transactions. Default 600000 (10 minutes).
   */
  maxProceedingMs?: number;
  /** answer transport 'malformed' requests statelessly with their status (400/505/416...). Default true. */
  answerMalformed?: boolean;
}

/** The transport surface the transaction layer needs (structurally satisfied by TransportLayer). */
export interface TransactionTransport {
  send(buf: Buffer, target: SendTarget): Promise<SentInfo>;
  on(event: 'message', listener: (m: InboundMessage) => void): unknown;
  on(event: 'malformed', listener: (m: MalformedInbound) => void): unknown;
  off(event: 'message', listener: (m: InboundMessage) => void): unknown;
  off(event: 'malformed', listener: (m: MalformedInbound) => void): unknown;
}

/** RFC 3261 figures 5-8 plus RFC 6026 'accepted'. INVITE server: proceeding/completed/confirmed/accepted;
 *  non-INVITE server: trying/proceeding/completed. */
export type ServerTransactionState = 'trying' | 'proceeding' | 'completed' | 'confirmed' | 'accepted' | 'terminated';
/** INVITE client: calling/proceeding/completed/accepted; non-INVITE client: trying/proceeding/completed. */
export type ClientTransactionState = 'calling' | 'trying' | 'proceeding' | 'completed' | 'accepted' | 'terminated';

export interface ServerTransactionEvents {
  /** the transaction reached Terminated and left the layer's tables */
  terminated: [];
  /** timer H fired: no ACK arrived for a non-2xx final to an INVITE (RFC 3261 17.2.1) */
  timeout: [];
  /** an ACK for this INVITE's 2xx arrived (RFC 6026 Accepted state; also emitted on the layer as 'ack') */
  ack: [ack: InboundMessage];
  /** respond2xxRetransmit(): no ACK for the 2xx within 64*T1 (RFC 3261 13.3.1.4: the TU should send BYE) */
  'ack-timeout': [];
}

export interface ServerTransaction extends EventEmitter<ServerTransactionEvents> {
  readonly id: string;
  /** request method (ACK never creates a server transaction) */
  readonly method: string;
  readonly request: InboundMessage;
  readonly state: ServerTransactionState;
  /** last response passed to the transport, provisional or final */
  readonly lastResponse: SipMessage | undefined;
  /** wire form of lastResponse, exactly as sent (and resent) */
  readonly lastResponseWire: Buffer | undefined;
  /** CANCEL only: the INVITE server transaction it cancels (RFC 3261 9.2 / 17.2.3), undefined => answer 481 */
  readonly cancelTarget: ServerTransaction | undefined;
  /**
   * CANCEL only: a matching INVITE server transaction exists (RFC 3261 9.2: answer the CANCEL 200), either
   * cancelTarget or one that has already sent its final and is only absorbing retransmissions.
   */
  readonly cancelMatched: boolean;
  /** true over TCP/TLS/WS/WSS: no retransmissions, zero-length wait timers */
  readonly reliable: boolean;
  /** where responses go (RFC 3261 18.2.2 + RFC 3581 rport) */
  readonly responseTarget: SendTarget;
  /**
   * Send a response (RFC 3261 17.2.1 / 17.2.2). Finals to INVITE: 300-699 are retransmitted (timer G) until the
   * ACK arrives; 2xx moves the transaction to Accepted (RFC 6026, timer L) and is sent once.
   * Rejects on transport failure (the transaction is then terminated) or when the transaction can no longer
   * send that response (e.g. a second final).
   */
  respond(msg: SipMessage): Promise<SentInfo>;
  /**
   * INVITE only, 2xx only: like respond(), and additionally retransmits the 2xx over unreliable transports
   * as RFC 3261 13.3.1.4 asks of the UAS core (T1, doubling up to T2) until the ACK arrives; emits
   * 'ack-timeout' if no ACK arrived within 64*T1 (over any transport).
   */
  respond2xxRetransmit(msg: SipMessage): Promise<SentInfo>;
}

export interface ClientTransactionEvents {
  /** provisional and final responses; retransmitted finals are absorbed except 2xx to INVITE (RFC 6026) */
  response: [res: InboundMessage];
  /** timer B / F, 64*T1 after a CANCEL without a final, or the maxProceedingMs safety valve: TU synthesises 408 */
  timeout: [];
  /** the request (or a retransmission) could not be sent: TU synthesises 503 (RFC 3261 8.1.3.1) */
  'transport-error': [err: Error];
  terminated: [];
}

export interface ClientTransaction extends EventEmitter<ClientTransactionEvents> {
  readonly id: string;
  readonly method: string;
  /** the request as sent (a private copy of what was passed to sendRequest) */
  readonly request: SipMessage;
  /** wire form of the request, exactly as sent (and retransmitted) */
  readonly wire: Buffer;
  readonly target: SendTarget;
  readonly state: ClientTransactionState;
  readonly reliable: boolean;
  /** top Via branch: the transaction key together with the method (RFC 3261 17.1.3) */
  readonly branch: string;
  /** last response received (provisional or final) */
  readonly lastResponse: SipMessage | undefined;
  /**
   * The first transmission: resolves with where/how it went (for drachtio's "Msg sent" echo), rejects on a
   * transport failure (which is also emitted as 'transport-error'). Unobserved rejections are safe.
   */
  readonly sent: Promise<SentInfo>;
  /**
   * INVITE only (RFC 3261 9.1): send a CANCEL built from the INVITE (the 9.1 fields always come from the INVITE;
   * other headers of `cancelMsg`, e.g. Reason, are added) in its own non-INVITE client
   * transaction once a provisional response has arrived (immediately if one has). Resolves with that CANCEL's
   * client transaction when sent, or undefined when it never will be (a final arrived first, or the INVITE
   * transaction ended). If no final response arrives 64*T1 after the CANCEL was sent, this INVITE transaction
   * emits 'timeout' and terminates.
   */
  cancel(cancelMsg?: SipMessage): Promise<ClientTransaction | undefined>;
}

export type { InboundMessage, MalformedInbound, SendTarget, SentInfo };
