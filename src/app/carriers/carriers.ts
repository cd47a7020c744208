/**
 * Carriers: outbound gateways that take calls to PSTN numbers (with the digest credentials
 * answered on 401/407, RFC 3261 §22.2-22.3 / RFC 8760) and inbound trunks whose calls are
 * accepted only from their configured addresses and routed by the called number (DID) to a user.
 *
 * Config model + validation (errors name the field, never echo a password), and the pure
 * routing functions the B2BUA calls per INVITE. docs/media.md "Carriers" documents the format.
 */
import { compileAllowList, checkAllowListEntry, type AllowList } from '../users/ip-allow-list.js';
import { KEY_PREFIX } from '../users/keys.js';
import { cleanNumber, dialledNumberText } from '../policies/phone-number.js';

export type SipTransport = 'udp' | 'tcp' | 'tls';

export interface OutboundGateway {
  name: string;
  host: string;
  port: number;
  transport: SipTransport;
  /** Where INVITEs go: `sip:host:port;transport=x` (sips: for TLS). */
  uri: string;
  /** Digest credentials for the carrier's 401/407 challenges. */
  username?: string;
  password?: string;
  /** E.164 digit prefixes (no `+`) this gateway serves; empty with no patterns = every number. */
  prefixes: string[];
  /** RegExp sources tested against the E.164 number with `+`. */
  patterns: string[];
  /** Lower is preferred (after the longest matching prefix). */
  priority: number;
  /** Simultaneous calls; 0 = unlimited. */
  maxChannels: number;
  /** OPTIONS keep-alive interval (RFC 3261 §11); 0 = not checked (always considered up). */
  optionsIntervalSeconds: number;
}

export interface InboundTrunk {
  name: string;
  /** Source IPv4/IPv6 addresses and CIDRs calls are accepted from (never empty). */
  sources: string[];
  /** DID (E.164 digits, no `+`) -> user id. */
  dids: Record<string, string>;
  /** Where DIDs are looked up: this table, Redis `dc:did:<digits>`, or the table then Redis. */
  didLookup: 'table' | 'redis' | 'table-then-redis';
  /** Country code for DIDs the carrier sends in national form (`0...`). */
  defaultCountryCode?: string;
}

export interface CarrierConfig {
  outboundGateways: OutboundGateway[];
  inboundTrunks: InboundTrunk[];
}

export interface CarrierFieldError {
  field: string;
  message: string;
}

export type CarrierValidation = { ok: true; config: CarrierConfig } | { ok: false; errors: CarrierFieldError[] };

// ---------------------------------------------------------------------------------------------
// validation
// ---------------------------------------------------------------------------------------------

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

const NAME = /^[A-Za-z0-9][\w.-]{0,63}$/;
const HOST = /^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9](?:[A-Za-z0-9-]{0,62})(?:\.[A-Za-z0-9-]{1,63})*)$/;
const USER_ID = /^[\w.:-]{1,64}$/;
const DEFAULT_PORT: Record<SipTransport, number> = { udp: 5060, tcp: 5060, tls: 5061 };

/** Parses `sip:host[:port][;transport=x]` (RFC 3261 §19.1.1, no user part needed) or `host[:port]`. */
function parseGatewayAddress(text: string): { host: string; port?: number; transport?: string; secure: boolean } | undefined {
  const match = /^(?:(sips?):)?(?:[^@;]+@)?(\[[0-9a-fA-F:.]+\]|[^:;[\]@]+)(?::(\d{1,5}))?((?:;[^;]*)*)$/i.exec(text.trim());
  if (!match) return undefined;
  const params = (match[4] ?? '').split(';').filter(Boolean);
  const transport = params.find((p) => /^transport=/i.test(p))?.slice('transport='.length).toLowerCase();
  return {
    host: match[2]!,
    port: match[3] !== undefined ? Number(match[3]) : undefined,
    transport,
    secure: match[1]?.toLowerCase() === 'sips',
  };
}

/**
 * Field checking for one config object: unknown keys reported, and `f(sub, message)` reporting
 * `<field>.<sub>` while counting, so the caller can tell whether this object had errors.
 */
