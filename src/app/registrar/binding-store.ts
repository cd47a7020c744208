/**
 * Registrar bindings in Redis (RFC 3261 §10.3). Per user one HASH `dc:{u:<id>}:bindings`,
 * bindingId -> JSON binding with its absolute expiry; the key's PEXPIREAT is the latest
 * binding's expiry, so Redis evicts an abandoned user's bindings by itself, and expired entries
 * are pruned by every write.
 *
 * One REGISTER = one EVALSHA on the user's slot (user record, bindings, nc counter and ban all
 * share `{u:<id>}`): it checks the cached user version is current, the user is not banned, the
 * nonce count is fresh (RFC 7616 §3.4: nc replay), counts sessions against maxSessions (a
 * refresh of an existing binding is not a new session), caps every expiry at the session
 * timeout measured from the binding's first registration, and applies the changes atomically.
 */
import { createHash } from 'node:crypto';
import { keys } from '../users/keys.js';
import { LuaScript, hashReply, type Redis } from '../users/redis.js';

export interface BindingFlow {
  /** Source address/port/transport the REGISTER came from: the NAT-mapped flow to reach the contact through. */
  address: string;
  port: number;
  transport: string;
  /** Local address:port the edge received it on (drachtio `receivedOn`), if known. */
  receivedOn: string | null;
}

export interface Binding {
  id: string;
  userId: string;
  /** Contact URI as registered. */
  contact: string;
  /** Contact params to echo in the 200 (q, +sip.instance, reg-id, ...), expires excluded. */
  params: Record<string, string | null>;
  instanceId: string | null;
  regId: string | null;
  callId: string;
  cseq: number;
  flow: BindingFlow;
  userAgent: string | null;
  connectionMethod: string;
  /** ms since epoch; kept across refreshes: the session timeout counts from here. */
  firstRegisteredAt: number;
  registeredAt: number;
  expiresAt: number;
}

/** What the registrar asks for one contact. */
export interface BindingChange {
  binding: Omit<Binding, 'firstRegisteredAt' | 'registeredAt' | 'expiresAt'>;
  /** Granted interval in seconds (already within min/max); 0 removes. */
  expires: number;
}

export interface ApplyRequest {
  userId: string;
  /** The version of the user record the caller's checks used. */
  userVersion: number;
  /** Nonce and nonce count of the authenticating credentials (0 skips the check). */
  nonce: string;
  nc: number;
  nonceTtlMs: number;
  maxSessions: number;
  sessionTimeoutMs: number;
  /** A binding with less session time left than this is over (force re-authentication). */
  minExpiresMs: number;
  /** Contact: * with Expires: 0 (RFC 3261 §10.3 step 6). */
  removeAll: boolean;
  changes: BindingChange[];
  now: number;
}

export type ApplyResult =
  | { status: 'ok'; bindings: Binding[] }
  /** The user record changed since the caller read it: re-read and retry. */
  | { status: 'stale-user' }
  | { status: 'gone' }
  | { status: 'banned' }
  | { status: 'replay' }
  | { status: 'too-many' }
  /** The binding reached the session timeout: it was removed; re-authenticate to start a new session. */
  | { status: 'session-over' }
  /** Same Call-ID with a CSeq not above the stored one (RFC 3261 §10.3 step 7). */
  | { status: 'out-of-order' };

const APPLY = new LuaScript(
  'register-apply',
  `local now = tonumber(ARGV[1])
local v = redis.call('HGET', KEYS[1], 'version')
if not v then return {'gone'} end
if v ~= ARGV[2] then return {'stale-user'} end
if redis.call('EXISTS', KEYS[4]) == 1 then return {'banned'} end
local nc = tonumber(ARGV[3])
if nc > 0 then
  local last = tonumber(redis.call('GET', KEYS[3]) or '0')
  if nc <= last then return {'replay'} end
  redis.call('SET', KEYS[3], nc, 'PX', ARGV[4])
end
local live = {}
local count = 0
local all = redis.call('HGETALL', KEYS[2])
for i = 1, #all, 2 do
  local b = cjson.decode(all[i + 1])
  if b.expiresAt <= now then
    redis.call('HDEL', KEYS[2], all[i])
  else
    live[all[i]] = b
    count = count + 1
  end
end
if ARGV[8] == '1' then
  redis.call('DEL', KEYS[2])
  return {'ok', '[]'}
end
local timeout = tonumber(ARGV[6])
local minExp = tonumber(ARGV[7])
local ops = cjson.decode(ARGV[9])
local after = count
for _, op in ipairs(ops) do
  local cur = live[op.id]
  if cur then
    if cur.callId == op.b.callId and op.b.cseq <= cur.cseq then return {'out-of-order'} end
    if op.expires == 0 then
      after = after - 1
    elseif cur.firstRegisteredAt + timeout - now < minExp then
      redis.call('HDEL', KEYS[2], op.id)
      return {'session-over'}
    end
  elseif op.expires > 0 then
    after = after + 1
  end
end
local max = tonumber(ARGV[5])
if max > 0 and after > max and after > count then return {'too-many'} end
for _, op in ipairs(ops) do
  local cur = live[op.id]
  if op.expires == 0 then
    if cur then
      redis.call('HDEL', KEYS[2], op.id)
      live[op.id] = nil
    end
  else
    local b = op.b
    if cur then b.firstRegisteredAt = cur.firstRegisteredAt else b.firstRegisteredAt = now end
    local grant = op.expires * 1000
    local left = b.firstRegisteredAt + timeout - now
    if grant > left then grant = left end
    b.registeredAt = now
    b.expiresAt = now + grant
    live[op.id] = b
    redis.call('HSET', KEYS[2], op.id, cjson.encode(b))
  end
end
local out = {}
local latest = 0
for _, b in pairs(live) do
  out[#out + 1] = b
  if b.expiresAt > latest then latest = b.expiresAt end
end
if latest > 0 then redis.call('PEXPIREAT', KEYS[2], latest) end
if #out == 0 then return {'ok', '[]'} end
return {'ok', cjson.encode(out)}`,
);

