import { describe, expect, it } from 'vitest';
import { DigestAuthenticator, computeDigestResponse, parseAuthParams } from '../auth/digest.js';
import { computeHa1, type DigestAlgorithm } from '../auth/ha1.js';
import { EventBus } from '../users/events.js';
import { keys } from '../users/keys.js';
import { useTestRedis, waitFor, type TestRedis } from '../users/testing.js';
import { UserCache } from '../users/user-cache.js';
import { UserStore } from '../users/user-store.js';
import { AbuseGuard, isScannerUserAgent } from './abuse.js';
import { BindingStore } from './binding-store.js';
import { KickHandler } from './kick.js';
import { Registrar, toHeaderRecord, type RegisterReply, type RegisterRequest } from './registrar.js';

const REALM = 'dialcore.test';
const DOMAIN_URI = 'sip:dialcore.test';
let redis: TestRedis;

useTestRedis((started) => (redis = started));

interface Stack {
  store: UserStore;
  registrar: Registrar;
  bindings: BindingStore;
  abuse: AbuseGuard;
  clock: { now: number };
}

async function stack(options: { minExpires?: number; maxExpires?: number; sourceFailureLimit?: number; userFailureLimit?: number } = {}): Promise<Stack> {
  const client = await redis.connect();
  const store = new UserStore({ redis: client, realm: REALM });
  const bindings = new BindingStore(client);
  const abuse = new AbuseGuard({ redis: client, sourceFailureLimit: options.sourceFailureLimit ?? 50, userFailureLimit: options.userFailureLimit ?? 50 });
  const clock = { now: Date.now() };
  const registrar = new Registrar({
    users: new UserCache(store, undefined),
    bindings,
    auth: new DigestAuthenticator({ realm: REALM, secret: 'registrar-test-secret', nonceLifetimeSeconds: 30, algorithms: ['MD5', 'SHA-256'] }),
    abuse,
    minExpires: options.minExpires ?? 60,
    maxExpires: options.maxExpires ?? 3600,
    now: () => clock.now,
  });
  return { store, registrar, bindings, abuse, clock };
}

interface RegisterOptions {
  login: string;
  password?: string;
  algorithm?: DigestAlgorithm;
  contact?: string | null;
  expires?: number | string;
  transport?: string;
  source?: string;
  toUser?: string;
  userAgent?: string;
  callId?: string;
  username?: string;
  supported?: string;
}

/** A UA: REGISTER, answer the 401 with digest credentials, keep nonce and nc like a phone. */
class Phone {
  nonce: string | null = null;
  nc = 0;
  cseq = 1;
  readonly callId: string;
  constructor(
    private readonly registrar: Registrar,
    private readonly defaults: RegisterOptions,
  ) {
    this.callId = defaults.callId ?? `call-${Math.random().toString(36).slice(2)}`;
  }

  request(options: Partial<RegisterOptions> = {}, authorization?: string): RegisterRequest {
    const o = { ...this.defaults, ...options };
    const headers: Record<string, string | undefined> = {
      to: `<sip:${o.toUser ?? o.login}@dialcore.test>`,
      from: `<sip:${o.login}@dialcore.test>;tag=abc`,
      'call-id': this.callId,
      cseq: `${this.cseq++} REGISTER`,
      contact: o.contact === null ? undefined : (o.contact ?? `<sip:${o.login}@192.0.2.50:5062;transport=udp>`),
      expires: o.expires === undefined ? undefined : String(o.expires),
      'user-agent': o.userAgent ?? 'TestPhone/1.0',
      supported: o.supported,
      authorization,
    };
    return {
      method: 'REGISTER',
      uri: DOMAIN_URI,
      source_address: o.source ?? '127.0.0.1',
      source_port: 5062,
      protocol: o.transport ?? 'udp',
      get: (name: string) => headers[name.toLowerCase()],
    };
  }

