import type { SendTarget } from './types.js';
import { WireSlabs } from './wire-slabs.js';

/**
 * What a finished transaction still does with what arrives for it (RFC 3261 17.2.1 / 17.2.2 / 17.1.1.2 / 17.1.2.2,
 * RFC 6026):
 *  - 'resend':   non-INVITE server, Completed: a retransmitted request gets the last response again (timer J);
 *  - 'confirmed': INVITE server, Confirmed: retransmitted INVITEs and ACKs are absorbed (timer I);
 *  - 'accepted': INVITE server, Accepted once the ACK for its 2xx arrived: retransmitted INVITEs are absorbed,
 *                ACKs are passed up to the TU (RFC 6026 8.5 / 8.6, timer L);
 *  - 'absorb':   non-INVITE client, Completed: retransmitted responses are absorbed (timer K);
 *  - 'ack':      INVITE client, Completed: a retransmitted 300-699 final gets the same ACK again (timer D).
 */
export type CompletedRole = 'resend' | 'confirmed' | 'accepted' | 'absorb' | 'ack';

/**
 * A transaction reduced to what absorbing retransmissions needs: its match key, the bytes to send again (last
 * response, or the ACK) and where to. The parsed messages, listeners and timers of the full transaction are gone.
 */
export interface CompletedTransaction {
  readonly key: string;
  readonly role: CompletedRole;
  /** 'resend': the last response as sent; 'ack': the ACK as sent. A view into the table's WireSlabs. */
  readonly wire?: Buffer;
  readonly target?: SendTarget;
  /** INVITE server, RFC 2543 requests only: the To tag of the final sent, which the ACK must carry (17.2.3) */
  readonly sentToTag?: string;
  /** the full transaction's end, called once when the entry expires or is evicted (only set when the TU listens) */
  readonly onExpired?: () => void;
  /** Date.now() after which the entry expires */
  expiresAt: number;
  expired: boolean;
}

export interface CompletedTableOptions {
  /** entries kept at most; beyond it the entry expiring first is evicted (default 500000) */
  maxEntries?: number;
  /**
   * Minimum time between two sweeps, ms (default 250): under load, expiries are batched at this resolution (an
   * entry may outlive its timer by up to this much, never less); when idle an entry expires on time.
   */
  sweepResolutionMs?: number;
  /** an onExpired callback threw */
  onError?: (err: unknown) => void;
}

export const DEFAULT_MAX_COMPLETED_TRANSACTIONS = 500_000;
const DEFAULT_SWEEP_RESOLUTION_MS = 250;

/**
 * Finished transactions waiting out their last timer (J, I, L, K, D), keyed by transaction key, with one timer for
 * the whole table instead of one per transaction. Entries are grouped in lanes by lifetime: within a lane they are
 * inserted in (nearly) expiry order, so a sweep only looks at the lanes' heads.
 */
export class CompletedTransactionTable {
  /** lifetime (ms) -> entries in insertion order */
  private readonly lanes = new Map<number, Map<string, CompletedTransaction>>();
  private entryCount = 0;
  private timer: NodeJS.Timeout | undefined;
  private timerAt = Number.POSITIVE_INFINITY;
  private lastSweepAt = Number.NEGATIVE_INFINITY;
  private readonly maxEntries: number;
  private readonly resolutionMs: number;
  private readonly wires = new WireSlabs();

  constructor(private readonly options: CompletedTableOptions = {}) {
    this.maxEntries = Math.max(1, options.maxEntries ?? DEFAULT_MAX_COMPLETED_TRANSACTIONS);
    this.resolutionMs = Math.max(0, options.sweepResolutionMs ?? DEFAULT_SWEEP_RESOLUTION_MS);
  }

  get size(): number {
    return this.entryCount;
  }

  get(key: string): CompletedTransaction | undefined {
    for (const lane of this.lanes.values()) {
      const entry = lane.get(key);
      if (entry !== undefined) return entry;
    }
    return undefined;
  }

