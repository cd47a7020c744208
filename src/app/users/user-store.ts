/**
 * UserStore: users in Redis (layout in keys.ts, docs/user-model.md).
 *
 * - Unique indexes (login, dial-in ID, internal number) are claimed with SET NX before the
 *   record is written, so two concurrent creates with the same login cannot both win, and
 *   released (compare-and-delete) when a value changes or the user goes.
 * - The record is one HASH; updates are compare-and-set on its `version` in a Lua script, so a
 *   failed or concurrent update stores nothing half-done.
 * - Every change publishes `user-changed`; deactivation, deletion, password reset, reset and
 *   access-relevant changes publish `kick`.
 */
import { randomUUID } from 'node:crypto';
import { computeHa1 } from '../auth/ha1.js';
import type { EventBus, KickReason } from './events.js';
import { keys } from './keys.js';
import { LuaScript, hashReply, stringReply, type Redis } from './redis.js';
import { generatePassword, hashPin } from './secrets.js';
import {
  DEFAULT_SESSION_TIMEOUT_SECONDS,
  REGISTRANT_FIELDS,
  toPublicUser,
  type DigestCredentials,
  type FieldError,
  type PublicUser,
  type Registrant,
  type UserRecord,
  type UserSettings,
} from './types.js';
import { checkUserConsistency, validateUserFields, type UserPatch } from './validation.js';

export type UserStoreErrorCode = 'validation' | 'conflict' | 'not-found';

export class UserStoreError extends Error {
  constructor(
    readonly code: UserStoreErrorCode,
    message: string,
    readonly errors: FieldError[] = [],
  ) {
    super(message);
    this.name = 'UserStoreError';
  }
}

export interface UserStoreOptions {
  redis: Redis;
  /** Digest realm the HA1s are computed for (changing it invalidates every stored HA1). */
  realm: string;
  /** Where change and kick events go; without it nothing is published (single-process tests). */
  events?: EventBus;
}

export interface UserPage {
  users: PublicUser[];
  /** Pass back as `cursor` for the next page; null at the end. */
  nextCursor: string | null;
}

const RECORD_FIELDS = [
  'id', 'username', 'displayName', 'active', 'connectionMethod', 'login', 'allowedAddresses', 'maxSessions',
  'sessionTimeoutSeconds', 'manualDial', 'restrictManualCalls', 'threeWay', 'transfer', 'callerIdName',
  'callerIdNumber', 'transferCidType', 'masking', 'maskingExcluded', 'dialPlan', 'internalNumber', 'language',
  'callConnectAnnouncement', 'hangupBeep', 'recordDirectCalls',
  'credentials', 'sipAddress', 'dialIn', 'createdAt', 'updatedAt',
] as const satisfies ReadonlyArray<keyof UserRecord>;

const DEFAULT_SETTINGS: Omit<UserSettings, 'username' | 'login' | 'connectionMethod'> = {
  displayName: null,
  active: true,
  allowedAddresses: [],
  maxSessions: 0,
  sessionTimeoutSeconds: DEFAULT_SESSION_TIMEOUT_SECONDS,
  manualDial: true,
  restrictManualCalls: false,
  threeWay: true,
  transfer: true,
  callerIdName: null,
  callerIdNumber: null,
  transferCidType: 'campaign',
  masking: { enabled: false, keepLastDigits: 4 },
  maskingExcluded: false,
  dialPlan: null,
  callConnectAnnouncement: false,
  hangupBeep: false,
  recordDirectCalls: false,
  internalNumber: null,
  language: null,
};

/** Writes a whole record if the stored version is still ARGV[1]; returns the new version, -1 gone, -2 changed meanwhile. */
const COMPARE_AND_SET = new LuaScript(
  'user-cas',
  `local v = redis.call('HGET', KEYS[1], 'version')
if not v then return -1 end
if v ~= ARGV[1] then return -2 end
local nv = tonumber(v) + 1
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], 'version', nv, unpack(ARGV, 2))
return nv`,
);