  authorization(options: Partial<RegisterOptions> = {}): string {
    const o = { ...this.defaults, ...options };
    const algorithm = o.algorithm ?? 'SHA-256';
    const username = o.username ?? o.login;
    const ha1 = computeHa1(algorithm, username, REALM, o.password ?? 'secret-password-1');
    this.nc++;
    const nc = this.nc.toString(16).padStart(8, '0');
    const c = { nonce: this.nonce!, uri: DOMAIN_URI, qop: 'auth', nc, cnonce: 'cn0nce' };
    const response = computeDigestResponse(algorithm, ha1, 'REGISTER', c);
    return `Digest username="${username}", realm="${REALM}", nonce="${this.nonce}", uri="${DOMAIN_URI}", algorithm=${algorithm}, qop=auth, nc=${nc}, cnonce="cn0nce", response="${response}"`;
  }

  /** Sends with the current nonce if any; on a 401 takes the new nonce and retries once. */
  async register(options: Partial<RegisterOptions> = {}): Promise<RegisterReply | null> {
    if (this.nonce) {
      const first = await this.registrar.handle(this.request(options, this.authorization(options)));
      if (first?.status !== 401) return first;
      this.takeChallenge(first);
    } else {
      const challenge = await this.registrar.handle(this.request(options));
      if (challenge?.status !== 401) return challenge;
      this.takeChallenge(challenge);
    }
    return this.registrar.handle(this.request(options, this.authorization(options)));
  }

  takeChallenge(reply: RegisterReply): void {
    const header = reply.headers.find(([name]) => name === 'WWW-Authenticate')!;
    this.nonce = parseAuthParams(header[1])![0]!.params.get('nonce')!;
    this.nc = 0;
  }
}

function contactExpires(reply: RegisterReply | null): number[] {
  return (reply?.headers ?? []).filter(([n]) => n === 'Contact').map(([, v]) => Number(/;expires=(\d+)/.exec(v)?.[1]));
}

describe('Registrar: digest authentication', () => {
  it('challenges with MD5 then SHA-256 (when both are configured), and accepts both', async () => {
    const s = await stack();
    await s.store.create({ username: 'A', login: '1001', password: 'secret-password-1', connectionMethod: 'sip-phone' });
    const phone = new Phone(s.registrar, { login: '1001' });
    const challenge = await s.registrar.handle(phone.request());
    expect(challenge?.status).toBe(401);
    const wwwAuth = challenge!.headers.filter(([n]) => n === 'WWW-Authenticate').map(([, v]) => v);
    expect(wwwAuth).toHaveLength(2);
    expect(wwwAuth[0]).toMatch(/algorithm=MD5, qop="auth"$/);
    expect(wwwAuth[1]).toMatch(/algorithm=SHA-256, qop="auth"$/);

    for (const algorithm of ['SHA-256', 'MD5'] as const) {
      const p = new Phone(s.registrar, { login: '1001', algorithm, expires: 120 });
      const ok = await p.register();
      expect(ok?.status).toBe(200);
      expect(contactExpires(ok)).toEqual([120]);
      expect(ok?.headers.some(([n]) => n === 'Date')).toBe(true);
    }
  });

  it('refuses wrong passwords and unknown users identically (403), To user mismatch, replayed nc, stale nonce', async () => {
    const s = await stack();
    await s.store.create({ username: 'A', login: '1001', password: 'secret-password-1', connectionMethod: 'sip-phone' });
    const wrong = await new Phone(s.registrar, { login: '1001', password: 'nope-nope-nope' }).register();
    const unknown = await new Phone(s.registrar, { login: '9999' }).register();
    expect(wrong).toMatchObject({ status: 403, reason: 'Forbidden', headers: [] });
    expect(unknown).toMatchObject({ status: 403, reason: 'Forbidden', headers: [] });

    const mismatch = await new Phone(s.registrar, { login: '1001', toUser: '1002' }).register();
    expect(mismatch).toMatchObject({ status: 403, outcome: 'to-mismatch' });

    // nc replay: the same credentials twice.
    const phone = new Phone(s.registrar, { login: '1001' });
    expect((await phone.register())?.status).toBe(200);
    const auth = phone.authorization();
    expect((await s.registrar.handle(phone.request({}, auth)))?.status).toBe(200);
    const replay = await s.registrar.handle(phone.request({}, auth));
    expect(replay).toMatchObject({ status: 401, outcome: 'nc-replay' });
    expect(replay?.headers[0]?.[1]).not.toContain('stale=true');

    // Stale: the nonce outlives its 30 s lifetime.
    s.clock.now += 31_000;
    const stale = await s.registrar.handle(phone.request({}, phone.authorization()));
    expect(stale?.status).toBe(401);
    expect(stale?.headers[0]?.[1]).toContain('stale=true');
    // Wrong password with a stale nonce is not told "stale".
    const staleWrong = await s.registrar.handle(phone.request({}, phone.authorization({ password: 'wrong-wrong-wrong' })));
    expect(staleWrong?.status).toBe(403);
  });

  it('drops scanners silently and bans a source after repeated failures', async () => {
    const s = await stack({ sourceFailureLimit: 3 });
    await s.store.create({ username: 'A', login: '1001', password: 'secret-password-1', connectionMethod: 'sip-phone' });
    expect(isScannerUserAgent('friendly-scanner')).toBe(true);
    expect(isScannerUserAgent('Zoiper rv2.10')).toBe(false);
    expect(await s.registrar.handle(new Phone(s.registrar, { login: '1001', userAgent: 'sipvicious 0.3' }).request())).toBeNull();

    for (let i = 0; i < 3; i++) {
      expect((await new Phone(s.registrar, { login: '1001', password: 'wrong-wrong-wrong', source: '198.51.100.7' }).register())?.status).toBe(403);
    }
    expect(await s.registrar.handle(new Phone(s.registrar, { login: '1001', source: '198.51.100.7' }).request())).toBeNull();
    expect((await new Phone(s.registrar, { login: '1001', source: '198.51.100.8' }).register())?.status).toBe(200);
    await s.abuse.unbanSource('198.51.100.7');
    expect((await new Phone(s.registrar, { login: '1001', source: '198.51.100.7' }).register())?.status).toBe(200);
  });

  it('bans a user after repeated failures until reset', async () => {
    const s = await stack({ userFailureLimit: 2 });
    const user = await s.store.create({ username: 'A', login: '1001', password: 'secret-password-1', connectionMethod: 'sip-phone' });
    for (let i = 0; i < 2; i++) await new Phone(s.registrar, { login: '1001', password: 'wrong-wrong-wrong', source: `203.0.113.${i}` }).register();
    expect(await new Phone(s.registrar, { login: '1001' }).register()).toMatchObject({ status: 403, outcome: 'user-banned' });
    await s.store.resetUser(user.id);
    expect((await new Phone(s.registrar, { login: '1001' }).register())?.status).toBe(200);
  });
});

