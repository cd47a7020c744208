/**
 * Telephone numbers as they arrive: a bare dialled string, the user part of a sip:/sips: URI
 * (RFC 3261 §19.1.1, escaped per §19.1.2, telephone-subscriber per §19.1.6), or a tel: URI
 * (RFC 3966). Shared by the dial plan, caller ID, masking and carrier routing.
 */

/** Longest dialled string considered at all (anything longer is refused, never parsed). */
export const MAX_DIALLED_LENGTH = 64;

/** E.164 §6.1: at most 15 digits, country code included. */
export const E164_MAX_DIGITS = 15;

/**
 * RFC 3966 §3 visual-separator = "-" / "." / "(" / ")"; people also type spaces, and some UAs
 * send `/`. Removed before any digit is looked at.
 */
const VISUAL_SEPARATORS = /[-.()\s/]/g;

/** Percent-decodes (RFC 3986 §2.1); undefined for broken escapes. */
function percentDecode(text: string): string | undefined {
  if (!text.includes('%')) return text;
  try {
    return decodeURIComponent(text);
  } catch {
    return undefined;
  }
}

/**
 * The telephone number part of what was dialled: the user part of a sip:/sips: URI (params
 * after `;` dropped), the number of a tel: URI with a global `phone-context` prefixed
 * (RFC 3966 §5.1.5), or the string itself. Percent escapes decoded (`%2B44` = `+44`).
 * Undefined when there is nothing usable.
 */
export function dialledNumberText(input: string): string | undefined {
  if (typeof input !== 'string') return undefined;
  let text = input.trim();
  if (text.length === 0 || text.length > 4 * MAX_DIALLED_LENGTH) return undefined;
  if (text.startsWith('<') && text.endsWith('>')) text = text.slice(1, -1);
  const scheme = /^(sips?|tel):/i.exec(text)?.[1]?.toLowerCase();
  if (scheme === 'sip' || scheme === 'sips') {
    const rest = text.slice(scheme.length + 1);
    const at = rest.indexOf('@');
    if (at <= 0) return undefined;
    text = rest.slice(0, at).split(';')[0]!.split(':')[0]!; // user[:password] (RFC 3261 §19.1.1)
  } else if (scheme === 'tel') {
    const [number, ...params] = text.slice(4).split(';');
    text = number ?? '';
    const context = params.find((p) => /^phone-context=/i.test(p))?.slice('phone-context='.length);
    if (context && !text.startsWith('+') && context.startsWith('+')) text = `${context}${text}`;
  }
  const decoded = percentDecode(text);
  if (decoded === undefined || decoded.length === 0 || decoded.length > MAX_DIALLED_LENGTH) return undefined;
  return decoded;
}

export type CleanNumber = { ok: true; value: string } | { ok: false; reason: 'empty' | 'too-long' | 'not-a-number' };

/**
 * Digits with at most one leading `+`, separators removed: `(555) 123-4567` -> `5551234567`,
 * `+44 (0)20 7123 4567` -> `+4402071234567` (the caller decides what a `(0)` means).
 * Anything else (letters, `*`, `#`, a `+` inside) is `not-a-number`.
 */
export function cleanNumber(text: string): CleanNumber {
  const compact = text.replace(VISUAL_SEPARATORS, '');
  if (compact.length === 0) return { ok: false, reason: 'empty' };
  if (compact.length > MAX_DIALLED_LENGTH) return { ok: false, reason: 'too-long' };
  if (!/^\+?\d+$/.test(compact)) return { ok: false, reason: 'not-a-number' };
  return { ok: true, value: compact };
}

/** The `+44 (0)20...` habit: a national prefix in parentheses after a country code is dropped. */
export function dropParenthesisedTrunkPrefix(text: string): string {
  return text.replace(/^(\s*\+\s*\d{1,3}[\s.-]*)\(0\)/, '$1');
}

/**
 * Country codes of E.164 numbers (ITU-T E.164 assignments): codes are prefix-free, so the length
 * follows from the first digits. 1 and 7 are one digit; the two-digit codes are listed; all
 * others are three digits.
 */
const TWO_DIGIT_COUNTRY_CODES = new Set([
  '20', '27', '30', '31', '32', '33', '34', '36', '39', '40', '41', '43', '44', '45', '46', '47',
  '48', '49', '51', '52', '53', '54', '55', '56', '57', '58', '60', '61', '62', '63', '64', '65',
  '66', '81', '82', '84', '86', '90', '91', '92', '93', '94', '95', '98',
]);

export function countryCodeLength(e164Digits: string): 1 | 2 | 3 {
  const first = e164Digits[0];
  if (first === '1' || first === '7') return 1;
  return TWO_DIGIT_COUNTRY_CODES.has(e164Digits.slice(0, 2)) ? 2 : 3;
}

/** Splits E.164 digits (no `+`) into country code and national significant number. */
export function splitE164(e164Digits: string): { countryCode: string; nationalNumber: string } {
  const length = countryCodeLength(e164Digits);
  return { countryCode: e164Digits.slice(0, length), nationalNumber: e164Digits.slice(length) };
}

/** True for `+` followed by 8..15 digits not starting with 0 (a plausible E.164 number). */
export function isE164(text: string): boolean {
  return /^\+[1-9]\d{7,14}$/.test(text);
}
