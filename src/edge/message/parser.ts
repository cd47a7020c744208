/**
 * SIP message parsing (RFC 3261 7, 7.3, 7.5, 18.3, 25) for datagrams and byte streams.
 *
 * The header section is located in the Buffer (so body offsets are byte offsets), decoded once as UTF-8, and cut
 * into lines with indexOf; header values are stored as text and only the headers the transaction layer always needs
 * (Via, From, To, Call-ID, CSeq, Max-Forwards, Content-Length...) are validated eagerly. Nothing here throws on
 * input: every failure is an error result.
 */
import {
  LIST_HEADERS, MAX_UINT32, STRICT_LIST_HEADERS, canonicalHeaderName, canonicalNameAt, isCallId, isDigits, isSipDate,
  isTokenChar, parseBoundedInt, parseCSeq, parseNameAddr, parseUri, splitHeaderValues, trimLws,
  getParam, isToken,
} from './grammar.js';
import { SipMessage } from './sip-message.js';

export interface ParseLimits {
  maxMessageBytes: number;   // whole message incl. body
  maxHeaderCount: number;    // header entries (after splitting comma-separated lists)
  maxLineLength: number;     // one (unfolded) header line or start line
}
export const DEFAULT_PARSE_LIMITS: ParseLimits = { maxMessageBytes: 65535, maxHeaderCount: 128, maxLineLength: 8192 };

export interface ParseOptions {
  /**
   * RFC 3261 8.1.1 / 8.2.2: a message lacking Via, From, To, Call-ID or CSeq is malformed (default true).
   * The drachtio controller turns this off for the skeletal messages an app sends, which the edge completes.
   */
  requireMandatoryHeaders?: boolean;
}

/**
 * ok: a well-formed message (bytes after the declared Content-Length in a datagram are ignored, RFC 3261 18.3)
 * error: the reason; `status` is what a UAS answers to a malformed *request* (400, 505, 513) when the start line
 *        looked like a request; `message` then holds whatever could be recovered (Via, From, To, Call-ID, CSeq...)
 *        to build that response. Malformed responses carry neither and are dropped.
 */
export type ParseResult =
  /** raw: the message's bytes as received, when the parser has them in one piece (stream framing) */
  | { ok: true; message: SipMessage; raw?: Buffer; verbatim?: VerbatimRequest }
  | { ok: false; error: string; status?: number; message?: SipMessage };

/**
 * A request whose received bytes are byte for byte what serialise() writes for the parsed message (CRLF lines,
 * canonical header names, `Name: value`, no folding, no comma lists, one Content-Length equal to the body): the edge
 * can pass those bytes on instead of re-serialising, splicing in only the top Via value, which the transport
 * edits after parsing (received / rport, RFC 3261 18.2.1, RFC 3581 4). See verbatimBytes().
 */
export interface VerbatimRequest {
  /** the message as received, start line to end of body (no leading CRLFs, nothing after Content-Length) */
  bytes: Buffer;
  /** message.headers.length at parse time: any header added or removed since disables the splice */
  headerCount: number;
  /** index in message.headers of the top Via and its value's byte range in `bytes` (head is ASCII: chars = bytes) */
  topViaIndex: number;
  topViaStart: number;
  topViaEnd: number;
}

/**
 * The wire bytes of `message` from its verbatim bytes with the current top Via value spliced in, or undefined when
 * the message no longer matches the layout (then use message.serialise()). Only the top Via may have been edited.
 * The bytes around the Via are passed on as received, never decoded.
 */
export function verbatimBytes(message: SipMessage, verbatim: VerbatimRequest): Buffer | undefined {
  const headers = message.headers;
  if (headers.length !== verbatim.headerCount || message.body.length > verbatim.bytes.length) return undefined;
  const via = headers[verbatim.topViaIndex];
  if (via === undefined || via.name !== 'Via' || via.value.indexOf('\r') >= 0 || via.value.indexOf('\n') >= 0) return undefined;
  const { bytes, topViaStart, topViaEnd } = verbatim;
  return Buffer.concat([bytes.subarray(0, topViaStart), Buffer.from(via.value, 'utf8'), bytes.subarray(topViaEnd)]);
}