describe('Registrar: per-user rules', () => {
  it('inactive, wrong transport, non-registering methods, allow-list', async () => {
    const s = await stack();
    const base = { password: 'secret-password-1' };
    await s.store.create({ ...base, username: 'off', login: '2001', connectionMethod: 'sip-phone', active: false });
    await s.store.create({ ...base, username: 'web', login: '2002', connectionMethod: 'webrtc' });
    await s.store.create({ ...base, username: 'pbx', login: '2003', connectionMethod: 'sip-address', sipAddress: { uri: 'sip:1@pbx.test' } });
    await s.store.create({ ...base, username: 'acl', login: '2004', connectionMethod: 'sip-phone', allowedAddresses: ['127.0.0.1', '10.0.0.0/8'] });

    expect(await new Phone(s.registrar, { login: '2001' }).register()).toMatchObject({ status: 403, reason: 'User Inactive' });
    expect(await new Phone(s.registrar, { login: '2002', transport: 'udp' }).register()).toMatchObject({ status: 403, reason: 'Connection Method Not Allowed' });
    expect((await new Phone(s.registrar, { login: '2002', transport: 'wss' }).register())?.status).toBe(200);
    expect(await new Phone(s.registrar, { login: '2003' }).register()).toMatchObject({ status: 403, reason: 'Connection Method Not Allowed' });
    expect((await new Phone(s.registrar, { login: '2004', source: '127.0.0.1' }).register())?.status).toBe(200);
    expect((await new Phone(s.registrar, { login: '2004', source: '10.9.8.7' }).register())?.status).toBe(200);
    expect(await new Phone(s.registrar, { login: '2004', source: '127.0.0.2' }).register()).toMatchObject({ status: 403, reason: 'Source Address Not Allowed' });
  });

  it('max sessions: a new contact over the limit is refused, a refresh is not a new session', async () => {
    const s = await stack();
    await s.store.create({ username: 'A', login: '3001', password: 'secret-password-1', connectionMethod: 'sip-phone', maxSessions: 2 });
    const a = new Phone(s.registrar, { login: '3001', contact: '<sip:3001@192.0.2.1:5060>' });
    const b = new Phone(s.registrar, { login: '3001', contact: '<sip:3001@192.0.2.2:5060>' });
    const c = new Phone(s.registrar, { login: '3001', contact: '<sip:3001@192.0.2.3:5060>' });
    expect((await a.register())?.status).toBe(200);
    const second = await b.register();
    expect(second?.status).toBe(200);
    expect(contactExpires(second)).toHaveLength(2);
    expect(await c.register()).toMatchObject({ status: 403, reason: 'Too Many Sessions' });
    expect((await a.register())?.status).toBe(200);
    // Unregistering one frees a session.
    expect(contactExpires(await b.register({ expires: 0 }))).toHaveLength(1);
    expect((await c.register())?.status).toBe(200);
  });

  it('sees an admin change even when its cache missed the event (version check in the script)', async () => {
    const s = await stack();
    const user = await s.store.create({ username: 'A', login: '3101', password: 'secret-password-1', connectionMethod: 'sip-phone' });
    const phone = new Phone(s.registrar, { login: '3101' });
    expect((await phone.register())?.status).toBe(200); // now cached
    // No event bus in this stack: the cache is stale on purpose.
    await new UserStore({ redis: await redis.connect(), realm: REALM }).setActive(user.id, false);
    expect(await phone.register()).toMatchObject({ status: 403, reason: 'User Inactive' });
  });
});

