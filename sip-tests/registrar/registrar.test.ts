/**
 * The registrar on the wire: SIPp and a small UDP UA against the SIP edge + drachtio-srf app +
 * real Redis + admin API (issue 3, item 5).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { fileURLToPath } from 'node:url';
import { createClient } from 'redis';
import { runSipp } from '../harness/index.js';
import { REALM, startRegistrarStack, type RegistrarStack } from './registrar-stack.js';
import { RegisteringUa } from './sip-client.js';

const scenario = (name: string): string => fileURLToPath(new URL(`./scenarios/${name}`, import.meta.url));
const PASSWORD = 'phone-password-1';
/** SIPp 3.6.1 takes digest credentials from an injection field holding the whole keyword. */
const sippRow = (login: string, password: string): string[] => [login, `[authentication username=${login} password=${password}]`];
let stack: RegistrarStack;
const uas: RegisteringUa[] = [];

beforeAll(async () => {
  stack = await startRegistrarStack({ nonceLifetimeSeconds: 3, minExpires: 2, maxExpires: 3600, abuse: { sourceFailureLimit: 5 } });
});
afterAll(async () => {
  for (const ua of uas) ua.close();
  await stack?.stop();
});

async function createUser(login: string, extra: Record<string, unknown> = {}): Promise<string> {
  const res = await stack.api('POST', '/v1/users', { username: `User ${login}`, login, password: PASSWORD, connectionMethod: 'sip-phone', ...extra });
  expect(res.status, JSON.stringify(res.json)).toBe(201);
  return res.json.id as string;
}

async function ua(login: string, options: { localAddress?: string; algorithm?: 'MD5' | 'SHA-256'; password?: string; userAgent?: string } = {}): Promise<RegisteringUa> {
  const phone = new RegisteringUa({
    target: { host: '127.0.0.1', port: stack.sipPort },
    login,
    password: options.password ?? PASSWORD,
    realm: REALM,
    ...options,
  });
  await phone.open();
  uas.push(phone);
  return phone;
}

async function registrations(id: string): Promise<Array<{ id: string; contact: string; transport: string; sourceAddress: string; firstRegisteredAt: string }>> {
  const res = await stack.api('GET', `/v1/users/${id}/registrations`);
  return res.json.registrations;
}

