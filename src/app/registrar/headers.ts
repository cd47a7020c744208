/**
 * The few REGISTER header fields the registrar reads, parsed defensively (bounded, never
 * throwing): Contact (RFC 3261 §20.10, incl. `*`), the user of the To AOR (§10.3 step 3),
 * Expires (§20.19), CSeq (§20.16). Hostile input yields null, which the registrar answers 400.
 */

export interface ContactEntry {
  /** The URI inside <...> (or the bare addr-spec). */
  uri: string;
  /** Header parameters, names lower-cased, values unquoted (null for a flag). */
  params: Map<string, string | null>;
}

export type ParsedContacts = { wildcard: true } | { wildcard: false; contacts: ContactEntry[] };

const MAX_CONTACT_HEADER = 8192;
export const MAX_CONTACTS = 10;
const TOKEN = /^[A-Za-z0-9\-.!%*_+`'~]+$/;

/** Splits on commas outside quotes and angle brackets. */
function splitTopLevel(value: string): string[] | null {
  const parts: string[] = [];
  let start = 0;
  let inQuotes = false;
  let inAngle = false;
  for (let i = 0; i < value.length; i++) {
    const c = value[i];
    if (inQuotes) {
      if (c === '\\') i++;
      else if (c === '"') inQuotes = false;
    } else if (c === '"') inQuotes = true;
    else if (c === '<') {
      if (inAngle) return null;
      inAngle = true;
    } else if (c === '>') {
      if (!inAngle) return null;
      inAngle = false;
    } else if (c === ',' && !inAngle) {
      parts.push(value.slice(start, i));
      start = i + 1;
    }
  }
  if (inQuotes || inAngle) return null;
  parts.push(value.slice(start));
  return parts.map((p) => p.trim());
}

function parseParams(text: string): Map<string, string | null> | null {
  const params = new Map<string, string | null>();
  let rest = text.trim();
  while (rest.length) {
    if (rest[0] !== ';') return null;
    rest = rest.slice(1).trimStart();
    const nameMatch = /^[A-Za-z0-9\-.!%*_+`'~]+/.exec(rest);
    if (!nameMatch) return null;
    const name = nameMatch[0].toLowerCase();
    rest = rest.slice(name.length).trimStart();
    let value: string | null = null;
    if (rest[0] === '=') {
      rest = rest.slice(1).trimStart();
      if (rest[0] === '"') {
        let out = '';
        let i = 1;
        for (; i < rest.length && rest[i] !== '"'; i++) {
          if (rest[i] === '\\') i++;
          out += rest[i] ?? '';
        }
        if (i >= rest.length) return null;
        value = out;
        rest = rest.slice(i + 1).trimStart();
      } else {
        const valueMatch = /^[^\s;,]+/.exec(rest);
        if (!valueMatch) return null;
        value = valueMatch[0];
        rest = rest.slice(value.length).trimStart();
      }
    }
    if (params.size >= 32) return null;
    params.set(name, value);
  }
  return params;
}

function parseNameAddr(text: string): { uri: string; rest: string } | null {
  const angle = text.indexOf('<');
  if (angle !== -1) {
    const display = text.slice(0, angle).trim();
    if (display && !(display.startsWith('"') && display.endsWith('"')) && !display.split(/\s+/).every((t) => TOKEN.test(t))) {
      return null;
    }
    const close = text.indexOf('>', angle);
    if (close === -1) return null;
    return { uri: text.slice(angle + 1, close).trim(), rest: text.slice(close + 1) };
  }
  // addr-spec form: parameters after the URI are header parameters (RFC 3261 §20.10).
  const semi = text.indexOf(';');
  return { uri: (semi === -1 ? text : text.slice(0, semi)).trim(), rest: semi === -1 ? '' : text.slice(semi) };
}

const URI_PATTERN = /^(sips?|tel):[^\s<>"]+$/i;

export function parseContacts(values: string | undefined): ParsedContacts | null {
  if (values === undefined) return { wildcard: false, contacts: [] };
  if (values.length > MAX_CONTACT_HEADER) return null;
  if (values.trim() === '*') return { wildcard: true };
  const parts = splitTopLevel(values);
  if (!parts || parts.length > MAX_CONTACTS) return null;
  const contacts: ContactEntry[] = [];
  for (const part of parts) {
    if (part === '*') return null; // `*` mixed with other contacts (RFC 3261 §10.3 step 6)
    const nameAddr = parseNameAddr(part);
    if (!nameAddr || !URI_PATTERN.test(nameAddr.uri) || nameAddr.uri.length > 512) return null;
    const params = parseParams(nameAddr.rest);
    if (!params) return null;
    contacts.push({ uri: nameAddr.uri, params });
  }
  return { wildcard: false, contacts };
}

/** The user part of the URI in a To/From header value, %-decoded (null if none or malformed). */
export function aorUser(headerValue: string | undefined): string | null {
  if (!headerValue || headerValue.length > 1024) return null;
  const nameAddr = parseNameAddr(headerValue);
  if (!nameAddr) return null;
  const match = /^sips?:([^@;?]+)@/i.exec(nameAddr.uri);
  if (!match) return null;
  try {
    return decodeURIComponent(match[1]!);
  } catch {
    return null;
  }
}

/** Expires header or expires param: delta-seconds (RFC 3261 §20.19); null if malformed. */
export function parseDeltaSeconds(value: string | null | undefined): number | null {
  if (value === null || value === undefined) return null;
  const trimmed = value.trim();
  if (!/^\d{1,10}$/.test(trimmed)) return null;
  return Math.min(Number(trimmed), 2 ** 32 - 1);
}

export function parseCSeq(value: string | undefined): { seq: number; method: string } | null {
  const match = value ? /^\s*(\d{1,10})\s+([A-Za-z]+)\s*$/.exec(value) : null;
  if (!match) return null;
  const seq = Number(match[1]);
  return seq < 2 ** 31 ? { seq, method: match[2]!.toUpperCase() } : null;
}

/** "+sip.instance" without its <> and quotes (RFC 5626 §4.1). */
export function instanceId(params: Map<string, string | null>): string | null {
  const raw = params.get('+sip.instance');
  if (!raw) return null;
  return raw.replace(/^<|>$/g, '').slice(0, 256);
}

export function formatParamValue(value: string): string {
  return TOKEN.test(value) ? value : `"${value.replace(/(["\\])/g, '\\$1')}"`;
}
