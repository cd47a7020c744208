/**
 * Dial-in lockout, in Redis so every instance sees it: each failed login counts against the ID
 * that was entered (whether or not it exists, so a lockout says nothing about which IDs exist)
 * and against the caller's number. A sliding window: an ID or number is refused while
 * `failures` of its failures lie within the last `windowSeconds` ("10 failures in 15 minutes"),
 * until the oldest of them leaves the window or an administrator clears it.
 *
 * Per ID / number, one sorted set of failure times (score = ms on the Redis server's clock, so
 * instances with skewed clocks agree): trimmed to the window (ZREMRANGEBYSCORE) and to the newest
 * `failures` entries on every write, and expiring with the window.
 */
import { randomBytes } from 'node:crypto';
import { keys } from '../users/keys.js';
import { LuaScript, numberReply, type Redis } from '../users/redis.js';

export type LockoutKind = 'id' | 'caller';

export interface Lockout {
  kind: LockoutKind;
  value: string;
  failures: number;
  /** Seconds until the lockout ends (its oldest counted failure leaves the window). */
  expiresInSeconds: number;
}

export interface LockoutPolicy {
  failures: number;
  windowSeconds: number;
}

/** What may be a key's value part: bounded, no glob or separator characters. */
const VALUE = /^[A-Za-z0-9+*#._@-]{1,64}$/;

/** Redis server time in ms (TIME: seconds, microseconds). */
const NOW_MS = `local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)`;

/** ARGV: window ms, limit, unique suffix. Adds a failure now, trims; returns the count in the window. */
const RECORD_FAILURE = new LuaScript(
  'dialin-failure',
  `${NOW_MS}
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - tonumber(ARGV[1]))
redis.call('ZADD', KEYS[1], now, now .. '-' .. ARGV[3])
redis.call('ZREMRANGEBYRANK', KEYS[1], 0, -(tonumber(ARGV[2]) + 1))
redis.call('PEXPIRE', KEYS[1], ARGV[1])
return redis.call('ZCARD', KEYS[1])`,
);

/** ARGV: window ms, limit. Returns {failures in the window, ms until fewer than the limit remain (0 = not locked)}. */
const LOCK_STATE = new LuaScript(
  'dialin-lock-state',
  `${NOW_MS}
local from = now - tonumber(ARGV[1])
local count = redis.call('ZCOUNT', KEYS[1], '(' .. from, '+inf')
local limit = tonumber(ARGV[2])
if count < limit then return {count, 0} end
local oldest = redis.call('ZRANGE', KEYS[1], -limit, -limit, 'WITHSCORES')
return {count, math.max(1, tonumber(oldest[2]) - from)}`,
);

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
    const states = await Promise.all(this.targets(id, caller).map((key) => this.state(key)));
    return states.some((state) => state.lockedForMs > 0);
  }

  async recordFailure(id: string | null, caller: string | null): Promise<void> {
    const args = [String(this.windowMs), String(this.policy.failures)];
    await Promise.all(this.targets(id, caller).map((key) => this.redis.runScript(RECORD_FAILURE, [key], [...args, randomBytes(6).toString('hex')])));
  }

  /** The IDs and numbers locked out now (failures at the limit within the window). */
  async list(): Promise<Lockout[]> {
    const out: Lockout[] = [];
    const prefix = keys.dialInFailures('id', '').replace(/id:$/, '');
    const seen = new Set<string>();
    // every master of a Redis Cluster holds some of these keys: scanKeys visits each
    for await (const key of this.redis.scanKeys(`${prefix}*`)) {
      const match = key.startsWith(prefix) ? /^(id|caller):(.+)$/.exec(key.slice(prefix.length)) : null;
      if (!match || seen.has(key)) continue;
      seen.add(key); // SCAN may return a key twice: its state is read once
      const { failures, lockedForMs } = await this.state(key);
      if (lockedForMs <= 0) continue;
      out.push({ kind: match[1] as LockoutKind, value: match[2]!, failures, expiresInSeconds: Math.ceil(lockedForMs / 1000) });
      if (out.length >= 10_000) break;
    }
    return out.sort((a, b) => a.kind.localeCompare(b.kind) || a.value.localeCompare(b.value));
  }

  /** Clears the failures of an ID or a number; true when there were some. */
  async clear(kind: LockoutKind, value: string): Promise<boolean> {
    if (!VALUE.test(value)) return false;
    return numberReply(await this.redis.send(['DEL', keys.dialInFailures(kind, value)])) > 0;
  }

  private get windowMs(): number {
    return this.policy.windowSeconds * 1000;
  }

  private async state(key: string): Promise<{ failures: number; lockedForMs: number }> {
    const reply = await this.redis.runScript(LOCK_STATE, [key], [String(this.windowMs), String(this.policy.failures)]);
    const [failures, lockedForMs] = Array.isArray(reply) ? reply.map(numberReply) : [0, 0];
    return { failures: failures ?? 0, lockedForMs: lockedForMs ?? 0 };
  }

  private targets(id: string | null, caller: string | null): string[] {
    const out: string[] = [];
    if (id && VALUE.test(id)) out.push(keys.dialInFailures('id', id));
    if (caller && VALUE.test(caller)) out.push(keys.dialInFailures('caller', caller));
    return out;
  }
}
