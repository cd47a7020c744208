/**
 * Number masking: on calls delivered to a masked user, the customer's number must appear nowhere
 * the user's device (or the control API's events for that user) can read it: From, To,
 * P-Asserted-Identity (RFC 3325), P-Preferred-Identity, Remote-Party-ID, Diversion (RFC 5806),
 * History-Info (RFC 7044), display names, tel: URIs (RFC 3966) and URI parameters. An excluded
 * user sees real numbers.
 *
 * A number is recognised in every encoding that carries its national significant digits:
 * `+44 20 7123 4567`, `0044...`, `44...`, `020 7123 4567`, `+44 (0)20...`, `%2B44...`, with any
 * visual separators (RFC 3966 §5.1.1) or their percent escapes between the digits. Each
 * occurrence (prefix included) becomes the mask: by default `X` for every digit but the last
 * `keepLastDigits`, or a fixed text such as `Anonymous`. At least four digits of the national
 * number are always hidden, whatever `keepLastDigits` says.
 *
 * Headers the B2BUA owns and needs for routing are never rewritten: Via, Route, Record-Route,
 * Contact (the B2BUA's own, which must never carry the customer's number), Call-ID, CSeq.
 */
import { splitE164 } from './phone-number.js';

/** The user's fields this policy reads (names as in the user model). */
export interface MaskingRules {
  masking: { enabled: boolean; keepLastDigits: number };
  maskingExcluded: boolean;
}

export interface MaskStyle {
  /** Replaces each hidden digit; one non-digit character. Default `X`. */
  maskChar?: string;
  /** When set, a masked number is this text whole (e.g. `Anonymous`), nothing kept. */
  fixedText?: string;
  /** Country code for customer numbers given in national form (`020...`); default none. */
  defaultCountryCode?: string;
}

/** Masking applies to this user's calls and events. */
export function maskingApplies(user: MaskingRules): boolean {
  return user.masking.enabled && !user.maskingExcluded;
}

/** Headers never rewritten (routing state the B2BUA owns). Lower case. */
export const UNMASKED_HEADERS: ReadonlySet<string> = new Set([
  'via', 'v', 'route', 'record-route', 'contact', 'm', 'call-id', 'i', 'cseq', 'max-forwards', 'content-length', 'l',
]);

/** Headers that carry identities (the ones the B2BUA must pass through the masker). Lower case. */
export const IDENTITY_HEADERS: readonly string[] = [
  'from', 'to', 'p-asserted-identity', 'p-preferred-identity', 'remote-party-id', 'diversion', 'history-info',
  'referred-by', 'refer-to', 'reply-to', 'p-called-party-id', 'x-caller-id',
];

/** Between two digits of a number: visual separators, raw or percent-escaped. */
const SEPARATORS = String.raw`(?:[\s\-.()/]|%20|%2[dDeEfF]|%28|%29)*`;

interface CompiledNumber {
  countryCode: string;
  nationalNumber: string;
}

function digitsPattern(digits: string): string {
  return digits.split('').join(SEPARATORS);
}

/** National significant number and country code of a customer number, or undefined if unusable. */
function analyse(number: string, defaultCountryCode: string | undefined): CompiledNumber | undefined {
  let text = number.trim();
  try {
    if (text.includes('%')) text = decodeURIComponent(text);
  } catch {
    return undefined;
  }
  const international = /^\s*(\+|00)/.test(text);
  const digits = text.replace(/\D/g, '');
  if (digits.length < 4 || digits.length > 20) return undefined;
  if (international) {
    const e164 = text.trim().startsWith('+') ? digits : digits.slice(2);
    const { countryCode, nationalNumber } = splitE164(e164);
    return nationalNumber.length >= 4 ? { countryCode, nationalNumber } : { countryCode: '', nationalNumber: e164 };
  }
  if (digits.startsWith('0')) return { countryCode: defaultCountryCode ?? '', nationalNumber: digits.replace(/^0+/, '') };
  // digits without a prefix: E.164 without `+` if it splits sensibly, else a national number
  const { countryCode, nationalNumber } = splitE164(digits);
  if (defaultCountryCode && countryCode !== defaultCountryCode) return { countryCode: defaultCountryCode, nationalNumber: digits };
  return nationalNumber.length >= 6 ? { countryCode, nationalNumber } : { countryCode: '', nationalNumber: digits };
}

export interface NumberMasker {
  /** Masks every occurrence of the numbers in a string (header value, URI, display name, text). */
  maskText(text: string): string;
  /** Masks identity-bearing headers (every header except UNMASKED_HEADERS). */
  maskHeaders<H extends Record<string, string | string[]>>(headers: H): H;
  /** Deep copy of a JSON-like event payload with every string, key and number masked. */
  maskPayload(payload: unknown): unknown;
  /** True when the text still contains one of the numbers (for assertions and guards). */
  reveals(text: string): boolean;
}