/** Deletes KEYS[1] only if it still holds ARGV[1] (releasing a unique index we own). */
const RELEASE_INDEX = new LuaScript(
  'index-release',
  `if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0`,
);

/** Deletes a user's keys (all in one slot) if the record is still at version ARGV[1]. */
const DELETE_USER = new LuaScript(
  'user-delete',
  `local v = redis.call('HGET', KEYS[1], 'version')
if not v then return -1 end
if v ~= ARGV[1] then return -2 end
redis.call('DEL', KEYS[1], KEYS[2], KEYS[3], KEYS[4])
return 1`,
);

interface UniqueIndex {
  field: string;
  key: (user: UserRecord) => string | null;
}

const UNIQUE_INDEXES: UniqueIndex[] = [
  { field: 'login', key: (u) => keys.loginIndex(u.login) },
  { field: 'dialIn.id', key: (u) => (u.dialIn ? keys.dialInIndex(u.dialIn.id) : null) },
  { field: 'internalNumber', key: (u) => (u.internalNumber ? keys.internalNumberIndex(u.internalNumber) : null) },
];

const MAX_UPDATE_ATTEMPTS = 5;

export class UserStore {
  readonly realm: string;
  private readonly redis: Redis;
  private readonly events: EventBus | undefined;

  constructor(options: UserStoreOptions) {
    this.redis = options.redis;
    this.realm = options.realm;
    this.events = options.events;
  }

  /** Creates a user from admin input; throws UserStoreError (validation/conflict). */
  async create(input: unknown): Promise<PublicUser> {
    const parsed = validateUserFields(input);
    if (!parsed.ok) throw new UserStoreError('validation', 'invalid user', parsed.errors);
    const fields = parsed.value;
    const missing = (['username', 'login', 'connectionMethod'] as const)
      .filter((f) => fields[f] === undefined)
      .map((f) => ({ field: f, message: 'is required' }));
    if (missing.length) throw new UserStoreError('validation', 'invalid user', missing);

    const now = new Date().toISOString();
    const base: UserRecord = {
      ...DEFAULT_SETTINGS,
      username: fields.username!,
      login: fields.login!,
      connectionMethod: fields.connectionMethod!,
      id: randomUUID(),
      credentials: null,
      sipAddress: null,
      dialIn: null,
      createdAt: now,
      updatedAt: now,
      version: 1,
    };
    const record = this.applyPatch(base, fields);

    await this.claimIndexes(record, null);
    try {
      await Promise.all([
        this.redis.send(['HSET', keys.user(record.id), 'version', '1', ...encodeRecord(record)]),
        this.redis.send(['ZADD', keys.userIds(), '0', record.id]),
      ]);
    } catch (err) {
      await this.releaseIndexes(record, null);
      throw err;
    }
    await this.publishChanged(record, [record.login]);
    return toPublicUser(record);
  }

  async get(id: string): Promise<UserRecord | null> {
    if (!isUserId(id)) return null;
    return decodeRecord(hashReply(await this.redis.send(['HGETALL', keys.user(id)])));
  }

  async getByLogin(login: string): Promise<UserRecord | null> {
    if (login.length === 0 || login.length > 64) return null;
    const id = stringReply(await this.redis.send(['GET', keys.loginIndex(login)]));
    if (!id) return null;
    const user = await this.get(id);
    // The index is claimed before the record is written and released after it moves on.
    return user && user.login.toLowerCase() === login.toLowerCase() ? user : null;
  }

  /**
   * The registrar's view of a user by login: only the fields of a Registrant, read with HMGET
   * (no decoding of the call-side settings on the REGISTER path).
   */
  async getRegistrant(login: string): Promise<Registrant | null> {
    if (login.length === 0 || login.length > 64) return null;
    const id = stringReply(await this.redis.send(['GET', keys.loginIndex(login)]));
    if (!id || !isUserId(id)) return null;
    const reply = await this.redis.send(['HMGET', keys.user(id), ...REGISTRANT_FIELDS]);
    const registrant = Array.isArray(reply) ? decodeRegistrant(reply) : null;
    return registrant && registrant.login.toLowerCase() === login.toLowerCase() ? registrant : null;
  }

