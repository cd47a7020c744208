import { describe, expect, it } from 'vitest';
import { computeHa1 } from '../auth/ha1.js';
import { EventBus, type DialcoreEvent } from './events.js';
import { compileAllowList } from './ip-allow-list.js';
import { keys } from './keys.js';
import { hashReply } from './redis.js';
import { verifyPin } from './secrets.js';
import { useTestRedis, waitFor, type TestRedis } from './testing.js';
import { UserCache } from './user-cache.js';
import { UserStore, UserStoreError } from './user-store.js';

const REALM = 'dialcore.test';
let redis: TestRedis;

useTestRedis((started) => (redis = started));

const phone = (login: string, extra: Record<string, unknown> = {}) => ({
  username: `Agent ${login}`,
  login,
  password: 'secret-password-1',
  connectionMethod: 'sip-phone',
  ...extra,
});

async function storeError(promise: Promise<unknown>): Promise<UserStoreError> {
  try {
    await promise;
  } catch (err) {
    if (err instanceof UserStoreError) return err;
    throw err;
  }
  throw new Error('expected a UserStoreError');
}

describe('UserStore', () => {
  it('creates a user with defaults, HA1s only, and reads it back by id and login', async () => {
    const store = new UserStore({ redis: await redis.connect(), realm: REALM });
    const created = await store.create(phone('1001', { allowedAddresses: ['10.0.0.0/8', '2001:db8::1'] }));
    expect(created).toMatchObject({
      login: '1001',
      active: true,
      connectionMethod: 'sip-phone',
      maxSessions: 0,
      sessionTimeoutSeconds: 43_200,
      transferCidType: 'campaign',
      hasPassword: true,
      version: 1,
    });
    expect(JSON.stringify(created)).not.toContain('secret-password-1');
    expect(created).not.toHaveProperty('credentials');

    const record = await store.getByLogin('1001');
    expect(record?.id).toBe(created.id);
    expect(record?.credentials?.ha1Md5).toBe(computeHa1('MD5', '1001', REALM, 'secret-password-1'));
    expect(record?.credentials?.ha1Sha256).toBe(computeHa1('SHA-256', '1001', REALM, 'secret-password-1'));
    // Nothing in Redis holds the plaintext.
    const raw = hashReply(await (await redis.connect()).send(['HGETALL', keys.user(created.id)]));
    expect(JSON.stringify(raw)).not.toContain('secret-password-1');
    expect(raw.version).toBe('1');
  });

  it('validation errors name the field and store nothing', async () => {
    const store = new UserStore({ redis: await redis.connect(), realm: REALM });
    const err = await storeError(
      store.create(phone('1002', { allowedAddresses: ['10.0.0.1', 'nope', '10.0.0.0/33'], maxSessions: -1, bogus: 1 })),
    );
    expect(err.code).toBe('validation');
    expect(err.errors).toEqual(
      expect.arrayContaining([
        { field: 'allowedAddresses[1]', message: 'not an IP address or CIDR' },
        { field: 'allowedAddresses[2]', message: 'not an IP address or CIDR' },
        { field: 'maxSessions', message: 'must be an integer from 0 to 1000' },
        { field: 'bogus', message: 'unknown field' },
      ]),
    );
    expect(await store.getByLogin('1002')).toBeNull();
    expect((await storeError(store.create({ username: 'x', connectionMethod: 'webrtc' }))).errors).toContainEqual({
      field: 'login',
      message: 'is required',
    });
    expect((await storeError(store.create({ username: 'x', login: '1003', connectionMethod: 'webrtc' }))).errors).toContainEqual({
      field: 'password',
      message: 'is required for connectionMethod webrtc',
    });
    expect((await storeError(store.create(phone('1004', { sipAddress: { uri: 'http://x' } })))).errors).toContainEqual({
      field: 'sipAddress.uri',
      message: 'must be a sip: or sips: URI',
    });
    expect((await storeError(store.create(phone('1005', { dialPlan: { rules: [{ pattern: '(', action: 'allow' }] } })))).errors).toContainEqual({
      field: 'dialPlan.rules[0].pattern',
      message: 'not a valid regular expression',
    });

    const user = await store.create(phone('1006'));
    const patchErr = await storeError(store.update(user.id, { maxSessions: 2, allowedAddresses: ['1.2.3.4', 'bad'] }));
    expect(patchErr.errors).toEqual([{ field: 'allowedAddresses[1]', message: 'not an IP address or CIDR' }]);
    expect((await store.get(user.id))?.maxSessions).toBe(0);
    expect((await store.get(user.id))?.version).toBe(1);
  });

  it('refuses a duplicate login, also under a race of concurrent creates', async () => {
    const stores = await Promise.all([redis.connect(), redis.connect(), redis.connect()]).then((clients) =>
      clients.map((client) => new UserStore({ redis: client, realm: REALM })),
    );
    const results = await Promise.allSettled(
      Array.from({ length: 12 }, (_, i) => stores[i % 3]!.create(phone('2000', { username: `racer ${i}` }))),
    );
    const won = results.filter((r) => r.status === 'fulfilled');
    const lost = results.filter((r): r is PromiseRejectedResult => r.status === 'rejected');
    expect(won).toHaveLength(1);
    expect(lost).toHaveLength(11);
    for (const r of lost) {
      expect(r.reason).toBeInstanceOf(UserStoreError);
      expect((r.reason as UserStoreError).code).toBe('conflict');
      expect((r.reason as UserStoreError).errors).toEqual([{ field: 'login', message: 'already in use by another user' }]);
    }
    const page = await stores[0]!.list();
    expect(page.users).toHaveLength(1);
    // Case-insensitive uniqueness.
    await stores[0]!.create(phone('Desk7'));
    expect((await storeError(stores[1]!.create(phone('desk7')))).code).toBe('conflict');
  });

  it('update changes login (requires the password again), releases the old index and bumps version', async () => {
    const store = new UserStore({ redis: await redis.connect(), realm: REALM });
    const user = await store.create(phone('3000', { internalNumber: '300', dialIn: { id: '4242', pin: '1234' } }));
    expect((await storeError(store.update(user.id, { login: '3001' }))).errors).toEqual([
      { field: 'password', message: 'is required when login changes' },
    ]);
    const updated = await store.update(user.id, { login: '3001', password: 'another-password', internalNumber: '301' });
    expect(updated.version).toBe(2);
    expect(await store.getByLogin('3000')).toBeNull();
    expect((await store.getByLogin('3001'))?.credentials?.ha1Md5).toBe(computeHa1('MD5', '3001', REALM, 'another-password'));
    expect(await store.getByInternalNumber('300')).toBeNull();
    expect((await store.getByInternalNumber('301'))?.id).toBe(user.id);
    // The released login is free again.
    await store.create(phone('3000'));
    const record = await store.getByDialInId('4242');
    expect(record && verifyPin('1234', record.dialIn!.pinHash)).toBe(true);
    expect(record && verifyPin('9999', record.dialIn!.pinHash)).toBe(false);
    expect(updated.dialIn).toEqual({ id: '4242', hasPin: true });
  });

  it('dial-in: IDs are unique, PINs 4-12 digits and stored only as a hash, a reset PIN replaces the old one', async () => {
    const store = new UserStore({ redis: await redis.connect(), realm: REALM });
    const dialIn = (login: string, id: string, pin?: string) => ({ username: login, login, connectionMethod: 'dial-in', dialIn: { id, ...(pin !== undefined ? { pin } : {}) } });
    const user = await store.create(dialIn('di1', '777', '246810'));
    const taken = await storeError(store.create(dialIn('di2', '777', '135790')));
    expect(taken.code).toBe('conflict');
    expect(taken.errors).toEqual([{ field: 'dialIn.id', message: 'already in use by another user' }]);
    expect((await storeError(store.create(dialIn('di3', '778', '12')))).errors).toEqual([{ field: 'dialIn.pin', message: 'must be 4-12 characters' }]);
    expect((await storeError(store.create(dialIn('di3', '778', '12ab')))).errors).toEqual([{ field: 'dialIn.pin', message: 'must be 4-12 digits' }]);
    expect((await storeError(store.create(dialIn('di4', '12a', '1234')))).errors).toEqual([{ field: 'dialIn.id', message: 'must be 1-16 digits' }]);
    expect((await storeError(store.create(dialIn('di5', '779')))).errors).toEqual([{ field: 'dialIn.pin', message: 'is required' }]);
    const raw = JSON.stringify(hashReply(await (await redis.connect()).send(['HGETALL', keys.user(user.id)])));
    expect(raw).not.toContain('246810');
    await store.update(user.id, { dialIn: { id: '777', pin: '112233' } });
    const record = await store.getByDialInId('777');
    expect(record && verifyPin('112233', record.dialIn!.pinHash)).toBe(true);
    expect(record && verifyPin('246810', record.dialIn!.pinHash)).toBe(false);
  });

  it('never returns the PBX password; omitting it on update keeps it', async () => {
    const store = new UserStore({ redis: await redis.connect(), realm: REALM });
    const user = await store.create({
      username: 'PBX user',
      login: '5000',
      connectionMethod: 'sip-address',
      sipAddress: { uri: 'sip:200@pbx.example.com', username: 'dialer', password: 'pbx-secret' },
    });
    expect(JSON.stringify(user)).not.toContain('pbx-secret');
    expect(user.sipAddress).toEqual({ uri: 'sip:200@pbx.example.com', username: 'dialer', hasPassword: true });
    await store.update(user.id, { sipAddress: { uri: 'sip:201@pbx.example.com', username: 'dialer' } });
    expect((await store.get(user.id))?.sipAddress).toEqual({ uri: 'sip:201@pbx.example.com', username: 'dialer', password: 'pbx-secret' });
  });

  it('lists with a cursor, deletes, resets password and publishes events', async () => {
    const bus = new EventBus(await redis.connect());
    await bus.start();
    const seen: DialcoreEvent[] = [];
    bus.on((e) => seen.push(e));
    const store = new UserStore({ redis: await redis.connect(), realm: REALM, events: bus });
    const ids: string[] = [];
    for (let i = 0; i < 7; i++) ids.push((await store.create(phone(`60${i}`))).id);
    const all: string[] = [];
    let cursor: string | null = null;
    let pages = 0;
    do {
      const page = await store.list({ cursor, limit: 3 });
      all.push(...page.users.map((u) => u.id));
      cursor = page.nextCursor;
      pages++;
    } while (cursor);
    expect(pages).toBe(3);
    expect(all.sort()).toEqual([...ids].sort());

    const { password } = await store.resetPassword(ids[0]!);
    expect(password).toMatch(/^[A-Za-z0-9]{20}$/);
    expect((await store.get(ids[0]!))?.credentials?.ha1Sha256).toBe(computeHa1('SHA-256', '600', REALM, password));
    await store.setActive(ids[1]!, false);
    expect(await store.delete(ids[2]!)).toBe(true);
    expect(await store.delete(ids[2]!)).toBe(false);
    expect(await store.get(ids[2]!)).toBeNull();
    expect(await store.getByLogin('602')).toBeNull();

    await waitFor(() => seen.filter((e) => e.type === 'kick').length >= 3);
    expect(seen.filter((e) => e.type === 'kick')).toEqual([
      { type: 'kick', userId: ids[0], reason: 'password-reset' },
      { type: 'kick', userId: ids[1], reason: 'deactivated' },
      { type: 'kick', userId: ids[2], reason: 'deleted' },
    ]);
    expect(seen.filter((e) => e.type === 'user-changed').length).toBeGreaterThanOrEqual(10);
    await bus.stop();
  });

  it('concurrent updates never lose one (version compare-and-set)', async () => {
    const store = new UserStore({ redis: await redis.connect(), realm: REALM });
    const other = new UserStore({ redis: await redis.connect(), realm: REALM });
    const user = await store.create(phone('7000'));
    await Promise.all([
      store.update(user.id, { callerIdName: 'Alice' }),
      other.update(user.id, { callerIdNumber: '+15550100' }),
      store.update(user.id, { maxSessions: 3 }),
    ]);
    const final = await store.get(user.id);
    expect(final).toMatchObject({ callerIdName: 'Alice', callerIdNumber: '+15550100', maxSessions: 3, version: 4 });
  });
});