function objectChecker(raw: Record<string, unknown>, field: string, known: readonly string[], fail: (f: string, m: string) => void): {
  f: (sub: string, message: string) => void;
  errors: () => number;
} {
  const knownKeys = new Set(known);
  for (const key of Object.keys(raw)) if (!knownKeys.has(key)) fail(`${field}.${key}`, 'unknown field');
  let errors = 0;
  return {
    f: (sub, message) => {
      errors++;
      fail(`${field}.${sub}`, message);
    },
    errors: () => errors,
  };
}

function validateGateway(raw: unknown, field: string, fail: (f: string, m: string) => void): OutboundGateway | undefined {
  if (!isRecord(raw)) return void fail(field, 'must be an object');
  const { f, errors } = objectChecker(raw, field, ['name', 'uri', 'host', 'port', 'transport', 'username', 'password', 'prefixes', 'patterns', 'priority', 'maxChannels', 'optionsIntervalSeconds'], fail);

  if (typeof raw.name !== 'string' || !NAME.test(raw.name)) f('name', 'must be 1-64 of letters, digits, . _ -');
  let host: string | undefined;
  let port: number | undefined;
  let transport: string | undefined;
  if (raw.uri !== undefined) {
    const parsed = typeof raw.uri === 'string' ? parseGatewayAddress(raw.uri) : undefined;
    if (!parsed || !HOST.test(parsed.host)) f('uri', 'must be sip:host[:port][;transport=udp|tcp|tls] or host[:port]');
    else {
      host = parsed.host;
      port = parsed.port;
      transport = parsed.transport ?? (parsed.secure ? 'tls' : undefined);
    }
    if (raw.host !== undefined) f('host', 'give either uri or host, not both');
  } else if (typeof raw.host === 'string' && HOST.test(raw.host)) {
    host = raw.host;
  } else {
    f('host', 'must be a host name or IP address (or give uri)');
  }
  if (raw.port !== undefined) {
    if (!Number.isInteger(raw.port) || (raw.port as number) < 1 || (raw.port as number) > 65535) f('port', 'must be an integer 1-65535');
    else port = raw.port as number;
  }
  if (raw.transport !== undefined) {
    if (typeof raw.transport !== 'string') f('transport', 'must be udp, tcp or tls');
    else transport = raw.transport.toLowerCase();
  }
  transport ??= 'udp';
  if (transport !== 'udp' && transport !== 'tcp' && transport !== 'tls') f('transport', 'must be udp, tcp or tls');

  const optionalText = (key: 'username' | 'password', max: number): string | undefined => {
    const value = raw[key];
    if (value === undefined || value === null) return undefined;
    // eslint-disable-next-line no-control-regex
    if (typeof value !== 'string' || value.length === 0 || value.length > max || /[\x00-\x1f\x7f]/.test(value)) {
      f(key, `must be 1-${max} printable characters`);
      return undefined;
    }
    return value;
  };
  const username = optionalText('username', 128);
  const password = optionalText('password', 128);
  if ((raw.username == null) !== (raw.password == null)) {
    f(raw.username == null ? 'username' : 'password', 'username and password go together');
  }

  const list = (key: 'prefixes' | 'patterns', check: (entry: string) => string | undefined): string[] => {
    const value = raw[key];
    if (value === undefined) return [];
    if (!Array.isArray(value) || value.length > 10_000) {
      f(key, 'must be an array (at most 10000 entries)');
      return [];
    }
    const out: string[] = [];
    value.forEach((entry, i) => {
      const problem = typeof entry === 'string' ? check(entry) : 'must be a string';
      if (problem) f(`${key}[${i}]`, problem);
      else out.push(key === 'prefixes' ? (entry as string).replace(/^\+/, '') : (entry as string));
    });
    return out;
  };
  const prefixes = list('prefixes', (p) => (/^\+?\d{1,15}$/.test(p) ? undefined : 'must be digits (E.164 prefix)'));
  const patterns = list('patterns', (p) => {
    if (p.length === 0 || p.length > 200) return 'must be a regular expression (1-200 chars)';
    try {
      new RegExp(p);
      return undefined;
    } catch {
      return 'not a valid regular expression';
    }
  });
  const integer = (key: 'priority' | 'maxChannels' | 'optionsIntervalSeconds', fallback: number, max: number): number => {
    const value = raw[key];
    if (value === undefined) return fallback;
    if (!Number.isInteger(value) || (value as number) < 0 || (value as number) > max) {
      f(key, `must be an integer 0-${max}`);
      return fallback;
    }
    return value as number;
  };
  const priority = integer('priority', 100, 1_000_000);
  const maxChannels = integer('maxChannels', 0, 1_000_000);
  const optionsIntervalSeconds = integer('optionsIntervalSeconds', 30, 86_400);

  if (errors() > 0 || host === undefined) return undefined;
  const t = transport as SipTransport;
  const finalPort = port ?? DEFAULT_PORT[t];
  const uri = `${t === 'tls' ? 'sips' : 'sip'}:${host}:${finalPort}${t === 'udp' ? '' : `;transport=${t}`}`;
  return {
    name: raw.name as string,
    host,
    port: finalPort,
    transport: t,
    uri,
    ...(username !== undefined ? { username, password } : {}),
    prefixes,
    patterns,
    priority,
    maxChannels,
    optionsIntervalSeconds,
  };
}

