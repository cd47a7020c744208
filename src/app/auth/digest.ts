/**
 * Server side of HTTP Digest as SIP uses it (RFC 3261 §22.4, RFC 2617, RFC 7616, RFC 8760):
 * challenges (one WWW-Authenticate per algorithm, SHA-256 first, qop="auth"), parsing of
 * Authorization, and verification of the response against a stored HA1 (the password is never
 * needed). Replay protection of nc needs shared state and lives with the caller (Redis script).
 */
import { randomBytes, timingSafeEqual } from 'node:crypto';
import { DEFAULT_DIGEST_ALGORITHMS, digestHash, parseAlgorithm, type DigestAlgorithm } from './ha1.js';
import { NonceFactory, type NonceCheck } from './nonce.js';

export interface DigestCredentials {
  username: string;
  realm: string;
  nonce: string;
  uri: string;
  response: string;
  algorithm: DigestAlgorithm;
  qop: string | undefined;
  nc: string | undefined;
  cnonce: string | undefined;
  opaque: string | undefined;
}

const MAX_HEADER_LENGTH = 4096;
const MAX_PARAMS = 32;

/** RFC 7230 3.2.6 tchar and the whitespace between auth-params, by char code (ASCII; anything else is neither). */
const IS_TCHAR = charCodeSet("!#$%&'*+-.^_`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz");
const IS_SPACE = charCodeSet(' \t\r\n');

function charCodeSet(chars: string): Uint8Array {
  const set = new Uint8Array(128);
  for (let k = 0; k < chars.length; k++) set[chars.charCodeAt(k)] = 1;
  return set;
}

/**
 * Splits an auth header value into its challenges/credentials: `Digest a=1, b="x"` (several may
 * be comma-joined when a stack folds repeated headers). Returns null on malformed input.
 */
export function parseAuthParams(value: string): Array<{ scheme: string; params: Map<string, string> }> | null {
  if (value.length > MAX_HEADER_LENGTH) return null;
  const items: Array<{ scheme: string; params: Map<string, string> }> = [];
  let i = 0;
  const n = value.length;
  const skipSpace = (): void => {
    while (i < n && IS_SPACE[value.charCodeAt(i)] === 1) i++;
  };
  const token = (): string => {
    const start = i;
    while (i < n && IS_TCHAR[value.charCodeAt(i)] === 1) i++;
    return value.slice(start, i);
  };
  let current: { scheme: string; params: Map<string, string> } | null = null;
  let count = 0;
  while (i < n) {
    skipSpace();
    if (i >= n) break;
    if (value[i] === ',') {
      i++;
      continue;
    }
    const start = i;
    const name = token();
    if (!name) return null;
    skipSpace();
    if (value[i] !== '=') {
      // A bare token is an auth scheme starting a new challenge/credentials item.
      current = { scheme: name, params: new Map() };
      items.push(current);
      if (i === start) return null;
      continue;
    }
    i++;
    skipSpace();
    let paramValue: string;
    if (value[i] === '"') {
      // quoted-string (RFC 7230 3.2.6): sliced whole; quoted-pairs unescaped only when there are any
      const open = ++i;
      let escaped = false;
      while (i < n && value.charCodeAt(i) !== 0x22 /* " */) {
        if (value.charCodeAt(i) === 0x5c /* \ */ && i + 1 < n) {
          escaped = true;
          i++;
        }
        i++;
      }
      if (i >= n) return null;
      paramValue = escaped ? value.slice(open, i).replace(/\\(.)/gs, '$1') : value.slice(open, i);
      i++;
    } else {
      paramValue = token();
      if (!paramValue) return null;
    }
    if (!current || ++count > MAX_PARAMS) return null;
    const key = name.toLowerCase();
    if (current.params.has(key)) return null; // RFC 7616 §3.4: each directive at most once
    current.params.set(key, paramValue);
    skipSpace();
    if (i < n && value[i] !== ',') return null;
  }
  return items;
}

export type CredentialsParse =
  | { ok: true; credentials: DigestCredentials }
  | { ok: false; reason: 'malformed' | 'unsupported-algorithm' | 'unsupported-qop' | 'no-digest' };

