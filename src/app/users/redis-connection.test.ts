/**
 * connectRedis against a real Redis Cluster (3 masters, 1 replica each): commands reach the
 * master of their key's slot, scanKeys and ping visit every master, and a subscription survives
 * the death of its node, telling the caller (who drops caches) that messages may have been missed.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { pino } from 'pino';
import { startRedisCluster, waitUntil, type RedisCluster } from '../../../sip-tests/harness/index.js';
import { connectRedis, type RedisConnection } from './redis-connection.js';
import { LuaScript, Redis } from './redis.js';
import { keys } from './keys.js';

let cluster: RedisCluster;
let connection: RedisConnection;
let redis: Redis;

beforeAll(async () => {
  cluster = await startRedisCluster({ masters: 3, replicasPerMaster: 1 });
  const [first] = cluster.nodes;
  connection = await connectRedis({ kind: 'cluster', rootNodes: [{ host: first!.host, port: first!.port }] }, pino({ level: 'silent' }));
  redis = new Redis(connection.client);
}, 60_000);

afterAll(async () => {
  await connection?.close();
  await cluster?.stop();
});

const TOUCH_ALL = new LuaScript('test-touch', `redis.call('SET', KEYS[1], ARGV[1]) redis.call('SET', KEYS[2], ARGV[1]) return redis.call('GET', KEYS[2])`);

describe('Redis Cluster connection', () => {
  it('sends each command to its slot master; scans and pings every master', async () => {
    const written = Array.from({ length: 30 }, (_, i) => `t:scan:${i}`);
    await Promise.all(written.map((key) => redis.send(['SET', key, '1'])));
    const holders = new Set<number>();
    for (const key of written) {
      const master = await cluster.masterOf(key);
      expect((await cluster.cli(master, 'GET', key)).trim()).toBe('1');
      holders.add(master);
    }
    expect(holders.size).toBe(3);

    const scanned = new Set<string>();
    for await (const key of redis.scanKeys('t:scan:*')) scanned.add(key);
    expect([...scanned].sort()).toEqual([...written].sort());
    expect(await redis.ping()).toBe(true);

    // a script over one user's keys (one slot), by SHA with the EVAL fallback
    expect(await redis.runScript(TOUCH_ALL, [keys.user('u9'), keys.bindings('u9')], ['v'])).toBe('v');
    expect(await redis.runScript(TOUCH_ALL, [keys.user('u9'), keys.bindings('u9')], ['w'])).toBe('w');
  }, 30_000);

  it("re-subscribes on another node when its node dies, and says so (callers drop caches)", async () => {
    const messages: string[] = [];
    let resubscribed = 0;
    const subscription = await redis.subscribe('t:events', (message) => messages.push(message), () => resubscribed++);
    try {
      await redis.publish('t:events', 'before');
      await waitUntil(() => messages.includes('before'), { timeoutMs: 5000, what: 'a message before the failover' });
      expect(resubscribed).toBe(0);

      // the node holding the subscription
      let victim = 0;
      for (const node of cluster.nodes) {
        const numsub = await cluster.cli(node.port, 'PUBSUB', 'NUMSUB', 't:events');
        if (Number(numsub.trim().split('\n')[1]) > 0) victim = node.port;
      }
      expect(victim).not.toBe(0);
      await cluster.kill(victim);
      await cluster.waitHealthy(30_000);

      await waitUntil(() => resubscribed > 0, { timeoutMs: 20_000, intervalMs: 100, what: 'the re-subscription reported' });
      await waitUntil(async () => {
        await redis.publish('t:events', 'after').catch(() => undefined);
        await new Promise((resolve) => setTimeout(resolve, 100));
        return messages.includes('after');
      }, { timeoutMs: 15_000, intervalMs: 200, what: 'a message after the failover' });
    } finally {
      await subscription.close();
    }
  }, 60_000);
});