describe('Registrar: RFC 5626 outbound', () => {
  it('Require: outbound only for a REGISTER that supports outbound and registers flows (+sip.instance and reg-id)', async () => {
    const s = await stack();
    await s.store.create({ username: 'O', login: '4101', password: 'secret-password-1', connectionMethod: 'sip-phone' });
    const flow = '<sip:4101@192.0.2.9:5070;transport=tcp>;+sip.instance="<urn:uuid:00000000-0000-1000-8000-00000000a001>";reg-id=1';
    const phone = new Phone(s.registrar, { login: '4101', contact: flow, transport: 'tcp' });
    const requireOf = (reply: RegisterReply | null) => reply?.headers.filter(([name]) => name === 'Require').map(([, value]) => value);
    const asked = await phone.register({ supported: 'path, outbound' });
    expect(asked?.status).toBe(200);
    expect(requireOf(asked)).toEqual(['outbound']);
    expect(requireOf(await phone.register())).toEqual([]);
    const noRegId = await phone.register({ supported: 'outbound', contact: '<sip:4101@192.0.2.10:5070>;+sip.instance="<urn:uuid:00000000-0000-1000-8000-00000000a002>"' });
    expect(noRegId?.status).toBe(200);
    expect(requireOf(noRegId)).toEqual([]);
  });
});