const CR = 13, LF = 10, SP = 32, HT = 9;
const CRLFCRLF = Buffer.from('\r\n\r\n');
const LFLF = Buffer.from('\n\n');

function withDefaults(limits: Partial<ParseLimits> | undefined): ParseLimits {
  return limits === undefined ? DEFAULT_PARSE_LIMITS : { ...DEFAULT_PARSE_LIMITS, ...limits };
}

/** what the Content-Length header(s) of a header section say (RFC 3261 20.14) */
type ContentLength =
  | { kind: 'absent' }
  | { kind: 'ok'; value: number }
  | { kind: 'invalid'; reason: string };

/** a parsed start line + header section, before the body is attached and the message validated */
interface Head {
  message: SipMessage;
  /** the start line was a request line (well-formed or not): errors get a status and the partial message */
  looksLikeRequest: boolean;
  /** first syntax error found, if any */
  error?: string;
  status?: number;
  contentLength: ContentLength;
  lengthCount: number;
  lengthValue?: string;
  /** so far the head text is exactly what serialise() would write (see VerbatimRequest) */
  verbatim: boolean;
  /** top Via: header index and its value's char range in the head text */
  topViaIndex: number;
  topViaStart: number;
  topViaEnd: number;
  /** chars in the head text (equal to its byte length when it is all ASCII) */
  textLength: number;
}

/** byte offsets of the end of the header section: text is [start, headStop), the body starts at bodyStart */
interface HeadBounds {
  headStop: number;
  bodyStart: number;
}

/** RFC 3261 7.5 / 7.3.1: the header section ends at the first empty line (CRLF CRLF; bare LF accepted) */
function findHeadEnd(buf: Buffer, from: number, end: number): HeadBounds | null {
  const view = end === buf.length ? buf : buf.subarray(0, end);
  const crlf = view.indexOf(CRLFCRLF, from);
  // a sender whose first line ends in CRLF uses CRLF throughout: skip the bare-LF search (hot path)
  const firstLf = view.indexOf(LF, from);
  if (crlf >= 0 && firstLf > 0 && view[firstLf - 1] === CR) return { headStop: crlf + 2, bodyStart: crlf + 4 };
  const lf = view.indexOf(LFLF, from);
  if (lf >= 0 && (crlf < 0 || lf < crlf)) return { headStop: lf + 1, bodyStart: lf + 2 };
  if (crlf >= 0) return { headStop: crlf + 2, bodyStart: crlf + 4 };
  return null;
}

function skipLeadingLineBreaks(buf: Buffer, i: number, end: number): number {
  while (i < end && (buf[i] === CR || buf[i] === LF)) i++;
  return i;
}

// ---------------------------------------------------------------------------------------------------------
// start line and header section

const SIP_VERSION = /^SIP\/(\d+)\.(\d+)$/i;

/** Request-Line = Method SP Request-URI SP SIP-Version (RFC 3261 7.1, 25.1), single SPs, no LWS in the URI */
function parseRequestLine(line: string, head: Head): void {
  const msg = head.message;
  const sp1 = line.indexOf(' ');
  const firstToken = sp1 < 0 ? line : line.slice(0, sp1);
  const parts = line.split(' ');
  // answerable with a 400/505 when it has a method-like start or a SIP version at the end
  if (isToken(firstToken) || (parts.length > 1 && SIP_VERSION.test(parts[parts.length - 1]))) {
    msg.method = firstToken;
    head.looksLikeRequest = true;
  }
  if (parts.length !== 3 || parts[1].length === 0) {
    // RFC 4475 3.1.2.8 lwsruri, 3.1.2.9 lwsstart, 3.1.2.10 trws
    if (parts.length > 1) msg.requestUri = parts[1];
    head.error = 'malformed request line';
    return;
  }
  const [method, requestUri, version] = parts;
  msg.requestUri = requestUri;
  if (!isToken(method)) {
    head.error = 'malformed method';
    return;
  }
  const v = version === 'SIP/2.0' ? null : SIP_VERSION.exec(version);
  if (version !== 'SIP/2.0' && v === null) {
    head.error = 'malformed SIP version';
    return;
  }
  if (v !== null && (Number(v[1]) !== 2 || Number(v[2]) !== 0)) {
    head.error = `unsupported SIP version`;       // RFC 3261 21.5.6 (RFC 4475 3.1.2.16 badvers)
    head.status = 505;
    return;
  }
  const requestUriError = checkRequestUri(requestUri);
  if (requestUriError !== undefined) head.error = requestUriError;
}

