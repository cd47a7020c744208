/**
 * Agent sessions and customer calls as every instance sees them (Redis; key layout in
 * users/keys.ts). The instance that owns a session or call writes it on each change; any
 * instance reads it for GET and for sending a command to the owner.
 *
 * Each instance keeps a liveness key (refreshed every few seconds, expiring after
 * INSTANCE_TTL_SECONDS): a session whose instance key is gone belonged to a dead instance and
 * is dropped when read, so an agent is never locked out by a crashed core.
 */
import type { Redis } from '../users/redis.js';
import { keys } from '../users/keys.js';
import type { AgentSessionView, CustomerCallView, Recording } from './model.js';

export const INSTANCE_TTL_SECONDS = 15;
const LIVE_CALL_TTL_SECONDS = 24 * 3600;
const ENDED_CALL_TTL_SECONDS = 3600;
const LISTED_CALLS = 500;

export class AgentStateStore {
  private heartbeat?: NodeJS.Timeout;
  private beat?: () => Promise<unknown>;

  constructor(
    private readonly redis: Redis,
    readonly instanceId: string,
  ) {}

  /** Starts the instance's liveness key; `apiUrl` is where its control API listens (or null). */
  async start(apiUrl: () => string | null): Promise<void> {
    const beat = () => this.redis.send(['SET', keys.instance(this.instanceId), JSON.stringify({ apiUrl: apiUrl() }), 'EX', String(INSTANCE_TTL_SECONDS)]);
    this.beat = beat;
    await beat();
    this.heartbeat = setInterval(() => void beat().catch(() => undefined), (INSTANCE_TTL_SECONDS * 1000) / 3);
    this.heartbeat.unref();
  }

  /** Writes the liveness key now (e.g. once the API address is known). */
  async refresh(): Promise<void> {
    await this.beat?.();
  }

  async stop(): Promise<void> {
    clearInterval(this.heartbeat);
    await this.redis.send(['DEL', keys.instance(this.instanceId)]).catch(() => undefined);
  }

  async instanceApiUrl(instanceId: string): Promise<string | null> {
    const raw = await this.redis.send(['GET', keys.instance(instanceId)]);
    if (typeof raw !== 'string') return null;
    try {
      const parsed = JSON.parse(raw) as { apiUrl?: unknown };
      return typeof parsed.apiUrl === 'string' ? parsed.apiUrl : null;
    } catch {
      return null;
    }
  }

  private async instanceAlive(instanceId: string): Promise<boolean> {
    return instanceId === this.instanceId || (await this.redis.send(['EXISTS', keys.instance(instanceId)])) === 1;
  }

  /** Claims the agent's one session (false: one exists on a live instance). */
  async claimSession(view: AgentSessionView): Promise<boolean> {
    const key = keys.agentSession(view.agent);
    if ((await this.redis.send(['SET', key, JSON.stringify(view), 'NX'])) === 'OK') return true;
    // a session of a dead instance does not count
    if (await this.getSession(view.agent)) return false;
    return (await this.redis.send(['SET', key, JSON.stringify(view), 'NX'])) === 'OK';
  }

  async saveSession(view: AgentSessionView): Promise<void> {
    await this.redis.send(['SET', keys.agentSession(view.agent), JSON.stringify(view)]);
  }

  /** Deletes the agent's session record if it is still this session's. */
  async releaseSession(userId: string, sessionId: string): Promise<void> {
    await this.redis.send([
      'EVAL',
      "local v = redis.call('GET', KEYS[1]) if v and cjson.decode(v).id == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0",
      '1', keys.agentSession(userId), sessionId,
    ]);
  }

  async getSession(userId: string): Promise<AgentSessionView | null> {
    const view = parse<AgentSessionView>(await this.redis.send(['GET', keys.agentSession(userId)]));
    if (!view) return null;
    if (!(await this.instanceAlive(view.instance))) {
      await this.releaseSession(userId, view.id);
      return null;
    }
    return view;
  }

  async saveCall(view: CustomerCallView, ended: boolean): Promise<void> {
    await Promise.all([
      this.redis.send(['SET', keys.controlCall(view.id), JSON.stringify(view), 'EX', String(ended ? ENDED_CALL_TTL_SECONDS : LIVE_CALL_TTL_SECONDS)]),
      this.redis.send(['ZADD', keys.controlCalls(), String(Date.parse(view.createdAt)), view.id]),
    ]);
  }

  async getCall(callId: string): Promise<CustomerCallView | null> {
    if (!/^[0-9a-f-]{36}$/i.test(callId)) return null;
    return parse<CustomerCallView>(await this.redis.send(['GET', keys.controlCall(callId)]));
  }

  /** The most recent calls (live and recently ended), newest first. */
  async listCalls(): Promise<CustomerCallView[]> {
    const ids = (await this.redis.send(['ZRANGE', keys.controlCalls(), '0', String(LISTED_CALLS - 1), 'REV'])) as string[];
    if (!Array.isArray(ids) || ids.length === 0) return [];
    // one GET per call, sent in the same tick (pipelined): the calls' keys lie in different Redis Cluster slots, which one MGET may not span
    const raws = await Promise.all(ids.map((id) => this.redis.send(['GET', keys.controlCall(id)])));
    const gone = ids.filter((_, i) => raws[i] === null);
    if (gone.length) await this.redis.send(['ZREM', keys.controlCalls(), ...gone]);
    return raws.map((raw) => parse<CustomerCallView>(raw)).filter((v): v is CustomerCallView => v !== null);
  }

  async saveRecordings(callId: string, recordings: readonly Recording[]): Promise<void> {
    await this.redis.send(['SET', keys.controlCallRecordings(callId), JSON.stringify(recordings), 'EX', String(LIVE_CALL_TTL_SECONDS)]);
  }

  async getRecordings(callId: string): Promise<Recording[]> {
    return parse<Recording[]>(await this.redis.send(['GET', keys.controlCallRecordings(callId)])) ?? [];
  }
}

function parse<T>(raw: unknown): T | null {
  if (typeof raw !== 'string') return null;
  try {
    return JSON.parse(raw) as T;
  } catch {
    return null;
  }
}
