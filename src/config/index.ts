/**
 * dialcore configuration: defaults < config file (JSON with comments) < environment < flags.
 * Every option is declared once in OPTIONS below: its flag, its environment variable, its place in
 * the config file, how it is validated and its help text, so `--help` and validation can't drift.
 */
import { readFileSync, existsSync } from 'node:fs';
import { isIP } from 'node:net';
import path from 'node:path';
import os from 'node:os';
import { fileURLToPath } from 'node:url';
import { DEFAULT_DIGEST_ALGORITHMS, DIGEST_ALGORITHMS, type DigestAlgorithm } from '../app/auth/ha1.js';

export type SipTransportName = 'udp' | 'tcp' | 'tls' | 'ws' | 'wss';
export interface SipListen { protocol: SipTransportName; host: string; port: number }
export interface HostPort { host: string; port: number }
/** How the other instances reach this one: an IP, a port and the transport of that listener (UDP unless given). */
export interface InstanceAddress extends HostPort { protocol: 'udp' | 'tcp' }

export interface DialcoreConfig {
  sip: {
    listen: SipListen[];
    externalHost?: string;
    tlsCert?: string;
    tlsKey?: string;
    t1: number;
    t2: number;
    t4: number;
    maxMessageBytes: number;
    maxConnections: number;
    maxConnectionsPerIp: number;
  };
  drachtio: { listen: HostPort; connect: HostPort; secret: string };
  /** url: one server; sentinels + sentinelMaster: the master of a Sentinel group (url then unused) */
  redis: { url: string; sentinels: HostPort[]; sentinelMaster: string; clusterNodes: HostPort[]; password: string };
  http: { listen: HostPort; adminToken: string };
  rtpengine: { engines: HostPort[]; pingIntervalMs: number };
  registrar: {
    realm: string; minExpires: number; maxExpires: number; defaultExpires: number; nonceSecret: string; nonceLifetimeSeconds: number;
    /** digest challenges offered, most preferred first (RFC 8760 2.4) */
    digestAlgorithms: DigestAlgorithm[];
    /** NAT keep-alive OPTIONS to UDP registrations every this many seconds (0: off), and the misses that drop a binding */
    keepaliveIntervalSeconds: number; keepaliveMisses: number;
  };
  calls: {
    domain: string; ringTimeoutSeconds: number; maxCallSeconds: number;
    /** RFC 4028 session timers on both legs: interval asked for and the smallest accepted (Min-SE) */
    sessionExpiresSeconds: number; minSessionExpiresSeconds: number;
    /** OPTIONS health of every sip-address user's PBX every this many seconds (0: off) */
    pbxOptionsIntervalSeconds: number;
  };
  /** agent sessions: hold music between calls, where the agent prompts are written */
  agents: { holdMusic: string | null; promptsDir: string };
  recording: { dir: string | null };
  /** 3-way calls: the Janus HTTP API root whose AudioBridge mixes them; null = 3-way refused (501) */
  mixer: { janusUrl: string | null };
  /** dial-in: access numbers agents call to log in by ID and PIN (src/app/dialin) */
  dialIn: {
    accessNumbers: string[];
    /** UDP host:port dialcore listens on for rtpengine's DTMF events (its --dtmf-log-dest) */
    dtmfEvents: HostPort;
    firstDigitTimeoutMs: number;
    interDigitTimeoutMs: number;
    lockoutFailures: number;
    lockoutWindowSeconds: number;
    /** prompt language for callers whose language is unknown (espeak-ng voice) */
    defaultLanguage: string;
  };
  /** config-file only: outbound gateways and inbound trunks (validated by src/app/carriers) */
  carriers: unknown;
  /** config-file only: { default: plan, named: { name: plan } } (validated by src/app/policies) */
  dialPlans: unknown;
  app: { workers: number };
  /** HEP3 capture of the edge's SIP traffic (Homer); server null = off */
  capture: { hepServer: HostPort | null; hepAgentId: number; hepPassword: string };
  /** Several instances on one Redis: this instance's SIP address (ip:port) the others reach its flows through */
  cluster: { instanceAddress: InstanceAddress | null };
  /** SIGTERM: how long live calls may go on while new ones are refused (graceful drain) */
  shutdown: { drainSeconds: number };
  /** start: the SIP edge on a worker thread of its own (default) or on the app's thread */
  edge: { thread: boolean };
  log: { level: string };
}

export class ConfigError extends Error {
  constructor(readonly problems: Array<{ field: string; message: string }>) {
    super('invalid configuration:\n' + problems.map((p) => `  ${p.field}: ${p.message}`).join('\n'));
  }
}

type Kind = 'string' | 'secret' | 'bool' | 'int' | 'hostport' | 'instance-address' | 'sip-listen-list' | 'hostport-list' | 'number-list' | 'language' | 'level' | 'redis-url' | 'http-url' | 'digest-algorithms';

interface OptionSpec {
  /** dotted path in the config object and file */
  path: string;
  flag: string;
  env: string;
  kind: Kind;
  help: string;
  /** flags that may be repeated accumulate into the list */
  repeatable?: boolean;
  min?: number;
  max?: number;
}

