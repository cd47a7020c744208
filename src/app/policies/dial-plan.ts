/**
 * The outbound dial plan: what a user dialled -> an E.164 number (ITU-T E.164), or a refusal
 * with a SIP status: 484 Address Incomplete (RFC 3261 §21.4.22) when too short, 404 Not Found
 * (§21.4.4) when it is not a number or cannot be one, 403 Forbidden (§21.4.3) when the
 * destination is not allowed.
 *
 * Steps (docs/media.md "Outbound dial plan"):
 *   1. take the number out of a sip:/tel: URI or a bare string; drop visual separators (RFC 3966);
 *   2. ordered rules: the first rule that matches rewrites the number and allows or denies it
 *      (a user's own rules come first, then the plan's);
 *   3. normalise: `+` -> as is; international prefix (00, 011) -> stripped; national (trunk)
 *      prefix -> default country code; a national-length number -> default country code;
 *   4. length checks, blocked prefixes (e.g. premium 1900), allowed prefixes.
 *
 * Rule shapes are compatible with the user model's inline rules ({ pattern, replacement, action }).
 */
import {
  E164_MAX_DIGITS,
  cleanNumber,
  dialledNumberText,
  dropParenthesisedTrunkPrefix,
} from './phone-number.js';

export interface DialPlanRule {
  /** RegExp source tested against the cleaned number (digits, optional leading +). */
  pattern?: string;
  /** Literal prefix of the cleaned number (alternative to `pattern`). */
  prefix?: string;
  /** With `pattern`: a String.replace replacement (`$1`...); with `prefix`: replaces the prefix. */
  replacement?: string;
  /** Digits removed from the front after `replacement`. */
  strip?: number;
  /** Prepended after `strip`. */
  prepend?: string;
  action: 'allow' | 'deny';
  /** The rule needs at least this many digits: fewer -> 484 (the user is still dialling). */
  minLength?: number;
  /** The rule allows at most this many digits: more -> 404. */
  maxLength?: number;
  /** Status and reason of a `deny` (default 403 "Destination Not Allowed"). */
  status?: 403 | 404 | 484;
  reason?: string;
}

export interface DialPlanConfig {
  /** Country code for national numbers, digits only (e.g. "44", "1"). */
  defaultCountryCode: string;
  /** National (trunk) prefix, e.g. "0" (UK/FR/DE), "1" (NANP); "" for none. Default "0". */
  nationalPrefix?: string;
  /** International call prefixes, longest first; default ["00"]. NANP: ["011"]. */
  internationalPrefixes?: string[];
  /** Lengths of national significant numbers dialled without any prefix (e.g. [10] in NANP). */
  nationalNumberLengths?: number[];
  /** Minimum E.164 digits (country code included). Default 8. */
  minDigits?: number;
  /** Maximum E.164 digits. Default 15 (E.164 §6.1). */
  maxDigits?: number;
  /** E.164 digit prefixes allowed; absent or empty = every destination. */
  allowedPrefixes?: string[];
  /** E.164 digit prefixes refused with 403 (e.g. "1900", "44909"). */
  blockedPrefixes?: string[];
  /** Ordered rules (after the user's own). */
  rules?: DialPlanRule[];
}

/** A user's dial plan as the user model stores it: a named plan, or inline rules. */
export type UserDialPlan = { name: string } | { rules: DialPlanRule[] };

export type DialPlanResult =
  | { ok: true; e164: string; digits: string; rule?: number }
  | { ok: false; status: 403 | 404 | 484; reason: string };

const refuse = (status: 403 | 404 | 484, reason: string): DialPlanResult => ({ ok: false, status, reason });

/** Compiled regexes, cached by source (rules come from config and Redis, applied per call). */
const regexCache = new Map<string, RegExp | null>();
const REGEX_CACHE_LIMIT = 1000;

function compile(source: string): RegExp | null {
  let regex = regexCache.get(source);
  if (regex === undefined) {
    try {
      regex = new RegExp(source);
    } catch {
      regex = null;
    }
    if (regexCache.size >= REGEX_CACHE_LIMIT) regexCache.clear();
    regexCache.set(source, regex);
  }
  return regex;
}

function digitCount(value: string): number {
  return value.startsWith('+') ? value.length - 1 : value.length;
}

type RuleOutcome = { kind: 'none' } | { kind: 'allow'; value: string; index: number } | { kind: 'refuse'; result: DialPlanResult };