describe('Registrar: bindings', () => {
  it('records flow, UA and params; lists all contacts; min/max expires; unregister; Contact *', async () => {
    const s = await stack({ minExpires: 60, maxExpires: 3600 });
    const user = await s.store.create({ username: 'A', login: '4001', password: 'secret-password-1', connectionMethod: 'sip-phone' });
    const phone = new Phone(s.registrar, {
      login: '4001',
      contact: '<sip:4001@192.0.2.9:5070;transport=tcp>;+sip.instance="<urn:uuid:00000000-0000-1000-8000-000A95A0E128>";reg-id=1',
      transport: 'tcp',
      source: '198.51.100.20',
      userAgent: 'Yealink T46',
      expires: 7200,
    });
    const ok = await phone.register();
    expect(ok?.status).toBe(200);
    expect(contactExpires(ok)).toEqual([3600]);
    expect(ok?.headers[0]?.[1]).toContain('+sip.instance="<urn:uuid:00000000-0000-1000-8000-000A95A0E128>"');
    const [binding] = await s.bindings.list(user.id);
    expect(binding).toMatchObject({
      contact: 'sip:4001@192.0.2.9:5070;transport=tcp',
      flow: { address: '198.51.100.20', port: 5062, transport: 'tcp' },
      userAgent: 'Yealink T46',
      instanceId: 'urn:uuid:00000000-0000-1000-8000-000A95A0E128',
      regId: '1',
    });

    // Same instance + reg-id from a new contact address replaces, not adds (RFC 5626).
    const moved = await phone.register({ contact: '<sip:4001@192.0.2.99:5070;transport=tcp>;+sip.instance="<urn:uuid:00000000-0000-1000-8000-000A95A0E128>";reg-id=1' });
    expect(contactExpires(moved)).toHaveLength(1);
    expect((await s.bindings.list(user.id))[0]?.contact).toBe('sip:4001@192.0.2.99:5070;transport=tcp');

    expect(await phone.register({ expires: 30 })).toMatchObject({ status: 423, headers: [['Min-Expires', '60']] });
    const second = new Phone(s.registrar, { login: '4001', contact: '<sip:4001@192.0.2.10>;expires=600', transport: 'tcp' });
    expect(contactExpires(await second.register()).sort((x, y) => x - y)).toEqual([600, 3600]);
    expect((await s.bindings.list(user.id)).length).toBe(2);

    // A query (no Contact) lists current bindings without changing them.
    const query = await second.register({ contact: null });
    expect(contactExpires(query).sort((x, y) => x - y)).toEqual([600, 3600]);

    expect(await second.register({ contact: '*' })).toMatchObject({ status: 400 });
    const cleared = await second.register({ contact: '*', expires: 0 });
    expect(cleared?.status).toBe(200);
    expect(contactExpires(cleared)).toEqual([]);
    expect(await s.bindings.list(user.id)).toEqual([]);

    expect((await second.register({ contact: '<sip:x@y>;expires=abc' }))?.status).toBe(400);
    expect((await second.register({ contact: '<sip:x@y' }))?.status).toBe(400);
  });

  it('bindings expire (short TTL) and Redis evicts the key', async () => {
    const s = await stack({ minExpires: 1, maxExpires: 3600 });
    const user = await s.store.create({ username: 'A', login: '4101', password: 'secret-password-1', connectionMethod: 'sip-phone' });
    const phone = new Phone(s.registrar, { login: '4101', expires: 1 });
    expect((await phone.register())?.status).toBe(200);
    expect(await s.bindings.list(user.id)).toHaveLength(1);
    const client = await redis.connect();
    const pttl = Number(await client.send(['PTTL', keys.bindings(user.id)]));
    expect(pttl).toBeGreaterThan(0);
    expect(pttl).toBeLessThanOrEqual(1000);
    await new Promise((r) => setTimeout(r, 1200));
    expect(await s.bindings.list(user.id)).toEqual([]);
    expect(Number(await client.send(['EXISTS', keys.bindings(user.id)]))).toBe(0);
  });

  it('never outlives the session timeout; past it the phone must re-authenticate and starts a new session', async () => {
    const s = await stack({ minExpires: 60 });
    const user = await s.store.create({
      username: 'A', login: '4201', password: 'secret-password-1', connectionMethod: 'sip-phone', sessionTimeoutSeconds: 600,
    });
    const phone = new Phone(s.registrar, { login: '4201', expires: 3600 });
    expect(contactExpires(await phone.register())).toEqual([600]);
    const first = (await s.bindings.list(user.id, s.clock.now))[0]!;
    s.clock.now += 500_000;
    // Refresh: capped at the 100 s left of the session, first registration time kept.
    const refresh = await s.registrar.handle(phone.request({}, phone.authorization()));
    expect(refresh?.status).toBe(401); // nonce is stale after 30 s
    phone.takeChallenge(refresh!);
    expect(contactExpires(await s.registrar.handle(phone.request({}, phone.authorization())))).toEqual([100]);
    expect((await s.bindings.list(user.id, s.clock.now))[0]?.firstRegisteredAt).toBe(first.firstRegisteredAt);
    // 70 s later only 30 s are left (< min expires): the session is over, forced re-auth.
    s.clock.now += 70_000;
    const fresh = await s.registrar.handle(phone.request());
    phone.takeChallenge(fresh!); // a fresh nonce: only the session rule can refuse now
    const over = await s.registrar.handle(phone.request({}, phone.authorization()));
    expect(over).toMatchObject({ status: 401, outcome: 'session-timeout' });
    expect(over?.headers[0]?.[1]).toContain('stale=true');
    phone.takeChallenge(over!);
    const renewed = await s.registrar.handle(phone.request({}, phone.authorization()));
    expect(contactExpires(renewed)).toEqual([600]);
    expect((await s.bindings.list(user.id, s.clock.now))[0]?.firstRegisteredAt).toBe(s.clock.now);
  });

  it('refuses an out-of-order CSeq on the same Call-ID (RFC 3261 §10.3 step 7)', async () => {
    const s = await stack();
    await s.store.create({ username: 'A', login: '4301', password: 'secret-password-1', connectionMethod: 'sip-phone' });
    const phone = new Phone(s.registrar, { login: '4301' });
    expect((await phone.register())?.status).toBe(200);
    phone.cseq = 1;
    expect(await s.registrar.handle(phone.request({}, phone.authorization()))).toMatchObject({ status: 500 });
  });

  it('rejects malformed requests with 400 and never throws', async () => {
    const s = await stack();
    const phone = new Phone(s.registrar, { login: '5001' });
    const bad = (headers: Record<string, string>): RegisterRequest => ({
      ...phone.request(),
      get: (name: string) => headers[name.toLowerCase()],
    });
    expect((await s.registrar.handle(bad({})))?.status).toBe(400);
    expect((await s.registrar.handle(bad({ to: '<sip:1@x>', 'call-id': 'a', cseq: '1 INVITE' })))?.status).toBe(400);
    expect((await s.registrar.handle(bad({ to: '<sip:1@x>', 'call-id': 'a', cseq: '1 REGISTER', expires: '-5' })))?.status).toBe(400);
    expect((await s.registrar.handle(bad({ to: '<sip:1@x>', 'call-id': 'a', cseq: '1 REGISTER', authorization: 'Digest username="1' })))?.status).toBe(400);
    expect((await s.registrar.handle(bad({ to: '<sip:1@x>', 'call-id': 'a', cseq: '1 REGISTER', contact: '<sip:a@b>,'.repeat(20) })))?.status).toBe(400);
  });
});

