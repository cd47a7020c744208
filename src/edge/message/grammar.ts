/**
 * RFC 3261 section 25 header grammars used by the edge (URIs, name-addr, Via, CSeq, header names, lists).
 * Every function here takes hostile text and returns null on anything malformed; none of them throws.
 * Parsing is done with index scans over the string (no regex over whole values) because it is on the hot path.
 */

export type Params = Array<[string, string | null]>;

export interface SipUri {
  scheme: string;            // 'sip' | 'sips' | 'tel' | other (kept, not rejected)
  user?: string;             // still %-escaped as received (tel: the telephone-subscriber number)
  password?: string;
  host: string;              // IPv6 kept with brackets: "[::1]"; '' for tel and unknown schemes
  port?: number;
  params: Params;            // uri-parameters in order, names lower-cased, values as received
  headers: Array<[string, string]>;        // ?hname=hvalue, as received
  /** unknown schemes (RFC 3261 absoluteURI): everything after "scheme:", as received */
  opaque?: string;
}
export interface NameAddr {
  displayName?: string;      // unquoted, unescaped
  uri: SipUri;
  /** the URI text as received (informational: formatNameAddr writes `uri`) */
  rawUri: string;
  params: Params;            // header params (tag, expires, q...) in order, names lower-cased; quoted values keep quotes
}
export interface Via {
  protocol: string;          // 'SIP/2.0'
  transport: string;         // upper-case: UDP TCP TLS WS WSS SCTP ...
  host: string;              // IPv6 with brackets
  port?: number;
  params: Params;            // branch, rport (value may be null), received, maddr, ttl...
}

// ---------------------------------------------------------------------------------------------------------
// character classes (RFC 3261 25.1)

const SP = 32, HT = 9, DQUOTE = 34, SEMI = 59, EQUAL = 61, COLON = 58, SLASH = 47, BACKSLASH = 92;
const LAQUOT = 60, RAQUOT = 62, LBRACKET = 91, QUESTION = 63, AT = 64;

function charTable(chars: string, alphanumeric: boolean): Uint8Array {
  const table = new Uint8Array(128);
  if (alphanumeric) {
    for (let c = 48; c <= 57; c++) table[c] = 1;
    for (let c = 65; c <= 90; c++) table[c] = 1;
    for (let c = 97; c <= 122; c++) table[c] = 1;
  }
  for (let i = 0; i < chars.length; i++) table[chars.charCodeAt(i)] = 1;
  return table;
}

/** token = 1*(alphanum / "-" / "." / "!" / "%" / "*" / "_" / "+" / "`" / "'" / "~") */
const TOKEN = charTable("-.!%*_+`'~", true);
/** word (Call-ID) = token chars plus ( ) < > : \ DQUOTE / [ ] ? { } */
const WORD = charTable("-.!%*_+`'~()<>:\\\"/[]?{}", true);
/** hostname (lenient: '_' accepted, it is common in container host names) */
const HOST = charTable('-._', true);
/** IPv6reference content, with an optional zone (%) */
const IPV6 = charTable(':.%', true);
/** unquoted generic-param value: token / host (incl. IPv6 for received=) */
const PARAM_VALUE = charTable("-.!%*_+`'~:[]", true);
/** URI scheme = ALPHA *( ALPHA / DIGIT / "+" / "-" / "." ) */
const SCHEME = charTable('+-.', true);

export function isTokenChar(code: number): boolean {
  return code < 128 && TOKEN[code] === 1;
}

export function isToken(s: string): boolean {
  if (s.length === 0) return false;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c >= 128 || TOKEN[c] !== 1) return false;
  }
  return true;
}

/** RFC 3261 25.1 callid = word [ "@" word ] */
export function isCallId(s: string): boolean {
  if (s.length === 0) return false;
  let at = -1;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c === AT) {
      if (at >= 0 || i === 0 || i === s.length - 1) return false;
      at = i;
    } else if (c >= 128 || WORD[c] !== 1) return false;
  }
  return true;
}

function isWsp(c: number): boolean {
  return c === SP || c === HT;
}

function skipWs(s: string, i: number): number {
  const n = s.length;
  while (i < n) {
    const c = s.charCodeAt(i);
    if (c !== SP && c !== HT) break;
    i++;
  }
  return i;
}