/** Extracts our realm's Digest credentials from an Authorization header value. */
export function parseDigestCredentials(headerValue: string, realm: string): CredentialsParse {
  const items = parseAuthParams(headerValue);
  if (!items) return { ok: false, reason: 'malformed' };
  const digests = items.filter((item) => item.scheme.toLowerCase() === 'digest');
  if (digests.length === 0) return { ok: false, reason: 'no-digest' };
  const item = digests.find((d) => d.params.get('realm') === realm) ?? digests[0]!;
  const p = item.params;
  const required = ['username', 'realm', 'nonce', 'uri', 'response'] as const;
  for (const key of required) {
    const v = p.get(key);
    if (v === undefined || v.length === 0 || v.length > 1024) return { ok: false, reason: 'malformed' };
  }
  const algorithm = parseAlgorithm(p.get('algorithm'));
  if (!algorithm) return { ok: false, reason: 'unsupported-algorithm' };
  const qop = p.get('qop');
  if (qop !== undefined && qop.toLowerCase() !== 'auth') return { ok: false, reason: 'unsupported-qop' };
  const nc = p.get('nc');
  const cnonce = p.get('cnonce');
  if (qop !== undefined && (!nc || !/^[0-9a-fA-F]{8}$/.test(nc) || !cnonce)) return { ok: false, reason: 'malformed' };
  return {
    ok: true,
    credentials: {
      username: p.get('username')!,
      realm: p.get('realm')!,
      nonce: p.get('nonce')!,
      uri: p.get('uri')!,
      response: p.get('response')!,
      algorithm,
      qop: qop?.toLowerCase(),
      nc,
      cnonce,
      opaque: p.get('opaque'),
    },
  };
}

/** The expected `response` (RFC 7616 §3.4.1; without qop, RFC 2069 form of RFC 2617 §3.2.2.1). */
export function computeDigestResponse(
  algorithm: DigestAlgorithm,
  ha1: string,
  method: string,
  c: Pick<DigestCredentials, 'nonce' | 'uri' | 'qop' | 'nc' | 'cnonce'>,
): string {
  const ha2 = digestHash(algorithm, `${method}:${c.uri}`);
  if (c.qop === 'auth') return digestHash(algorithm, `${ha1}:${c.nonce}:${c.nc}:${c.cnonce}:auth:${ha2}`);
  return digestHash(algorithm, `${ha1}:${c.nonce}:${ha2}`);
}

/** Constant-time comparison of the client's response with the expected one. */
export function responseMatches(credentials: DigestCredentials, method: string, ha1: string): boolean {
  const expected = Buffer.from(computeDigestResponse(credentials.algorithm, ha1, method, credentials), 'utf8');
  const actual = Buffer.from(credentials.response.toLowerCase(), 'utf8');
  return actual.length === expected.length && timingSafeEqual(actual, expected);
}

export interface DigestAuthOptions {
  realm: string;
  /** Shared by every core instance (nonces issued by one validate on the others). */
  secret: string | Buffer;
  nonceLifetimeSeconds?: number;
  /** Offered in this order (RFC 8760 §2.4: most preferred first). Default SHA-256, MD5. */
  algorithms?: DigestAlgorithm[];
  /** Include an opaque parameter (a constant the client must echo). */
  opaque?: string;
}

export type DigestVerdict =
  /** Credentials authentic: the caller still has to check nc replay. */
  | { outcome: 'ok'; nonceIssuedAt: number; nc: number }
  /** 401 with a fresh challenge (stale=true when `stale`). */
  | { outcome: 'challenge'; stale: boolean; reason: 'stale-nonce' | 'bad-nonce' | 'wrong-realm' | 'no-qop' }
  /** 403: wrong password or unknown user (indistinguishable on purpose). */
  | { outcome: 'forbidden'; reason: 'wrong-response' }
  /** 400: `uri` does not match the Request-URI or opaque mismatch. */
  | { outcome: 'bad-request'; reason: 'uri-mismatch' | 'opaque-mismatch' };

/** A fixed HA1 used for unknown users, so their verification does the same work as a real one. */
const DECOY_HA1 = randomBytes(32).toString('hex');

export class DigestAuthenticator {
  readonly realm: string;
  readonly nonces: NonceFactory;
  readonly algorithms: DigestAlgorithm[];
  private readonly opaque: string | undefined;

