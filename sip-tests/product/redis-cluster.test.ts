/**
 * `dialcore start --redis-cluster host:port,...`: the core's state spread over a real Redis Cluster
 * (3 masters, 1 replica each). Users land on several masters; they register (SIPp), are listed and
 * kicked (the kick is a pub/sub event: it must reach the core's subscriber, on whichever node that
 * is); the dial-in lockout list finds lockouts on every master. Then the master holding a
 * registered user's keys, and the core's event subscription, is killed: once its replica is
 * promoted the binding is still listed, the user registers again on the promoted master, kicks
 * reach the core again (it subscribed anew on another node), and /healthz says Redis is ok.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  freePort, runSipp, startRedisCluster, startRtpengine, waitUntil,
  type RedisCluster, type RtpengineServer,
} from '../harness/index.js';
import { startLoopbackCore, type DialcoreProcess } from '../fixtures/cli-process.js';

const HOST = '127.0.0.1';
const TOKEN = 'cluster-test-admin-token-0123456789';
const REALM = 'dialcore';
const EVENTS_CHANNEL = 'dc:events';
const LOCKOUT_FAILURES = 3;

let cluster: RedisCluster;
let rtpengine: RtpengineServer;
let core: DialcoreProcess;
let sipPort = 0;
let promptsDir = '';

interface TestUser { id: string; login: string; password: string; master: number }
const users: TestUser[] = [];

const api = (method: string, path: string, body?: unknown) => core.api(method, path, body);
const userKey = (id: string) => `dc:{u:${id}}:user`;
const bindingsKey = (id: string) => `dc:{u:${id}}:bindings`;

async function register(list: readonly TestUser[]): Promise<number> {
  const phone = await runSipp({
    scenario: 'register-auth-uac.xml', target: `${HOST}:${sipPort}`, calls: list.length, timeoutMs: 20_000,
    inf: { order: 'SEQUENTIAL', rows: list.map((u) => [u.login, u.password, REALM]) },
  });
  return phone.stats.successful;
}

async function registrations(userId: string): Promise<Array<{ id: string }>> {
  const listed = await api('GET', `/v1/users/${userId}/registrations`);
  expect(listed.status).toBe(200);
  return listed.json.registrations as Array<{ id: string }>;
}

/** Subscribers of the core's event channel on one node (classic pub/sub counts are per node). */
async function eventSubscribers(port: number): Promise<number> {
  const reply = await cluster.cli(port, 'PUBSUB', 'NUMSUB', EVENTS_CHANNEL).catch(() => '');
  return Number(reply.trim().split('\n')[1] ?? 0);
}

async function masters(): Promise<number[]> {
  const ports = new Set<number>();
  for (const user of users) ports.add(await cluster.masterOf(userKey(user.id)));
  return [...ports];
}

beforeAll(async () => {
  cluster = await startRedisCluster({ masters: 3, replicasPerMaster: 1 });
  const dtmfEventsPort = await freePort();
  rtpengine = await startRtpengine({ dtmfLogPort: dtmfEventsPort });
  promptsDir = mkdtempSync(join(tmpdir(), 'dialcore-cluster-prompts-'));
  ({ core, sipPort } = await startLoopbackCore({
    // two of the six nodes: the core learns the rest from them
    redis: ['--redis-cluster', cluster.rootNodes.split(',').slice(0, 2).join(',')],
    rtpengineNgPort: rtpengine.ngPort, token: TOKEN,
    extraArgs: [
      '--realm', REALM, '--log-level', 'warn', '--access-number', '0800100300', '--dtmf-events', `${HOST}:${dtmfEventsPort}`,
      '--prompts-dir', promptsDir, '--dialin-lockout-failures', String(LOCKOUT_FAILURES),
    ],
  }));
}, 90_000);

afterAll(async () => {
  await core?.stop();
  await rtpengine?.stop();
  await cluster?.stop();
  if (promptsDir) rmSync(promptsDir, { recursive: true, force: true });
});