/** trim SP / HT only (String.prototype.trim would also eat Unicode spaces that are data) */
export function trimLws(s: string): string {
  let a = 0;
  let b = s.length;
  while (a < b && isWsp(s.charCodeAt(a))) a++;
  while (b > a && isWsp(s.charCodeAt(b - 1))) b--;
  return a === 0 && b === s.length ? s : s.slice(a, b);
}

export function isDigits(s: string): boolean {
  if (s.length === 0) return false;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c < 48 || c > 57) return false;
  }
  return true;
}

export const MAX_UINT32 = 4294967295;

/**
 * 1*DIGIT with value <= max (RFC 3261 uses 2^32-1 for CSeq, delta-seconds, RSeq...). Leading zeros are legal
 * (RFC 4475 3.1.1.1 "0009"). Returns undefined for anything else, including overlarge numbers.
 */
export function parseBoundedInt(s: string, max: number = MAX_UINT32): number | undefined {
  if (!isDigits(s)) return undefined;
  let i = 0;
  while (i < s.length - 1 && s.charCodeAt(i) === 48) i++;
  if (s.length - i > 10) return undefined;
  const value = Number(s.slice(i));
  return value <= max ? value : undefined;
}

// ---------------------------------------------------------------------------------------------------------
// quoted strings (RFC 3261 25.1: quoted-string = SWS DQUOTE *(qdtext / quoted-pair ) DQUOTE)

/** index just past the closing quote of the quoted-string starting at s[i] === '"', or -1 when unterminated */
export function scanQuoted(s: string, i: number): number {
  const n = s.length;
  i++;
  while (i < n) {
    const c = s.charCodeAt(i);
    if (c === BACKSLASH) i += 2;
    else if (c === DQUOTE) return i + 1;
    else i++;
  }
  return -1;
}

/** contents of a quoted-string (with its quotes) with quoted-pairs resolved */
export function unquote(quoted: string): string {
  const inner = quoted.slice(1, -1);
  if (inner.indexOf('\\') < 0) return inner;
  let out = '';
  for (let i = 0; i < inner.length; i++) {
    const ch = inner[i];
    if (ch === '\\' && i + 1 < inner.length) {
      out += inner[i + 1];
      i++;
    } else out += ch;
  }
  return out;
}

/** quoted-string for any text: '"' and '\' and controls become quoted-pairs; CR and LF cannot be carried and are dropped */
export function quote(text: string): string {
  let out = '"';
  for (let i = 0; i < text.length; i++) {
    const ch = text[i];
    const c = text.charCodeAt(i);
    if (c === 13 || c === 10) continue;
    if (c === DQUOTE || c === BACKSLASH || (c < 32 && c !== HT) || c === 127) out += '\\' + ch;
    else out += ch;
  }
  return out + '"';
}

// ---------------------------------------------------------------------------------------------------------
// generic parameters

/** value of the first parameter with that (lower-case) name: string, null for a valueless one, undefined if absent */
export function getParam(params: Params, name: string): string | null | undefined {
  for (const [n, v] of params) if (n === name) return v;
  return undefined;
}

function formatParams(params: Params): string {
  let out = '';
  for (const [name, value] of params) out += value === null ? `;${name}` : `;${name}=${value}`;
  return out;
}

/**
 * *( SEMI generic-param ) with SEMI = SWS ";" SWS and EQUAL = SWS "=" SWS (RFC 3261 25.1, 20.10, 20.42), from
 * index i to the end of s. Names are lower-cased, values kept (quoted-strings with their quotes).
 */
export function parseHeaderParams(s: string, i: number): Params | null {
  const params: Params = [];
  const n = s.length;
  for (;;) {
    i = skipWs(s, i);
    if (i >= n) return params;
    if (s.charCodeAt(i) !== SEMI) return null;
    i = skipWs(s, i + 1);
    const nameStart = i;
    while (i < n && isTokenChar(s.charCodeAt(i))) i++;
    if (i === nameStart) return null;
    const name = s.slice(nameStart, i).toLowerCase();
    i = skipWs(s, i);
    if (i < n && s.charCodeAt(i) === EQUAL) {
      i = skipWs(s, i + 1);
      if (i < n && s.charCodeAt(i) === DQUOTE) {
        const end = scanQuoted(s, i);
        if (end < 0) return null;
        params.push([name, s.slice(i, end)]);
        i = end;
      } else {
        const valueStart = i;
        while (i < n) {
          const c = s.charCodeAt(i);
          if (c >= 128 || PARAM_VALUE[c] !== 1) break;
          i++;
        }
        if (i === valueStart) return null;
        params.push([name, s.slice(valueStart, i)]);
      }
    } else {
      params.push([name, null]);
    }
  }
}

