/**
 * Nonce counts seen per user and nonce, in Redis (RFC 7616 §3.4 / RFC 2617 §3.2.2: with qop, every request that
 * reuses a nonce carries a higher nc; a count not above the last one seen is a replay). Shared by every core
 * instance. REGISTER checks and records its count inside the registrar's binding script (binding-store.ts, the
 * same key, atomic with the binding change); other authenticated requests (INVITE) claim theirs here.
 */
import { keys } from '../users/keys.js';
import { LuaScript, type Redis } from '../users/redis.js';

const CLAIM = new LuaScript(
  'nonce-count-claim',
  `local last = tonumber(redis.call('GET', KEYS[1]) or '0')
local nc = tonumber(ARGV[1])
if nc <= last then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return 1`,
);

export interface NonceCountGuard {
  /** true when `nc` is above every count seen for this user's nonce (and is now the last one); false: a replay */
  claim(userId: string, nonce: string, nc: number): Promise<boolean>;
}

export class NonceCountStore implements NonceCountGuard {
  /** @param nonceLifetimeMs how long a nonce is accepted: its counts are kept that long */
  constructor(
    private readonly redis: Redis,
    private readonly nonceLifetimeMs: number,
  ) {}

  async claim(userId: string, nonce: string, nc: number): Promise<boolean> {
    if (!Number.isSafeInteger(nc) || nc < 1) return false;
    const reply = await this.redis.runScript(CLAIM, [keys.nonceCount(userId, nonce)], [String(nc), String(Math.max(1, Math.ceil(this.nonceLifetimeMs)))]);
    return Number(reply) === 1;
  }
}
