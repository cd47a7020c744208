import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { DigestAuthenticator } from '../auth/digest.js';
import { AbuseGuard } from '../registrar/abuse.js';
import { BindingStore } from '../registrar/binding-store.js';
import { KickHandler } from '../registrar/kick.js';
import { Registrar, type RegisterRequest } from '../registrar/registrar.js';
import { EventBus } from '../users/events.js';
import { startTestRedis, waitFor, type TestRedis } from '../users/testing.js';
import { UserCache } from '../users/user-cache.js';
import { UserStore } from '../users/user-store.js';
import { computeDigestResponse, parseAuthParams } from '../auth/digest.js';
import { computeHa1 } from '../auth/ha1.js';
import { parseListenAddress, startAdminApi, type RunningAdminApi } from './server.js';

const TOKEN = 'test-admin-token-0123456789';
const REALM = 'dialcore.test';
let redis: TestRedis;
let api: RunningAdminApi;
let busA: EventBus;
let busB: EventBus;
let registrarB: Registrar;
let bindingsB: BindingStore;
let kicksB: KickHandler;
const terminated: string[] = [];
/** Every response body seen, to check no secret ever leaves. */
const bodies: string[] = [];

beforeAll(async () => {
  redis = await startTestRedis();
  // Instance A serves the admin API.
  busA = new EventBus(await redis.connect());
  await busA.start();
  const clientA = await redis.connect();
  const storeA = new UserStore({ redis: clientA, realm: REALM, events: busA });
  api = await startAdminApi({ store: storeA, bindings: new BindingStore(clientA), redis: clientA, token: TOKEN, port: 0, maxBodyBytes: 4096 });
  // Instance B is a registrar with its own cache and kick handler.
  busB = new EventBus(await redis.connect());
  await busB.start();
  const clientB = await redis.connect();
  const storeB = new UserStore({ redis: clientB, realm: REALM, events: busB });
  bindingsB = new BindingStore(clientB);
  registrarB = new Registrar({
    users: new UserCache(storeB, busB),
    bindings: bindingsB,
    auth: new DigestAuthenticator({ realm: REALM, secret: 'admin-test-secret-0123' }),
    abuse: new AbuseGuard({ redis: clientB, events: busB }),
  });
  kicksB = new KickHandler({ events: busB, bindings: bindingsB, terminator: { terminateUserSessions: async (id) => (terminated.push(id), 0) } });
  kicksB.start();
});

afterAll(async () => {
  kicksB?.stop();
  await api?.close();
  await busA?.stop();
  await busB?.stop();
  await redis?.close();
});

beforeEach(async () => {
  await redis.flush();
});

async function call(method: string, path: string, body?: unknown, headers: Record<string, string> = {}) {
  const init: RequestInit = {
    method,
    headers: { Authorization: `Bearer ${TOKEN}`, ...(body !== undefined ? { 'Content-Type': 'application/json' } : {}), ...headers },
    ...(body !== undefined ? { body: typeof body === 'string' ? body : JSON.stringify(body) } : {}),
  };
  const res = await fetch(`http://127.0.0.1:${api.port}${path}`, init);
  const text = await res.text();
  bodies.push(text);
  return { status: res.status, headers: res.headers, json: text && res.headers.get('content-type')?.startsWith('application/json') ? (JSON.parse(text) as Record<string, any>) : null, text };
}

const newUser = (login: string, extra: Record<string, unknown> = {}) => ({
  username: `Agent ${login}`,
  login,
  password: 'a-secret-password',
  connectionMethod: 'sip-phone',
  ...extra,
});

async function registerOnB(login: string, password: string, contactHost = '192.0.2.5'): Promise<number> {
  let cseq = 1;
  const req = (authorization?: string): RegisterRequest => {
    const headers: Record<string, string | undefined> = {
      to: `<sip:${login}@${REALM}>`,
      'call-id': `c-${login}-${contactHost}`,
      cseq: `${cseq++} REGISTER`,
      contact: `<sip:${login}@${contactHost}:5060>`,
      authorization,
    };
    return { method: 'REGISTER', uri: `sip:${REALM}`, source_address: '127.0.0.1', source_port: 5060, protocol: 'udp', get: (n) => headers[n.toLowerCase()] };
  };
  const challenge = await registrarB.handle(req());
  const nonce = parseAuthParams(challenge!.headers[0]![1])![0]!.params.get('nonce')!;
  const c = { nonce, uri: `sip:${REALM}`, qop: 'auth', nc: '00000001', cnonce: 'x' };
  const response = computeDigestResponse('SHA-256', computeHa1('SHA-256', login, REALM, password), 'REGISTER', c);
  const auth = `Digest username="${login}", realm="${REALM}", nonce="${nonce}", uri="sip:${REALM}", algorithm=SHA-256, qop=auth, nc=00000001, cnonce="x", response="${response}"`;
  return (await registrarB.handle(req(auth)))!.status;
}