describe('UserCache across two instances', () => {
  it('serves from memory and sees a change made through another instance at once', async () => {
    // Instance A: admin side. Instance B: a registrar with its own cache.
    const busA = new EventBus(await redis.connect());
    const busB = new EventBus(await redis.connect());
    await Promise.all([busA.start(), busB.start()]);
    const storeA = new UserStore({ redis: await redis.connect(), realm: REALM, events: busA });
    const storeB = new UserStore({ redis: await redis.connect(), realm: REALM, events: busB });
    const cacheB = new UserCache(storeB, busB);

    expect(await cacheB.getRegistrant('8000')).toBeNull(); // negative entry
    const user = await storeA.create(phone('8000'));
    await waitFor(() => cacheB.size === 0);
    expect((await cacheB.getRegistrant('8000'))?.id).toBe(user.id);
    expect(cacheB.size).toBe(1);

    await storeA.setActive(user.id, false);
    await waitFor(() => cacheB.size === 0, 1000);
    expect((await cacheB.getRegistrant('8000'))?.active).toBe(false);
    expect((await cacheB.getRegistrant('8000'))?.version).toBe(2);
    // full records (call-side settings) are read from Redis, not cached
    expect((await cacheB.getByLogin('8000'))?.transferCidType).toBe('campaign');
    expect(cacheB.size).toBe(1);
    cacheB.close();
    await Promise.all([busA.stop(), busB.stop()]);
  });

  it('keeps only the compact registrant, at most maxEntries (least recently used out), for ttlMs', async () => {
    const store = new UserStore({ redis: await redis.connect(), realm: REALM });
    for (const login of ['8101', '8102', '8103']) await store.create(phone(login));
    const cache = new UserCache(store, undefined, { maxEntries: 2, ttlMs: 1000 });
    const t0 = Date.now();
    const first = await cache.getRegistrant('8101', t0);
    expect(Object.keys(first ?? {}).sort()).toEqual(
      ['active', 'allowedAddresses', 'connectionMethod', 'credentials', 'id', 'login', 'maxSessions', 'sessionTimeoutSeconds', 'version'],
    );
    await cache.getRegistrant('8102', t0);
    expect(await cache.getRegistrant('8101', t0)).toBe(first); // a hit, now the most recently used
    await cache.getRegistrant('8103', t0); // evicts 8102, the least recently used
    expect(cache.size).toBe(2);
    expect(await cache.getRegistrant('8101', t0)).toBe(first);
    const reloaded = await cache.getRegistrant('8102', t0);
    expect(reloaded).not.toBeNull();
    expect(await cache.getRegistrant('8102', t0)).toBe(reloaded);
    // past the TTL the entry is read again
    const later = await cache.getRegistrant('8102', t0 + 1001);
    expect(later).not.toBe(reloaded);
    expect(later?.id).toBe(reloaded?.id);
    cache.close();
  });
});

describe('allow-list matching', () => {
  it('matches IPv4, IPv6, CIDRs and IPv4-mapped sources', () => {
    const list = compileAllowList(['192.0.2.10', '10.0.0.0/8', '2001:db8::/32', '::1']);
    expect(list.allows('192.0.2.10')).toBe(true);
    expect(list.allows('192.0.2.11')).toBe(false);
    expect(list.allows('10.200.1.1')).toBe(true);
    expect(list.allows('::ffff:10.1.2.3')).toBe(true);
    expect(list.allows('2001:db8:1::5')).toBe(true);
    expect(list.allows('2001:db9::5')).toBe(false);
    expect(list.allows('::1')).toBe(true);
    expect(list.allows('not-an-ip')).toBe(false);
    expect(compileAllowList([]).allows('203.0.113.9')).toBe(true);
  });
});