describe('kick-off across instances', () => {
  it('deactivating on instance A removes bindings via instance B within a second', async () => {
    const s = await stack();
    const busA = new EventBus(await redis.connect());
    const busB = new EventBus(await redis.connect());
    await Promise.all([busA.start(), busB.start()]);
    const adminStore = new UserStore({ redis: await redis.connect(), realm: REALM, events: busA });
    const ended: string[] = [];
    const kicks = new KickHandler({
      events: busB,
      bindings: new BindingStore(await redis.connect()),
      terminator: { terminateUserSessions: async (id) => (ended.push(id), 1) },
    });
    kicks.start();
    const user = await adminStore.create({ username: 'K', login: '6001', password: 'secret-password-1', connectionMethod: 'sip-phone' });
    expect((await new Phone(s.registrar, { login: '6001' }).register())?.status).toBe(200);
    expect(await s.bindings.list(user.id)).toHaveLength(1);

    const started = Date.now();
    await adminStore.setActive(user.id, false);
    await waitFor(() => ended.includes(user.id), 1000);
    expect(await s.bindings.list(user.id)).toEqual([]);
    expect(Date.now() - started).toBeLessThan(1000);
    kicks.stop();
    await Promise.all([busA.stop(), busB.stop()]);
  });
});

describe('toHeaderRecord', () => {
  it('sends repeated WWW-Authenticate as separate lines and folds Contact', () => {
    expect(
      toHeaderRecord([
        ['WWW-Authenticate', 'Digest a'],
        ['WWW-Authenticate', 'Digest b'],
        ['Contact', '<sip:a@b>'],
        ['Contact', '<sip:c@d>'],
      ]),
    ).toEqual({ 'WWW-Authenticate': 'Digest a\r\nWWW-Authenticate: Digest b', Contact: '<sip:a@b>, <sip:c@d>' });
  });
});
