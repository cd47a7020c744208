/**
 * Validation of admin input for users. Every error names the field it is about
 * (`allowedAddresses[1]`, `sipAddress.uri`, ...). Input is untrusted JSON: unknown fields are
 * refused (they are usually typos), read-only fields too.
 */
import { checkAllowListEntry } from './ip-allow-list.js';
import {
  CONNECTION_METHODS,
  TRANSFER_CID_TYPES,
  type ConnectionMethod,
  type DialPlan,
  type DialPlanRule,
  type FieldError,
  type MaskingSettings,
  type TransferCidType,
  type UserSettings,
} from './types.js';

/** Secrets as submitted (turned into hashes by the store). */
export interface UserSecretsInput {
  password?: string;
  sipAddress?: { uri: string; username: string | null; password?: string | null } | null;
  dialIn?: { id: string; pin?: string } | null;
}

export type UserPatch = Partial<UserSettings> & UserSecretsInput;

export type Validation<T> = { ok: true; value: T } | { ok: false; errors: FieldError[] };

const READ_ONLY = new Set(['id', 'version', 'createdAt', 'updatedAt', 'hasPassword', 'credentials']);

export const LOGIN_PATTERN = /^[A-Za-z0-9][A-Za-z0-9._+-]{0,63}$/;
const NUMBER_PATTERN = /^\+?[0-9]{1,20}$/;
const INTERNAL_NUMBER_PATTERN = /^[0-9]{2,10}$/;
const DIAL_IN_ID_PATTERN = /^[0-9]{1,16}$/;
const PIN_PATTERN = /^[0-9]{4,12}$/;
const LANGUAGE_PATTERN = /^[A-Za-z]{2,3}(-[A-Za-z0-9]{2,8}){0,3}$/;
const SIP_URI_PATTERN = /^sips?:[^\s<>"]{1,255}$/i;
// eslint-disable-next-line no-control-regex
const CONTROL_CHARS = /[\u0000-\u001f\u007f]/;

type FieldCheck = (value: unknown, field: string, errors: FieldError[]) => unknown;

function fail(errors: FieldError[], field: string, message: string): undefined {
  errors.push({ field, message });
  return undefined;
}

function text(min: number, max: number, pattern?: RegExp, patternMessage?: string): FieldCheck {
  return (value, field, errors) => {
    if (typeof value !== 'string') return fail(errors, field, 'must be a string');
    if (value.length < min || value.length > max) return fail(errors, field, `must be ${min}-${max} characters`);
    if (CONTROL_CHARS.test(value)) return fail(errors, field, 'must not contain control characters');
    if (pattern && !pattern.test(value)) return fail(errors, field, patternMessage ?? 'has an invalid format');
    return value;
  };
}

function nullable(check: FieldCheck): FieldCheck {
  return (value, field, errors) => (value === null ? null : check(value, field, errors));
}

const bool: FieldCheck = (value, field, errors) =>
  typeof value === 'boolean' ? value : fail(errors, field, 'must be true or false');

function integer(min: number, max: number): FieldCheck {
  return (value, field, errors) =>
    typeof value === 'number' && Number.isInteger(value) && value >= min && value <= max
      ? value
      : fail(errors, field, `must be an integer from ${min} to ${max}`);
}

function oneOf<T extends string>(choices: readonly T[]): FieldCheck {
  return (value, field, errors) =>
    typeof value === 'string' && (choices as readonly string[]).includes(value)
      ? value
      : fail(errors, field, `must be one of ${choices.join(', ')}`);
}

function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function object<T>(shape: Record<string, FieldCheck>, required: readonly string[]): FieldCheck {
  return (value, field, errors) => {
    if (!isPlainObject(value)) return fail(errors, field, 'must be an object');
    const out: Record<string, unknown> = {};
    const before = errors.length;
    for (const key of Object.keys(value)) {
      const check = shape[key];
      if (!check) fail(errors, `${field}.${key}`, 'unknown field');
      else out[key] = check(value[key], `${field}.${key}`, errors);
    }
    for (const key of required) if (!(key in value)) fail(errors, `${field}.${key}`, 'is required');
    return errors.length === before ? (out as T) : undefined;
  };
}

const allowedAddresses: FieldCheck = (value, field, errors) => {
  if (!Array.isArray(value)) return fail(errors, field, 'must be an array of IP addresses or CIDRs');
  if (value.length > 100) return fail(errors, field, 'must have at most 100 entries');
  const before = errors.length;
  value.forEach((entry, i) => {
    if (typeof entry !== 'string') fail(errors, `${field}[${i}]`, 'not an IP address or CIDR');
    else {
      const check = checkAllowListEntry(entry.trim());
      if (!check.ok) fail(errors, `${field}[${i}]`, check.message);
    }
  });
  return errors.length === before ? (value as string[]).map((entry) => entry.trim()) : undefined;
};

const masking = object<MaskingSettings>({ enabled: bool, keepLastDigits: integer(0, 20) }, ['enabled']);

const dialPlanRule: FieldCheck = (value, field, errors) => {
  const rule = object<DialPlanRule>(
    {
      pattern: text(1, 200),
      replacement: text(0, 200),
      action: oneOf(['allow', 'deny'] as const),
    },
    ['pattern', 'action'],
  )(value, field, errors) as DialPlanRule | undefined;
  if (rule) {
    try {
      new RegExp(rule.pattern);
    } catch {
      return fail(errors, `${field}.pattern`, 'not a valid regular expression');
    }
  }
  return rule;
};

const dialPlan: FieldCheck = (value, field, errors) => {
  if (!isPlainObject(value)) return fail(errors, field, 'must be { name } or { rules: [...] }');
  if ('name' in value && !('rules' in value)) {
    return object<DialPlan>({ name: text(1, 64, /^[\w.-]+$/) }, ['name'])(value, field, errors);
  }
  if ('rules' in value && !('name' in value)) {
    const rules = value.rules;
    if (!Array.isArray(rules) || rules.length > 100) return fail(errors, `${field}.rules`, 'must be an array of at most 100 rules');
    for (const key of Object.keys(value)) if (key !== 'rules') fail(errors, `${field}.${key}`, 'unknown field');
    const before = errors.length;
    const parsed = rules.map((rule, i) => dialPlanRule(rule, `${field}.rules[${i}]`, errors));
    return errors.length === before ? { rules: parsed as DialPlanRule[] } : undefined;
  }
  return fail(errors, field, 'must be { name } or { rules: [...] }');
};

const password = text(8, 128, undefined);

const sipAddress = object<NonNullable<UserSecretsInput['sipAddress']>>(
  {
    uri: text(5, 260, SIP_URI_PATTERN, 'must be a sip: or sips: URI'),
    username: nullable(text(1, 128)),
    password: nullable(text(1, 128)),
  },
  ['uri'],
);

const dialIn = object<NonNullable<UserSecretsInput['dialIn']>>(
  {
    id: text(1, 16, DIAL_IN_ID_PATTERN, 'must be 1-16 digits'),
    pin: text(4, 12, PIN_PATTERN, 'must be 4-12 digits'),
  },
  ['id'],
);

const FIELDS: Record<string, FieldCheck> = {
  username: text(1, 128),
  displayName: nullable(text(1, 128)),
  active: bool,
  connectionMethod: oneOf(CONNECTION_METHODS),
  login: text(1, 64, LOGIN_PATTERN, 'must be 1-64 of A-Z a-z 0-9 . _ + - starting with a letter or digit'),
  allowedAddresses,
  maxSessions: integer(0, 1000),
  sessionTimeoutSeconds: integer(60, 7 * 86_400),
  manualDial: bool,
  restrictManualCalls: bool,
  threeWay: bool,
  transfer: bool,
  callerIdName: nullable(text(1, 64)),
  callerIdNumber: nullable(text(1, 21, NUMBER_PATTERN, 'must be digits, optionally with a leading +')),
  transferCidType: oneOf<TransferCidType>(TRANSFER_CID_TYPES),
  masking,
  maskingExcluded: bool,
  dialPlan: nullable(dialPlan),
  internalNumber: nullable(text(2, 10, INTERNAL_NUMBER_PATTERN, 'must be 2-10 digits')),
  language: nullable(text(2, 35, LANGUAGE_PATTERN, 'must be a language tag like en or fr-FR')),
  callConnectAnnouncement: bool,
  hangupBeep: bool,
  recordDirectCalls: bool,
  password,
  sipAddress: nullable(sipAddress),
  dialIn: nullable(dialIn),
};

/** Validates a partial update (PATCH) or the fields of a create; no cross-field rules here. */
export function validateUserFields(input: unknown): Validation<UserPatch> {
  if (!isPlainObject(input)) return { ok: false, errors: [{ field: '', message: 'body must be a JSON object' }] };
  const errors: FieldError[] = [];
  const out: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(input)) {
    if (READ_ONLY.has(key)) {
      fail(errors, key, 'is read-only');
      continue;
    }
    const check = FIELDS[key];
    if (!check) {
      fail(errors, key, 'unknown field');
      continue;
    }
    const parsed = check(value, key, errors);
    if (parsed !== undefined) out[key] = parsed;
  }
  return errors.length ? { ok: false, errors } : { ok: true, value: out as UserPatch };
}

/** Rules across fields, checked on the merged result of a create or an update. */
export function checkUserConsistency(
  user: { connectionMethod: ConnectionMethod; sipAddress: unknown; dialIn: unknown; masking: MaskingSettings },
  hasPassword: boolean,
  dialInHasPin: boolean,
): FieldError[] {
  const errors: FieldError[] = [];
  if ((user.connectionMethod === 'sip-phone' || user.connectionMethod === 'webrtc') && !hasPassword) {
    errors.push({ field: 'password', message: `is required for connectionMethod ${user.connectionMethod}` });
  }
  if (user.connectionMethod === 'sip-address' && !user.sipAddress) {
    errors.push({ field: 'sipAddress', message: 'is required for connectionMethod sip-address' });
  }
  if (user.connectionMethod === 'dial-in' && !user.dialIn) {
    errors.push({ field: 'dialIn', message: 'is required for connectionMethod dial-in' });
  }
  if (user.dialIn && !dialInHasPin) errors.push({ field: 'dialIn.pin', message: 'is required' });
  return errors;
}