/** RFC 3261 19.1.5 / 25.1: Request-URI = SIP-URI / SIPS-URI / absoluteURI, without <> and without headers */
function checkRequestUri(requestUri: string): string | undefined {
  if (requestUri.charCodeAt(0) === 60 /* < */) return 'Request-URI enclosed in <>';   // 3.1.2.7 ltgtruri
  const uri = parseUri(requestUri);
  if (uri === null) return 'malformed Request-URI';
  if (uri.headers.length > 0) return 'headers in Request-URI';                          // 3.1.2.11 escruri
  return undefined;
}

/** Status-Line = SIP-Version SP Status-Code SP Reason-Phrase (RFC 3261 7.2), 100 <= code <= 699 */
function parseStatusLine(line: string, head: Head): void {
  const msg = head.message;
  const sp1 = line.indexOf(' ');
  const version = sp1 < 0 ? line : line.slice(0, sp1);
  const v = version === 'SIP/2.0' ? null : SIP_VERSION.exec(version);
  if (version !== 'SIP/2.0' && (v === null || Number(v[1]) !== 2 || Number(v[2]) !== 0)) {
    head.error = 'unsupported SIP version in status line';
    return;
  }
  const codeText = line.slice(sp1 + 1, sp1 + 4);
  const after = line.charCodeAt(sp1 + 4);
  if (sp1 < 0 || codeText.length !== 3 || !isDigits(codeText) || (sp1 + 4 < line.length && after !== SP)) {
    head.error = 'malformed status code';                                              // 3.1.2.19 bigcode
    return;
  }
  const code = Number(codeText);
  if (code < 100 || code > 699) {
    head.error = 'status code out of range';
    return;
  }
  msg.status = code;
  msg.reason = sp1 + 5 <= line.length ? line.slice(sp1 + 5) : '';
}

function recordError(head: Head, error: string): void {
  if (head.error === undefined) head.error = error;
}

/**
 * Parse the start line and header section (`text` = everything up to and including the last header line's line
 * break). Continues past bad header lines so a partial message is available for a stateless 400.
 */