export const OPTIONS: OptionSpec[] = [
  { path: 'sip.listen', flag: '--sip', env: 'DIALCORE_SIP', kind: 'sip-listen-list', repeatable: true, help: 'SIP listener proto:host:port (udp, tcp, tls, ws, wss); repeat for several' },
  { path: 'sip.externalHost', flag: '--external-host', env: 'DIALCORE_EXTERNAL_HOST', kind: 'string', help: 'address advertised in Via/Contact when behind NAT' },
  { path: 'sip.tlsCert', flag: '--tls-cert', env: 'DIALCORE_TLS_CERT', kind: 'string', help: 'PEM certificate file for tls/wss listeners' },
  { path: 'sip.tlsKey', flag: '--tls-key', env: 'DIALCORE_TLS_KEY', kind: 'string', help: 'PEM private key file for tls/wss listeners' },
  { path: 'sip.t1', flag: '--t1', env: 'DIALCORE_T1', kind: 'int', min: 50, max: 10_000, help: 'RFC 3261 T1 in ms (RTT estimate)' },
  { path: 'sip.t2', flag: '--t2', env: 'DIALCORE_T2', kind: 'int', min: 100, max: 60_000, help: 'RFC 3261 T2 in ms' },
  { path: 'sip.t4', flag: '--t4', env: 'DIALCORE_T4', kind: 'int', min: 100, max: 60_000, help: 'RFC 3261 T4 in ms' },
  { path: 'sip.maxMessageBytes', flag: '--max-message-bytes', env: 'DIALCORE_MAX_MESSAGE_BYTES', kind: 'int', min: 1024, max: 1_000_000, help: 'largest SIP message accepted' },
  { path: 'sip.maxConnections', flag: '--max-connections', env: 'DIALCORE_MAX_CONNECTIONS', kind: 'int', min: 1, max: 1_000_000, help: 'most TCP/TLS/WS connections at once' },
  { path: 'sip.maxConnectionsPerIp', flag: '--max-connections-per-ip', env: 'DIALCORE_MAX_CONNECTIONS_PER_IP', kind: 'int', min: 1, max: 1_000_000, help: 'most connections from one IP' },
  { path: 'drachtio.listen', flag: '--admin', env: 'DIALCORE_ADMIN', kind: 'hostport', help: 'edge: drachtio protocol listener host:port that srf apps connect to' },
  { path: 'drachtio.connect', flag: '--drachtio', env: 'DIALCORE_DRACHTIO', kind: 'hostport', help: 'app: drachtio server host:port to connect to (our edge or drachtio-server)' },
  { path: 'drachtio.secret', flag: '--secret', env: 'DIALCORE_SECRET', kind: 'secret', help: 'drachtio shared secret' },
  { path: 'redis.url', flag: '--redis', env: 'DIALCORE_REDIS', kind: 'redis-url', help: 'Redis URL, e.g. redis://127.0.0.1:6379' },
  { path: 'redis.sentinels', flag: '--redis-sentinel', env: 'DIALCORE_REDIS_SENTINELS', kind: 'hostport-list', repeatable: true, help: 'Redis Sentinel host:port (repeat for each): the master of --redis-sentinel-master is asked of them and followed on failover' },
  { path: 'redis.sentinelMaster', flag: '--redis-sentinel-master', env: 'DIALCORE_REDIS_SENTINEL_MASTER', kind: 'string', help: 'the Sentinel master group name (sentinel monitor <name> ...)' },
  { path: 'redis.clusterNodes', flag: '--redis-cluster', env: 'DIALCORE_REDIS_CLUSTER', kind: 'hostport-list', repeatable: true, help: 'Redis Cluster node host:port (repeat or comma-separate; a few are enough to find the rest): instead of --redis and --redis-sentinel' },
  { path: 'redis.password', flag: '--redis-password', env: 'DIALCORE_REDIS_PASSWORD', kind: 'secret', help: 'AUTH password of the Redis data nodes behind Sentinel or in the Cluster (with --redis, put it in the URL)' },
  { path: 'http.listen', flag: '--http', env: 'DIALCORE_HTTP', kind: 'hostport', help: 'admin HTTP API, /metrics and /healthz listener host:port' },
  { path: 'http.adminToken', flag: '--admin-token', env: 'DIALCORE_ADMIN_TOKEN', kind: 'secret', help: 'bearer token for the admin API' },
  { path: 'rtpengine.engines', flag: '--rtpengine', env: 'DIALCORE_RTPENGINE', kind: 'hostport-list', repeatable: true, help: 'rtpengine ng (UDP) host:port; repeat for a pool' },
  { path: 'rtpengine.pingIntervalMs', flag: '--rtpengine-ping-ms', env: 'DIALCORE_RTPENGINE_PING_MS', kind: 'int', min: 500, max: 600_000, help: 'rtpengine health ping interval' },
  { path: 'registrar.realm', flag: '--realm', env: 'DIALCORE_REALM', kind: 'string', help: 'digest realm (HA1s are computed with it)' },
  { path: 'registrar.minExpires', flag: '--min-expires', env: 'DIALCORE_MIN_EXPIRES', kind: 'int', min: 1, max: 86_400, help: 'smallest registration interval accepted (423 below)' },
  { path: 'registrar.maxExpires', flag: '--max-expires', env: 'DIALCORE_MAX_EXPIRES', kind: 'int', min: 1, max: 604_800, help: 'largest registration interval granted' },
  { path: 'registrar.defaultExpires', flag: '--default-expires', env: 'DIALCORE_DEFAULT_EXPIRES', kind: 'int', min: 1, max: 604_800, help: 'interval when the REGISTER names none' },
  { path: 'registrar.nonceSecret', flag: '--nonce-secret', env: 'DIALCORE_NONCE_SECRET', kind: 'secret', help: 'HMAC key signing digest nonces (same on every instance)' },
  { path: 'registrar.digestAlgorithms', flag: '--digest-algorithms', env: 'DIALCORE_DIGEST_ALGORITHMS', kind: 'digest-algorithms', help: 'digest challenges offered, most preferred first: MD5, SHA-256, SHA-512-256 (default MD5: SIPp and many phones answer only the first challenge, JsSIP only the last)' },
  { path: 'registrar.keepaliveIntervalSeconds', flag: '--keepalive-interval', env: 'DIALCORE_KEEPALIVE_INTERVAL', kind: 'int', min: 0, max: 3600, help: 'seconds between NAT keep-alive OPTIONS to each UDP registration (0: none)' },
  { path: 'registrar.keepaliveMisses', flag: '--keepalive-misses', env: 'DIALCORE_KEEPALIVE_MISSES', kind: 'int', min: 1, max: 100, help: 'keep-alive OPTIONS a phone may leave unanswered in a row before its binding is removed' },
  { path: 'registrar.nonceLifetimeSeconds', flag: '--nonce-lifetime', env: 'DIALCORE_NONCE_LIFETIME', kind: 'int', min: 5, max: 3600, help: 'seconds before a nonce is stale' },
  { path: 'calls.domain', flag: '--domain', env: 'DIALCORE_DOMAIN', kind: 'string', help: 'SIP domain in the From/To of calls delivered to devices' },
  { path: 'calls.ringTimeoutSeconds', flag: '--ring-timeout', env: 'DIALCORE_RING_TIMEOUT', kind: 'int', min: 5, max: 600, help: 'seconds a call may ring before it is given up (480)' },
  { path: 'calls.maxCallSeconds', flag: '--max-call-seconds', env: 'DIALCORE_MAX_CALL_SECONDS', kind: 'int', min: 60, max: 604_800, help: 'answered calls are ended after this (a vanished peer)' },
  { path: 'agents.holdMusic', flag: '--hold-music', env: 'DIALCORE_HOLD_MUSIC', kind: 'string', help: 'audio file (WAV) looped to agents between calls and to held customers; none = silence' },
  { path: 'agents.promptsDir', flag: '--prompts-dir', env: 'DIALCORE_PROMPTS_DIR', kind: 'string', help: 'directory the agent prompts (hang-up beep, call-connect chime) are written to at start' },
  { path: 'recording.dir', flag: '--recording-dir', env: 'DIALCORE_RECORDING_DIR', kind: 'string', help: 'rtpengine\'s --recording-dir (pcap method): call recordings are turned into WAV under <dir>/wav; unset = recording refused' },
  { path: 'mixer.janusUrl', flag: '--janus-url', env: 'DIALCORE_JANUS_URL', kind: 'http-url', help: 'Janus HTTP API root (e.g. http://127.0.0.1:8088/janus) whose AudioBridge plugin mixes 3-way calls; unset = 3-way refused' },
  { path: 'calls.sessionExpiresSeconds', flag: '--session-expires', env: 'DIALCORE_SESSION_EXPIRES', kind: 'int', min: 90, max: 86_400, help: 'RFC 4028 session interval asked for on both legs of a call (Session-Expires)' },
  { path: 'calls.pbxOptionsIntervalSeconds', flag: '--pbx-options-interval', env: 'DIALCORE_PBX_OPTIONS_INTERVAL', kind: 'int', min: 0, max: 86_400, help: 'seconds between OPTIONS health probes of each sip-address user\'s PBX (0: none)' },
  { path: 'calls.minSessionExpiresSeconds', flag: '--min-se', env: 'DIALCORE_MIN_SE', kind: 'int', min: 90, max: 86_400, help: 'smallest RFC 4028 session interval accepted (Min-SE; below it: 422)' },
  { path: 'dialIn.accessNumbers', flag: '--access-number', env: 'DIALCORE_ACCESS_NUMBERS', kind: 'number-list', repeatable: true, help: 'dial-in access number (called number, digits with an optional +) answered with the ID/PIN login; repeat or comma-separate for several' },
  { path: 'dialIn.dtmfEvents', flag: '--dtmf-events', env: 'DIALCORE_DTMF_EVENTS', kind: 'hostport', help: 'UDP host:port dialcore listens on for rtpengine DTMF events (rtpengine --dtmf-log-dest); default 127.0.0.1:22230' },
  { path: 'dialIn.firstDigitTimeoutMs', flag: '--dialin-first-digit-ms', env: 'DIALCORE_DIALIN_FIRST_DIGIT_MS', kind: 'int', min: 500, max: 120_000, help: 'dial-in: ms to wait for the first digit of an entry after its prompt (default 10000)' },
  { path: 'dialIn.interDigitTimeoutMs', flag: '--dialin-inter-digit-ms', env: 'DIALCORE_DIALIN_INTER_DIGIT_MS', kind: 'int', min: 500, max: 60_000, help: 'dial-in: ms to wait for the next digit before an entry ends (default 5000)' },
  { path: 'dialIn.lockoutFailures', flag: '--dialin-lockout-failures', env: 'DIALCORE_DIALIN_LOCKOUT_FAILURES', kind: 'int', min: 1, max: 10_000, help: 'dial-in: failed logins after which an ID and a caller number are refused (default 10)' },
  { path: 'dialIn.lockoutWindowSeconds', flag: '--dialin-lockout-window', env: 'DIALCORE_DIALIN_LOCKOUT_WINDOW', kind: 'int', min: 10, max: 604_800, help: 'dial-in: seconds the failures are counted over, and a lockout lasts (default 900)' },
  { path: 'dialIn.defaultLanguage', flag: '--dialin-language', env: 'DIALCORE_DIALIN_LANGUAGE', kind: 'language', help: 'dial-in: prompt language when the caller\'s is unknown (language tag, e.g. en, fr; default en)' },
  { path: 'app.workers', flag: '--app-workers', env: 'DIALCORE_APP_WORKERS', kind: 'int', min: 1, max: 32, help: 'start: core app processes connected to the edge (requests are shared round robin); the first also serves HTTP' },
  { path: 'capture.hepServer', flag: '--hep', env: 'DIALCORE_HEP', kind: 'hostport', help: 'HEP3 capture server ip:port (UDP, e.g. Homer\'s heplify-server): every SIP message the edge sends and receives; unset = off' },
  { path: 'capture.hepAgentId', flag: '--hep-agent-id', env: 'DIALCORE_HEP_AGENT_ID', kind: 'int', min: 0, max: 4_294_967_295, help: 'HEP capture agent id of this instance' },
  { path: 'capture.hepPassword', flag: '--hep-password', env: 'DIALCORE_HEP_PASSWORD', kind: 'secret', help: 'HEP auth key, when the capture server asks for one' },
  { path: 'cluster.instanceAddress', flag: '--instance-address', env: 'DIALCORE_INSTANCE_ADDRESS', kind: 'instance-address', help: 'several instances on one Redis: this instance\'s SIP address that the others send calls for its registrations to, ip:port (UDP) or tcp:ip:port (one of its listeners); needs the shared --nonce-secret' },
  { path: 'shutdown.drainSeconds', flag: '--drain-seconds', env: 'DIALCORE_DRAIN_SECONDS', kind: 'int', min: 0, max: 86_400, help: 'on SIGTERM: seconds live calls may go on while new registrations and calls get 503 (0 = end them at once)' },
  { path: 'edge.thread', flag: '--edge-thread', env: 'DIALCORE_EDGE_THREAD', kind: 'bool', help: 'start: run the SIP edge on a thread of its own, on a second core (true, the default), or on the app\'s thread (false)' },
  { path: 'log.level', flag: '--log-level', env: 'DIALCORE_LOG_LEVEL', kind: 'level', help: 'trace, debug, info, warn, error, fatal or silent' },
];