  async getByDialInId(dialInId: string): Promise<UserRecord | null> {
    const id = stringReply(await this.redis.send(['GET', keys.dialInIndex(dialInId)]));
    const user = id ? await this.get(id) : null;
    return user && user.dialIn?.id === dialInId ? user : null;
  }

  async getByInternalNumber(number: string): Promise<UserRecord | null> {
    const id = stringReply(await this.redis.send(['GET', keys.internalNumberIndex(number)]));
    const user = id ? await this.get(id) : null;
    return user && user.internalNumber === number ? user : null;
  }

  /** Applies admin input to a user; validation failures and conflicts store nothing. */
  async update(id: string, input: unknown): Promise<PublicUser> {
    const parsed = validateUserFields(input);
    if (!parsed.ok) throw new UserStoreError('validation', 'invalid user', parsed.errors);
    return toPublicUser(await this.modify(id, (current) => this.applyPatch(current, parsed.value)));
  }

  async setActive(id: string, active: boolean): Promise<PublicUser> {
    return toPublicUser(await this.modify(id, (current) => ({ ...current, active })));
  }

  /** Sets a new generated password; returns it (the only time it is visible). Kicks the user. */
  async resetPassword(id: string): Promise<{ user: PublicUser; password: string }> {
    const password = generatePassword();
    const user = await this.modify(id, (current) => ({ ...current, credentials: this.credentialsFor(current.login, password) }));
    return { user: toPublicUser(user), password };
  }

  /** "Reset user": clears failure counters and bans, then kicks every session. */
  async resetUser(id: string): Promise<void> {
    const user = await this.get(id);
    if (!user) throw new UserStoreError('not-found', 'no such user');
    await this.redis.send(['DEL', keys.userFailures(id), keys.userBan(id)]);
    await this.kick(id, 'reset');
  }

  async delete(id: string): Promise<boolean> {
    for (let attempt = 0; attempt < MAX_UPDATE_ATTEMPTS; attempt++) {
      const user = await this.get(id);
      if (!user) return false;
      const result = await this.redis.runScript(
        DELETE_USER,
        [keys.user(id), keys.bindings(id), keys.userFailures(id), keys.userBan(id)],
        [String(user.version)],
      );
      if (result === -2) continue;
      if (result === -1) return false;
      await this.redis.send(['ZREM', keys.userIds(), id]);
      await this.releaseIndexes(user, null);
      if (this.events) {
        await this.events.publish({ type: 'user-changed', userId: id, logins: [user.login], version: user.version + 1, deleted: true });
      }
      await this.kick(id, 'deleted');
      return true;
    }
    throw new UserStoreError('conflict', 'user changed concurrently, try again');
  }

  /** Users in id order; `cursor` is the last id of the previous page. */
  async list(options: { cursor?: string | null; limit?: number } = {}): Promise<UserPage> {
    const limit = Math.max(1, Math.min(options.limit ?? 100, 500));
    const start = options.cursor ? `(${options.cursor}` : '-';
    const reply = await this.redis.send(['ZRANGE', keys.userIds(), start, '+', 'BYLEX', 'LIMIT', '0', String(limit + 1)]);
    const ids = Array.isArray(reply) ? reply.map(String) : [];
    const pageIds = ids.slice(0, limit);
    const records = await Promise.all(pageIds.map((id) => this.get(id)));
    const users = records.filter((u): u is UserRecord => u !== null).map(toPublicUser);
    return { users, nextCursor: ids.length > limit ? (pageIds[pageIds.length - 1] ?? null) : null };
  }

  /** Publishes a kick: every instance removes the user's bindings and ends their sessions. */
  async kick(userId: string, reason: KickReason, bindingId?: string): Promise<void> {
    if (this.events) await this.events.publish({ type: 'kick', userId, reason, ...(bindingId ? { bindingId } : {}) });
  }

