import type { SendTarget } from './types.js';
import { ResendRecords } from './resend-records.js';
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
  /** 'resend': the last response as sent; 'ack': the ACK as sent. */
  readonly wire?: Buffer;
  readonly target?: SendTarget;
  /** INVITE server, RFC 2543 requests only: the To tag of the final sent, which the ACK must carry (17.2.3) */
  readonly sentToTag?: string;
  /** the full transaction's end, called once when the entry expires or is evicted (only set when the TU listens) */
  readonly onExpired?: () => void;
  /** Date.now() after which the entry expires */
  readonly expiresAt: number;
  /** gone from the table (expired, evicted, forgotten) */
  readonly expired: boolean;
}

/** An entry kept as an object (every role but the plain 'resend' ones, which go to ResendRecords). */
interface StoredEntry extends CompletedTransaction {
  expired: boolean;
}

/**
 * A 'resend' entry kept in ResendRecords, as its transaction or a lookup sees it: the table holds only its handle,
 * and the fields are read from the record when asked for.
 */
class ResendRecordView implements CompletedTransaction {
  readonly role = 'resend';
  constructor(
    private readonly table: CompletedTransactionTable,
    readonly key: string,
    readonly handle: number,
  ) {}

  get wire(): Buffer | undefined {
    return this.expired ? undefined : this.table.records.wire(this.handle);
  }

  get target(): SendTarget | undefined {
    return this.expired ? undefined : this.table.records.target(this.handle);
  }

  get expiresAt(): number {
    return this.expired ? 0 : this.table.records.expiresAt(this.handle);
  }

  get expired(): boolean {
    return !this.table.holds(this);
  }
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
  /** size of the buffers plain 'resend' records are packed into (default 1 MiB; tests use small ones) */
  recordSlabBytes?: number;
}

export const DEFAULT_MAX_COMPLETED_TRANSACTIONS = 500_000;
const DEFAULT_SWEEP_RESOLUTION_MS = 250;

/**
 * Finished transactions waiting out their last timer (J, I, L, K, D), keyed by transaction key, with one timer for
 * the whole table instead of one per transaction. Entries are grouped in lanes by lifetime: within a lane they are
 * inserted in (nearly) expiry order, so a sweep only looks at the lanes' heads.
 */
export class CompletedTransactionTable {
  /** lifetime (ms) -> entries in insertion order: an object, or the handle of a record in `records` */
  private readonly lanes = new Map<number, Map<string, StoredEntry | number>>();
  private entryCount = 0;
  private timer: NodeJS.Timeout | undefined;
  private timerAt = Number.POSITIVE_INFINITY;
  private lastSweepAt = Number.NEGATIVE_INFINITY;
  private readonly maxEntries: number;
  private readonly resolutionMs: number;
  private readonly wires = new WireSlabs();
  /** @internal the plain 'resend' entries (no listener, no RFC 2543 To tag), outside the heap */
  readonly records: ResendRecords;

  constructor(private readonly options: CompletedTableOptions = {}) {
    this.maxEntries = Math.max(1, options.maxEntries ?? DEFAULT_MAX_COMPLETED_TRANSACTIONS);
    this.resolutionMs = Math.max(0, options.sweepResolutionMs ?? DEFAULT_SWEEP_RESOLUTION_MS);
    this.records = new ResendRecords(options.recordSlabBytes);
  }

  get size(): number {
    return this.entryCount;
  }

  /** Slabs of ResendRecords in use (for stats and tests). */
  get recordSlabs(): number {
    return this.records.slabsInUse;
  }

  get(key: string): CompletedTransaction | undefined {
    const stored = this.lookup(key);
    return typeof stored === 'number' ? new ResendRecordView(this, key, stored) : stored;
  }