// ---------------------------------------------------------------------------------------------------------
// header names (RFC 3261 7.3.3 compact forms, 20 header fields, and the common extensions)

const KNOWN_HEADER_NAMES = [
  'Accept', 'Accept-Contact', 'Accept-Encoding', 'Accept-Language', 'Accept-Resource-Priority', 'Alert-Info',
  'Allow', 'Allow-Events', 'Answer-Mode', 'Authentication-Info', 'Authorization', 'Call-ID', 'Call-Info',
  'Contact', 'Content-Disposition', 'Content-Encoding', 'Content-ID', 'Content-Language', 'Content-Length',
  'Content-Transfer-Encoding', 'Content-Type', 'CSeq', 'Date', 'Diversion', 'Error-Info', 'Event', 'Expires',
  'Flow-Timer', 'From', 'Geolocation', 'History-Info', 'Identity', 'Identity-Info', 'In-Reply-To', 'Info-Package',
  'Join', 'Max-Breadth', 'Max-Forwards', 'MIME-Version', 'Min-Expires', 'Min-SE', 'Organization',
  'P-Access-Network-Info', 'P-Asserted-Identity', 'P-Associated-URI', 'P-Called-Party-ID',
  'P-Charging-Function-Addresses', 'P-Charging-Vector', 'P-Early-Media', 'P-Preferred-Identity',
  'P-Visited-Network-ID', 'Path', 'Priority', 'Privacy', 'Proxy-Authenticate', 'Proxy-Authorization',
  'Proxy-Require', 'RAck', 'Reason', 'Record-Route', 'Recv-Info', 'Refer-Sub', 'Refer-To', 'Referred-By',
  'Reject-Contact', 'Remote-Party-ID', 'Replaces', 'Reply-To', 'Request-Disposition', 'Require',
  'Resource-Priority', 'Retry-After', 'Route', 'RSeq', 'Security-Client', 'Security-Server', 'Security-Verify',
  'Server', 'Service-Route', 'Session-Expires', 'Session-ID', 'SIP-ETag', 'SIP-If-Match', 'Subject',
  'Subscription-State', 'Supported', 'Target-Dialog', 'Timestamp', 'To', 'Unsupported', 'User-Agent',
  'User-to-User', 'Via', 'Warning', 'WWW-Authenticate',
];

/** RFC 3261 7.3.3 and the IANA SIP parameters registry */
const COMPACT_FORMS: Record<string, string> = {
  a: 'Accept-Contact', b: 'Referred-By', c: 'Content-Type', d: 'Request-Disposition', e: 'Content-Encoding',
  f: 'From', i: 'Call-ID', j: 'Reject-Contact', k: 'Supported', l: 'Content-Length', m: 'Contact',
  n: 'Identity-Info', o: 'Event', r: 'Refer-To', s: 'Subject', t: 'To', u: 'Allow-Events', v: 'Via',
  x: 'Session-Expires', y: 'Identity',
};

const CANONICAL_BY_SPELLING = new Map<string, string>();
for (const name of KNOWN_HEADER_NAMES) {
  CANONICAL_BY_SPELLING.set(name, name);
  CANONICAL_BY_SPELLING.set(name.toLowerCase(), name);
}
for (const [compact, name] of Object.entries(COMPACT_FORMS)) {
  CANONICAL_BY_SPELLING.set(compact, name);
  CANONICAL_BY_SPELLING.set(compact.toUpperCase(), name);
}

/** canonical names by length, to recognise the usual spelling inside a larger text without slicing it */
const CANONICAL_BY_LENGTH: string[][] = [];
for (const name of KNOWN_HEADER_NAMES) (CANONICAL_BY_LENGTH[name.length] ??= []).push(name);

/**
 * The canonical name when text[start, end) is exactly a known name in its canonical spelling (the common case on
 * the wire), else undefined: lets the parser skip slicing and hashing the name.
 */
export function canonicalNameAt(text: string, start: number, end: number): string | undefined {
  const candidates = CANONICAL_BY_LENGTH[end - start];
  if (candidates === undefined) return undefined;
  for (const name of candidates) if (text.startsWith(name, start)) return name;
  return undefined;
}