  private credentialsFor(login: string, password: string): DigestCredentials {
    return {
      realm: this.realm,
      ha1Md5: computeHa1('MD5', login, this.realm, password),
      ha1Sha256: computeHa1('SHA-256', login, this.realm, password),
      ha1Sha512_256: computeHa1('SHA-512-256', login, this.realm, password),
    };
  }

  /** Merges validated input into a record and checks cross-field rules. */
  private applyPatch(current: UserRecord, patch: UserPatch): UserRecord {
    const { password, sipAddress, dialIn, masking, ...settings } = patch;
    const next: UserRecord = { ...current, ...settings };
    if (masking) next.masking = { enabled: masking.enabled, keepLastDigits: masking.keepLastDigits ?? current.masking.keepLastDigits };
    const errors: FieldError[] = [];
    if (password !== undefined) next.credentials = this.credentialsFor(next.login, password);
    else if (next.login !== current.login && current.credentials) {
      // HA1 covers the login: a new login needs the password again.
      errors.push({ field: 'password', message: 'is required when login changes' });
    }
    if (sipAddress !== undefined) {
      next.sipAddress = sipAddress === null
        ? null
        : {
            uri: sipAddress.uri,
            username: sipAddress.username ?? null,
            // Omitted password keeps the stored one (it is never shown, so clients cannot echo it back).
            password: sipAddress.password !== undefined ? sipAddress.password : (current.sipAddress?.password ?? null),
          };
    }
    let dialInHasPin = current.dialIn !== null && current.dialIn.pinHash !== '';
    if (dialIn === null) next.dialIn = null;
    else if (dialIn !== undefined) {
      if (dialIn.pin !== undefined) {
        next.dialIn = { id: dialIn.id, pinHash: hashPin(dialIn.pin) };
        dialInHasPin = true;
      } else {
        next.dialIn = { id: dialIn.id, pinHash: current.dialIn?.pinHash ?? '' };
      }
    }
    errors.push(...checkUserConsistency(next, next.credentials !== null, dialInHasPin));
    if (errors.length) throw new UserStoreError('validation', 'invalid user', errors);
    return next;
  }

  /** Read-modify-write with compare-and-set on `version`; publishes change and kick events. */
  private async modify(id: string, change: (current: UserRecord) => UserRecord): Promise<UserRecord> {
    for (let attempt = 0; attempt < MAX_UPDATE_ATTEMPTS; attempt++) {
      const current = await this.get(id);
      if (!current) throw new UserStoreError('not-found', 'no such user');
      const next: UserRecord = { ...change(current), id: current.id, createdAt: current.createdAt, updatedAt: new Date().toISOString() };
      await this.claimIndexes(next, current);
      const result = await this.redis.runScript(COMPARE_AND_SET, [keys.user(id)], [String(current.version), ...encodeRecord(next)]);
      if (result === -2 || result === -1) {
        await this.releaseIndexes(next, current);
        if (result === -1) throw new UserStoreError('not-found', 'no such user');
        continue;
      }
      next.version = Number(result);
      await this.releaseIndexes(current, next);
      await this.publishChanged(next, [...new Set([current.login, next.login])]);
      const reason = kickReasonFor(current, next);
      if (reason) await this.kick(id, reason);
      return next;
    }
    throw new UserStoreError('conflict', 'user changed concurrently, try again');
  }

  /** Claims the unique index keys `user` needs that `previous` does not already hold. */
  private async claimIndexes(user: UserRecord, previous: UserRecord | null): Promise<void> {
    const wanted = UNIQUE_INDEXES.map((index) => ({ index, key: index.key(user) }))
      .filter((w): w is { index: UniqueIndex; key: string } => w.key !== null && (previous === null || w.index.key(previous) !== w.key));
    const results = await Promise.all(
      wanted.map(async (w) => {
        const set = await this.redis.send(['SET', w.key, user.id, 'NX']);
        if (set !== null) return { ...w, claimed: true };
        // Already ours (a retried update) counts as claimed.
        const owner = stringReply(await this.redis.send(['GET', w.key]));
        return { ...w, claimed: owner === user.id };
      }),
    );
    const conflicts = results.filter((r) => !r.claimed);
    if (conflicts.length) {
      await Promise.all(
        results.filter((r) => r.claimed).map((r) => this.redis.runScript(RELEASE_INDEX, [r.key], [user.id])),
      );
      throw new UserStoreError(
        'conflict',
        'already in use',
        conflicts.map((c) => ({ field: c.index.field, message: 'already in use by another user' })),
      );
    }
  }