function parseHead(text: string, limits: ParseLimits): Head {
  const msg = new SipMessage();
  const head: Head = {
    message: msg, looksLikeRequest: false, contentLength: { kind: 'absent' }, lengthCount: 0,
    verbatim: false, topViaIndex: -1, topViaStart: 0, topViaEnd: 0, textLength: text.length,
  };
  const n = text.length;
  let nl = text.indexOf('\n');
  if (nl < 0) nl = n;
  const startLine = text.slice(0, nl > 0 && text.charCodeAt(nl - 1) === CR ? nl - 1 : nl);
  if (startLine.length > limits.maxLineLength) {
    head.error = 'start line too long';
    return head;
  }
  const c0 = startLine.charCodeAt(0) | 0x20, c1 = startLine.charCodeAt(1) | 0x20, c2 = startLine.charCodeAt(2) | 0x20;
  if (c0 === 115 && c1 === 105 && c2 === 112 && startLine.charCodeAt(3) === 47 /* "SIP/" */) parseStatusLine(startLine, head);
  else parseRequestLine(startLine, head);
  // serialise() writes `method SP uri SP SIP/2.0` CRLF: verbatim only when that is what was received
  head.verbatim = msg.method !== undefined && nl < n && startLine.length === nl - 1 && startLine.endsWith(' SIP/2.0');

  let pos = nl + 1;
  while (pos < n) {
    nl = text.indexOf('\n', pos);
    if (nl < 0) nl = n;
    const lineEnd = nl > pos && text.charCodeAt(nl - 1) === CR ? nl - 1 : nl;
    const first = text.charCodeAt(pos);
    if (lineEnd === pos) {
      pos = nl + 1;
      continue;
    }
    if (first === SP || first === HT) {
      recordError(head, 'continuation line without a header');
      pos = nl + 1;
      continue;
    }
    const colon = text.indexOf(':', pos);
    if (colon < 0 || colon >= lineEnd) {
      recordError(head, 'header line without a colon');
      pos = nl + 1;
      continue;
    }
    // header-name HCOLON, HCOLON = *( SP / HTAB ) ":" SWS
    let nameEnd = colon;
    while (nameEnd > pos && isWsp(text.charCodeAt(nameEnd - 1))) nameEnd--;
    let validName = nameEnd > pos;
    for (let k = pos; k < nameEnd && validName; k++) validName = isTokenChar(text.charCodeAt(k));
    let name = canonicalNameAt(text, pos, nameEnd);
    if (name === undefined) {
      const spelled = text.slice(pos, nameEnd);
      name = canonicalHeaderName(spelled);
      if (name !== spelled) head.verbatim = false;
    }
    let value = text.slice(colon + 1, lineEnd);
    // verbatim: `Name: value` CRLF, one SP after the colon, no other surrounding LWS (checked on the trimmed value)
    const lineVerbatim = head.verbatim && nameEnd === colon && lineEnd === nl - 1 && text.charCodeAt(colon + 1) === SP;
    const valueStart = colon + 2;
    pos = nl + 1;
    let folded = false;
    // RFC 3261 7.3.1: a line starting with SP/HT continues the header; the whole fold becomes one SP
    let tooLong = false;
    while (pos < n) {
      const c = text.charCodeAt(pos);
      if (c !== SP && c !== HT) break;
      nl = text.indexOf('\n', pos);
      if (nl < 0) nl = n;
      const end = nl > pos && text.charCodeAt(nl - 1) === CR ? nl - 1 : nl;
      value = trimEndLws(value) + ' ' + trimLws(text.slice(pos, end));
      folded = true;
      pos = nl + 1;
      if (value.length > limits.maxLineLength) {
        tooLong = true;
        break;
      }
    }
    if (!validName) {
      recordError(head, 'malformed header name');
      continue;
    }
    if (tooLong || name.length + value.length + 2 > limits.maxLineLength) {
      recordError(head, 'header line too long');
      break;
    }
    const countBefore = head.message.headers.length;
    if (!addHeader(head, name, value, limits)) break;
    if (head.verbatim) {
      const added = head.message.headers.length - countBefore;
      const stored = added === 1 ? head.message.headers[countBefore].value : undefined;
      if (!lineVerbatim || folded || stored === undefined || stored.length !== lineEnd - valueStart) head.verbatim = false;
      else if (name === 'Via' && head.topViaIndex < 0) {
        head.topViaIndex = countBefore;
        head.topViaStart = valueStart;
        head.topViaEnd = lineEnd;
      }
    }
  }

  const lengthCount = head.lengthCount, lengthValue = head.lengthValue;
  if (lengthCount > 1) head.contentLength = { kind: 'invalid', reason: 'multiple Content-Length values' };  // 3.3.9 mcl01
  else if (lengthValue !== undefined) {
    const value = parseBoundedInt(lengthValue, MAX_UINT32);
    head.contentLength = value === undefined
      ? { kind: 'invalid', reason: 'malformed Content-Length' }                          // 3.1.2.3 ncl
      : { kind: 'ok', value };
  }
  return head;
}

/** store one header line (name already canonical): trimmed value, comma lists split (RFC 3261 7.3.1); false to stop */
function addHeader(head: Head, name: string, value: string, limits: ParseLimits): boolean {
  const headers = head.message.headers;
  const canonical = name;
  const trimmed = trimLws(value);
  if (canonical === 'Content-Length') {
    head.lengthCount++;
    head.lengthValue = trimmed;
  }
  if (trimmed.indexOf(',') >= 0 && LIST_HEADERS.has(canonical)) {
    const strict = STRICT_LIST_HEADERS.has(canonical);
    for (const element of splitHeaderValues(trimmed)) {
      if (element.length === 0) {
        if (strict) recordError(head, `empty element in ${canonical}`);  // 3.1.2.1 badinv01
        continue;
      }
      headers.push({ name: canonical, value: element });
    }
  } else {
    headers.push({ name: canonical, value: trimmed });
  }
  if (headers.length > limits.maxHeaderCount) {
    recordError(head, 'too many headers');
    return false;
  }
  return true;
}