/** "v" -> "Via", "call-id" -> "Call-ID", unknown -> as given */
export function canonicalHeaderName(name: string): string {
  return CANONICAL_BY_SPELLING.get(name) ?? CANONICAL_BY_SPELLING.get(name.toLowerCase()) ?? name;
}

/** true for the header names RFC 3261 (and the extensions above) define */
export function isKnownHeaderName(name: string): boolean {
  return CANONICAL_BY_SPELLING.has(name) || CANONICAL_BY_SPELLING.has(name.toLowerCase());
}

/**
 * Headers whose grammar is `value *(COMMA value)` (RFC 3261 7.3.1): split into one entry per value on parse.
 * Deliberately absent: WWW-Authenticate, Authorization, Proxy-Authenticate, Proxy-Authorization,
 * Authentication-Info (commas inside the challenge), Date, Retry-After, Expires, User-Agent, Server, Subject...
 */
export const LIST_HEADERS: ReadonlySet<string> = new Set([
  'Accept', 'Accept-Contact', 'Accept-Encoding', 'Accept-Language', 'Accept-Resource-Priority', 'Alert-Info',
  'Allow', 'Allow-Events', 'Call-Info', 'Contact', 'Content-Encoding', 'Content-Language', 'Diversion',
  'Error-Info', 'History-Info', 'In-Reply-To', 'P-Asserted-Identity', 'P-Associated-URI', 'P-Early-Media',
  'P-Preferred-Identity', 'P-Visited-Network-ID', 'Path', 'Proxy-Require', 'Reason', 'Record-Route',
  'Recv-Info', 'Reject-Contact', 'Remote-Party-ID', 'Request-Disposition', 'Require', 'Resource-Priority',
  'Route', 'Security-Client', 'Security-Server', 'Security-Verify', 'Service-Route', 'Supported',
  'Unsupported', 'Via', 'Warning',
]);

/**
 * List headers where an empty element makes the message malformed (RFC 4475 3.1.2.1 badinv01). In the other
 * list headers (option tags, media ranges...) empty elements are dropped.
 */
export const STRICT_LIST_HEADERS: ReadonlySet<string> = new Set([
  'Via', 'Contact', 'Route', 'Record-Route', 'Path', 'Service-Route', 'P-Asserted-Identity',
  'P-Preferred-Identity', 'P-Associated-URI', 'History-Info', 'Diversion', 'Remote-Party-ID',
]);

/**
 * Split a header value on top-level commas (not inside quoted strings, <>, or after a backslash escape).
 * Elements are LWS-trimmed; empty elements are kept as '' so the caller can reject them.
 */
export function splitHeaderValues(s: string): string[] {
  if (s.indexOf(',') < 0) return [trimLws(s)];
  const out: string[] = [];
  if (s.indexOf('"') < 0 && s.indexOf('<') < 0) {
    // nothing can hide a comma (option tags, methods, media ranges, plain Via lists): one slice per element
    let start = 0;
    for (;;) {
      const comma = s.indexOf(',', start);
      let a = start;
      let b = comma < 0 ? s.length : comma;
      while (a < b && isWsp(s.charCodeAt(a))) a++;
      while (b > a && isWsp(s.charCodeAt(b - 1))) b--;
      out.push(s.slice(a, b));
      if (comma < 0) return out;
      start = comma + 1;
    }
  }
  const n = s.length;
  let start = 0;
  let inAngle = false;
  for (let i = 0; i < n; i++) {
    const c = s.charCodeAt(i);
    if (c === DQUOTE) {
      const end = scanQuoted(s, i);
      if (end < 0) break;           // unterminated: the rest is one element (and will fail its own grammar)
      i = end - 1;
    } else if (c === LAQUOT) inAngle = true;
    else if (c === RAQUOT) inAngle = false;
    else if (c === 44 /* , */ && !inAngle) {
      out.push(trimLws(s.slice(start, i)));
      start = i + 1;
    }
  }
  out.push(trimLws(s.slice(start)));
  return out;
}

// ---------------------------------------------------------------------------------------------------------
// hosts and ports

