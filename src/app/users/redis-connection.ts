/**
 * How an instance connects to Redis, in one place: a single server (`redis.url`), or the master
 * of a Redis Sentinel group (`redis.sentinels` + `redis.sentinelMaster`): node-redis asks the
 * sentinels for the master, follows a failover to the promoted replica, and replays the pub/sub
 * subscriptions there. Either way the rest of the core sees the thin NodeRedisClient of redis.ts.
 */
import { createClient, createSentinel } from 'redis';
import type { Logger } from 'pino';
import type { NodeRedisClient, NodeRedisSubscriber } from './redis.js';

export type RedisTarget =
  | { kind: 'server'; url: string }
  | {
      kind: 'sentinel';
      /** the master group's name (`sentinel monitor <name> ...`) */
      masterName: string;
      sentinels: Array<{ host: string; port: number }>;
      /** AUTH for the data nodes, when they need it */
      password?: string;
    };

export interface RedisConnection {
  client: NodeRedisClient;
  close(): Promise<void>;
}

// commands carry no per-command timeout (redis.ts): bound the queue instead, so a Redis that hangs
// with its socket open can't pile up commands without limit
const COMMANDS_QUEUE_MAX = 100_000;
// while disconnected, commands fail at once instead of waiting in an offline queue for the reconnect: a
// REGISTER is then answered 500 + Retry-After (registrar.ts) rather than left to the phone's retransmissions
const DISABLE_OFFLINE_QUEUE = true;
const reconnectStrategy = (retries: number): number => Math.min(retries * 100, 2000);

export async function connectRedis(target: RedisTarget, log: Logger): Promise<RedisConnection> {
  if (target.kind === 'server') {
    const client = createClient({
      url: target.url, commandsQueueMaxLength: COMMANDS_QUEUE_MAX, disableOfflineQueue: DISABLE_OFFLINE_QUEUE, socket: { reconnectStrategy },
    });
    client.on('error', (err: Error) => log.warn({ err: err.message }, 'redis connection error'));
    await client.connect();
    return { client, close: async () => void (await client.quit().catch(() => undefined)) };
  }
  const sentinel = createSentinel({
    name: target.masterName,
    sentinelRootNodes: target.sentinels,
    nodeClientOptions: {
      commandsQueueMaxLength: COMMANDS_QUEUE_MAX,
      disableOfflineQueue: DISABLE_OFFLINE_QUEUE,
      socket: { reconnectStrategy },
      ...(target.password ? { password: target.password } : {}),
    },
    sentinelClientOptions: { socket: { reconnectStrategy } },
  });
  sentinel.on('error', (err: unknown) => log.warn({ err: err instanceof Error ? err.message : String(err) }, 'redis sentinel error'));
  sentinel.on('topology-change', (event: unknown) => log.info({ event: topologyEvent(event) }, 'redis sentinel topology change'));
  await sentinel.connect();
  const client: NodeRedisClient = {
    // every command goes to the master (isReadonly false): reads must see the writes just made
    sendCommand: (args, options) => sentinel.sendCommand(false, args, options),
    duplicate: () => sentinel.duplicate() as unknown as NodeRedisSubscriber,
  };
  return { client, close: () => sentinel.close().catch(() => undefined) };
}

function topologyEvent(event: unknown): string {
  const type = (event as { type?: unknown } | null)?.type;
  return typeof type === 'string' ? type : 'unknown';
}