function isWsp(c: number): boolean {
  return c === SP || c === HT;
}

function trimEndLws(s: string): string {
  let b = s.length;
  while (b > 0 && isWsp(s.charCodeAt(b - 1))) b--;
  return b === s.length ? s : s.slice(0, b);
}

// ---------------------------------------------------------------------------------------------------------
// semantic validation of a complete message

const MANDATORY_HEADERS = ['Via', 'From', 'To', 'Call-ID', 'CSeq'] as const;

/**
 * RFC 3261 8.2.2 / 16.3 / 20 checks of the headers the edge relies on. Returns the first problem or undefined.
 * Requests get the stricter checks (Contact, Date) since they must be answered with 400; everything else the
 * application decides (416, 420, 415, 483...).
 */
function validate(msg: SipMessage, options: ParseOptions): string | undefined {
  const isRequest = msg.method !== undefined;
  let vias = 0, froms = 0, tos = 0, callIds = 0, cseqs = 0, maxForwards = 0;
  let topVia: string | undefined, from: string | undefined, to: string | undefined;
  let callId: string | undefined, cseq: string | undefined;
  for (const h of msg.headers) {
    const value = h.value;
    switch (h.name) {
      case 'Via':
        if (vias++ === 0) topVia = value;
        break;
      case 'From':
        froms++;
        from = value;
        break;
      case 'To':
        tos++;
        to = value;
        break;
      case 'Call-ID':
        callIds++;
        callId = value;
        break;
      case 'CSeq':
        cseqs++;
        cseq = value;
        break;
      case 'Max-Forwards':
        // RFC 3261 20.22: 1*DIGIT, RFC 4475 3.1.2.4: > 255 is malformed; optional for RFC 2543 peers
        maxForwards++;
        if (parseBoundedInt(value, 255) === undefined) return 'malformed Max-Forwards';
        break;
      case 'Expires':
        // RFC 3261 20.19 delta-seconds; an RFC 2543 SIP-date is tolerated, an overlarge number is not (scalar02)
        if (isDigits(value) && parseBoundedInt(value) === undefined) return 'Expires out of range';
        break;
      case 'Contact':
        if (isRequest) {
          const problem = checkContact(value);
          if (problem !== undefined) return problem;
        }
        break;
      case 'Date':
        if (isRequest && !isSipDate(value)) return 'malformed Date';                    // 3.1.2.12 baddate
        break;
      case 'Retry-After': {
        // RFC 3261 20.33: delta-seconds [ comment ] *( SEMI retry-param ) (scalarlg)
        const end = firstNonDigit(value);
        if (end === 0 || parseBoundedInt(value.slice(0, end)) === undefined) return 'malformed Retry-After';
        break;
      }
      case 'Warning': {
        // RFC 3261 20.43: warn-code = 3DIGIT (scalarlg)
        const sp = value.indexOf(' ');
        if (sp !== 3 || !isDigits(value.slice(0, 3))) return 'malformed Warning';
        break;
      }
      case 'RSeq':
        // RFC 3262 7.1: 1*DIGIT, 1 .. 2^32-1
        if (parseBoundedInt(value) === undefined) return 'malformed RSeq';
        break;
      case 'RAck': {
        // RFC 3262 7.2: response-num LWS CSeq-num LWS Method
        const sp = value.search(/[ \t]/);
        if (sp <= 0 || parseBoundedInt(value.slice(0, sp)) === undefined || parseCSeq(value.slice(sp)) === null) {
          return 'malformed RAck';
        }
        break;
      }
      default:
        break;
    }
  }
  // headers that may appear once only (RFC 3261 20, RFC 4475 3.3.8 multi01); Content-Length is checked while
  // framing, since it decides where the message ends
  const singles: Array<[string, number]> = [
    ['Call-ID', callIds], ['To', tos], ['From', froms], ['Max-Forwards', maxForwards], ['CSeq', cseqs],
  ];
  for (const [name, count] of singles) if (count > 1) return `multiple ${name} values`;
  if (options.requireMandatoryHeaders !== false) {
    const present: Record<(typeof MANDATORY_HEADERS)[number], number> = {
      Via: vias, From: froms, To: tos, 'Call-ID': callIds, CSeq: cseqs,
    };
    for (const name of MANDATORY_HEADERS) if (present[name] === 0) return `missing ${name}`;  // 3.3.1 insuf
  }
  // parsed through the message's memoised accessors, so later callers get them for free
  if (callId !== undefined && !isCallId(callId)) return 'malformed Call-ID';
  if (from !== undefined && msg.fromAddr === undefined) return 'malformed From';
  if (to !== undefined && msg.toAddr === undefined) return 'malformed To';               // quotbal, badaspec, baddn
  if (topVia !== undefined && msg.topVia === undefined) return 'malformed Via';
  if (cseq !== undefined) {
    const parsed = msg.cseq;
    if (parsed === undefined) return 'malformed CSeq';                                   // scalar02, scalarlg
    if (isRequest && parsed.method !== msg.method) return 'CSeq method does not match the request method';  // mismatch01/02
  }
  return undefined;
}