/** host = hostname / IPv4address / IPv6reference (RFC 3261 25.1); returns the end index or -1 */
function scanHost(s: string, i: number, end: number): number {
  if (i < end && s.charCodeAt(i) === LBRACKET) {
    const close = s.indexOf(']', i);
    if (close < 0 || close >= end || close === i + 1) return -1;
    for (let k = i + 1; k < close; k++) {
      const c = s.charCodeAt(k);
      if (c >= 128 || IPV6[c] !== 1) return -1;
    }
    return close + 1;
  }
  const start = i;
  while (i < end) {
    const c = s.charCodeAt(i);
    if (c >= 128 || HOST[c] !== 1) break;
    i++;
  }
  return i === start ? -1 : i;
}

function parsePort(s: string): number | undefined {
  if (s.length === 0 || s.length > 5 || !isDigits(s)) return undefined;
  const port = Number(s);
  return port <= 65535 ? port : undefined;
}

function formatHostPort(host: string, port: number | undefined): string {
  return port === undefined ? host : `${host}:${port}`;
}

// ---------------------------------------------------------------------------------------------------------
// URIs (RFC 3261 19.1, 25.1; RFC 3966 tel)

/** characters never allowed raw inside a URI: controls, SP, DEL, < > " */
function hasForbiddenUriChar(s: string): boolean {
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c <= SP || c === 127 || c === LAQUOT || c === RAQUOT || c === DQUOTE) return true;
  }
  return false;
}

export function parseUri(s: string): SipUri | null {
  const colon = s.indexOf(':');
  if (colon <= 0) return null;
  for (let i = 0; i < colon; i++) {
    const c = s.charCodeAt(i);
    if (c >= 128 || SCHEME[c] !== 1) return null;
  }
  const first = s.charCodeAt(0) | 0x20;
  if (first < 97 || first > 122) return null;
  if (hasForbiddenUriChar(s)) return null;
  const scheme = s.slice(0, colon).toLowerCase();
  if (scheme === 'sip' || scheme === 'sips') return parseSipUri(scheme, s, colon + 1);
  const rest = s.slice(colon + 1);
  if (rest.length === 0) return null;
  if (scheme === 'tel') {
    // RFC 3966: telephone-subscriber *( ";" param )
    const semi = rest.indexOf(';');
    const number = semi < 0 ? rest : rest.slice(0, semi);
    if (number.length === 0) return null;
    const params = semi < 0 ? [] : parseUriParams(rest, semi, rest.length);
    if (params === null) return null;
    return { scheme, user: number, host: '', params, headers: [] };
  }
  return { scheme, host: '', params: [], headers: [], opaque: rest };
}

/** sip:[user[:password]@]host[:port][;params][?headers] (RFC 3261 19.1.1) */
function parseSipUri(scheme: string, s: string, i: number): SipUri | null {
  const n = s.length;
  const uri: SipUri = { scheme, host: '', params: [], headers: [] };
  const at = s.indexOf('@', i);
  if (at >= 0) {
    // userinfo may hold ';', '?', ',' (RFC 4475 3.1.1.9 semiuri, 3.1.1.2 intmeth); '@' only as the separator
    const colon = s.indexOf(':', i);
    if (colon >= 0 && colon < at) {
      uri.user = s.slice(i, colon);
      uri.password = s.slice(colon + 1, at);
    } else {
      uri.user = s.slice(i, at);
    }
    if (uri.user.length === 0) return null;
    i = at + 1;
  }
  let end = i;
  while (end < n) {
    const c = s.charCodeAt(end);
    if (c === SEMI || c === QUESTION) break;
    end++;
  }
  // hostport = host [ ":" port ]
  const hostEnd = scanHost(s, i, end);
  if (hostEnd < 0) return null;
  uri.host = s.slice(i, hostEnd);
  if (hostEnd < end) {
    if (s.charCodeAt(hostEnd) !== COLON) return null;
    const port = parsePort(s.slice(hostEnd + 1, end));
    if (port === undefined) return null;
    uri.port = port;
  }
  i = end;
  if (i < n && s.charCodeAt(i) === SEMI) {
    let q = s.indexOf('?', i);
    if (q < 0) q = n;
    const params = parseUriParams(s, i, q);
    if (params === null) return null;
    uri.params = params;
    i = q;
  }
  if (i < n) {
    // headers = "?" header *( "&" header ), header = hname "=" hvalue
    const headers: Array<[string, string]> = [];
    let k = i + 1;
    while (k <= n) {
      let amp = s.indexOf('&', k);
      if (amp < 0) amp = n;
      const part = s.slice(k, amp);
      const eq = part.indexOf('=');
      if (eq <= 0) return null;
      headers.push([part.slice(0, eq), part.slice(eq + 1)]);
      k = amp + 1;
    }
    uri.headers = headers;
  }
  return uri;
}