function validateTrunk(raw: unknown, field: string, fail: (f: string, m: string) => void): InboundTrunk | undefined {
  if (!isRecord(raw)) return void fail(field, 'must be an object');
  const { f, errors } = objectChecker(raw, field, ['name', 'sources', 'dids', 'didLookup', 'defaultCountryCode'], fail);
  if (typeof raw.name !== 'string' || !NAME.test(raw.name)) f('name', 'must be 1-64 of letters, digits, . _ -');
  const sources: string[] = [];
  if (!Array.isArray(raw.sources) || raw.sources.length === 0 || raw.sources.length > 1000) {
    f('sources', 'must list 1-1000 IP addresses or CIDRs');
  } else {
    raw.sources.forEach((entry, i) => {
      const check = typeof entry === 'string' ? checkAllowListEntry(entry.trim()) : { ok: false as const, message: 'not an IP address or CIDR' };
      if (!check.ok) f(`sources[${i}]`, check.message);
      else sources.push((entry as string).trim());
    });
  }
  const dids: Record<string, string> = Object.create(null) as Record<string, string>;
  if (raw.dids !== undefined) {
    if (!isRecord(raw.dids)) f('dids', 'must be an object of DID -> user id');
    else {
      for (const [did, userId] of Object.entries(raw.dids)) {
        const digits = normaliseDid(did);
        if (digits === undefined) f(`dids["${did.slice(0, 32)}"]`, 'not a telephone number');
        else if (typeof userId !== 'string' || !USER_ID.test(userId)) f(`dids["${did.slice(0, 32)}"]`, 'user id must be 1-64 of letters, digits, . _ : -');
        else dids[digits] = userId;
      }
    }
  }
  const didLookup = raw.didLookup ?? (raw.dids !== undefined ? 'table' : 'redis');
  if (didLookup !== 'table' && didLookup !== 'redis' && didLookup !== 'table-then-redis') f('didLookup', 'must be table, redis or table-then-redis');
  if (raw.defaultCountryCode !== undefined && (typeof raw.defaultCountryCode !== 'string' || !/^[1-9]\d{0,2}$/.test(raw.defaultCountryCode))) {
    f('defaultCountryCode', 'must be a country code of 1-3 digits');
  }
  if (errors() > 0) return undefined;
  return {
    name: raw.name as string,
    sources,
    dids,
    didLookup: didLookup as InboundTrunk['didLookup'],
    ...(typeof raw.defaultCountryCode === 'string' ? { defaultCountryCode: raw.defaultCountryCode } : {}),
  };
}