function applyRules(value: string, rules: readonly DialPlanRule[]): RuleOutcome {
  for (let index = 0; index < rules.length; index++) {
    const rule = rules[index]!;
    let rewritten: string;
    if (rule.pattern !== undefined) {
      const regex = compile(rule.pattern);
      if (!regex || !regex.test(value)) continue;
      rewritten = rule.replacement !== undefined ? value.replace(regex, rule.replacement) : value;
    } else if (rule.prefix !== undefined) {
      if (!value.startsWith(rule.prefix)) continue;
      rewritten = rule.replacement !== undefined ? rule.replacement + value.slice(rule.prefix.length) : value;
    } else {
      continue; // a rule without a matcher matches nothing
    }
    const length = digitCount(value);
    if (rule.minLength !== undefined && length < rule.minLength) return { kind: 'refuse', result: refuse(484, 'Address Incomplete') };
    if (rule.maxLength !== undefined && length > rule.maxLength) return { kind: 'refuse', result: refuse(404, 'Number Too Long') };
    if (rule.action === 'deny') {
      return { kind: 'refuse', result: refuse(rule.status ?? 403, rule.reason ?? 'Destination Not Allowed') };
    }
    if (rule.strip) rewritten = rewritten.startsWith('+') ? `+${rewritten.slice(1 + rule.strip)}` : rewritten.slice(rule.strip);
    if (rule.prepend) rewritten = rule.prepend + rewritten;
    const cleaned = cleanNumber(rewritten);
    if (!cleaned.ok) return { kind: 'refuse', result: refuse(404, 'Not Found') };
    return { kind: 'allow', value: cleaned.value, index };
  }
  return { kind: 'none' };
}

/** Turns a cleaned number into E.164 digits (no `+`), or undefined when it cannot tell. */
function toE164Digits(value: string, plan: DialPlanConfig): string | undefined {
  if (value.startsWith('+')) return value.slice(1);
  const internationalPrefixes = [...(plan.internationalPrefixes ?? ['00'])].sort((a, b) => b.length - a.length);
  for (const prefix of internationalPrefixes) {
    if (prefix && value.startsWith(prefix)) return value.slice(prefix.length);
  }
  const nationalPrefix = plan.nationalPrefix ?? '0';
  if (nationalPrefix && value.startsWith(nationalPrefix)) {
    return plan.defaultCountryCode + value.slice(nationalPrefix.length);
  }
  if ((plan.nationalNumberLengths ?? []).includes(value.length)) return plan.defaultCountryCode + value;
  return undefined;
}

/**
 * Applies a dial plan. `userRules` (the user's inline rules) are tried before the plan's rules.
 * Pure: no I/O, never throws.
 */
export function applyDialPlan(dialled: string, plan: DialPlanConfig, userRules: readonly DialPlanRule[] = []): DialPlanResult {
  const text = dialledNumberText(dialled);
  if (text === undefined) return refuse(404, 'Not Found');
  const cleaned = cleanNumber(dropParenthesisedTrunkPrefix(text));
  if (!cleaned.ok) return cleaned.reason === 'empty' ? refuse(484, 'Address Incomplete') : refuse(404, 'Not Found');

  const outcome = applyRules(cleaned.value, [...userRules, ...(plan.rules ?? [])]);
  if (outcome.kind === 'refuse') return outcome.result;
  const value = outcome.kind === 'allow' ? outcome.value : cleaned.value;

  const minDigits = plan.minDigits ?? 8;
  const maxDigits = Math.min(plan.maxDigits ?? E164_MAX_DIGITS, E164_MAX_DIGITS);
  const digits = toE164Digits(value, plan);
  if (digits === undefined) {
    return digitCount(value) < minDigits ? refuse(484, 'Address Incomplete') : refuse(404, 'Not Found');
  }
  if (digits.length === 0 || digits.startsWith('0')) return refuse(404, 'Not Found');
  if (digits.length < minDigits) return refuse(484, 'Address Incomplete');
  if (digits.length > maxDigits) return refuse(404, 'Number Too Long');
  if ((plan.blockedPrefixes ?? []).some((prefix) => digits.startsWith(prefix))) return refuse(403, 'Destination Not Allowed');
  const allowed = plan.allowedPrefixes ?? [];
  if (allowed.length > 0 && !allowed.some((prefix) => digits.startsWith(prefix))) return refuse(403, 'Destination Not Allowed');
  return { ok: true, e164: `+${digits}`, digits, ...(outcome.kind === 'allow' ? { rule: outcome.index } : {}) };
}

/**
 * The plan and extra rules for a user: a named plan from config (unknown name -> the default
 * plan, so a dangling reference never opens routes the default would refuse), or the default
 * plan with the user's inline rules first.
 */
export function resolveUserDialPlan(
  userPlan: UserDialPlan | null,
  plans: Readonly<Record<string, DialPlanConfig>>,
  defaultPlan: DialPlanConfig,
): { plan: DialPlanConfig; userRules: DialPlanRule[] } {
  if (!userPlan) return { plan: defaultPlan, userRules: [] };
  if ('rules' in userPlan) return { plan: defaultPlan, userRules: userPlan.rules };
  const named = Object.prototype.hasOwnProperty.call(plans, userPlan.name) ? plans[userPlan.name] : undefined;
  return { plan: named ?? defaultPlan, userRules: [] };
}

