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
 * It answers with only what the 200 needs of each current binding (RegisteredContact).
 *
 * Registration census (the dialcore_registrations gauge, cluster-wide): every binding is counted
 * in a HASH per minute of its expiry, `dc:census:<minute>` ("transport|method" -> count). The
 * script reports the (minute, label, ±1) changes it made; this store sums them in memory and
 * writes them with HINCRBY within a second (plain single-key commands, so no cross-slot script).
 * Reading the census is one HGETALL per minute of the longest expiry, independent of how many
 * bindings there are. A binding that just expires needs no bookkeeping (its minute passes, and the
 * bucket key expires); deltas lost in a crash correct themselves the same way.
 */
import { hash } from 'node:crypto';
import { keys } from '../users/keys.js';
import { LuaScript, hashReply, type Redis } from '../users/redis.js';
import { uriHost } from '../sip/uri-host.js';

export interface BindingFlow {
  /** Source address/port/transport the REGISTER came from: the NAT-mapped flow to reach the contact through. */
  address: string;
  port: number;
  transport: string;
  /** Local address:port the edge received it on (drachtio `receivedOn`), if known. */
  receivedOn: string | null;
}

/** `sip:host:port;transport=x` for a binding's flow (IPv6 hosts bracketed): the next hop of requests to the device. */
export function flowUri(flow: Pick<BindingFlow, 'address' | 'port' | 'transport'>): string {
  return `sip:${uriHost(flow.address)}:${flow.port};transport=${flow.transport.toLowerCase()}`;
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
  /** SIP address (host:port) of the instance that received the REGISTER and holds its flow; null on a single instance. */
  edge?: string | null;
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

/**
 * What the 200 and the flow tracking need of a binding after a REGISTER (RFC 3261 §10.3 step 8:
 * every current contact with its remaining time), returned by the apply script instead of the
 * whole stored binding.
 */
export interface RegisteredContact {
  id: string;
  userId: string;
  contact: string;
  params: Record<string, string | null>;
  firstRegisteredAt: number;
  expiresAt: number;
  flow: Pick<BindingFlow, 'transport' | 'address' | 'port'>;
}

export type ApplyResult =
  | { status: 'ok'; bindings: RegisteredContact[] }
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

/**
 * Reply: { status, census, contacts }. census is flat (minute, label, delta)* for the registration
 * census (see census.ts); contacts is flat (id, contact, params JSON or '', firstRegisteredAt,
 * expiresAt, transport, address, port)* for 'ok'.
 */
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
local census = {}
local function count(b, delta)
  local flow = b.flow
  local transport = 'unknown'
  if type(flow) == 'table' and type(flow.transport) == 'string' then transport = flow.transport end
  local method = 'unknown'
  if type(b.connectionMethod) == 'string' then method = b.connectionMethod end
  census[#census + 1] = math.floor(b.expiresAt / 60000)
  census[#census + 1] = transport .. '|' .. method
  census[#census + 1] = delta
end
local live = {}
local count_live = 0
local all = redis.call('HGETALL', KEYS[2])
for i = 1, #all, 2 do
  local b = cjson.decode(all[i + 1])
  if b.expiresAt <= now then
    redis.call('HDEL', KEYS[2], all[i])
  else
    live[all[i]] = b
    count_live = count_live + 1
  end
end
if ARGV[8] == '1' then
  for _, b in pairs(live) do count(b, -1) end
  redis.call('DEL', KEYS[2])
  return {'ok', census, {}}
end
local timeout = tonumber(ARGV[6])
local minExp = tonumber(ARGV[7])
local ops = cjson.decode(ARGV[9])
local after = count_live
for _, op in ipairs(ops) do
  local cur = live[op.id]
  if cur then
    if cur.callId == op.b.callId and op.b.cseq <= cur.cseq then return {'out-of-order'} end
    if op.expires == 0 then
      after = after - 1
    elseif cur.firstRegisteredAt + timeout - now < minExp then
      redis.call('HDEL', KEYS[2], op.id)
      count(cur, -1)
      return {'session-over', census}
    end
  elseif op.expires > 0 then
    after = after + 1
  end
end
local max = tonumber(ARGV[5])
if max > 0 and after > max and after > count_live then return {'too-many'} end
for _, op in ipairs(ops) do
  local cur = live[op.id]
  if op.expires == 0 then
    if cur then
      redis.call('HDEL', KEYS[2], op.id)
      count(cur, -1)
      live[op.id] = nil
    end
  else
    local b = op.b
    if cur then
      b.firstRegisteredAt = cur.firstRegisteredAt
      count(cur, -1)
    else
      b.firstRegisteredAt = now
    end
    local grant = op.expires * 1000
    local left = b.firstRegisteredAt + timeout - now
    if grant > left then grant = left end
    b.registeredAt = now
    b.expiresAt = now + grant
    live[op.id] = b
    redis.call('HSET', KEYS[2], op.id, cjson.encode(b))
    count(b, 1)
  end
end
local out = {}
local latest = 0
for id, b in pairs(live) do
  local params = ''
  if type(b.params) == 'table' and next(b.params) ~= nil then params = cjson.encode(b.params) end
  local flow = b.flow
  if type(flow) ~= 'table' then flow = {} end
  out[#out + 1] = id
  out[#out + 1] = b.contact
  out[#out + 1] = params
  out[#out + 1] = tostring(b.firstRegisteredAt)
  out[#out + 1] = tostring(b.expiresAt)
  out[#out + 1] = tostring(flow.transport or '')
  out[#out + 1] = tostring(flow.address or '')
  out[#out + 1] = tostring(flow.port or 0)
  if b.expiresAt > latest then latest = b.expiresAt end
end
if latest > 0 then redis.call('PEXPIREAT', KEYS[2], latest) end
return {'ok', census, out}`,
);

const RESULT_STATUSES = new Set(['stale-user', 'gone', 'banned', 'replay', 'too-many', 'session-over', 'out-of-order']);

/** A stable id per contact (RFC 3261 §10.3 step 7) or per instance + reg-id (RFC 5626 §6). */
export function bindingIdFor(contactUri: string, instance: string | null, regId: string | null): string {
  const identity = instance ? `i:${instance}|${regId ?? ''}` : `c:${normaliseContactUri(contactUri)}`;
  return hash('sha256', identity, 'base64url').slice(0, 22);
}

/** Case-insensitive scheme and host for matching (RFC 3261 §19.1.4, simplified). */
function normaliseContactUri(uri: string): string {
  const at = uri.indexOf('@');
  const colon = uri.indexOf(':');
  if (at === -1) return uri.toLowerCase();
  return uri.slice(0, colon).toLowerCase() + uri.slice(colon, at + 1) + uri.slice(at + 1).toLowerCase();
}

/** The flat contact list of the apply script (8 fields per binding), ordered by first registration. */
function decodeContacts(userId: string, flat: unknown): RegisteredContact[] {
  if (!Array.isArray(flat)) return [];
  const out: RegisteredContact[] = [];
  for (let i = 0; i + 7 < flat.length; i += 8) {
    const paramsJson = String(flat[i + 2]);
    let params: Record<string, string | null> = {};
    if (paramsJson !== '') {
      try {
        const parsed: unknown = JSON.parse(paramsJson);
        if (parsed !== null && typeof parsed === 'object' && !Array.isArray(parsed)) params = parsed as Record<string, string | null>;
      } catch {
        // unreadable params: the contact is still listed, without them
      }
    }
    out.push({
      id: String(flat[i]),
      userId,
      contact: String(flat[i + 1]),
      params,
      firstRegisteredAt: Number(flat[i + 3]),
      expiresAt: Number(flat[i + 4]),
      flow: { transport: String(flat[i + 5]), address: String(flat[i + 6]), port: Number(flat[i + 7]) || 0 },
    });
  }
  return out.sort((a, b) => a.firstRegisteredAt - b.firstRegisteredAt || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
}

/** cjson turns empty objects into [] and may round numbers: restore shapes. */
function normaliseBinding(b: Binding): Binding {
  return { ...b, params: Array.isArray(b.params) ? {} : (b.params ?? {}) };
}

function censusLabel(b: Pick<Binding, 'connectionMethod'> & { flow?: Partial<BindingFlow> }): string {
  return `${b.flow?.transport ?? 'unknown'}|${b.connectionMethod ?? 'unknown'}`;
}

export class BindingStore {
  /** Census deltas not yet written: "minute\nlabel" -> delta (flushed within CENSUS_FLUSH_MS). */
  private readonly censusPending = new Map<string, number>();
  private censusFlushTimer: NodeJS.Timeout | null = null;

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
    if (Array.isArray(reply[1])) this.countCensus(reply[1]);
    if (status === 'ok') return { status: 'ok', bindings: decodeContacts(request.userId, reply[2]) };
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
  async remove(userId: string, bindingId: string, now = Date.now()): Promise<boolean> {
    const [json, removed] = await Promise.all([
      this.redis.send(['HGET', keys.bindings(userId), bindingId]),
      this.redis.send(['HDEL', keys.bindings(userId), bindingId]),
    ]);
    if (Number(removed) <= 0) return false;
    try {
      const b = JSON.parse(String(json)) as Binding;
      if (b.expiresAt > now) this.addCensus(bucketOf(b.expiresAt), censusLabel(b), -1);
    } catch {
      // a corrupt entry was never counted
    }
    return true;
  }

  /** Removes all of a user's bindings; returns how many there were. */
  async removeAll(userId: string, now = Date.now()): Promise<number> {
    const existing = await this.list(userId, now);
    await this.redis.send(['DEL', keys.bindings(userId)]);
    for (const b of existing) this.addCensus(bucketOf(b.expiresAt), censusLabel(b), -1);
    return existing.length;
  }

  /**
   * Live bindings by "transport|connectionMethod" across all users and core instances, from the
   * census buckets (see census.ts): one HGETALL per minute of `horizonMs`, whatever the number
   * of bindings. A binding counts until the end of the minute it expires in.
   */
  async census(now = Date.now(), horizonMs = 3_600_000): Promise<Map<string, number>> {
    await this.flushCensus();
    const first = bucketOf(now);
    const last = bucketOf(now + Math.max(0, horizonMs));
    const replies = await Promise.all(
      Array.from({ length: last - first + 1 }, (_, i) => this.redis.send(['HGETALL', keys.censusBucket(first + i)])),
    );
    const counts = new Map<string, number>();
    for (const reply of replies) {
      for (const [label, value] of Object.entries(hashReply(reply))) {
        const n = Number(value);
        if (Number.isFinite(n)) counts.set(label, (counts.get(label) ?? 0) + n);
      }
    }
    for (const [label, n] of counts) if (n <= 0) counts.delete(label);
    return counts;
  }

  /** Writes the pending census deltas now (also done by itself within a second of a change). */
  async flushCensus(): Promise<void> {
    if (this.censusFlushTimer) clearTimeout(this.censusFlushTimer);
    this.censusFlushTimer = null;
    if (this.censusPending.size === 0) return;
    const byBucket = new Map<number, Array<[string, number]>>();
    for (const [key, delta] of this.censusPending) {
      if (delta === 0) continue;
      const cut = key.indexOf('\n');
      const bucket = Number(key.slice(0, cut));
      let list = byBucket.get(bucket);
      if (!list) byBucket.set(bucket, (list = []));
      list.push([key.slice(cut + 1), delta]);
    }
    this.censusPending.clear();
    const sends: Array<Promise<unknown>> = [];
    for (const [bucket, list] of byBucket) {
      const key = keys.censusBucket(bucket);
      for (const [label, delta] of list) sends.push(this.redis.send(['HINCRBY', key, label, String(delta)]));
      // the bucket outlives its minute by one more, then Redis drops it
      sends.push(this.redis.send(['PEXPIREAT', key, String((bucket + 2) * CENSUS_BUCKET_MS)]));
    }
    await Promise.all(sends);
  }

  /** Flat (minute, label, delta)* from the apply script. */
  private countCensus(flat: unknown[]): void {
    for (let i = 0; i + 2 < flat.length; i += 3) {
      const bucket = Number(flat[i]);
      const delta = Number(flat[i + 2]);
      if (Number.isFinite(bucket) && Number.isFinite(delta)) this.addCensus(bucket, String(flat[i + 1]), delta);
    }
  }

  private addCensus(bucket: number, label: string, delta: number): void {
    const key = `${bucket}\n${label}`;
    this.censusPending.set(key, (this.censusPending.get(key) ?? 0) + delta);
    if (!this.censusFlushTimer) {
      this.censusFlushTimer = setTimeout(() => {
        this.censusFlushTimer = null;
        this.flushCensus().catch(() => undefined); // lost deltas correct themselves when their minute passes
      }, CENSUS_FLUSH_MS);
      this.censusFlushTimer.unref();
    }
  }
}

/** Census bucket width: bindings are counted by the minute they expire in. */
const CENSUS_BUCKET_MS = 60_000;
const CENSUS_FLUSH_MS = 1_000;

function bucketOf(expiresAt: number): number {
  return Math.floor(expiresAt / CENSUS_BUCKET_MS);
}
