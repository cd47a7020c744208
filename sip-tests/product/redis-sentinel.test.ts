/**
 * `dialcore start --redis-sentinel ... --redis-sentinel-master dc`: the core finds the master
 * through Redis Sentinel, and when the master dies and Sentinel promotes its replica, the core
 * follows: the bindings written before the failover are still there (replicated), new
 * registrations are written to the new master, and /healthz says Redis is ok again.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createClient } from 'redis';
import {
  runSipp, startRedis, startRedisSentinel, startRtpengine, waitUntil,
  type RedisSentinel, type RedisServer, type RtpengineServer,
} from '../harness/index.js';
import { startLoopbackCore, type DialcoreProcess } from '../fixtures/cli-process.js';

const HOST = '127.0.0.1';
const TOKEN = 'sentinel-test-admin-token-0123456789';
const REALM = 'dialcore';

let master: RedisServer;
let replica: RedisServer;
let sentinel: RedisSentinel;
let rtpengine: RtpengineServer;
let core: DialcoreProcess;
let sipPort = 0;

const api = (method: string, path: string, body?: unknown) => core.api(method, path, body);

async function register(login: string, password: string): Promise<number> {
  const phone = await runSipp({
    scenario: 'register-auth-uac.xml', target: `${HOST}:${sipPort}`, calls: 1, timeoutMs: 10_000,
    inf: { rows: [[login, password, REALM]] },
  });
  return phone.stats.successful;
}

async function roleOf(server: RedisServer): Promise<string> {
  const client = createClient({ url: server.url });
  await client.connect();
  try {
    return String(((await client.sendCommand(['ROLE'])) as unknown[])[0]);
  } finally {
    await client.quit();
  }
}

beforeAll(async () => {
  master = await startRedis();
  replica = await startRedis({ replicaOf: { host: HOST, port: master.port } });
  sentinel = await startRedisSentinel({ masterName: 'dc', master: { host: HOST, port: master.port } });
  rtpengine = await startRtpengine();
  ({ core, sipPort } = await startLoopbackCore({
    redis: ['--redis-sentinel', `${HOST}:${sentinel.port}`, '--redis-sentinel-master', 'dc'],
    rtpengineNgPort: rtpengine.ngPort, token: TOKEN, extraArgs: ['--realm', REALM, '--log-level', 'warn'],
  }));
}, 60_000);

afterAll(async () => {
  await core?.stop();
  await rtpengine?.stop();
  await sentinel?.stop();
  await replica?.stop();
  await master?.stop();
});

describe('Redis Sentinel', () => {
  it('registers through the master Sentinel names, and follows a failover to the promoted replica without losing the binding', async () => {
    const created = await api('POST', '/v1/users', { username: 'sentinel-agent', login: '7401', password: 'sentinel-pass-1', connectionMethod: 'sip-phone', active: true });
    expect(created.status).toBe(201);
    const userId = created.json.id as string;
    expect(await register('7401', 'sentinel-pass-1')).toBe(1);
    // the replica has caught up with the binding before its master goes
    await waitUntil(async () => {
      const client = createClient({ url: replica.url });
      await client.connect();
      try {
        return ((await client.sendCommand(['KEYS', '*'])) as string[]).some((k) => k.includes(userId) && /bind/i.test(k));
      } finally {
        await client.quit();
      }
    }, { timeoutMs: 5000, what: 'binding replicated' });

    await master.stop();
    await waitUntil(async () => (await roleOf(replica)) === 'master', { timeoutMs: 20_000, intervalMs: 250, what: 'Sentinel promoting the replica' });

    // the core follows: the binding is still listed, and new writes land on the new master
    await waitUntil(async () => (await api('GET', '/healthz')).json.redis === 'ok', { timeoutMs: 15_000, intervalMs: 250, what: '/healthz redis ok after failover' });
    const registrations = await api('GET', `/v1/users/${userId}/registrations`);
    expect(registrations.status).toBe(200);
    expect(registrations.json.registrations).toHaveLength(1);
    const second = await api('POST', '/v1/users', { username: 'sentinel-agent-2', login: '7402', password: 'sentinel-pass-2', connectionMethod: 'sip-phone', active: true });
    expect(second.status).toBe(201);
    expect(await register('7402', 'sentinel-pass-2')).toBe(1);
  }, 60_000);
});