export interface DialPlanFieldError {
  field: string;
  message: string;
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

const DIGITS = /^\d{1,15}$/;

/** Validates a dial plan from config; errors name the field (`rules[2].pattern`). */
export function validateDialPlanConfig(raw: unknown, field = 'dialPlan'): { ok: true; plan: DialPlanConfig } | { ok: false; errors: DialPlanFieldError[] } {
  const errors: DialPlanFieldError[] = [];
  const fail = (f: string, message: string): void => void errors.push({ field: f, message });
  if (!isRecord(raw)) return { ok: false, errors: [{ field, message: 'must be an object' }] };
  const known = new Set([
    'defaultCountryCode', 'nationalPrefix', 'internationalPrefixes', 'nationalNumberLengths', 'minDigits',
    'maxDigits', 'allowedPrefixes', 'blockedPrefixes', 'rules',
  ]);
  for (const key of Object.keys(raw)) if (!known.has(key)) fail(`${field}.${key}`, 'unknown field');
  if (typeof raw.defaultCountryCode !== 'string' || !/^[1-9]\d{0,2}$/.test(raw.defaultCountryCode)) {
    fail(`${field}.defaultCountryCode`, 'must be a country code of 1-3 digits');
  }
  if (raw.nationalPrefix !== undefined && (typeof raw.nationalPrefix !== 'string' || !/^\d{0,3}$/.test(raw.nationalPrefix))) {
    fail(`${field}.nationalPrefix`, 'must be 0-3 digits');
  }
  const digitList = (key: string, pattern: RegExp): void => {
    const value = raw[key];
    if (value === undefined) return;
    if (!Array.isArray(value) || value.length > 1000) return fail(`${field}.${key}`, 'must be an array (at most 1000 entries)');
    value.forEach((entry, i) => {
      if (typeof entry !== 'string' || !pattern.test(entry)) fail(`${field}.${key}[${i}]`, 'must be a string of digits');
    });
  };
  digitList('internationalPrefixes', /^\d{1,4}$/);
  digitList('allowedPrefixes', DIGITS);
  digitList('blockedPrefixes', DIGITS);
  if (raw.nationalNumberLengths !== undefined) {
    const lengths = raw.nationalNumberLengths;
    if (!Array.isArray(lengths) || lengths.some((n) => !Number.isInteger(n) || n < 1 || n > 15)) {
      fail(`${field}.nationalNumberLengths`, 'must be an array of integers 1-15');
    }
  }
  for (const key of ['minDigits', 'maxDigits'] as const) {
    const value = raw[key];
    if (value !== undefined && (!Number.isInteger(value) || (value as number) < 1 || (value as number) > E164_MAX_DIGITS)) {
      fail(`${field}.${key}`, `must be an integer 1-${E164_MAX_DIGITS}`);
    }
  }
  if (raw.rules !== undefined) {
    if (!Array.isArray(raw.rules) || raw.rules.length > 1000) fail(`${field}.rules`, 'must be an array (at most 1000 rules)');
    else raw.rules.forEach((rule, i) => validateRule(rule, `${field}.rules[${i}]`, fail));
  }
  return errors.length > 0 ? { ok: false, errors } : { ok: true, plan: raw as unknown as DialPlanConfig };
}

function validateRule(rule: unknown, field: string, fail: (field: string, message: string) => void): void {
  if (!isRecord(rule)) return fail(field, 'must be an object');
  const known = new Set(['pattern', 'prefix', 'replacement', 'strip', 'prepend', 'action', 'minLength', 'maxLength', 'status', 'reason']);
  for (const key of Object.keys(rule)) if (!known.has(key)) fail(`${field}.${key}`, 'unknown field');
  if ((rule.pattern === undefined) === (rule.prefix === undefined)) fail(field, 'needs exactly one of pattern or prefix');
  if (rule.pattern !== undefined) {
    if (typeof rule.pattern !== 'string' || rule.pattern.length === 0 || rule.pattern.length > 200) fail(`${field}.pattern`, 'must be a regular expression (1-200 chars)');
    else if (compile(rule.pattern) === null) fail(`${field}.pattern`, 'not a valid regular expression');
  }
  if (rule.prefix !== undefined && (typeof rule.prefix !== 'string' || !/^\+?\d{1,15}$/.test(rule.prefix))) fail(`${field}.prefix`, 'must be digits, optionally after +');
  if (rule.replacement !== undefined && (typeof rule.replacement !== 'string' || rule.replacement.length > 200)) fail(`${field}.replacement`, 'must be a string (at most 200 chars)');
  if (rule.prepend !== undefined && (typeof rule.prepend !== 'string' || !/^\+?\d{0,15}$/.test(rule.prepend))) fail(`${field}.prepend`, 'must be digits, optionally after +');
  if (rule.action !== 'allow' && rule.action !== 'deny') fail(`${field}.action`, 'must be "allow" or "deny"');
  for (const key of ['strip', 'minLength', 'maxLength'] as const) {
    const value = rule[key];
    if (value !== undefined && (!Number.isInteger(value) || (value as number) < 0 || (value as number) > 32)) fail(`${field}.${key}`, 'must be an integer 0-32');
  }
  if (rule.status !== undefined && rule.status !== 403 && rule.status !== 404 && rule.status !== 484) fail(`${field}.status`, 'must be 403, 404 or 484');
  if (rule.reason !== undefined && (typeof rule.reason !== 'string' || !/^[\x20-\x7e]{1,64}$/.test(rule.reason))) fail(`${field}.reason`, 'must be 1-64 printable ASCII characters');
}