const RESULT_STATUSES = new Set(['stale-user', 'gone', 'banned', 'replay', 'too-many', 'session-over', 'out-of-order']);

/** A stable id per contact (RFC 3261 §10.3 step 7) or per instance + reg-id (RFC 5626 §6). */
export function bindingIdFor(contactUri: string, instance: string | null, regId: string | null): string {
  const identity = instance ? `i:${instance}|${regId ?? ''}` : `c:${normaliseContactUri(contactUri)}`;
  return createHash('sha256').update(identity).digest('base64url').slice(0, 22);
}

/** Case-insensitive scheme and host for matching (RFC 3261 §19.1.4, simplified). */
function normaliseContactUri(uri: string): string {
  const at = uri.indexOf('@');
  const colon = uri.indexOf(':');
  if (at === -1) return uri.toLowerCase();
  return uri.slice(0, colon).toLowerCase() + uri.slice(colon, at + 1) + uri.slice(at + 1).toLowerCase();
}

function decodeBindings(json: string): Binding[] {
  let parsed: unknown;
  try {
    parsed = JSON.parse(json);
  } catch {
    return [];
  }
  if (!Array.isArray(parsed)) return []; // cjson encodes an empty table as {}
  return (parsed as Binding[]).map(normaliseBinding).sort((a, b) => a.firstRegisteredAt - b.firstRegisteredAt || a.id.localeCompare(b.id));
}

/** cjson turns empty objects into [] and may round numbers: restore shapes. */
function normaliseBinding(b: Binding): Binding {
  return { ...b, params: Array.isArray(b.params) ? {} : (b.params ?? {}) };
}

export class BindingStore {
  constructor(private readonly redis: Redis) {}

  async apply(request: ApplyRequest): Promise<ApplyResult> {
    const ops = request.changes.map((change) => ({ id: change.binding.id, expires: change.expires, b: change.binding }));
    const reply = await this.redis.runScript(
      APPLY,
      [keys.user(request.userId), keys.bindings(request.userId), keys.nonceCount(request.userId, request.nonce), keys.userBan(request.userId)],
      [
        String(request.now),
        String(request.userVersion),
        String(request.nc),
        String(Math.max(1, Math.ceil(request.nonceTtlMs))),
        String(request.maxSessions),
        String(request.sessionTimeoutMs),
        String(request.minExpiresMs),
        request.removeAll ? '1' : '0',
        ops.length ? JSON.stringify(ops) : '[]',
      ],
    );
    if (!Array.isArray(reply) || typeof reply[0] !== 'string') throw new Error('register-apply: unexpected reply');
    const status = reply[0];
    if (status === 'ok') return { status: 'ok', bindings: decodeBindings(String(reply[1] ?? '[]')) };
    if (RESULT_STATUSES.has(status)) return { status } as ApplyResult;
    throw new Error(`register-apply: unexpected status ${status}`);
  }

  /** Live bindings of a user (expired entries not yet pruned are filtered out). */
  async list(userId: string, now = Date.now()): Promise<Binding[]> {
    const hash = hashReply(await this.redis.send(['HGETALL', keys.bindings(userId)]));
    const out: Binding[] = [];
    for (const json of Object.values(hash)) {
      try {
        const b = normaliseBinding(JSON.parse(json) as Binding);
        if (b.expiresAt > now) out.push(b);
      } catch {
        // a corrupt entry is skipped (it goes when the key expires)
      }
    }
    return out.sort((a, b) => a.firstRegisteredAt - b.firstRegisteredAt || a.id.localeCompare(b.id));
  }

  /** Removes one binding; true if it existed. */
  async remove(userId: string, bindingId: string): Promise<boolean> {
    return Number(await this.redis.send(['HDEL', keys.bindings(userId), bindingId])) > 0;
  }

  /** Removes all of a user's bindings; returns how many there were. */
  async removeAll(userId: string, now = Date.now()): Promise<number> {
    const existing = await this.list(userId, now);
    await this.redis.send(['DEL', keys.bindings(userId)]);
    return existing.length;
  }

  /**
   * Counts live bindings by transport and connection method across all users (SCAN over the
   * binding keys: for the metrics gauge, called rarely and cached by the caller).
   */
  async census(now = Date.now(), maxKeys = 1_000_000): Promise<Map<string, number>> {
    const counts = new Map<string, number>();
    let cursor = '0';
    let seen = 0;
    do {
      const reply = await this.redis.send(['SCAN', cursor, 'MATCH', keys.bindings('*'), 'COUNT', '1000']);
      if (!Array.isArray(reply)) break;
      cursor = String(reply[0]);
      const batch = Array.isArray(reply[1]) ? (reply[1] as unknown[]).map(String) : [];
      seen += batch.length;
      const hashes = await Promise.all(batch.map((key) => this.redis.send(['HVALS', key])));
      for (const values of hashes) {
        if (!Array.isArray(values)) continue;
        for (const json of values) {
          try {
            const b = JSON.parse(String(json)) as Binding;
            if (b.expiresAt <= now) continue;
            const label = `${b.flow?.transport ?? 'unknown'}|${b.connectionMethod ?? 'unknown'}`;
            counts.set(label, (counts.get(label) ?? 0) + 1);
          } catch {
            // skip
          }
        }
      }
    } while (cursor !== '0' && seen < maxKeys);
    return counts;
  }
}