/** ;name[=value] from s[i] === ';' up to `end`, no LWS allowed inside a URI */
function parseUriParams(s: string, i: number, end: number): Params | null {
  const params: Params = [];
  while (i < end) {
    let next = s.indexOf(';', i + 1);
    if (next < 0 || next > end) next = end;
    const part = s.slice(i + 1, next);
    const eq = part.indexOf('=');
    const name = eq < 0 ? part : part.slice(0, eq);
    if (name.length === 0) return null;
    params.push([name.toLowerCase(), eq < 0 ? null : part.slice(eq + 1)]);
    i = next;
  }
  return params;
}

export function formatUri(u: SipUri): string {
  if (u.opaque !== undefined) return `${u.scheme}:${u.opaque}`;
  if (u.scheme === 'tel') return `tel:${u.user ?? ''}${formatParams(u.params)}`;
  let out = `${u.scheme}:`;
  if (u.user !== undefined && u.user !== '') {
    out += u.password !== undefined ? `${u.user}:${u.password}@` : `${u.user}@`;
  }
  out += formatHostPort(u.host, u.port);
  out += formatParams(u.params);
  if (u.headers.length > 0) out += '?' + u.headers.map(([name, value]) => `${name}=${value}`).join('&');
  return out;
}

// ---------------------------------------------------------------------------------------------------------
// name-addr / addr-spec (RFC 3261 20.10, 25.1: From, To, Contact, Route, Record-Route, Reply-To...)

function isDisplayNameChar(c: number): boolean {
  // display-name = *(token LWS) / quoted-string; non-ASCII accepted liberally (seen from real UAs)
  return c >= 128 || c === SP || c === HT || TOKEN[c] === 1;
}

/**
 * name-addr ( [ display-name ] LAQUOT addr-spec RAQUOT ) or addr-spec, followed by header params.
 * In the addr-spec form the URI ends at the first ';' or LWS, and what follows are header parameters
 * (RFC 3261 20.10); such a URI may not contain ',', '?' or ';' (RFC 4475 3.1.2.13 regbadct).
 */
export function parseNameAddr(s: string): NameAddr | null {
  const n = s.length;
  let i = skipWs(s, 0);
  if (i >= n) return null;
  let displayName: string | undefined;
  let rawUri: string;
  if (s.charCodeAt(i) === DQUOTE) {
    const end = scanQuoted(s, i);
    if (end < 0) return null;                      // RFC 4475 3.1.2.6 quotbal
    displayName = unquote(s.slice(i, end));
    i = skipWs(s, end);
    if (i >= n || s.charCodeAt(i) !== LAQUOT) return null;
  } else {
    // an unquoted display-name is *(token LWS); a char outside it either opens the URI ('<') or means the
    // value is an addr-spec (e.g. ':' of "sip:"), whose own grammar then decides (3.1.2.15 baddn fails there)
    let k = i;
    while (k < n && isDisplayNameChar(s.charCodeAt(k))) k++;
    if (k < n && s.charCodeAt(k) === LAQUOT) {
      const name = trimLws(s.slice(i, k));
      if (name.length > 0) displayName = name.replace(/[ \t]+/g, ' ');
      i = k;                                         // no LWS needed before '<' (3.1.1.6 lwsdisp)
    }
  }
  let paramsStart: number;
  if (i < n && s.charCodeAt(i) === LAQUOT) {
    const gt = s.indexOf('>', i + 1);
    if (gt < 0) return null;
    rawUri = s.slice(i + 1, gt);                     // no LWS allowed inside (3.1.2.14 badaspec)
    paramsStart = gt + 1;
  } else {
    let k = i;
    while (k < n) {
      const c = s.charCodeAt(k);
      if (c === SEMI || c === SP || c === HT) break;
      if (c === 44 || c === QUESTION) return null;
      k++;
    }
    rawUri = s.slice(i, k);
    paramsStart = k;
  }
  const uri = parseUri(rawUri);
  if (uri === null) return null;
  const params = parseHeaderParams(s, paramsStart);
  if (params === null) return null;
  const result: NameAddr = { uri, rawUri, params };
  if (displayName !== undefined) result.displayName = displayName;
  return result;
}

