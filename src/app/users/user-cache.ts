/**
 * In-process read cache of registrants (the compact user shape the REGISTER path needs, see
 * `Registrant`) by login. Entries are dropped the moment any instance publishes `user-changed`
 * for that user (dc:events), everything is dropped when the subscription reconnects (events may
 * have been missed), and entries expire `ttlMs` after they were read from Redis. Unknown logins
 * are cached briefly too, so a scanner guessing names does not cost a Redis round trip per
 * guess. The registrar additionally sends the cached `version` into its Redis script, which
 * refuses to act on a stale record.
 *
 * Memory is bounded: at most `maxEntries` logins (least recently used evicted first), each a
 * Registrant of a few hundred bytes. Full user records (the call-side settings) are not cached:
 * `getByLogin` reads them from Redis every time.
 */
import type { EventBus } from './events.js';
import type { Registrant, UserRecord } from './types.js';
import type { UserStore } from './user-store.js';

export interface UserCacheOptions {
  /** How long a registrant read from Redis is served from memory. Default 60 s. */
  ttlMs?: number;
  /** How long "no such login" is remembered. Default 5 s. */
  negativeTtlMs?: number;
  /** Logins kept at most (least recently used evicted). Default 20,000. */
  maxEntries?: number;
}

interface Entry {
  registrant: Registrant | null;
  expiresAt: number;
}

export class UserCache {
  /** login (lower case) -> entry, in least-recently-used-first order (a hit moves the entry to the end) */
  private readonly entries = new Map<string, Entry>();
  /** Highest version announced per user id (bounded: cleared past maxEntries): a fetch that returns older data is not cached. */
  private readonly announcedVersions = new Map<string, number>();
  private readonly loginById = new Map<string, string>();
  private generation = 0;
  private readonly ttlMs: number;
  private readonly negativeTtlMs: number;
  private readonly maxEntries: number;
  private readonly unsubscribe: Array<() => void> = [];

  constructor(
    private readonly store: UserStore,
    events: EventBus | undefined,
    options: UserCacheOptions = {},
  ) {
    this.ttlMs = options.ttlMs ?? 60_000;
    this.negativeTtlMs = options.negativeTtlMs ?? 5_000;
    this.maxEntries = Math.max(1, options.maxEntries ?? 20_000);
    if (events) {
      this.unsubscribe.push(
        events.on((event) => {
          if (event.type === 'user-changed') {
            this.announcedVersions.set(event.userId, event.version);
            if (this.announcedVersions.size > this.maxEntries) this.announcedVersions.clear();
            for (const login of event.logins) this.invalidate(login);
            this.invalidateId(event.userId);
          }
        }),
        events.onResync(() => this.clear()),
      );
    }
  }

  /** The registrant for a login (case-insensitive), from memory when fresh. */
  async getRegistrant(login: string, now = Date.now()): Promise<Registrant | null> {
    const key = login.toLowerCase();
    const hit = this.entries.get(key);
    if (hit) {
      if (hit.expiresAt > now) {
        // least recently used order: move to the end
        this.entries.delete(key);
        this.entries.set(key, hit);
        return hit.registrant;
      }
      this.drop(key, hit);
    }
    return this.load(key, now);
  }

  /** Re-reads a login from Redis (e.g. after the registrar script reported a stale version). */
  async refreshRegistrant(login: string, now = Date.now()): Promise<Registrant | null> {
    return this.load(login.toLowerCase(), now);
  }

  /** The full user record (call-side settings included), read from Redis: not cached. */
  async getByLogin(login: string): Promise<UserRecord | null> {
    return this.store.getByLogin(login);
  }

  invalidate(login: string): void {
    const key = login.toLowerCase();
    const entry = this.entries.get(key);
    if (entry) this.drop(key, entry);
    this.generation++;
  }

  clear(): void {
    this.entries.clear();
    this.loginById.clear();
    this.announcedVersions.clear();
    this.generation++;
  }

  get size(): number {
    return this.entries.size;
  }

  close(): void {
    for (const off of this.unsubscribe) off();
    this.unsubscribe.length = 0;
    this.clear();
  }

  private drop(key: string, entry: Entry): void {
    this.entries.delete(key);
    if (entry.registrant) this.loginById.delete(entry.registrant.id);
  }

  private invalidateId(id: string): void {
    const login = this.loginById.get(id);
    if (login !== undefined) {
      this.entries.delete(login);
      this.loginById.delete(id);
    }
    this.generation++;
  }

  private async load(key: string, now: number): Promise<Registrant | null> {
    const generation = this.generation;
    const registrant = await this.store.getRegistrant(key);
    // An invalidation that raced with this read may mean `registrant` is already stale: don't keep it.
    const announced = registrant ? (this.announcedVersions.get(registrant.id) ?? 0) : 0;
    if (generation === this.generation && (!registrant || registrant.version >= announced)) {
      const previous = this.entries.get(key);
      if (previous) this.drop(key, previous);
      while (this.entries.size >= this.maxEntries) {
        const oldest = this.entries.entries().next();
        if (oldest.done) break;
        this.drop(oldest.value[0], oldest.value[1]);
      }
      if (registrant) this.loginById.set(registrant.id, key);
      this.entries.set(key, { registrant, expiresAt: now + (registrant ? this.ttlMs : this.negativeTtlMs) });
    }
    return registrant;
  }
}
