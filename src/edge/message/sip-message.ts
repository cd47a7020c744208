/** RFC 3261 section 7: a SIP request or response, as an ordered list of header entries plus a body. */
import {
  canonicalHeaderName, getParam, parseCSeq, parseNameAddr, parseVia, type NameAddr, type Via,
} from './grammar.js';

export interface SipHeader {
  /** canonical long-form name, e.g. "Via", "Call-ID", "CSeq", "WWW-Authenticate", unknown names as received */
  name: string;
  /** value with surrounding LWS trimmed and line folding replaced by a single SP */
  value: string;
}

/** one parsed header value remembered together with the text it came from, so edits invalidate it */
interface Memo<T> {
  raw: string;
  parsed: T | null;
}

function memoised<T>(memo: Memo<T> | undefined, raw: string, parse: (s: string) => T | null): Memo<T> {
  return memo !== undefined && memo.raw === raw ? memo : { raw, parsed: parse(raw) };
}

function sameHeaderName(stored: string, canonical: string, lower: string): boolean {
  return stored === canonical || (stored.length === lower.length && stored.toLowerCase() === lower);
}

/** CR / LF in a value would inject header lines (RFC 3261 7.3.1 folding is the only legal line break) */
function safeValue(value: string): string {
  return value.indexOf('\r') < 0 && value.indexOf('\n') < 0 ? value : value.replace(/[\r\n]+[ \t]*/g, ' ');
}

export class SipMessage {
  /** request: method + requestUri set; response: status + reason set */
  method?: string;
  requestUri?: string;
  status?: number;
  reason?: string;
  version = 'SIP/2.0';
  headers: SipHeader[] = [];
  body: Buffer = Buffer.alloc(0);

  #from?: Memo<NameAddr>;
  #to?: Memo<NameAddr>;
  #cseq?: Memo<{ seq: number; method: string }>;
  #topVia?: Memo<Via>;

  /** a request with its start line set (headers to be added) */
  static request(method: string, requestUri: string): SipMessage {
    const msg = new SipMessage();
    msg.method = method;
    msg.requestUri = requestUri;
    return msg;
  }

  /** a response with its status line set (headers to be added) */
  static response(status: number, reason: string): SipMessage {
    const msg = new SipMessage();
    msg.status = status;
    msg.reason = reason;
    return msg;
  }

  get isRequest(): boolean { return this.method !== undefined; }
  get isResponse(): boolean { return this.status !== undefined; }

  private indexOfHeader(name: string, from = 0): number {
    const canonical = canonicalHeaderName(name);
    const lower = canonical.toLowerCase();
    const headers = this.headers;
    for (let i = from; i < headers.length; i++) {
      if (sameHeaderName(headers[i].name, canonical, lower)) return i;
    }
    return -1;
  }

  /** first value of the header (case-insensitive, compact or long name), undefined if absent */
  get(name: string): string | undefined {
    const i = this.indexOfHeader(name);
    return i < 0 ? undefined : this.headers[i].value;
  }

  /** all values, in order, of all header lines with that name (already split one value per entry) */
  getAll(name: string): string[] {
    const canonical = canonicalHeaderName(name);
    const lower = canonical.toLowerCase();
    const out: string[] = [];
    for (const h of this.headers) if (sameHeaderName(h.name, canonical, lower)) out.push(h.value);
    return out;
  }

  has(name: string): boolean {
    return this.indexOfHeader(name) >= 0;
  }

  /** replace every occurrence with one header (or several when value is an array) at the position of the first */
  set(name: string, value: string | string[]): this {
    const canonical = canonicalHeaderName(name);
    const values = Array.isArray(value) ? value : [value];
    const first = this.indexOfHeader(canonical);
    this.remove(canonical);
    const entries = values.map((v) => ({ name: canonical, value: v }));
    if (first < 0) this.headers.push(...entries);
    else this.headers.splice(first, 0, ...entries);
    return this;
  }

  /** add at the end */
  append(name: string, value: string): this {
    this.headers.push({ name: canonicalHeaderName(name), value });
    return this;
  }