const here = path.dirname(fileURLToPath(import.meta.url));
export const DEFAULT_CONFIG_FILE = path.resolve(here, '../../config/dialcore.jsonc');

/** JSON with // and /* comments (the documented default file). */
export function parseJsonc(text: string): unknown {
  let out = '';
  let inString = false;
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (inString) {
      out += c;
      if (c === '\\') out += text[++i] ?? '';
      else if (c === '"') inString = false;
    } else if (c === '"') {
      inString = true;
      out += c;
    } else if (c === '/' && text[i + 1] === '/') {
      while (i < text.length && text[i] !== '\n') i++;
      out += '\n';
    } else if (c === '/' && text[i + 1] === '*') {
      const end = text.indexOf('*/', i + 2);
      i = end === -1 ? text.length : end + 1;
    } else {
      out += c;
    }
  }
  return JSON.parse(out.replace(/,(\s*[}\]])/g, '$1'));
}

function getPath(obj: unknown, dotted: string): unknown {
  let cur: unknown = obj;
  for (const key of dotted.split('.')) {
    if (cur === null || typeof cur !== 'object') return undefined;
    cur = (cur as Record<string, unknown>)[key];
  }
  return cur;
}

function setPath(obj: Record<string, unknown>, dotted: string, value: unknown): void {
  const keys = dotted.split('.');
  let cur = obj;
  for (const key of keys.slice(0, -1)) {
    if (typeof cur[key] !== 'object' || cur[key] === null) cur[key] = {};
    cur = cur[key] as Record<string, unknown>;
  }
  cur[keys[keys.length - 1]] = value;
}