const MAX_PAYLOAD_DEPTH = 32;

/**
 * A masker for one call: `numbers` are the customer's numbers (as received: E.164, national,
 * with separators...); `keepLastDigits` is the user's setting.
 */
export function createNumberMasker(numbers: readonly string[], keepLastDigits: number, style: MaskStyle = {}): NumberMasker {
  const maskChar = style.maskChar && style.maskChar.length === 1 && !/\d/.test(style.maskChar) ? style.maskChar : 'X';
  const compiled = [
    ...new Map(
      numbers
        .map((n) => analyse(n, style.defaultCountryCode))
        .filter((n): n is CompiledNumber => n !== undefined)
        .map((n) => [`${n.countryCode}/${n.nationalNumber}`, n] as const),
    ).values(),
  ].sort((a, b) => b.nationalNumber.length - a.nationalNumber.length);

  if (compiled.length === 0) {
    return { maskText: (t) => t, maskHeaders: (h) => ({ ...h }), maskPayload: (p) => clone(p, (s) => s, 0), reveals: () => false };
  }

  const alternatives = compiled.map((n) => {
    const countryPrefix = n.countryCode
      ? `(?:\\+|%2[bB]|00|011)?${SEPARATORS}${digitsPattern(n.countryCode)}${SEPARATORS}(?:\\(0\\)${SEPARATORS})?|`
      : '';
    return `(?:${countryPrefix}0${SEPARATORS}|\\+|%2[bB])?${digitsPattern(n.nationalNumber)}`;
  });
  // Alternatives are tried in order (longest national number first); one capture group per number.
  const source = alternatives.map((a) => `(${a})`).join('|');
  const replacement = (match: string, ...groups: unknown[]): string => {
    const index = groups.findIndex((g, i) => i < compiled.length && typeof g === 'string' && g.length > 0);
    const number = compiled[Math.max(0, index)]!;
    if (style.fixedText !== undefined) return style.fixedText;
    const national = number.nationalNumber;
    const keep = Math.max(0, Math.min(Math.floor(keepLastDigits), national.length - 4));
    const hidden = number.countryCode.length + national.length - keep;
    return maskChar.repeat(hidden) + national.slice(national.length - keep);
  };

  const everyOccurrence = new RegExp(source, 'g'); // String.replace resets lastIndex: safe to share
  const anyOccurrence = new RegExp(source);
  const maskText = (text: string): string => (typeof text === 'string' ? text.replace(everyOccurrence, replacement) : text);
  const reveals = (text: string): boolean => typeof text === 'string' && anyOccurrence.test(text);

  return {
    maskText,
    reveals,
    maskHeaders<H extends Record<string, string | string[]>>(headers: H): H {
      const out: Record<string, string | string[]> = {};
      for (const [name, value] of Object.entries(headers)) {
        if (UNMASKED_HEADERS.has(name.toLowerCase())) out[name] = value;
        else out[name] = Array.isArray(value) ? value.map(maskText) : maskText(value);
      }
      return out as H;
    },
    maskPayload: (payload) => clone(payload, maskText, 0),
  };
}

function clone(value: unknown, maskText: (s: string) => string, depth: number): unknown {
  if (typeof value === 'string') return maskText(value);
  if (typeof value === 'number' || typeof value === 'bigint') {
    const text = String(value);
    const masked = maskText(text);
    return masked === text ? value : masked;
  }
  if (value === null || typeof value !== 'object') return value;
  if (depth >= MAX_PAYLOAD_DEPTH) return '[masked: too deep]';
  if (Array.isArray(value)) return value.map((v) => clone(v, maskText, depth + 1));
  const out: Record<string, unknown> = {};
  for (const [key, v] of Object.entries(value)) out[maskText(key)] = clone(v, maskText, depth + 1);
  return out;
}

/**
 * The telephone numbers in identity headers (user parts of sip:/tel: URIs and display names
 * that look like numbers): the numbers to mask on a call from a customer.
 */
export function numbersInIdentityHeaders(headers: Record<string, string | string[] | undefined>): string[] {
  const found = new Set<string>();
  for (const [name, raw] of Object.entries(headers)) {
    if (!IDENTITY_HEADERS.includes(name.toLowerCase()) || raw === undefined) continue;
    for (const value of Array.isArray(raw) ? raw : [raw]) {
      for (const match of value.matchAll(/(?:sips?|tel):([^@;>?\s]+)/gi)) {
        let user = match[1]!;
        try {
          user = decodeURIComponent(user);
        } catch {
          continue;
        }
        const digits = user.replace(/[-.()\s]/g, '');
        if (/^\+?\d{4,20}$/.test(digits)) found.add(digits);
      }
      for (const match of value.matchAll(/"([^"]*)"/g)) {
        const digits = match[1]!.replace(/[-.()\s]/g, '');
        if (/^\+?\d{4,20}$/.test(digits)) found.add(digits);
      }
    }
  }
  return [...found];
}
