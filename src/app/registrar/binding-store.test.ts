import { describe, expect, it } from 'vitest';
import { keys } from '../users/keys.js';
import { useTestRedis, type TestRedis } from '../users/testing.js';
import { UserStore } from '../users/user-store.js';
import { BindingStore, bindingIdFor, type ApplyRequest } from './binding-store.js';

const REALM = 'dialcore.test';
let redis: TestRedis;

useTestRedis((started) => (redis = started));

function registration(
  user: { id: string; version: number },
  contact: string,
  options: { expires?: number; transport?: string; now: number; cseq?: number; params?: Record<string, string | null>; removeAll?: boolean },
): ApplyRequest {
  const transport = options.transport ?? 'udp';
  return {
    userId: user.id,
    userVersion: user.version,
    nonce: 'n',
    nc: 0,
    nonceTtlMs: 1000,
    maxSessions: 0,
    sessionTimeoutMs: 43_200_000,
    minExpiresMs: 60_000,
    removeAll: options.removeAll ?? false,
    now: options.now,
    changes: options.removeAll
      ? []
      : [{
        expires: options.expires ?? 3600,
        binding: {
          id: bindingIdFor(contact, null, null), userId: user.id, contact, params: options.params ?? {}, instanceId: null, regId: null,
          callId: `c-${contact}`, cseq: options.cseq ?? 1, flow: { address: '192.0.2.1', port: 5060, transport, receivedOn: null },
          userAgent: null, connectionMethod: transport === 'ws' ? 'webrtc' : 'sip-phone',
        },
      }],
  };
}

describe('BindingStore', () => {
  it('answers a REGISTER with what the 200 needs of every current contact, oldest first', async () => {
    const client = await redis.connect();
    const store = new UserStore({ redis: client, realm: REALM });
    const bindings = new BindingStore(client);
    const created = await store.create({ username: 'a', login: '5001', password: 'secret-password-1', connectionMethod: 'sip-phone' });
    const user = { id: created.id, version: created.version };
    const now = Date.now();
    await bindings.apply(registration(user, 'sip:5001@192.0.2.1:5060', { now }));
    const result = await bindings.apply(registration(user, 'sip:5001@192.0.2.1:5062', { now: now + 1000, expires: 600, params: { q: '0.5', lr: null } }));
    expect(result.status).toBe('ok');
    if (result.status !== 'ok') return;
    expect(result.bindings).toEqual([
      {
        id: bindingIdFor('sip:5001@192.0.2.1:5060', null, null), userId: user.id, contact: 'sip:5001@192.0.2.1:5060', params: {},
        firstRegisteredAt: now, expiresAt: now + 3_600_000, flow: { transport: 'udp', address: '192.0.2.1', port: 5060 },
      },
      {
        id: bindingIdFor('sip:5001@192.0.2.1:5062', null, null), userId: user.id, contact: 'sip:5001@192.0.2.1:5062', params: { q: '0.5', lr: null },
        firstRegisteredAt: now + 1000, expiresAt: now + 1000 + 600_000, flow: { transport: 'udp', address: '192.0.2.1', port: 5060 },
      },
    ]);
  });

  it('keeps a census of live bindings by transport and method, whatever their number, through refresh, unregister and removal', async () => {
    const client = await redis.connect();
    const store = new UserStore({ redis: client, realm: REALM });
    const bindings = new BindingStore(client);
    const users = await Promise.all(['5101', '5102', '5103'].map((login) =>
      store.create({ username: login, login, password: 'secret-password-1', connectionMethod: login === '5103' ? 'webrtc' : 'sip-phone' })));
    const [a, b, c] = users.map((u) => ({ id: u.id, version: u.version }));
    const now = Date.now();
    await bindings.apply(registration(a!, 'sip:5101@192.0.2.1:5060', { now }));
    await bindings.apply(registration(a!, 'sip:5101@192.0.2.1:5061', { now, expires: 120 }));
    await bindings.apply(registration(b!, 'sip:5102@192.0.2.1:5060', { now }));
    await bindings.apply(registration(c!, 'sip:x@df7jal23ls0d.invalid;transport=ws', { now, transport: 'ws' }));
    expect(Object.fromEntries(await bindings.census(now))).toEqual({ 'udp|sip-phone': 3, 'ws|webrtc': 1 });

    // a refresh moves the binding to a later minute: still counted once
    await bindings.apply(registration(a!, 'sip:5101@192.0.2.1:5060', { now: now + 90_000, cseq: 2 }));
    expect(Object.fromEntries(await bindings.census(now + 90_000))).toEqual({ 'udp|sip-phone': 3, 'ws|webrtc': 1 });
    // the 120 s binding lapses on its own (its minute passes)
    expect(Object.fromEntries(await bindings.census(now + 185_000))).toEqual({ 'udp|sip-phone': 2, 'ws|webrtc': 1 });

    // unregister (Expires: 0), Contact: *, and removal by id / all
    const later = now + 100_000;
    await bindings.apply(registration(b!, 'sip:5102@192.0.2.1:5060', { now: later, expires: 0, cseq: 2 }));
    expect(await bindings.remove(c!.id, bindingIdFor('sip:x@df7jal23ls0d.invalid;transport=ws', null, null), later)).toBe(true);
    expect(Object.fromEntries(await bindings.census(later))).toEqual({ 'udp|sip-phone': 2 });
    expect(await bindings.removeAll(a!.id, later)).toBe(2);
    expect(Object.fromEntries(await bindings.census(later))).toEqual({});

    // the buckets are ordinary keys that expire after their minute
    await bindings.apply(registration(b!, 'sip:5102@192.0.2.1:5070', { now }));
    await bindings.flushCensus();
    const bucket = keys.censusBucket(Math.floor((now + 3_600_000) / 60_000));
    expect(Number(await client.send(['PTTL', bucket]))).toBeGreaterThan(3_600_000);
  });
});