export function parseHostPort(s: string): HostPort | string {
  const m = /^(?:\[([0-9a-fA-F:.]+)\]|([^:\s]+)):(\d{1,5})$/.exec(s.trim());
  if (!m) return 'expected host:port (IPv6 as [addr]:port)';
  const port = Number(m[3]);
  if (port > 65535) return 'port must be 0-65535';
  return { host: m[1] ?? m[2], port };
}

export function parseSipListen(s: string): SipListen | string {
  const m = /^(udp|tcp|tls|ws|wss):(.+)$/i.exec(s.trim());
  if (!m) return 'expected proto:host:port with proto one of udp, tcp, tls, ws, wss';
  const hp = parseHostPort(m[2]);
  if (typeof hp === 'string') return hp;
  if (!isIP(hp.host)) return `host must be an IP address to bind, got "${hp.host}"`;
  return { protocol: m[1].toLowerCase() as SipTransportName, ...hp };
}

const LEVELS = ['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent'];

/** Convert one raw value (string from env/flag, or JSON value from the file) for an option. */
function coerce(spec: OptionSpec, raw: unknown): { value?: unknown; error?: string } {
  const asList = (v: unknown): unknown[] => (Array.isArray(v) ? v : typeof v === 'string' ? v.split(',').map((x) => x.trim()).filter(Boolean) : [v]);
  switch (spec.kind) {
    case 'string':
    case 'secret':
      return typeof raw === 'string' ? { value: raw } : { error: 'must be a string' };
    case 'bool': {
      if (typeof raw === 'boolean') return { value: raw };
      const word = typeof raw === 'string' ? raw.trim().toLowerCase() : '';
      if (['true', 'yes', 'on', '1'].includes(word)) return { value: true };
      if (['false', 'no', 'off', '0'].includes(word)) return { value: false };
      return { error: 'must be true or false' };
    }
    case 'level':
      return typeof raw === 'string' && LEVELS.includes(raw) ? { value: raw } : { error: `must be one of ${LEVELS.join(', ')}` };
    case 'redis-url':
      return typeof raw === 'string' && /^rediss?:\/\/[^\s]+$/.test(raw) ? { value: raw } : { error: 'must be a redis:// or rediss:// URL' };
    case 'http-url': {
      if (typeof raw !== 'string' || raw.length > 2048) return { error: 'must be an http:// or https:// URL' };
      try {
        const url = new URL(raw);
        if (url.protocol !== 'http:' && url.protocol !== 'https:') return { error: 'must be an http:// or https:// URL' };
        if (url.search || url.hash) return { error: 'must have no query or fragment' };
        if (url.username || url.password) return { error: 'must not carry credentials' };
        return { value: raw.replace(/\/+$/, '') };
      } catch {
        return { error: 'must be an http:// or https:// URL' };
      }
    }
    case 'int': {
      const n = typeof raw === 'number' ? raw : typeof raw === 'string' && /^\d+$/.test(raw.trim()) ? Number(raw) : NaN;
      if (!Number.isInteger(n)) return { error: 'must be a whole number' };
      if (spec.min !== undefined && n < spec.min) return { error: `must be at least ${spec.min}` };
      if (spec.max !== undefined && n > spec.max) return { error: `must be at most ${spec.max}` };
      return { value: n };
    }
    case 'hostport': {
      if (typeof raw !== 'string') return { error: 'must be a "host:port" string' };
      const hp = parseHostPort(raw);
      return typeof hp === 'string' ? { error: hp } : { value: hp };
    }
    case 'instance-address': {
      if (typeof raw !== 'string') return { error: 'must be an "ip:port" or "tcp:ip:port" string' };
      const m = /^(?:([A-Za-z]+):)?(.+)$/.exec(raw.trim());
      const protocol = m?.[1]?.toLowerCase() ?? 'udp';
      if (protocol !== 'udp' && protocol !== 'tcp') return { error: `transport must be udp or tcp, got "${protocol}"` };
      const hp = parseHostPort(m?.[2] ?? '');
      if (typeof hp === 'string') return { error: `${hp}, optionally after udp: or tcp:` };
      return { value: { protocol, ...hp } };
    }
    case 'hostport-list': {
      const out: HostPort[] = [];
      for (const item of asList(raw)) {
        if (typeof item !== 'string') return { error: 'entries must be "host:port" strings' };
        const hp = parseHostPort(item);
        if (typeof hp === 'string') return { error: `"${item}": ${hp}` };
        out.push(hp);
      }
      return { value: out };
    }
    case 'number-list': {
      const out: string[] = [];
      for (const item of asList(raw)) {
        if (typeof item !== 'string' || !/^\+?\d{2,20}$/.test(item.trim())) return { error: `"${String(item)}" is not a phone number (2-20 digits, optional leading +)` };
        const number = item.trim();
        if (out.includes(number)) return { error: `${number} is listed twice` };
        out.push(number);
      }
      if (out.length > 100) return { error: 'at most 100 numbers' };
      return { value: out };
    }
    case 'language':
      return typeof raw === 'string' && /^[A-Za-z]{2,3}(-[A-Za-z0-9]{2,8})*$/.test(raw) ? { value: raw } : { error: 'must be a language tag like en or fr-FR' };
    case 'digest-algorithms': {
      const out: DigestAlgorithm[] = [];
      for (const item of asList(raw)) {
        const name = typeof item === 'string' ? DIGEST_ALGORITHMS.find((a) => a === item.toUpperCase()) : undefined;
        if (!name) return { error: `"${String(item)}" is not one of ${DIGEST_ALGORITHMS.join(', ')}` };
        if (out.includes(name)) return { error: `${name} is listed twice` };
        out.push(name);
      }
      if (out.length === 0) return { error: 'at least one algorithm is required' };
      return { value: out };
    }
    case 'sip-listen-list': {
      const out: SipListen[] = [];
      for (const item of asList(raw)) {
        if (typeof item !== 'string') return { error: 'entries must be "proto:host:port" strings' };
        const l = parseSipListen(item);
        if (typeof l === 'string') return { error: `"${item}": ${l}` };
        out.push(l);
      }
      if (out.length === 0) return { error: 'at least one listener is required' };
      return { value: out };
    }
  }
}