  /**
   * Add an entry living `lifetimeMs` from now (or until `entry.expiresAt` when the caller set one, e.g. timer L
   * started when the 2xx was sent). A previous entry under the same key is replaced without expiring it.
   */
  add(entry: Omit<CompletedTransaction, 'expiresAt' | 'expired'> & { expiresAt?: number }, lifetimeMs: number): CompletedTransaction {
    const now = Date.now();
    const expiresAt = entry.expiresAt ?? now + lifetimeMs;
    this.remove(entry.key);
    while (this.entryCount >= this.maxEntries) this.evictOne();
    let lane = this.lanes.get(lifetimeMs);
    if (lane === undefined) {
      lane = new Map();
      this.lanes.set(lifetimeMs, lane);
    }
    let result: CompletedTransaction;
    const handle = entry.role === 'resend' && entry.onExpired === undefined && entry.sentToTag === undefined && entry.wire !== undefined
      && entry.target !== undefined ? this.records.put(expiresAt, entry.target, entry.wire) : -1;
    if (handle >= 0) {
      lane.set(entry.key, handle);
      result = new ResendRecordView(this, entry.key, handle);
    } else {
      // one literal with every field, so every entry shares one hidden class
      const stored: StoredEntry = {
        key: entry.key, role: entry.role, wire: entry.wire === undefined ? undefined : this.wires.keep(entry.wire),
        target: entry.target, sentToTag: entry.sentToTag, onExpired: entry.onExpired, expiresAt, expired: false,
      };
      lane.set(stored.key, stored);
      result = stored;
    }
    this.entryCount++;
    if (expiresAt < this.timerAt) this.arm(expiresAt, now);
    return result;
  }

  /** Remove `entry` (if it is still the one stored under its key) and run its onExpired: it ended early. */
  expire(entry: CompletedTransaction): void {
    if (!this.holds(entry)) return;
    this.remove(entry.key);
    if (!(entry instanceof ResendRecordView)) this.finish(entry as StoredEntry);
  }

  /** Remove `entry` if it is still stored, without running onExpired (its transaction was terminated already). */
  forget(entry: CompletedTransaction): void {
    if (this.holds(entry)) this.remove(entry.key);
    // a record's view reports expired by itself once the table no longer holds it
    if (!(entry instanceof ResendRecordView)) (entry as StoredEntry).expired = true;
  }

  /** Drop everything without callbacks (shutdown). */
  clear(): void {
    for (const lane of this.lanes.values()) for (const entry of lane.values()) if (typeof entry === 'object') entry.expired = true;
    this.lanes.clear();
    this.records.clear();
    this.entryCount = 0;
    clearTimeout(this.timer);
    this.timer = undefined;
    this.timerAt = Number.POSITIVE_INFINITY;
  }

  /** @internal whether `entry` is (still) what the table holds under its key */
  holds(entry: CompletedTransaction): boolean {
    const stored = this.lookup(entry.key);
    return entry instanceof ResendRecordView ? stored === entry.handle : stored === entry;
  }

  private lookup(key: string): StoredEntry | number | undefined {
    for (const lane of this.lanes.values()) {
      const entry = lane.get(key);
      if (entry !== undefined) return entry;
    }
    return undefined;
  }

  private remove(key: string): boolean {
    for (const lane of this.lanes.values()) {
      const entry = lane.get(key);
      if (entry === undefined) continue;
      lane.delete(key);
      if (typeof entry === 'number') this.records.release(entry);
      this.entryCount--;
      return true;
    }
    return false;
  }

  private expiryOf(entry: StoredEntry | number): number {
    return typeof entry === 'number' ? this.records.expiresAt(entry) : entry.expiresAt;
  }

  private finish(entry: StoredEntry): void {
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
    let victim: [string, StoredEntry | number] | undefined;
    let victimExpiry = Number.POSITIVE_INFINITY;
    for (const lane of this.lanes.values()) {
      const head = lane.entries().next();
      if (head.done) continue;
      const expiry = this.expiryOf(head.value[1]);
      if (victim === undefined || expiry < victimExpiry) {
        victim = head.value;
        victimExpiry = expiry;
      }
    }
    if (victim === undefined) {
      this.entryCount = 0;
      return;
    }
    const [key, entry] = victim;
    this.remove(key);
    if (typeof entry === 'object') this.finish(entry);
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
    const due: StoredEntry[] = [];
    let next = Number.POSITIVE_INFINITY;
    for (const [lifetime, lane] of this.lanes) {
      for (const [key, entry] of lane) {
        const expiresAt = this.expiryOf(entry);
        if (expiresAt > now) {
          next = Math.min(next, expiresAt);
          break;
        }
        lane.delete(key);
        this.entryCount--;
        if (typeof entry === 'number') this.records.release(entry);
        else due.push(entry);
      }
      if (lane.size === 0) this.lanes.delete(lifetime);
    }
    if (next !== Number.POSITIVE_INFINITY) this.arm(next, now);
    for (const entry of due) this.finish(entry);
  }
}