async function eventually(check: () => Promise<boolean>, timeoutMs: number): Promise<number> {
  const started = Date.now();
  while (!(await check())) {
    if (Date.now() - started > timeoutMs) throw new Error(`not within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 20));
  }
  return Date.now() - started;
}

describe('SIPp against the registrar', () => {
  it('registers several users with MD5 digest over UDP and TCP, then unregisters with Contact: *', async () => {
    const ids = [await createUser('1001'), await createUser('1002'), await createUser('1003')];
    const udp = await runSipp({
      scenario: scenario('register-digest-ok-uac.xml'),
      target: stack.target,
      calls: 2,
      inf: { order: 'SEQUENTIAL', rows: [sippRow('1001', PASSWORD), sippRow('1002', PASSWORD)] },
      keys: { expires: '300' },
    });
    expect(udp.stats.successful, udp.errors + udp.stderr).toBe(2);
    const tcp = await runSipp({
      scenario: scenario('register-digest-ok-uac.xml'),
      target: stack.target,
      transport: 't1',
      calls: 1,
      inf: { rows: [sippRow('1003', PASSWORD)] },
      keys: { expires: '300' },
    });
    expect(tcp.stats.successful, tcp.errors + tcp.stderr).toBe(1);

    const [first, , third] = await Promise.all(ids.map(registrations));
    expect(first).toHaveLength(1);
    expect(first![0]).toMatchObject({ transport: 'udp', sourceAddress: '127.0.0.1' });
    expect(third![0]).toMatchObject({ transport: 'tcp' });

    const unregister = await runSipp({
      scenario: scenario('unregister-all-uac.xml'),
      target: stack.target,
      calls: 1,
      inf: { rows: [sippRow('1001', PASSWORD)] },
    });
    expect(unregister.stats.successful, unregister.errors).toBe(1);
    expect(await registrations(ids[0]!)).toEqual([]);
    expect(await registrations(ids[1]!)).toHaveLength(1);
  });

  it('refuses with 403: wrong password, unknown user, inactive user, wrong connection method, outside the allow-list', async () => {
    await createUser('2001');
    await createUser('2002', { active: false });
    await createUser('2003', { connectionMethod: 'webrtc' });
    await createUser('2004', { allowedAddresses: ['10.0.0.0/8'] });
    const refused = await runSipp({
      scenario: scenario('register-digest-refused-uac.xml'),
      target: stack.target,
      calls: 5,
      inf: { order: 'SEQUENTIAL', rows: [sippRow('2001', 'wrong-password'), sippRow('2999', PASSWORD), sippRow('2002', PASSWORD), sippRow('2003', PASSWORD), sippRow('2004', PASSWORD)] },
      keys: { expires: '300' },
    });
    expect(refused.stats.successful, refused.errors + refused.stderr).toBe(5);

    // The reason phrases, once the credentials are right.
    expect((await (await ua('2002')).register())).toMatchObject({ status: 403, reason: 'User Inactive' });
    expect((await (await ua('2003')).register())).toMatchObject({ status: 403, reason: 'Connection Method Not Allowed' });
    expect((await (await ua('2004')).register())).toMatchObject({ status: 403, reason: 'Source Address Not Allowed' });
  });
});

describe('UA against the registrar', () => {
  it('SHA-256 digest; the 401 offers MD5 and SHA-256 as separate WWW-Authenticate headers', async () => {
    await createUser('3001');
    const phone = await ua('3001', { algorithm: 'SHA-256' });
    const challenge = await phone.send({ expires: 300 });
    expect(challenge?.status).toBe(401);
    expect(challenge?.all('www-authenticate').map((v) => /algorithm=([\w-]+)/.exec(v)?.[1])).toEqual(['MD5', 'SHA-256']);
    phone.takeChallenge(challenge!);
    const ok = await phone.send({ expires: 300, authorization: phone.authorization() });
    expect(ok?.status).toBe(200);
    expect(ok?.header('contact')).toMatch(new RegExp(`<sip:3001@127\\.0\\.0\\.1:${phone.localPort}>;expires=300`));
  });

  it('allow-list: 127.0.0.1 allowed, 127.0.0.2 refused', async () => {
    await createUser('3101', { allowedAddresses: ['127.0.0.1/32'] });
    expect((await (await ua('3101')).register())?.status).toBe(200);
    expect(await (await ua('3101', { localAddress: '127.0.0.2' })).register()).toMatchObject({ status: 403, reason: 'Source Address Not Allowed' });
  });

  it('max sessions: a second device is refused with a reason phrase, a refresh is fine', async () => {
    const id = await createUser('3201', { maxSessions: 1 });
    const deskPhone = await ua('3201');
    const softPhone = await ua('3201');
    expect((await deskPhone.register())?.status).toBe(200);
    expect(await softPhone.register()).toMatchObject({ status: 403, reason: 'Too Many Sessions' });
    expect((await deskPhone.register())?.status).toBe(200);
    expect(await registrations(id)).toHaveLength(1);
  });

  it('unregister one contact with Expires: 0; 423 below min expires; bindings expire', async () => {
    const id = await createUser('3301');
    const a = await ua('3301');
    const b = await ua('3301');
    expect((await a.register({ expires: 300 }))?.status).toBe(200);
    const both = await b.register({ expires: 300 });
    expect(both?.all('contact').flatMap((v) => v.split(',')).length).toBe(2);
    const gone = await a.register({ expires: 0 });
    expect(gone?.status).toBe(200);
    expect(gone?.all('contact').join(',')).not.toContain(`:${a.localPort}>`);
    expect(await registrations(id)).toHaveLength(1);

    const brief = await a.register({ expires: 1 });
    expect(brief).toMatchObject({ status: 423 });
    expect(brief?.header('min-expires')).toBe('2');

    expect((await a.register({ expires: 2 }))?.status).toBe(200);
    expect(await registrations(id)).toHaveLength(2);
    await eventually(async () => (await registrations(id)).length === 1, 4000);
  });

  it('stale nonce => 401 stale=true, then the phone re-authenticates', async () => {
    await createUser('3401');
    const phone = await ua('3401');
    expect((await phone.register({ expires: 300 }))?.status).toBe(200);
    await new Promise((r) => setTimeout(r, 3300));
    const stale = await phone.send({ expires: 300, authorization: phone.authorization() });
    expect(stale?.status).toBe(401);
    expect(stale?.all('www-authenticate').every((v) => /stale=true/i.test(v))).toBe(true);
    phone.takeChallenge(stale!);
    expect((await phone.send({ expires: 300, authorization: phone.authorization() }))?.status).toBe(200);
  });

  it('a replayed nonce count is rejected', async () => {
    await createUser('3501');
    const phone = await ua('3501', { localAddress: '127.0.0.4' });
    const challenge = await phone.send({ expires: 300 });
    phone.takeChallenge(challenge!);
    const credentials = phone.authorization({ nc: 1 });
    expect((await phone.send({ expires: 300, authorization: credentials }))?.status).toBe(200);
    const replay = await phone.send({ expires: 300, authorization: credentials });
    expect(replay?.status).toBe(401);
    expect(replay?.header('www-authenticate')).not.toMatch(/stale=true/i);
    expect((await phone.send({ expires: 300, authorization: phone.authorization({ nc: 2 }) }))?.status).toBe(200);
  });

  it('known scanners get no answer; a source with repeated failures is banned (silence)', async () => {
    await createUser('3601');
    expect(await (await ua('3601', { userAgent: 'friendly-scanner' })).send({ timeoutMs: 600 })).toBeNull();
    const attacker = await ua('3601', { localAddress: '127.0.0.9', password: 'guess-guess' });
    for (let i = 0; i < 5; i++) expect((await attacker.register())?.status).toBe(403);
    expect(await attacker.send({ timeoutMs: 600 })).toBeNull();
    // Other sources are unaffected.
    expect((await (await ua('3601')).register())?.status).toBe(200);
  });

  it('deactivating a registered user removes the binding within a second; REGISTER is refused after', async () => {
    const id = await createUser('3701');
    const phone = await ua('3701');
    expect((await phone.register({ expires: 300 }))?.status).toBe(200);
    expect(await registrations(id)).toHaveLength(1);
    const client = createClient({ url: stack.redis.url });
    await client.connect();
    try {
      const started = Date.now();
      expect((await stack.api('POST', `/v1/users/${id}/deactivate`)).status).toBe(200);
      await eventually(async () => Number(await client.sendCommand(['EXISTS', `dc:{u:${id}}:bindings`])) === 0, 1000);
      expect(Date.now() - started).toBeLessThan(1000);
    } finally {
      await client.close();
    }
    expect(await phone.register({ expires: 300 })).toMatchObject({ status: 403, reason: 'User Inactive' });
  });

  it('a core restart loses no binding, and phones keep refreshing with their nonce', async () => {
    const id = await createUser('3801');
    const phone = await ua('3801');
    expect((await phone.register({ expires: 300 }))?.status).toBe(200);
    const before = await registrations(id);
    await stack.restartApp();
    expect(await registrations(id)).toEqual(before.map((b) => ({ ...b, expiresIn: expect.any(Number) })));
    const refresh = await phone.send({ expires: 300, authorization: phone.authorization() });
    expect(refresh?.status).toBe(200);
    expect((await registrations(id))[0]?.firstRegisteredAt).toBe(before[0]?.firstRegisteredAt);
  });
});