export interface LoadOptions {
  argv?: string[];
  env?: NodeJS.ProcessEnv;
  /** explicit file; else --config / DIALCORE_CONFIG; else config/dialcore.jsonc */
  file?: string;
}

export interface LoadedConfig {
  config: DialcoreConfig;
  /** arguments that were not options (e.g. the sub-command) */
  positionals: string[];
  help: boolean;
}

/** Load, merge and validate; throws ConfigError naming every bad field. */
export function loadConfig(opts: LoadOptions = {}): LoadedConfig {
  const argv = opts.argv ?? [];
  const env = opts.env ?? process.env;
  const problems: Array<{ field: string; message: string }> = [];
  const positionals: string[] = [];
  let help = false;

  // flags
  const flagValues = new Map<OptionSpec, string[]>();
  let configFile = opts.file ?? env.DIALCORE_CONFIG;
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    if (arg === '--help' || arg === '-h') { help = true; continue; }
    if (!arg.startsWith('--')) { positionals.push(arg); continue; }
    const [name, inline] = arg.includes('=') ? [arg.slice(0, arg.indexOf('=')), arg.slice(arg.indexOf('=') + 1)] : [arg, undefined];
    const value = inline ?? argv[++i];
    if (name === '--config') { configFile = value; continue; }
    const spec = OPTIONS.find((o) => o.flag === name);
    if (!spec) { problems.push({ field: name, message: 'unknown flag (see --help)' }); continue; }
    if (value === undefined) { problems.push({ field: name, message: 'needs a value' }); continue; }
    flagValues.set(spec, [...(flagValues.get(spec) ?? []), value]);
  }

  const file = configFile ?? DEFAULT_CONFIG_FILE;
  let fileObj: unknown = {};
  if (existsSync(file)) {
    try {
      fileObj = parseJsonc(readFileSync(file, 'utf8'));
    } catch (err) {
      problems.push({ field: file, message: `not valid JSON: ${(err as Error).message}` });
    }
  } else if (configFile) {
    problems.push({ field: '--config', message: `file not found: ${configFile}` });
  }

  const config: Record<string, unknown> = {};
  /** where each option that is set came from, most specific first: flag 3, env 2, file 1 */
  const precedence = new Map<string, number>();
  for (const spec of OPTIONS) {
    let raw: unknown;
    let source = spec.path;
    const flags = flagValues.get(spec);
    if (flags) {
      raw = spec.repeatable ? flags.flatMap((f) => f.split(',')) : flags[flags.length - 1];
      source = spec.flag;
    } else if (env[spec.env] !== undefined && env[spec.env] !== '') {
      raw = env[spec.env];
      source = spec.env;
    } else {
      raw = getPath(fileObj, spec.path);
    }
    if (raw === undefined) continue;
    const { value, error } = coerce(spec, raw);
    if (error) problems.push({ field: source, message: error });
    else setPath(config, spec.path, value);
    precedence.set(spec.path, source === spec.flag ? 3 : source === spec.env ? 2 : 1);
  }
  if (problems.length) throw new ConfigError(problems);

  const c = config as Partial<Record<keyof DialcoreConfig, Record<string, unknown>>>;
  const sip = c.sip ?? {};
  const result: DialcoreConfig = {
    sip: {
      listen: (sip.listen as SipListen[] | undefined) ?? [{ protocol: 'udp', host: '127.0.0.1', port: 5060 }, { protocol: 'tcp', host: '127.0.0.1', port: 5060 }],
      externalHost: sip.externalHost as string | undefined,
      tlsCert: sip.tlsCert as string | undefined,
      tlsKey: sip.tlsKey as string | undefined,
      t1: (sip.t1 as number | undefined) ?? 500,
      t2: (sip.t2 as number | undefined) ?? 4000,
      t4: (sip.t4 as number | undefined) ?? 5000,
      maxMessageBytes: (sip.maxMessageBytes as number | undefined) ?? 65535,
      maxConnections: (sip.maxConnections as number | undefined) ?? 10_000,
      maxConnectionsPerIp: (sip.maxConnectionsPerIp as number | undefined) ?? 1_000,
    },
    drachtio: {
      listen: (c.drachtio?.listen as HostPort | undefined) ?? { host: '127.0.0.1', port: 9022 },
      connect: (c.drachtio?.connect as HostPort | undefined) ?? (c.drachtio?.listen as HostPort | undefined) ?? { host: '127.0.0.1', port: 9022 },
      secret: (c.drachtio?.secret as string | undefined) ?? '',
    },
    redis: {
      url: (c.redis?.url as string | undefined) ?? 'redis://127.0.0.1:6379',
      sentinels: (c.redis?.sentinels as HostPort[] | undefined) ?? [],
      sentinelMaster: (c.redis?.sentinelMaster as string | undefined) ?? '',
      clusterNodes: (c.redis?.clusterNodes as HostPort[] | undefined) ?? [],
      password: (c.redis?.password as string | undefined) ?? '',
    },
    http: {
      listen: (c.http?.listen as HostPort | undefined) ?? { host: '127.0.0.1', port: 8080 },
      adminToken: (c.http?.adminToken as string | undefined) ?? '',
    },
    rtpengine: {
      engines: (c.rtpengine?.engines as HostPort[] | undefined) ?? [{ host: '127.0.0.1', port: 22222 }],
      pingIntervalMs: (c.rtpengine?.pingIntervalMs as number | undefined) ?? 5000,
    },
    registrar: {
      realm: (c.registrar?.realm as string | undefined) ?? 'dialcore',
      minExpires: (c.registrar?.minExpires as number | undefined) ?? 60,
      maxExpires: (c.registrar?.maxExpires as number | undefined) ?? 3600,
      defaultExpires: (c.registrar?.defaultExpires as number | undefined) ?? 600,
      nonceSecret: (c.registrar?.nonceSecret as string | undefined) ?? '',
      nonceLifetimeSeconds: (c.registrar?.nonceLifetimeSeconds as number | undefined) ?? 300,
      digestAlgorithms: (c.registrar?.digestAlgorithms as DigestAlgorithm[] | undefined) ?? [...DEFAULT_DIGEST_ALGORITHMS],
      keepaliveIntervalSeconds: (c.registrar?.keepaliveIntervalSeconds as number | undefined) ?? 30,
      keepaliveMisses: (c.registrar?.keepaliveMisses as number | undefined) ?? 3,
    },
    calls: {
      domain: (c.calls?.domain as string | undefined) ?? 'dialcore.invalid',
      ringTimeoutSeconds: (c.calls?.ringTimeoutSeconds as number | undefined) ?? 60,
      maxCallSeconds: (c.calls?.maxCallSeconds as number | undefined) ?? 14_400,
      sessionExpiresSeconds: (c.calls?.sessionExpiresSeconds as number | undefined) ?? 1800,
      minSessionExpiresSeconds: (c.calls?.minSessionExpiresSeconds as number | undefined) ?? 90,
      pbxOptionsIntervalSeconds: (c.calls?.pbxOptionsIntervalSeconds as number | undefined) ?? 60,
    },
    agents: {
      holdMusic: (c.agents?.holdMusic as string | undefined) || null,
      promptsDir: (c.agents?.promptsDir as string | undefined) ?? path.join(os.tmpdir(), 'dialcore-prompts'),
    },
    recording: { dir: (c.recording?.dir as string | undefined) || null },
    mixer: { janusUrl: (c.mixer?.janusUrl as string | undefined) ?? null },
    dialIn: {
      accessNumbers: (c.dialIn?.accessNumbers as string[] | undefined) ?? [],
      dtmfEvents: (c.dialIn?.dtmfEvents as HostPort | undefined) ?? { host: '127.0.0.1', port: 22230 },
      firstDigitTimeoutMs: (c.dialIn?.firstDigitTimeoutMs as number | undefined) ?? 10_000,
      interDigitTimeoutMs: (c.dialIn?.interDigitTimeoutMs as number | undefined) ?? 5_000,
      lockoutFailures: (c.dialIn?.lockoutFailures as number | undefined) ?? 10,
      lockoutWindowSeconds: (c.dialIn?.lockoutWindowSeconds as number | undefined) ?? 900,
      defaultLanguage: (c.dialIn?.defaultLanguage as string | undefined) ?? 'en',
    },
    carriers: getPath(fileObj, 'carriers') ?? { outboundGateways: [], inboundTrunks: [] },
    dialPlans: getPath(fileObj, 'dialPlans') ?? { default: {} },
    app: { workers: (c.app?.workers as number | undefined) ?? 1 },
    capture: {
      hepServer: (c.capture?.hepServer as HostPort | undefined) ?? null,
      hepAgentId: (c.capture?.hepAgentId as number | undefined) ?? 2001,
      hepPassword: (c.capture?.hepPassword as string | undefined) ?? '',
    },
    cluster: { instanceAddress: (c.cluster?.instanceAddress as InstanceAddress | undefined) ?? null },
    shutdown: { drainSeconds: (c.shutdown?.drainSeconds as number | undefined) ?? 30 },
    edge: { thread: (c.edge?.thread as boolean | undefined) ?? true },
    log: { level: (c.log?.level as string | undefined) ?? 'info' },
  };
  const semantic: Array<{ field: string; message: string }> = [];
  if (result.sip.t2 < result.sip.t1) semantic.push({ field: 'sip.t2', message: 'must not be smaller than sip.t1' });
  if (result.calls.minSessionExpiresSeconds > result.calls.sessionExpiresSeconds) {
    semantic.push({ field: 'calls.minSessionExpiresSeconds', message: 'must not exceed calls.sessionExpiresSeconds' });
  }
  if (result.registrar.minExpires > result.registrar.maxExpires) semantic.push({ field: 'registrar.minExpires', message: 'must not exceed registrar.maxExpires' });
  if (result.sip.listen.some((l) => l.protocol === 'tls' || l.protocol === 'wss') && (!result.sip.tlsCert || !result.sip.tlsKey)) {
    semantic.push({ field: 'sip.tlsCert', message: 'tls and wss listeners need sip.tlsCert and sip.tlsKey' });
  }
  if (result.redis.sentinels.length > 0 && !result.redis.sentinelMaster) {
    semantic.push({ field: 'redis.sentinelMaster', message: 'is required with redis.sentinels (the name the sentinels monitor)' });
  }
  if (result.redis.sentinelMaster && result.redis.sentinels.length === 0) {
    semantic.push({ field: 'redis.sentinels', message: 'needs at least one sentinel host:port with redis.sentinelMaster' });
  }
  if (result.redis.clusterNodes.length > 0) {
    // a cluster given on the command line overrides the config file's redis.url; given at the same level or below it, which was meant is unclear
    if ((precedence.get('redis.url') ?? 0) >= (precedence.get('redis.clusterNodes') ?? 0)) {
      semantic.push({ field: 'redis.clusterNodes', message: 'cannot be combined with redis.url (--redis): give one of them' });
    }
    if (result.redis.sentinels.length > 0 || result.redis.sentinelMaster) {
      semantic.push({ field: 'redis.clusterNodes', message: 'cannot be combined with redis.sentinels (--redis-sentinel): a Redis Cluster has no Sentinel' });
    }
  }
  if (result.cluster.instanceAddress && !result.registrar.nonceSecret) {
    semantic.push({ field: 'registrar.nonceSecret', message: 'is required with cluster.instanceAddress: every instance must share it (digest nonces and the calls instances forward to each other are signed with it)' });
  }
  if (result.cluster.instanceAddress && isIP(result.cluster.instanceAddress.host) === 0) {
    semantic.push({ field: 'cluster.instanceAddress', message: 'must be an IP address and port' });
  }
  if (result.capture.hepServer && isIP(result.capture.hepServer.host) === 0) {
    semantic.push({ field: 'capture.hepServer', message: 'must be an IP address and port (no DNS name)' });
  }
  if (semantic.length) throw new ConfigError(semantic);
  return { config: result, positionals, help };
}