function firstNonDigit(s: string): number {
  let i = 0;
  while (i < s.length && s.charCodeAt(i) >= 48 && s.charCodeAt(i) <= 57) i++;
  return i;
}

/** RFC 3261 20.10: Contact = "*" / name-addr or addr-spec with contact-params; expires is delta-seconds */
function checkContact(value: string): string | undefined {
  if (value === '*') return undefined;
  const contact = parseNameAddr(value);
  if (contact === null) return 'malformed Contact';                                    // regbadct, badinv01
  const expires = getParam(contact.params, 'expires');
  if (expires !== undefined && (expires === null || parseBoundedInt(expires) === undefined)) {
    return 'Contact expires out of range';                                             // scalar02
  }
  return undefined;
}

/**
 * turn a parsed head + body into the final result; `bytes` = the message as received from its start line to the end
 * of its body and `headBytes` = the byte length of its head text, when the caller has them, for VerbatimRequest
 */
function finish(head: Head, body: Buffer, options: ParseOptions, extraError?: string, bytes?: Buffer, headBytes = 0): ParseResult {
  const msg = head.message;
  msg.body = body;
  const error = head.error ?? extraError ?? validate(msg, options);
  if (error !== undefined) return failure(head, error);
  const result: ParseResult = { ok: true, message: msg };
  // head text all ASCII (one char per byte) and Content-Length exactly as serialise() writes it
  if (bytes !== undefined && head.verbatim && head.topViaIndex >= 0 && head.lengthCount === 1 && head.textLength === headBytes
    && head.lengthValue === String(body.length)) {
    result.verbatim = {
      bytes, headerCount: msg.headers.length, topViaIndex: head.topViaIndex, topViaStart: head.topViaStart, topViaEnd: head.topViaEnd,
    };
  }
  return result;
}

function failure(head: Head, error: string, status?: number): ParseResult {
  if (!head.looksLikeRequest) return { ok: false, error };
  return { ok: false, error, status: status ?? head.status ?? 400, message: head.message };
}

// ---------------------------------------------------------------------------------------------------------
// datagrams

/**
 * One UDP datagram (or one already framed message, e.g. a WebSocket message or the payload of a drachtio frame).
 * RFC 3261 18.3: bytes beyond Content-Length are ignored; without Content-Length the body is the rest; a
 * Content-Length larger than the datagram is a 400. message.body is a view into buf (no copy).
 */
export function parseMessage(buf: Buffer, limits?: Partial<ParseLimits>, options: ParseOptions = {}): ParseResult {
  try {
    return parseDatagram(buf, withDefaults(limits), options);
  } catch {
    return { ok: false, error: 'unparseable message' };   // defensive: no exception escapes on hostile input
  }
}

