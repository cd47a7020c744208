/**
 * In-process read cache of users by login for the REGISTER hot path. Entries are dropped the
 * moment any instance publishes `user-changed` for that user (dc:events), everything is dropped
 * when the subscription reconnects (events may have been missed), and entries expire after
 * `ttlMs` as a backstop. Unknown logins are cached briefly too, so a scanner guessing names
 * does not cost a Redis round trip per guess. The registrar additionally sends the cached
 * `version` into its Redis script, which refuses to act on a stale record.
 */
import type { EventBus } from './events.js';
import type { UserRecord } from './types.js';
import type { UserStore } from './user-store.js';

export interface UserCacheOptions {
  ttlMs?: number;
  negativeTtlMs?: number;
  maxEntries?: number;
}

interface Entry {
  user: UserRecord | null;
  expiresAt: number;
}

export class UserCache {
  private readonly entries = new Map<string, Entry>();
  /** Highest version announced per user id: a fetch that returns older data is not cached. */
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
    this.maxEntries = options.maxEntries ?? 200_000;
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

  /** The user for a login (case-insensitive), from memory when fresh. */
  async getByLogin(login: string, now = Date.now()): Promise<UserRecord | null> {
    const key = login.toLowerCase();
    const hit = this.entries.get(key);
    if (hit && hit.expiresAt > now) return hit.user;
    return this.load(key, now);
  }

  /** Re-reads a login from Redis (e.g. after the registrar script reported a stale version). */
  async refresh(login: string, now = Date.now()): Promise<UserRecord | null> {
    return this.load(login.toLowerCase(), now);
  }

  invalidate(login: string): void {
    this.entries.delete(login.toLowerCase());
    this.generation++;
  }

  clear(): void {
    this.entries.clear();
    this.loginById.clear();
    this.generation++;
  }

  get size(): number {
    return this.entries.size;
  }

  close(): void {
    for (const off of this.unsubscribe) off();
    this.entries.clear();
  }

  private invalidateId(id: string): void {
    const login = this.loginById.get(id);
    if (login !== undefined) {
      this.entries.delete(login);
      this.loginById.delete(id);
    }
    this.generation++;
  }

  private async load(key: string, now: number): Promise<UserRecord | null> {
    const generation = this.generation;
    const user = await this.store.getByLogin(key);
    // An invalidation that raced with this read may mean `user` is already stale: don't keep it.
    const announced = user ? (this.announcedVersions.get(user.id) ?? 0) : 0;
    if (generation === this.generation && (!user || user.version >= announced)) {
      if (this.entries.size >= this.maxEntries) {
        const oldest = this.entries.keys().next();
        if (!oldest.done) this.entries.delete(oldest.value);
        if (this.loginById.size > this.maxEntries) this.loginById.clear();
      }
      if (user) this.loginById.set(user.id, key);
      this.entries.set(key, { user, expiresAt: now + (user ? this.ttlMs : this.negativeTtlMs) });
    }
    return user;
  }
}