  constructor(options: DigestAuthOptions) {
    this.realm = options.realm;
    this.nonces = new NonceFactory(options.secret, options.realm, (options.nonceLifetimeSeconds ?? 300) * 1000);
    this.algorithms = options.algorithms ?? [...DEFAULT_DIGEST_ALGORITHMS];
    this.opaque = options.opaque;
  }

  /** WWW-Authenticate values, one per algorithm, all sharing one fresh nonce (RFC 7616 §3.7). */
  challenges(options: { stale?: boolean; now?: number } = {}): string[] {
    const nonce = this.nonces.issue(options.now);
    return this.algorithms.map((algorithm) => {
      const parts = [`Digest realm="${this.realm}"`, `nonce="${nonce}"`, `algorithm=${algorithm}`, 'qop="auth"'];
      if (this.opaque !== undefined) parts.push(`opaque="${this.opaque}"`);
      if (options.stale) parts.push('stale=true');
      return parts.join(', ');
    });
  }

  /**
   * Checks credentials for a request. `ha1` is the stored HA1 for credentials.algorithm, or null
   * for an unknown user (verified against a decoy so the timing and outcome match a wrong password).
   */
  verify(credentials: DigestCredentials, request: { method: string; uri: string }, ha1: string | null, now = Date.now()): DigestVerdict {
    if (credentials.realm !== this.realm) return { outcome: 'challenge', stale: false, reason: 'wrong-realm' };
    const nonce: NonceCheck = this.nonces.check(credentials.nonce, now);
    if (nonce.status === 'invalid') return { outcome: 'challenge', stale: false, reason: 'bad-nonce' };
    if (credentials.qop !== 'auth' || credentials.nc === undefined) return { outcome: 'challenge', stale: false, reason: 'no-qop' };
    if (this.opaque !== undefined && credentials.opaque !== this.opaque) return { outcome: 'bad-request', reason: 'opaque-mismatch' };
    if (!uriMatches(credentials.uri, request.uri)) return { outcome: 'bad-request', reason: 'uri-mismatch' };
    const matches = responseMatches(credentials, request.method, ha1 ?? DECOY_HA1);
    if (!matches || ha1 === null) return { outcome: 'forbidden', reason: 'wrong-response' };
    // Only an authentic response learns that its nonce is merely stale (RFC 7616 §3.3 stale).
    if (nonce.status === 'stale') return { outcome: 'challenge', stale: true, reason: 'stale-nonce' };
    return { outcome: 'ok', nonceIssuedAt: nonce.issuedAt, nc: Number.parseInt(credentials.nc, 16) };
  }
}

/**
 * RFC 7616 §3.4.6 / RFC 3261 §22.4: the digest-uri must identify the Request-URI. Compared on what
 * identifies the target: scheme, user and host (case-insensitive), and the port, a missing one
 * meaning the scheme's default (5060 for sip, 5061 for sips). URI parameters and headers are not
 * compared: phones differ in whether they repeat `;transport=` or `:5060` in the digest uri (as
 * Kamailio and Asterisk, which accept those), and they do not change which resource is meant.
 */
function uriMatches(digestUri: string, requestUri: string): boolean {
  if (digestUri === requestUri) return true;
  const a = uriTarget(digestUri);
  return a !== null && a === uriTarget(requestUri);
}

function uriTarget(uri: string): string | null {
  const trimmed = uri.trim().replace(/^<|>$/g, '');
  const colon = trimmed.indexOf(':');
  if (colon === -1) return null;
  const scheme = trimmed.slice(0, colon).toLowerCase();
  let rest = trimmed.slice(colon + 1);
  const cut = rest.search(/[;?]/);
  if (cut !== -1) rest = rest.slice(0, cut);
  const at = rest.lastIndexOf('@');
  const user = at === -1 ? '' : rest.slice(0, at + 1);
  const hostPort = rest.slice(at + 1).toLowerCase();
  const portMatch = /^(\[[^\]]*\]|[^:]*)(?::(\d{1,5}))?$/.exec(hostPort);
  if (!portMatch) return null;
  const defaultPort = scheme === 'sips' ? '5061' : '5060';
  const port = portMatch[2] === undefined || Number(portMatch[2]) === Number(defaultPort) ? defaultPort : String(Number(portMatch[2]));
  return `${scheme}:${user}${portMatch[1]}:${port}`;
}