  /** add before every existing header of that name (or at the top when none), e.g. a new top Via */
  prepend(name: string, value: string): this {
    const canonical = canonicalHeaderName(name);
    const first = this.indexOfHeader(canonical);
    this.headers.splice(first < 0 ? 0 : first, 0, { name: canonical, value });
    return this;
  }

  remove(name: string): this {
    const canonical = canonicalHeaderName(name);
    const lower = canonical.toLowerCase();
    this.headers = this.headers.filter((h) => !sameHeaderName(h.name, canonical, lower));
    return this;
  }

  /** deep copy */
  clone(): SipMessage {
    const copy = new SipMessage();
    copy.method = this.method;
    copy.requestUri = this.requestUri;
    copy.status = this.status;
    copy.reason = this.reason;
    copy.version = this.version;
    copy.headers = this.headers.map((h) => ({ name: h.name, value: h.value }));
    copy.body = Buffer.from(this.body);
    return copy;
  }

  /** Call-ID, From tag, To tag, CSeq number/method, top Via branch: parsed lazily, undefined when absent/bad */
  get callId(): string | undefined { return this.get('Call-ID'); }
  get fromTag(): string | undefined { return tagOf(this.fromAddr); }
  get toTag(): string | undefined { return tagOf(this.toAddr); }

  /** From parsed as name-addr (RFC 3261 20.20), undefined when absent or malformed */
  get fromAddr(): NameAddr | undefined {
    const raw = this.get('From');
    if (raw === undefined) return undefined;
    this.#from = memoised(this.#from, raw, parseNameAddr);
    return this.#from.parsed ?? undefined;
  }

  /** To parsed as name-addr (RFC 3261 20.39), undefined when absent or malformed */
  get toAddr(): NameAddr | undefined {
    const raw = this.get('To');
    if (raw === undefined) return undefined;
    this.#to = memoised(this.#to, raw, parseNameAddr);
    return this.#to.parsed ?? undefined;
  }

  get cseq(): { seq: number; method: string } | undefined {
    const raw = this.get('CSeq');
    if (raw === undefined) return undefined;
    this.#cseq = memoised(this.#cseq, raw, parseCSeq);
    return this.#cseq.parsed ?? undefined;
  }

  /** top Via parsed (RFC 3261 20.42), undefined when absent or malformed. Treat as read-only: edit the header. */
  get topVia(): Via | undefined {
    const raw = this.get('Via');
    if (raw === undefined) return undefined;
    this.#topVia = memoised(this.#topVia, raw, parseVia);
    return this.#topVia.parsed ?? undefined;
  }

  get topViaBranch(): string | undefined {
    const via = this.topVia;
    if (via === undefined) return undefined;
    const branch = getParam(via.params, 'branch');
    return typeof branch === 'string' ? branch : undefined;
  }

  /** the start line without CRLF */
  get startLine(): string {
    return this.method !== undefined
      ? `${this.method} ${this.requestUri ?? ''} ${this.version}`
      : `${this.version} ${this.status ?? 0} ${this.reason ?? ''}`;
  }

  /**
   * Wire form (RFC 3261 7): start line, headers in order (one line per entry), Content-Length (RFC 3261 20.14)
   * rewritten from body.length where the first one was, else last; blank line; body.
   */
  serialise(): Buffer {
    const contentLength = `Content-Length: ${this.body.length}\r\n`;
    let head = this.startLine + '\r\n';
    let wroteLength = false;
    for (const h of this.headers) {
      if (h.name === 'Content-Length' || h.name.toLowerCase() === 'content-length' || h.name === 'l' || h.name === 'L') {
        if (!wroteLength) head += contentLength;
        wroteLength = true;
        continue;
      }
      head += `${h.name}: ${safeValue(h.value)}\r\n`;
    }
    if (!wroteLength) head += contentLength;
    head += '\r\n';
    const headBytes = Buffer.byteLength(head);
    const out = Buffer.allocUnsafe(headBytes + this.body.length);
    out.write(head, 0, 'utf8');
    this.body.copy(out, headBytes);
    return out;
  }

  toString(): string { return this.serialise().toString('utf8'); }
}

function tagOf(addr: NameAddr | undefined): string | undefined {
  if (addr === undefined) return undefined;
  const tag = getParam(addr.params, 'tag');
  return typeof tag === 'string' ? tag : undefined;
}