function parseDatagram(buf: Buffer, limits: ParseLimits, options: ParseOptions): ParseResult {
  if (buf.length > limits.maxMessageBytes) return { ok: false, error: 'message too large' };
  const start = skipLeadingLineBreaks(buf, 0, buf.length);   // RFC 3261 7.5, RFC 5626 keep-alives
  if (start >= buf.length) return { ok: false, error: 'empty message (keep-alive)' };
  const bounds = findHeadEnd(buf, start, buf.length);
  if (bounds === null) {
    // no empty line: parse what is there for a partial message, then reject (RFC 3261 7.5)
    const head = parseHead(buf.toString('utf8', start), limits);
    return finish(head, Buffer.alloc(0), options, 'header section not terminated by an empty line');
  }
  const head = parseHead(buf.toString('utf8', start, bounds.headStop), limits);
  const length = head.contentLength;
  if (length.kind === 'absent') return finish(head, buf.subarray(bounds.bodyStart), options);
  if (length.kind === 'invalid') return finish(head, Buffer.alloc(0), options, length.reason);
  const bodyEnd = bounds.bodyStart + length.value;
  if (bodyEnd > buf.length) {
    return finish(head, buf.subarray(bounds.bodyStart), options, 'Content-Length larger than the message');  // clerr
  }
  // the empty line must be CRLF too for the received bytes to be the serialised form
  const verbatimBytes = bounds.bodyStart === bounds.headStop + 2 ? buf.subarray(start, bodyEnd) : undefined;
  return finish(head, buf.subarray(bounds.bodyStart, bodyEnd), options, undefined, verbatimBytes, bounds.headStop - start);
}

// ---------------------------------------------------------------------------------------------------------
// streams

/** RFC 3261 18.3 stream framing. push() returns what became complete; 'fatal' means close the connection. */
export class StreamFramer {
  private readonly limits: ParseLimits;
  private readonly options: ParseOptions;
  /** unconsumed bytes are buf[start, end) */
  private buf: Buffer = Buffer.alloc(0);
  private start = 0;
  private end = 0;
  /** buf is a caller's chunk used in place: copy before writing into it */
  private borrowed = false;
  /** bytes after start already searched for the end of the header section */
  private scanned = 0;
  /** a header section parsed and waiting for its body: offsets relative to start */
  private pending?: { head: Head; bodyStart: number; bodyLength: number; crlfBlankLine: boolean };
  private failed?: string;

  constructor(limits?: Partial<ParseLimits>, options: ParseOptions = {}) {
    this.limits = withDefaults(limits);
    this.options = options;
  }

  /** bytes buffered for an incomplete message (for stall detection) */
  get pendingBytes(): number {
    return this.end - this.start;
  }

  push(chunk: Buffer): Array<ParseResult | { fatal: string } | { keepalive: true }> {
    if (this.failed !== undefined) return [{ fatal: this.failed }];
    if (chunk.length === 0) return [];
    this.append(chunk);
    const out: Array<ParseResult | { fatal: string } | { keepalive: true }> = [];
    try {
      this.drain(out);
    } catch {
      this.fail(out, 'unparseable stream');
    }
    if (this.start === this.end) this.reset();
    return out;
  }