describe('Redis Cluster', () => {
  it('keeps users on several masters; registers, lists and kicks them; lists the lockouts of every master', async () => {
    // users until every master holds two of them (ids are random: keys hash all over the slots)
    const perMaster = new Map<number, number>();
    for (let i = 0; users.length < 30 && (perMaster.size < 3 || [...perMaster.values()].some((n) => n < 2)); i++) {
      const login = String(7601 + i);
      const password = `cluster-pass-${i}`;
      const created = await api('POST', '/v1/users', { username: `cluster-agent-${i}`, login, password, connectionMethod: 'sip-phone', active: true });
      expect(created.status).toBe(201);
      const id = created.json.id as string;
      const master = await cluster.masterOf(userKey(id));
      // the record is really on that master (not on some other node)
      expect((await cluster.cli(master, 'EXISTS', userKey(id))).trim()).toBe('1');
      users.push({ id, login, password, master });
      perMaster.set(master, (perMaster.get(master) ?? 0) + 1);
    }
    expect(perMaster.size).toBe(3);

    expect(await register(users)).toBe(users.length);
    for (const user of users) expect(await registrations(user.id)).toHaveLength(1);

    // a kick is published to the cluster; the core's subscriber (on one node) removes the binding
    const kicked = users.shift()!;
    const [binding] = await registrations(kicked.id);
    expect((await api('DELETE', `/v1/users/${kicked.id}/registrations/${binding!.id}`)).status).toBe(202);
    await waitUntil(async () => (await registrations(kicked.id)).length === 0, { timeoutMs: 5000, intervalMs: 100, what: 'the kicked binding gone' });
    expect(await registrations(users[0]!.id)).toHaveLength(1);

    // lockouts written on two different masters are both listed
    const onMaster = new Map<number, string>();
    for (let n = 1; onMaster.size < 2 && n < 200; n++) {
      const value = String(9000 + n);
      const master = await cluster.masterOf(`dc:dialin-failed-at:id:${value}`);
      if (!onMaster.has(master)) onMaster.set(master, value);
    }
    expect(onMaster.size).toBe(2);
    const now = Date.now();
    for (const [master, value] of onMaster) {
      const members = Array.from({ length: LOCKOUT_FAILURES }, (_, i) => [String(now - i), `${now - i}-test${i}`]).flat();
      await cluster.cli(master, 'ZADD', `dc:dialin-failed-at:id:${value}`, ...members);
      await cluster.cli(master, 'PEXPIRE', `dc:dialin-failed-at:id:${value}`, '600000');
    }
    const listed = await api('GET', '/v1/dialin/lockouts');
    expect(listed.status).toBe(200);
    const lockouts = (listed.json.lockouts as Array<{ kind: string; value: string; failures: number }>).filter((l) => l.kind === 'id');
    expect(lockouts.map((l) => l.value).sort()).toEqual([...onMaster.values()].sort());
    expect(lockouts.every((l) => l.failures === LOCKOUT_FAILURES)).toBe(true);
  }, 90_000);

  it("follows a master's failover: bindings kept, registrations land on the promoted replica, events flow again", async () => {
    expect(users.length).toBeGreaterThan(0);
    // the master to kill: the one the core's event subscription is on (node-redis subscribes on a master)
    let victim = 0;
    await waitUntil(async () => {
      for (const port of await masters()) if ((await eventSubscribers(port)) > 0) victim = port;
      return victim !== 0;
    }, { timeoutMs: 5000, what: "the node of the core's event subscription" });
    const user = users.find((u) => u.master === victim)!;
    expect(user).toBeDefined();
    const replica = await cluster.replicaOf(victim);

    // the replica has caught up with every write before its master goes
    await waitUntil(async () => {
      const offset = async (port: number, field: string) => Number(new RegExp(`${field}:(\\d+)`).exec(await cluster.cli(port, 'INFO', 'replication'))?.[1] ?? -1);
      return (await offset(replica, 'slave_repl_offset')) >= (await offset(victim, 'master_repl_offset'));
    }, { timeoutMs: 5000, what: 'replica caught up' });

    await cluster.kill(victim);
    await cluster.waitHealthy(30_000);
    expect(await cluster.masterOf(userKey(user.id))).toBe(replica);
    expect((await cluster.cli(replica, 'HLEN', bindingsKey(user.id))).trim()).toBe('1');

    await waitUntil(async () => (await api('GET', '/healthz')).json.redis === 'ok', { timeoutMs: 20_000, intervalMs: 250, what: '/healthz redis ok after failover' });
    expect(await registrations(user.id)).toHaveLength(1);

    // a new registration of that user (another phone: another contact) is written to the promoted master
    await waitUntil(async () => (await register([user])) === 1, { timeoutMs: 15_000, intervalMs: 500, what: 'a registration after the failover' });
    expect(await registrations(user.id)).toHaveLength(2);
    expect((await cluster.cli(replica, 'HLEN', bindingsKey(user.id))).trim()).toBe('2');

    // the core subscribed again, on a live node, and a kick reaches it
    await waitUntil(async () => {
      for (const node of cluster.nodes) if (node.running() && (await eventSubscribers(node.port)) > 0) return true;
      return false;
    }, { timeoutMs: 15_000, intervalMs: 250, what: 'the event subscription on a live node' });
    const [first] = await registrations(user.id);
    expect((await api('DELETE', `/v1/users/${user.id}/registrations/${first!.id}`)).status).toBe(202);
    await waitUntil(async () => (await registrations(user.id)).length === 1, { timeoutMs: 5000, intervalMs: 100, what: 'the kicked binding gone after the failover' });
  }, 120_000);
});
