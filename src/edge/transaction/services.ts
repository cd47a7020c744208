import type { Logger } from 'pino';
import type { SipMessage } from '../message/index.js';
import type { CompletedTransaction } from './completed-table.js';
import type { ClientTransaction, SendTarget, SentInfo, ServerTransaction, TransactionTimers } from './types.js';

/** What a transaction needs from the layer that owns it (one instance per TransactionLayer). */
export interface TransactionServices {
  readonly timers: Readonly<TransactionTimers>;
  readonly timerD: number;
  readonly trying100DelayMs: number;
  readonly maxProceedingMs: number;
  readonly logger: Logger | undefined;
  transmit(buf: Buffer, target: SendTarget): Promise<SentInfo>;
  clientTerminated(ctx: ClientTransaction & { readonly key: string }): void;
  serverTerminated(stx: ServerTransaction & { readonly key: string }): void;
  /** an INVITE server transaction sent a 2xx: route the ACK (new branch, same dialog) to it */
  expectAckFor2xx(key: string, stx: ServerTransaction): void;
  forgetAckFor2xx(key: string, stx: ServerTransaction): void;
  /**
   * A finished transaction only absorbs retransmissions from now on: the layer drops it from its live table and
   * keeps `entry` (see CompletedTransactionTable) until it expires.
   */
  compactServer(stx: ServerTransaction & { readonly key: string }, entry: CompactEntry, lifetimeMs: number): CompletedTransaction;
  compactClient(ctx: ClientTransaction & { readonly key: string }, entry: CompactEntry, lifetimeMs: number): CompletedTransaction;
  /** a compacted transaction was terminated early (e.g. a transport failure): drop its record */
  forgetCompletedServer(entry: CompletedTransaction): void;
  forgetCompletedClient(entry: CompletedTransaction): void;
  /** start the CANCEL's own non-INVITE client transaction (9.1) */
  sendCancel(cancel: SipMessage, target: SendTarget): ClientTransaction;
}

export type CompactEntry = Omit<CompletedTransaction, 'expiresAt' | 'expired'> & { expiresAt?: number };

/** Run a TU listener without letting its exception unwind into the transport or a timer. */
export function emitSafely(services: TransactionServices, emit: () => void, what: string): void {
  try {
    emit();
  } catch (err) {
    services.logger?.error({ err }, `transaction layer: TU listener for ${what} threw`);
  }
}