  private drain(out: Array<ParseResult | { fatal: string } | { keepalive: true }>): void {
    const buf = this.buf;
    for (;;) {
      if (this.pending === undefined) {
        if (!this.skipKeepalives(out)) return;
        if (this.start >= this.end) return;
        const from = Math.max(this.start, this.start + this.scanned - 3);
        const bounds = findHeadEnd(buf, from, this.end);
        if (bounds === null) {
          this.scanned = this.end - this.start;
          if (this.scanned > this.limits.maxMessageBytes) this.fail(out, 'header section too large');
          return;
        }
        if (bounds.bodyStart - this.start > this.limits.maxMessageBytes) {
          this.fail(out, 'header section too large');
          return;
        }
        const head = parseHead(buf.toString('utf8', this.start, bounds.headStop), this.limits);
        const length = head.contentLength;
        // RFC 3261 18.3 / 20.14: Content-Length is mandatory on streams and the only framing there is
        if (length.kind === 'absent') return this.fail(out, 'missing Content-Length on a stream transport');
        if (length.kind === 'invalid') return this.fail(out, length.reason);        // ncl, mcl01
        if (bounds.bodyStart - this.start + length.value > this.limits.maxMessageBytes) {
          return this.fail(out, 'message too large');
        }
        this.pending = {
          head, bodyStart: bounds.bodyStart - this.start, bodyLength: length.value, crlfBlankLine: bounds.bodyStart === bounds.headStop + 2,
        };
      }
      const { head, bodyStart, bodyLength, crlfBlankLine } = this.pending;
      const messageEnd = this.start + bodyStart + bodyLength;
      if (messageEnd > this.end) return;                                            // clerr: wait for more
      // own copy of the whole message (buf is reused): the body is a view into it, and it is the message's raw bytes
      const raw = Buffer.from(buf.subarray(this.start, messageEnd));
      const result = finish(head, raw.subarray(bodyStart), this.options, undefined, crlfBlankLine ? raw : undefined, bodyStart - 2);
      if (result.ok) result.raw = raw;
      out.push(result);
      this.pending = undefined;
      this.start = messageEnd;
      this.scanned = 0;
    }
  }

  /**
   * RFC 3261 7.5: CRLFs before a start line are ignored. RFC 5626 4.4.1: a double CRLF is a keep-alive ping
   * (reported so the transport answers one CRLF pong); a single CRLF is a pong. Returns false to wait for more.
   */
  private skipKeepalives(out: Array<ParseResult | { fatal: string } | { keepalive: true }>): boolean {
    const buf = this.buf;
    while (this.start < this.end) {
      const left = this.end - this.start;
      const c = buf[this.start];
      if (c === LF) {
        this.start++;
        continue;
      }
      if (c !== CR) return true;
      if (left < 2) return false;
      if (buf[this.start + 1] !== LF) {
        this.start++;
        continue;
      }
      if (left >= 4 && buf[this.start + 2] === CR && buf[this.start + 3] === LF) {
        out.push({ keepalive: true });
        this.start += 4;
        continue;
      }
      if (left >= 3 && buf[this.start + 2] !== CR) {
        this.start += 2;                       // a lone CRLF (pong) before the next message
        continue;
      }
      if (left >= 4) {
        this.start += 2;                       // CRLF CR x: the CRLF is a pong
        continue;
      }
      return false;                            // "\r\n" or "\r\n\r": ping or pong, not known yet
    }
    return true;
  }

  private fail(out: Array<ParseResult | { fatal: string } | { keepalive: true }>, reason: string): void {
    this.failed = reason;
    out.push({ fatal: reason });
    this.reset();
  }

  private reset(): void {
    if (this.borrowed || this.buf.length > 65536) {
      this.buf = Buffer.alloc(0);
      this.borrowed = false;
    }
    this.start = 0;
    this.end = 0;
    this.scanned = 0;
    this.pending = undefined;
  }

  /** amortised O(1) append: the chunk is used in place when nothing is buffered, else copied into a growing buffer */
  private append(chunk: Buffer): void {
    const live = this.end - this.start;
    if (live === 0) {
      this.buf = chunk;
      this.start = 0;
      this.end = chunk.length;
      this.borrowed = true;
      return;
    }
    if (!this.borrowed && this.end + chunk.length <= this.buf.length) {
      chunk.copy(this.buf, this.end);
      this.end += chunk.length;
      return;
    }
    const needed = live + chunk.length;
    let target = this.buf;
    if (this.borrowed || needed > this.buf.length) {
      let capacity = Math.max(4096, this.buf.length);
      while (capacity < needed) capacity *= 2;
      target = Buffer.allocUnsafe(capacity);
    }
    this.buf.copy(target, 0, this.start, this.end);   // copy (or compact) to the front
    chunk.copy(target, live);
    this.buf = target;
    this.borrowed = false;
    this.start = 0;
    this.end = needed;
  }
}