describe('admin API', () => {
  it('requires the bearer token (401) except on /healthz', async () => {
    expect((await call('GET', '/v1/users', undefined, { Authorization: '' })).status).toBe(401);
    const wrong = await call('GET', '/v1/users', undefined, { Authorization: 'Bearer nope' });
    expect(wrong.status).toBe(401);
    expect(wrong.json).toEqual({ error: { code: 'unauthorized', message: 'missing or invalid bearer token' } });
    expect(wrong.headers.get('www-authenticate')).toContain('Bearer');
    expect((await call('GET', '/v1/users', undefined, { Authorization: `Basic ${TOKEN}` })).status).toBe(401);
    expect((await call('DELETE', '/v1/users/00000000-0000-4000-8000-000000000000', undefined, { Authorization: '' })).status).toBe(401);
    const health = await call('GET', '/healthz', undefined, { Authorization: '' });
    expect(health).toMatchObject({ status: 200, json: { status: 'ok', redis: 'ok' } });
    const metrics = await call('GET', '/metrics', undefined, { Authorization: '' });
    expect(metrics.status).toBe(200);
    expect(metrics.text).toContain('dialcore_register_responses_total');
    expect(metrics.text).toContain('nodejs_eventloop_lag_seconds');
  });

  it('creates, reads, lists, patches and deletes users; errors name fields', async () => {
    const created = await call('POST', '/v1/users', newUser('1001', { maxSessions: 2, allowedAddresses: ['127.0.0.1'] }));
    expect(created.status).toBe(201);
    expect(created.headers.get('location')).toBe(`/v1/users/${created.json!.id}`);
    expect(created.json).toMatchObject({ login: '1001', maxSessions: 2, hasPassword: true, active: true });
    const id = created.json!.id as string;

    expect((await call('GET', `/v1/users/${id}`)).json).toMatchObject({ id, login: '1001' });
    expect((await call('POST', '/v1/users', newUser('1001'))).json).toEqual({
      error: { code: 'conflict', message: 'login already in use by another user', field: 'login', details: [{ field: 'login', message: 'already in use by another user' }] },
    });
    const invalid = await call('POST', '/v1/users', newUser('1002', { allowedAddresses: ['10.0.0.1', '999.1.1.1'] }));
    expect(invalid.status).toBe(400);
    expect(invalid.json!.error).toMatchObject({ code: 'validation_failed', field: 'allowedAddresses[1]' });

    const patched = await call('PATCH', `/v1/users/${id}`, { callerIdName: 'Sales', masking: { enabled: true } });
    expect(patched.json).toMatchObject({ callerIdName: 'Sales', masking: { enabled: true, keepLastDigits: 4 }, version: 2 });
    const badPatch = await call('PATCH', `/v1/users/${id}`, { sessionTimeoutSeconds: 'long' });
    expect(badPatch.json!.error).toMatchObject({ code: 'validation_failed', field: 'sessionTimeoutSeconds' });
    expect((await call('PATCH', `/v1/users/${id}`, { id: 'x' })).json!.error.field).toBe('id');

    for (let i = 0; i < 4; i++) await call('POST', '/v1/users', newUser(`20${i}`));
    const page1 = await call('GET', '/v1/users?limit=3');
    expect(page1.json!.users).toHaveLength(3);
    const page2 = await call('GET', `/v1/users?limit=3&cursor=${page1.json!.nextCursor}`);
    expect(page2.json!.users).toHaveLength(2);
    expect(page2.json!.nextCursor).toBeNull();
    expect((await call('GET', '/v1/users?limit=0')).json!.error.field).toBe('limit');

    expect((await call('DELETE', `/v1/users/${id}`)).status).toBe(204);
    expect((await call('GET', `/v1/users/${id}`)).status).toBe(404);
    expect((await call('DELETE', `/v1/users/${id}`)).status).toBe(404);
    expect((await call('GET', '/v1/users/not-a-uuid')).status).toBe(404);
    expect((await call('GET', '/v1/nothing')).status).toBe(404);
    const wrongMethod = await call('PUT', '/v1/users');
    expect(wrongMethod.status).toBe(405);
    expect(wrongMethod.headers.get('allow')).toBe('POST, GET');
  });

  it('rejects bad bodies: 400 JSON, 415 media type, 413 size', async () => {
    expect((await call('POST', '/v1/users', '{"username":')).json!.error.code).toBe('bad_request');
    expect((await call('POST', '/v1/users', '[1]')).json!.error).toMatchObject({ code: 'validation_failed' });
    expect((await call('POST', '/v1/users', JSON.stringify(newUser('3001')), { 'Content-Type': 'text/plain' })).status).toBe(415);
    const big = await call('POST', '/v1/users', newUser('3002', { displayName: 'x'.repeat(5000) }));
    expect(big.status).toBe(413);
    expect(big.json!.error.code).toBe('payload_too_large');
    expect((await call('POST', '/v1/users')).status).toBe(400);
  });

  it('resets a password (returned once), the old one stops working, the user is kicked on the other instance', async () => {
    const id = (await call('POST', '/v1/users', newUser('4001'))).json!.id as string;
    expect(await registerOnB('4001', 'a-secret-password')).toBe(200);
    const regs = await call('GET', `/v1/users/${id}/registrations`);
    expect(regs.json!.registrations).toHaveLength(1);
    expect(regs.json!.registrations[0]).toMatchObject({ contact: 'sip:4001@192.0.2.5:5060', transport: 'udp', sourceAddress: '127.0.0.1' });

    const reset = await call('POST', `/v1/users/${id}/reset-password`);
    expect(reset.status).toBe(200);
    expect(reset.headers.get('cache-control')).toBe('no-store');
    const password = reset.json!.password as string;
    expect(password).toHaveLength(20);
    await waitFor(() => terminated.includes(id), 1000);
    expect(await bindingsB.list(id)).toEqual([]);
    expect(await registerOnB('4001', 'a-secret-password')).toBe(403);
    expect(await registerOnB('4001', password)).toBe(200);
    // The password is never shown again.
    expect(JSON.stringify((await call('GET', `/v1/users/${id}`)).json)).not.toContain(password);
  });

  it('deactivate kicks within a second and refuses REGISTER; activate restores; logout one or all', async () => {
    const id = (await call('POST', '/v1/users', newUser('5001'))).json!.id as string;
    expect(await registerOnB('5001', 'a-secret-password', '192.0.2.1')).toBe(200);
    expect(await registerOnB('5001', 'a-secret-password', '192.0.2.2')).toBe(200);
    terminated.length = 0;
    const started = Date.now();
    expect((await call('POST', `/v1/users/${id}/deactivate`)).json).toMatchObject({ active: false });
    await waitFor(() => terminated.includes(id), 1000);
    expect(await bindingsB.list(id)).toEqual([]);
    expect(Date.now() - started).toBeLessThan(1000);
    expect(await registerOnB('5001', 'a-secret-password')).toBe(403);

    expect((await call('POST', `/v1/users/${id}/activate`)).json).toMatchObject({ active: true });
    expect(await registerOnB('5001', 'a-secret-password', '192.0.2.1')).toBe(200);
    expect(await registerOnB('5001', 'a-secret-password', '192.0.2.2')).toBe(200);
    const sessions = await call('GET', `/v1/users/${id}/sessions`);
    expect(sessions.json!.registrations).toHaveLength(2);
    expect(sessions.json!.calls).toEqual([]);

    const one = sessions.json!.registrations[0].id as string;
    expect((await call('DELETE', `/v1/users/${id}/registrations/${one}`)).status).toBe(202);
    const afterOne = async () => (await bindingsB.list(id)).length;
    for (let i = 0; i < 100 && (await afterOne()) !== 1; i++) await new Promise((r) => setTimeout(r, 10));
    expect(await afterOne()).toBe(1);
    expect((await call('DELETE', `/v1/users/${id}/registrations/${one}`)).status).toBe(404);

    expect((await call('POST', `/v1/users/${id}/logout`)).json).toEqual({ registrations: 1 });
    for (let i = 0; i < 100 && (await afterOne()) !== 0; i++) await new Promise((r) => setTimeout(r, 10));
    expect(await afterOne()).toBe(0);

    expect((await call('POST', `/v1/users/${id}/reset`)).status).toBe(204);
    expect((await call('POST', '/v1/users/00000000-0000-4000-8000-000000000000/reset')).status).toBe(404);
  });

  it('never returns a secret in any response', async () => {
    const created = await call('POST', '/v1/users', {
      username: 'PBX',
      login: '6001',
      password: 'plain-text-password',
      connectionMethod: 'sip-address',
      sipAddress: { uri: 'sip:100@pbx.test', username: 'trunk', password: 'pbx-password-xyz' },
      dialIn: { id: '777', pin: '246810' },
    });
    expect(created.status).toBe(201);
    await call('GET', `/v1/users/${created.json!.id}`);
    await call('GET', '/v1/users');
    const all = bodies.join('\n');
    for (const secret of ['plain-text-password', 'pbx-password-xyz', '246810', 'a-secret-password', 'ha1', 'pinHash', 'scrypt$', TOKEN]) {
      expect(all).not.toContain(secret);
    }
  });
});

describe('parseListenAddress', () => {
  it('parses host:port forms', () => {
    expect(parseListenAddress('127.0.0.1:8080')).toEqual({ host: '127.0.0.1', port: 8080 });
    expect(parseListenAddress('[::1]:9000')).toEqual({ host: '::1', port: 9000 });
    expect(parseListenAddress('8081')).toEqual({ host: '127.0.0.1', port: 8081 });
    expect(parseListenAddress('x:99999')).toBeNull();
    expect(parseListenAddress('nonsense')).toBeNull();
  });
});