export function formatNameAddr(n: NameAddr): string {
  const uri = `<${formatUri(n.uri)}>`;
  const head = n.displayName !== undefined && n.displayName !== '' ? `${quote(n.displayName)} ${uri}` : uri;
  return head + formatParams(n.params);
}

// ---------------------------------------------------------------------------------------------------------
// Via (RFC 3261 20.42, 25.1: via-parm = sent-protocol LWS sent-by *( SEMI via-params ))

function scanToken(s: string, i: number): number {
  const n = s.length;
  while (i < n && isTokenChar(s.charCodeAt(i))) i++;
  return i;
}

export function parseVia(s: string): Via | null {
  const n = s.length;
  // sent-protocol = protocol-name SLASH protocol-version SLASH transport, SLASH = SWS "/" SWS
  let i = skipWs(s, 0);
  let end = scanToken(s, i);
  if (end === i) return null;
  const protocolName = s.slice(i, end);
  i = skipWs(s, end);
  if (i >= n || s.charCodeAt(i) !== SLASH) return null;
  i = skipWs(s, i + 1);
  end = scanToken(s, i);
  if (end === i) return null;
  const protocolVersion = s.slice(i, end);
  i = skipWs(s, end);
  if (i >= n || s.charCodeAt(i) !== SLASH) return null;
  i = skipWs(s, i + 1);
  end = scanToken(s, i);
  if (end === i) return null;
  const transport = s.slice(i, end).toUpperCase();
  i = skipWs(s, end);
  if (i === end) return null;                        // LWS required before sent-by
  // sent-by = host [ COLON port ]
  const hostEnd = scanHost(s, i, n);
  if (hostEnd < 0) return null;
  const host = s.slice(i, hostEnd);
  const via: Via = { protocol: `${protocolName.toUpperCase()}/${protocolVersion}`, transport, host, params: [] };
  i = skipWs(s, hostEnd);
  if (i < n && s.charCodeAt(i) === COLON) {
    i = skipWs(s, i + 1);
    let k = i;
    while (k < n && s.charCodeAt(k) >= 48 && s.charCodeAt(k) <= 57) k++;
    const port = parsePort(s.slice(i, k));
    if (port === undefined) return null;
    via.port = port;
    i = k;
  }
  const params = parseHeaderParams(s, i);
  if (params === null) return null;
  via.params = params;
  return via;
}

export function formatVia(v: Via): string {
  return `${v.protocol}/${v.transport} ${formatHostPort(v.host, v.port)}${formatParams(v.params)}`;
}

// ---------------------------------------------------------------------------------------------------------
// CSeq (RFC 3261 20.16: CSeq = 1*DIGIT LWS Method, number < 2^31 for new requests, < 2^32 accepted)

export function parseCSeq(s: string): { seq: number; method: string } | null {
  const n = s.length;
  let i = skipWs(s, 0);
  const digitsStart = i;
  while (i < n && s.charCodeAt(i) >= 48 && s.charCodeAt(i) <= 57) i++;
  if (i === digitsStart) return null;
  const seq = parseBoundedInt(s.slice(digitsStart, i));
  if (seq === undefined) return null;
  const methodStart = skipWs(s, i);
  if (methodStart === i) return null;
  const methodEnd = scanToken(s, methodStart);
  if (methodEnd === methodStart || skipWs(s, methodEnd) !== n) return null;
  return { seq, method: s.slice(methodStart, methodEnd) };
}

// ---------------------------------------------------------------------------------------------------------
// small scalar grammars used by the parser's validation

const DAYS = new Set(['Mon', 'Tue', 'Wed', 'Thu', 'Fri', 'Sat', 'Sun']);
const MONTHS = new Set(['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec']);

/** RFC 3261 20.17: Date = rfc1123-date, always "GMT" (RFC 4475 3.1.2.12 baddate) */
export function isSipDate(s: string): boolean {
  // "Sat, 13 Nov 2010 23:29:00 GMT"
  const m = /^([A-Z][a-z]{2}), (\d{2}) ([A-Z][a-z]{2}) (\d{4}) (\d{2}):(\d{2}):(\d{2}) GMT$/.exec(s);
  return m !== null && DAYS.has(m[1]) && MONTHS.has(m[3]);
}