/** Validates `{ outboundGateways: [...], inboundTrunks: [...] }`; every error names its field. */
export function validateCarrierConfig(raw: unknown, field = 'carriers'): CarrierValidation {
  const errors: CarrierFieldError[] = [];
  const fail = (f: string, message: string): void => void errors.push({ field: f, message });
  if (!isRecord(raw)) return { ok: false, errors: [{ field, message: 'must be an object' }] };
  for (const key of Object.keys(raw)) {
    if (key !== 'outboundGateways' && key !== 'inboundTrunks') fail(`${field}.${key}`, 'unknown field');
  }
  const section = <T>(key: 'outboundGateways' | 'inboundTrunks', check: (raw: unknown, field: string, fail: (f: string, m: string) => void) => T | undefined): T[] => {
    const value = raw[key];
    if (value === undefined) return [];
    if (!Array.isArray(value) || value.length > 1000) {
      fail(`${field}.${key}`, 'must be an array (at most 1000 entries)');
      return [];
    }
    return value.map((entry, i) => check(entry, `${field}.${key}[${i}]`, fail)).filter((x): x is T => x !== undefined);
  };
  const outboundGateways = section('outboundGateways', validateGateway);
  const inboundTrunks = section('inboundTrunks', validateTrunk);
  for (const key of ['outboundGateways', 'inboundTrunks'] as const) {
    const entries = raw[key];
    if (!Array.isArray(entries)) continue;
    const seen = new Set<string>();
    entries.forEach((entry, i) => {
      const name = isRecord(entry) && typeof entry.name === 'string' ? entry.name : undefined;
      if (name === undefined) return;
      if (seen.has(name)) fail(`${field}.${key}[${i}].name`, `duplicate name "${name.slice(0, 64)}"`);
      seen.add(name);
    });
  }
  return errors.length > 0 ? { ok: false, errors } : { ok: true, config: { outboundGateways, inboundTrunks } };
}

// ---------------------------------------------------------------------------------------------
// outbound
// ---------------------------------------------------------------------------------------------

/** What this instance knows of a gateway: OPTIONS health and calls in progress. */
export interface GatewayState {
  up: boolean;
  activeChannels: number;
}

/** Gateways keyed by name; a gateway not in the map is taken as up with no calls (not yet probed). */
export type GatewayHealth = ReadonlyMap<string, GatewayState>;

const patternCache = new Map<string, RegExp | null>();

function patternMatches(source: string, e164: string): boolean {
  let regex = patternCache.get(source);
  if (regex === undefined) {
    try {
      regex = new RegExp(source);
    } catch {
      regex = null;
    }
    if (patternCache.size > 10_000) patternCache.clear();
    patternCache.set(source, regex);
  }
  return regex !== null && regex.test(e164);
}

/** How specifically a gateway serves a number: -1 not at all, else the matching prefix length (patterns count as 0). */
function servingScore(gateway: OutboundGateway, digits: string): number {
  if (gateway.prefixes.length === 0 && gateway.patterns.length === 0) return 0;
  let best = -1;
  for (const prefix of gateway.prefixes) if (digits.startsWith(prefix) && prefix.length > best) best = prefix.length;
  if (best < 0 && gateway.patterns.some((p) => patternMatches(p, `+${digits}`))) best = 0;
  return best;
}

/**
 * Gateways that can take a call to `number` now, best first: serving the number (longest
 * matching prefix first), up, below their channel limit, then by priority, then name.
 */
export function rankOutboundGateways(number: string, gateways: readonly OutboundGateway[], health: GatewayHealth = new Map()): OutboundGateway[] {
  const digits = number.replace(/^\+/, '');
  if (!/^\d{1,15}$/.test(digits)) return [];
  return gateways
    .map((gateway) => ({ gateway, score: servingScore(gateway, digits), state: health.get(gateway.name) }))
    .filter(({ gateway, score, state }) => {
      if (score < 0) return false;
      if (state && !state.up) return false;
      if (gateway.maxChannels > 0 && (state?.activeChannels ?? 0) >= gateway.maxChannels) return false;
      return true;
    })
    .sort((a, b) => b.score - a.score || a.gateway.priority - b.gateway.priority || a.gateway.name.localeCompare(b.gateway.name))
    .map(({ gateway }) => gateway);
}