  /**
   * Add an entry living `lifetimeMs` from now (or until `entry.expiresAt` when the caller set one, e.g. timer L
   * started when the 2xx was sent). A previous entry under the same key is replaced without expiring it.
   */
  add(entry: Omit<CompletedTransaction, 'expiresAt' | 'expired'> & { expiresAt?: number }, lifetimeMs: number): CompletedTransaction {
    const now = Date.now();
    // one literal with every field, so every entry shares one hidden class
    const stored: CompletedTransaction = {
      key: entry.key, role: entry.role, wire: entry.wire === undefined ? undefined : this.wires.keep(entry.wire),
      target: entry.target, sentToTag: entry.sentToTag,
      onExpired: entry.onExpired, expiresAt: entry.expiresAt ?? now + lifetimeMs, expired: false,
    };
    this.remove(stored.key);
    while (this.entryCount >= this.maxEntries) this.evictOne();
    let lane = this.lanes.get(lifetimeMs);
    if (lane === undefined) {
      lane = new Map();
      this.lanes.set(lifetimeMs, lane);
    }
    lane.set(stored.key, stored);
    this.entryCount++;
    if (stored.expiresAt < this.timerAt) this.arm(stored.expiresAt, now);
    return stored;
  }

  /** Remove `entry` (if it is still the one stored under its key) and run its onExpired: it ended early. */
  expire(entry: CompletedTransaction): void {
    if (this.get(entry.key) !== entry) return;
    this.remove(entry.key);
    this.finish(entry);
  }

  /** Remove `entry` if it is still stored, without running onExpired (its transaction was terminated already). */
  forget(entry: CompletedTransaction): void {
    if (this.get(entry.key) === entry) this.remove(entry.key);
    entry.expired = true;
  }

  /** Drop everything without callbacks (shutdown). */
  clear(): void {
    for (const lane of this.lanes.values()) for (const entry of lane.values()) entry.expired = true;
    this.lanes.clear();
    this.entryCount = 0;
    clearTimeout(this.timer);
    this.timer = undefined;
    this.timerAt = Number.POSITIVE_INFINITY;
  }

  private remove(key: string): boolean {
    for (const lane of this.lanes.values()) {
      if (lane.delete(key)) {
        this.entryCount--;
        return true;
      }
    }
    return false;
  }

  private finish(entry: CompletedTransaction): void {
    entry.expired = true;
    if (entry.onExpired === undefined) return;
    try {
      entry.onExpired();
    } catch (err) {
      this.options.onError?.(err);
    }
  }

  /** Bound reached: the entry expiring first goes now. */
  private evictOne(): void {
    let victim: CompletedTransaction | undefined;
    for (const lane of this.lanes.values()) {
      const head = lane.values().next();
      if (!head.done && (victim === undefined || head.value.expiresAt < victim.expiresAt)) victim = head.value;
    }
    if (victim === undefined) {
      this.entryCount = 0;
      return;
    }
    this.remove(victim.key);
    this.finish(victim);
  }

  private arm(at: number, now: number): void {
    clearTimeout(this.timer);
    const fireAt = Math.max(at, this.lastSweepAt + this.resolutionMs);
    this.timerAt = fireAt;
    this.timer = setTimeout(() => this.sweep(), Math.max(0, fireAt - now));
    this.timer.unref();
  }

  private sweep(): void {
    this.timer = undefined;
    this.timerAt = Number.POSITIVE_INFINITY;
    const now = Date.now();
    this.lastSweepAt = now;
    const due: CompletedTransaction[] = [];
    let next = Number.POSITIVE_INFINITY;
    for (const [lifetime, lane] of this.lanes) {
      for (const [key, entry] of lane) {
        if (entry.expiresAt > now) {
          next = Math.min(next, entry.expiresAt);
          break;
        }
        lane.delete(key);
        this.entryCount--;
        due.push(entry);
      }
      if (lane.size === 0) this.lanes.delete(lifetime);
    }
    if (next !== Number.POSITIVE_INFINITY) this.arm(next, now);
    for (const entry of due) this.finish(entry);
  }
}
