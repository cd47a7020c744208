/**
 * Dial-in lockout, in Redis so every instance sees it: each failed login counts against the ID
 * that was entered (whether or not it exists, so a lockout says nothing about which IDs exist)
 * and against the caller's number. At `failures` within `windowSeconds` (fixed window from the
 * first failure) that ID or number is refused until the window ends or an administrator clears it.
 */
import { keys } from '../users/keys.js';
import { numberReply, stringReply, type Redis } from '../users/redis.js';

export type LockoutKind = 'id' | 'caller';

export interface Lockout {
  kind: LockoutKind;
  value: string;
  failures: number;
  /** Seconds until the counter expires. */
  expiresInSeconds: number;
}

export interface LockoutPolicy {
  failures: number;
  windowSeconds: number;
}

/** What may be a counter key's value part: bounded, no glob or separator characters. */
const VALUE = /^[A-Za-z0-9+*#._@-]{1,64}$/;

export class DialInLockouts {
  constructor(
    private readonly redis: Redis,
    readonly policy: LockoutPolicy,
  ) {}

  static isValidValue(value: string): boolean {
    return VALUE.test(value);
  }

  /** True when the ID (if any) or the caller number (if any) is locked out. */
  async isLocked(id: string | null, caller: string | null): Promise<boolean> {
    const targets = this.targets(id, caller);
    if (targets.length === 0) return false;
    const counts = await Promise.all(targets.map((key) => this.redis.send(['GET', key])));
    return counts.some((count) => numberReply(count) >= this.policy.failures);
  }

  async recordFailure(id: string | null, caller: string | null): Promise<void> {
    await Promise.all(
      this.targets(id, caller).map(async (key) => {
        await this.redis.send(['INCR', key]);
        await this.redis.send(['EXPIRE', key, String(this.policy.windowSeconds), 'NX']);
      }),
    );
  }

  /** The IDs and numbers locked out now (failures at the limit). */
  async list(): Promise<Lockout[]> {
    const out: Lockout[] = [];
    const prefix = keys.dialInFailures('id', '').replace(/id:$/, '');
    let cursor = '0';
    do {
      const reply = (await this.redis.send(['SCAN', cursor, 'MATCH', `${prefix}*`, 'COUNT', '500'])) as [unknown, unknown[]];
      cursor = stringReply(reply[0]) ?? '0';
      for (const raw of reply[1] ?? []) {
        const key = stringReply(raw);
        const match = key?.startsWith(prefix) ? /^(id|caller):(.+)$/.exec(key.slice(prefix.length)) : null;
        if (!key || !match) continue;
        const [count, ttl] = await Promise.all([this.redis.send(['GET', key]), this.redis.send(['TTL', key])]);
        const failures = numberReply(count);
        if (failures >= this.policy.failures) {
          out.push({ kind: match[1] as LockoutKind, value: match[2]!, failures, expiresInSeconds: Math.max(0, numberReply(ttl)) });
        }
      }
    } while (cursor !== '0' && out.length < 10_000);
    return out.sort((a, b) => a.kind.localeCompare(b.kind) || a.value.localeCompare(b.value));
  }

  /** Clears the counter of an ID or a number; true when there was one. */
  async clear(kind: LockoutKind, value: string): Promise<boolean> {
    if (!VALUE.test(value)) return false;
    return numberReply(await this.redis.send(['DEL', keys.dialInFailures(kind, value)])) > 0;
  }

  private targets(id: string | null, caller: string | null): string[] {
    const out: string[] = [];
    if (id && VALUE.test(id)) out.push(keys.dialInFailures('id', id));
    if (caller && VALUE.test(caller)) out.push(keys.dialInFailures('caller', caller));
    return out;
  }
}