/** A config safe to log: secrets replaced. */
export function redactConfig(config: DialcoreConfig): DialcoreConfig {
  const copy = JSON.parse(JSON.stringify(config)) as DialcoreConfig;
  if (copy.drachtio.secret) copy.drachtio.secret = '[redacted]';
  if (copy.http.adminToken) copy.http.adminToken = '[redacted]';
  if (copy.registrar.nonceSecret) copy.registrar.nonceSecret = '[redacted]';
  if (copy.capture.hepPassword) copy.capture.hepPassword = '[redacted]';
  if (copy.redis.password) copy.redis.password = '[redacted]';
  copy.redis.url = redactUrlPassword(copy.redis.url);
  copy.redis.url = copy.redis.url.replace(/\/\/[^@/]*@/, '//[redacted]@');
  copy.carriers = JSON.parse(JSON.stringify(copy.carriers ?? null, (k, v: unknown) => (/password|secret/i.test(k) ? '[redacted]' : v)));
  return copy;
}

export function helpText(): string {
  const lines = OPTIONS.map((o) => `  ${(o.flag + (o.repeatable ? ' (repeatable)' : '')).padEnd(34)} ${o.help}\n  ${''.padEnd(34)} env ${o.env}, file ${o.path}`);
  return `Options (flag > environment > config file > default):\n  --config FILE                      config file (JSON with comments), default config/dialcore.jsonc; env DIALCORE_CONFIG\n${lines.join('\n')}`;
}

/** redis://user:secret@host -> redis://user:[redacted]@host */
function redactUrlPassword(url: string): string {
  try {
    const parsed = new URL(url);
    if (!parsed.password) return url;
    parsed.password = 'redacted';
    return parsed.toString();
  } catch {
    return url;
  }
}