  /** Releases index keys held for `user` that `keep` no longer needs (all of them when keep is null). */
  private async releaseIndexes(user: UserRecord, keep: UserRecord | null): Promise<void> {
    const stale = UNIQUE_INDEXES.map((index) => index.key(user)).filter(
      (key): key is string => key !== null && (keep === null || !UNIQUE_INDEXES.some((index) => index.key(keep) === key)),
    );
    await Promise.all(stale.map((key) => this.redis.runScript(RELEASE_INDEX, [key], [user.id])));
  }

  private async publishChanged(user: UserRecord, logins: string[]): Promise<void> {
    if (this.events) await this.events.publish({ type: 'user-changed', userId: user.id, logins, version: user.version });
  }
}

function kickReasonFor(before: UserRecord, after: UserRecord): KickReason | null {
  if (before.active && !after.active) return 'deactivated';
  if (before.credentials && after.credentials && before.credentials.ha1Sha256 !== after.credentials.ha1Sha256) {
    return 'password-reset';
  }
  if (
    before.login !== after.login ||
    before.connectionMethod !== after.connectionMethod ||
    before.allowedAddresses.join(',') !== after.allowedAddresses.join(',')
  ) {
    return 'settings-changed';
  }
  return null;
}

const USER_ID_PATTERN = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

export function isUserId(id: string): boolean {
  return USER_ID_PATTERN.test(id);
}

/** HASH field/value pairs: each field JSON-encoded (version is written separately as an integer). */
function encodeRecord(user: UserRecord): string[] {
  const out: string[] = [];
  for (const field of RECORD_FIELDS) out.push(field, JSON.stringify(user[field]));
  return out;
}

/** HMGET of REGISTRANT_FIELDS (in that order) -> Registrant; null when absent or malformed. */
function decodeRegistrant(values: unknown[]): Registrant | null {
  const raw = values.map(stringReply);
  const [id, login, version, active, connectionMethod, allowedAddresses, maxSessions, sessionTimeoutSeconds, credentials] = raw;
  if (!id || !login || !version || !connectionMethod) return null;
  try {
    const registrant: Registrant = {
      id: JSON.parse(id) as string,
      login: JSON.parse(login) as string,
      version: Number(version),
      active: active ? (JSON.parse(active) as boolean) : DEFAULT_SETTINGS.active,
      connectionMethod: JSON.parse(connectionMethod) as Registrant['connectionMethod'],
      allowedAddresses: allowedAddresses ? (JSON.parse(allowedAddresses) as string[]) : [],
      maxSessions: maxSessions ? (JSON.parse(maxSessions) as number) : DEFAULT_SETTINGS.maxSessions,
      sessionTimeoutSeconds: sessionTimeoutSeconds ? (JSON.parse(sessionTimeoutSeconds) as number) : DEFAULT_SETTINGS.sessionTimeoutSeconds,
      credentials: credentials ? (JSON.parse(credentials) as Registrant['credentials']) : null,
    };
    return typeof registrant.id === 'string' && typeof registrant.login === 'string' && Number.isFinite(registrant.version) ? registrant : null;
  } catch {
    return null;
  }
}

function decodeRecord(hash: Record<string, string>): UserRecord | null {
  if (!hash.version || !hash.id) return null;
  const record: Record<string, unknown> = { ...DEFAULT_SETTINGS, credentials: null, sipAddress: null, dialIn: null };
  for (const field of RECORD_FIELDS) {
    const raw = hash[field];
    if (raw === undefined) continue;
    try {
      record[field] = JSON.parse(raw);
    } catch {
      return null;
    }
  }
  record.version = Number(hash.version);
  return record as unknown as UserRecord;
}