/** The gateway for a call to an E.164 `number`, or undefined (the B2BUA answers 503). */
export function pickOutboundGateway(number: string, gateways: readonly OutboundGateway[], health: GatewayHealth = new Map()): OutboundGateway | undefined {
  return rankOutboundGateways(number, gateways, health)[0];
}

// ---------------------------------------------------------------------------------------------
// inbound
// ---------------------------------------------------------------------------------------------

const trunkLists = new WeakMap<InboundTrunk, AllowList>();

/** The trunk whose sources include `ip` (IPv4-mapped IPv6 matched as IPv4), or undefined: not a carrier. */
export function isInboundCarrierSource(ip: string, trunks: readonly InboundTrunk[]): InboundTrunk | undefined {
  for (const trunk of trunks) {
    if (trunk.sources.length === 0) continue; // a trunk without sources accepts nobody
    let list = trunkLists.get(trunk);
    if (!list) {
      list = compileAllowList(trunk.sources);
      trunkLists.set(trunk, list);
    }
    if (list.allows(ip)) return trunk;
  }
  return undefined;
}

/**
 * E.164 digits (no `+`) of a DID as carriers send it (Request-URI or To user part: `+44...`,
 * `44...`, `0044...`, `tel:`, separators), national `0...` numbers given a country code.
 */
export function normaliseDid(did: string, defaultCountryCode?: string): string | undefined {
  const text = dialledNumberText(did);
  if (text === undefined) return undefined;
  const cleaned = cleanNumber(text);
  if (!cleaned.ok) return undefined;
  let digits = cleaned.value.replace(/^\+/, '');
  if (!cleaned.value.startsWith('+')) {
    if (digits.startsWith('00')) digits = digits.slice(2);
    else if (digits.startsWith('0') && defaultCountryCode) digits = defaultCountryCode + digits.slice(1);
  }
  return /^[1-9]\d{2,14}$/.test(digits) ? digits : undefined;
}

/** The user id a DID routes to in a table (keys E.164 digits, as validateCarrierConfig stores them). */
export function routeDid(did: string, table: Readonly<Record<string, string>>, defaultCountryCode?: string): string | undefined {
  const digits = normaliseDid(did, defaultCountryCode);
  if (digits === undefined) return undefined;
  return Object.prototype.hasOwnProperty.call(table, digits) ? table[digits] : undefined;
}

/** Redis key of a DID's route: `dc:did:<E.164 digits, no +>`, value = user id. */
export function didRedisKey(e164Digits: string): string {
  return `${KEY_PREFIX}:did:${e164Digits}`;
}

/** The Redis surface used (src/app/users/redis.ts `Redis` satisfies it). */
export interface RedisCommandSender {
  send(args: string[]): Promise<unknown>;
}

/** Looks a DID up in Redis; undefined when absent or not a plausible user id. */
export async function lookupDidInRedis(redis: RedisCommandSender, did: string, defaultCountryCode?: string): Promise<string | undefined> {
  const digits = normaliseDid(did, defaultCountryCode);
  if (digits === undefined) return undefined;
  const reply = await redis.send(['GET', didRedisKey(digits)]);
  const value = typeof reply === 'string' ? reply : Buffer.isBuffer(reply) ? reply.toString('utf8') : undefined;
  return value !== undefined && USER_ID.test(value) ? value : undefined;
}

/** Routes a DID arriving on `trunk` by its lookup mode. */
export async function resolveInboundDid(trunk: InboundTrunk, did: string, redis?: RedisCommandSender): Promise<string | undefined> {
  if (trunk.didLookup !== 'redis') {
    const fromTable = routeDid(did, trunk.dids, trunk.defaultCountryCode);
    if (fromTable !== undefined || trunk.didLookup === 'table') return fromTable;
  }
  return redis ? lookupDidInRedis(redis, did, trunk.defaultCountryCode) : undefined;
}
