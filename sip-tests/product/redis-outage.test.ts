/**
 * `dialcore start` on a single Redis that misbehaves:
 * - Redis drops every connection (CLIENT KILL, as after a Redis restart with persistence or a network blip):
 *   the core reconnects, nothing stored is lost, and its pub/sub subscription comes back (a change made
 *   after the reconnect still reaches the user cache at once);
 * - Redis goes away: /healthz and /readyz say so at once, a REGISTER is answered (500 + Retry-After, not
 *   silence while the phone retransmits), and when Redis is back the core is healthy and registers again.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createClient } from 'redis';
import { runSipp, startRedis, startRtpengine, waitUntil, type RedisServer, type RtpengineServer } from '../harness/index.js';
import { startLoopbackCore, type DialcoreProcess } from '../fixtures/cli-process.js';

const HOST = '127.0.0.1';
const TOKEN = 'redis-outage-test-admin-token-0123';
const REALM = 'dialcore';

let redis: RedisServer;
let rtpengine: RtpengineServer;
let core: DialcoreProcess;
let sipPort = 0;

const api = (method: string, path: string, body?: unknown) => core.api(method, path, body);

/** One digest REGISTER by SIPp; the final status it got (0: none). */
async function register(login: string, password: string): Promise<{ ok: boolean; output: string }> {
  const phone = await runSipp({
    scenario: 'register-auth-uac.xml', target: `${HOST}:${sipPort}`, calls: 1, timeoutMs: 15_000,
    inf: { rows: [[login, password, REALM]] },
  });
  return { ok: phone.stats.successful === 1, output: `${phone.errors}\n${phone.stderr}` };
}

async function redisCommand(args: string[]): Promise<unknown> {
  const client = createClient({ url: redis.url });
  await client.connect();
  try {
    return await client.sendCommand(args);
  } finally {
    await client.quit();
  }
}

async function createUser(username: string, login: string, password: string): Promise<string> {
  const created = await api('POST', '/v1/users', { username, login, password, connectionMethod: 'sip-phone', active: true });
  expect(created.status, JSON.stringify(created.json)).toBe(201);
  return created.json.id as string;
}

beforeAll(async () => {
  redis = await startRedis();
  rtpengine = await startRtpengine();
  ({ core, sipPort } = await startLoopbackCore({
    redis: ['--redis', redis.url], rtpengineNgPort: rtpengine.ngPort, token: TOKEN,
    extraArgs: ['--realm', REALM, '--log-level', 'warn'],
  }));
}, 60_000);

afterAll(async () => {
  await core?.stop();
  await rtpengine?.stop();
  await redis?.stop();
});

describe('Redis connections dropped and Redis gone', () => {
  it('reconnects after Redis drops its connections: bindings kept, change events still reach the core', async () => {
    const userId = await createUser('outage-agent', '7501', 'outage-pass-1');
    expect((await register('7501', 'outage-pass-1')).ok).toBe(true);

    // every connection of the core, its pub/sub subscription included (our own is skipped)
    const killed = Number(await redisCommand(['CLIENT', 'KILL', 'TYPE', 'normal'])) + Number(await redisCommand(['CLIENT', 'KILL', 'TYPE', 'pubsub']));
    expect(killed).toBeGreaterThanOrEqual(2);
    await waitUntil(async () => Number(await redisCommand(['PUBSUB', 'NUMSUB', 'dc:events']).then((r) => (r as unknown[])[1])) >= 1, {
      timeoutMs: 10_000, intervalMs: 100, what: 'the core subscribed to dc:events again',
    });

    const listed = await api('GET', `/v1/users/${userId}/registrations`);
    expect(listed.status).toBe(200);
    expect(listed.json.registrations).toHaveLength(1);
    // the registrant is cached again by this REGISTER ...
    expect((await register('7501', 'outage-pass-1')).ok).toBe(true);
    // ... so only the change event (over the re-made subscription) can make the next one fail at once
    expect((await api('PATCH', `/v1/users/${userId}`, { active: false })).status).toBe(200);
    expect((await register('7501', 'outage-pass-1')).ok).toBe(false);
  }, 60_000);

  it('says Redis is unreachable while it is gone, answers REGISTERs meanwhile, and recovers when it is back', async () => {
    await createUser('outage-agent-3', '7503', 'outage-pass-3');
    expect((await register('7503', 'outage-pass-3')).ok).toBe(true);
    await redis.stop();
    await waitUntil(async () => (await api('GET', '/healthz')).json.redis === 'unreachable', { timeoutMs: 5000, intervalMs: 100, what: '/healthz redis unreachable' });
    const health = await api('GET', '/healthz');
    expect(health.status).toBe(503);
    expect(health.json.sip).toBe('ok');
    expect((await api('GET', '/readyz')).status).toBe(503);
    expect((await api('GET', '/livez')).status).toBe(200);

    // a phone re-registering is answered, not left retransmitting into a core waiting on Redis
    const started = Date.now();
    const phone = await runSipp({
      scenario: 'register-auth-uac.xml', target: `${HOST}:${sipPort}`, calls: 1, timeoutMs: 15_000,
      inf: { rows: [['7503', 'outage-pass-3', REALM]] }, traceMessages: true,
    });
    expect(phone.stats.failed).toBe(1);
    expect(phone.messages ?? '').toMatch(/SIP\/2\.0 500 [^\r\n]*\r?\n(?:[^\r\n]+\r?\n)*?Retry-After: \d+/i);
    expect(Date.now() - started).toBeLessThan(10_000);

    await redis.restart(); // same port, empty data set (the harness runs Redis without persistence)
    await waitUntil(async () => (await api('GET', '/readyz')).status === 200, { timeoutMs: 15_000, intervalMs: 200, what: '/readyz after Redis is back' });
    await createUser('outage-agent-2', '7502', 'outage-pass-2');
    expect((await register('7502', 'outage-pass-2')).ok).toBe(true);
  }, 60_000);
});
