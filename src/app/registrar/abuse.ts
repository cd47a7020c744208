/**
 * Abuse guard, in the spirit of Kamailio's pike + htable bans:
 * - failure counters per source IP and per user in Redis (INCR, window set on the first
 *   failure with PEXPIRE NX), shared by all core instances;
 * - crossing a threshold bans: an IP ban goes into the ZSET dc:bans:ip (ip -> end ms) and is
 *   announced on dc:events, so every instance checks IP bans from memory (no Redis round trip
 *   per request); a user ban is a key in the user's slot, checked inside the REGISTER script;
 * - known scanner User-Agents are dropped without a response (they then assume nothing listens).
 */
import type { EventBus } from '../users/events.js';
import { keys } from '../users/keys.js';
import { normaliseSourceAddress } from '../users/ip-allow-list.js';
import { numberReply, type Redis } from '../users/redis.js';
import { bansTotal } from '../observability/metrics.js';
import type { Logger } from '../observability/logger.js';

/** User-Agent substrings of SIP scanners and attack tools (case-insensitive). */
export const SCANNER_USER_AGENTS = [
  'friendly-scanner',
  'sipvicious',
  'sipcli',
  'vaxsipuseragent',
  'pplsip',
  'sundayddr',
  'iwar',
  'sivus',
  'sip-scan',
  'sipsak',
  'smap',
  'sipscan',
  'voip-scanner',
  'fn-scanner',
] as const;

const SCANNER_PATTERN = new RegExp(SCANNER_USER_AGENTS.map((s) => s.replace(/[-.]/g, '\\$&')).join('|'), 'i');

export function isScannerUserAgent(userAgent: string | undefined): boolean {
  return userAgent !== undefined && SCANNER_PATTERN.test(userAgent);
}

export interface AbuseGuardOptions {
  redis: Redis;
  events?: EventBus;
  log?: Logger;
  /** Failures from one source IP within `windowSeconds` that ban it. Default 20. */
  sourceFailureLimit?: number;
  /** Failures for one user within `windowSeconds` that ban the user. Default 10. */
  userFailureLimit?: number;
  windowSeconds?: number;
  sourceBanSeconds?: number;
  userBanSeconds?: number;
  /** Addresses never banned (monitoring, trusted SBCs). */
  neverBan?: string[];
}

export class AbuseGuard {
  private readonly redis: Redis;
  private readonly events: EventBus | undefined;
  private readonly log: Logger | undefined;
  private readonly bannedSources = new Map<string, number>();
  private readonly neverBan: Set<string>;
  readonly sourceFailureLimit: number;
  readonly userFailureLimit: number;
  readonly windowMs: number;
  readonly sourceBanMs: number;
  readonly userBanMs: number;
  private unsubscribe: (() => void) | null = null;

  constructor(options: AbuseGuardOptions) {
    this.redis = options.redis;
    this.events = options.events;
    this.log = options.log;
    this.sourceFailureLimit = options.sourceFailureLimit ?? 20;
    this.userFailureLimit = options.userFailureLimit ?? 10;
    this.windowMs = (options.windowSeconds ?? 60) * 1000;
    this.sourceBanMs = (options.sourceBanSeconds ?? 600) * 1000;
    this.userBanMs = (options.userBanSeconds ?? 300) * 1000;
    this.neverBan = new Set((options.neverBan ?? []).map(normaliseSourceAddress));
  }

  /** Loads current IP bans and follows ban/unban events. */
  async start(now = Date.now()): Promise<void> {
    if (this.events && !this.unsubscribe) {
      this.unsubscribe = this.events.on((event) => {
        if (event.type === 'ban') this.bannedSources.set(event.subject, event.untilMs);
        else if (event.type === 'unban') this.bannedSources.delete(event.subject);
      });
    }
    await this.redis.send(['ZREMRANGEBYSCORE', keys.sourceBans(), '-inf', String(now)]);
    const reply = await this.redis.send(['ZRANGE', keys.sourceBans(), String(now), '+inf', 'BYSCORE', 'WITHSCORES']);
    if (Array.isArray(reply)) {
      for (let i = 0; i + 1 < reply.length; i += 2) this.bannedSources.set(String(reply[i]), Number(reply[i + 1]));
    }
  }

  stop(): void {
    this.unsubscribe?.();
    this.unsubscribe = null;
  }

  /** From memory: is this source banned right now? */
  isSourceBanned(address: string, now = Date.now()): boolean {
    const key = normaliseSourceAddress(address);
    const until = this.bannedSources.get(key);
    if (until === undefined) return false;
    if (until > now) return true;
    this.bannedSources.delete(key);
    return false;
  }

  /** Counts an authentication/authorisation failure; bans when a limit is crossed. */
  async recordFailure(sourceAddress: string, userId: string | null, now = Date.now()): Promise<void> {
    const source = normaliseSourceAddress(sourceAddress);
    const sourceKey = `${keys.sourceFailures(source)}`;
    const pending: Array<Promise<unknown>> = [
      this.redis.send(['INCR', sourceKey]),
      this.redis.send(['PEXPIRE', sourceKey, String(this.windowMs), 'NX']),
    ];
    if (userId) {
      pending.push(
        this.redis.send(['INCR', keys.userFailures(userId)]),
        this.redis.send(['PEXPIRE', keys.userFailures(userId), String(this.windowMs), 'NX']),
      );
    }
    const replies = await Promise.all(pending);
    const sourceFailures = numberReply(replies[0]);
    if (sourceFailures === this.sourceFailureLimit && !this.neverBan.has(source)) await this.banSource(source, now);
    if (userId && numberReply(replies[2]) === this.userFailureLimit) await this.banUser(userId);
  }

  async banSource(address: string, now = Date.now()): Promise<void> {
    const source = normaliseSourceAddress(address);
    const until = now + this.sourceBanMs;
    this.bannedSources.set(source, until);
    await this.redis.send(['ZADD', keys.sourceBans(), String(until), source]);
    bansTotal.inc({ scope: 'ip' });
    this.log?.warn({ source, until: new Date(until).toISOString() }, 'source banned after repeated failures');
    await this.events?.publish({ type: 'ban', scope: 'ip', subject: source, untilMs: until });
  }

  async unbanSource(address: string): Promise<void> {
    const source = normaliseSourceAddress(address);
    this.bannedSources.delete(source);
    await Promise.all([
      this.redis.send(['ZREM', keys.sourceBans(), source]),
      this.redis.send(['DEL', keys.sourceFailures(source)]),
    ]);
    await this.events?.publish({ type: 'unban', scope: 'ip', subject: source });
  }

  async banUser(userId: string): Promise<void> {
    await this.redis.send(['SET', keys.userBan(userId), '1', 'PX', String(this.userBanMs)]);
    bansTotal.inc({ scope: 'user' });
    this.log?.warn({ userId }, 'user banned after repeated failures');
  }

  /** Clears a user's failure counter and ban ("reset user"). */
  async clearUser(userId: string): Promise<void> {
    await this.redis.send(['DEL', keys.userFailures(userId), keys.userBan(userId)]);
  }
}
