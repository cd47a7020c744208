/**
 * How an instance connects to Redis, in one place: a single server (`redis.url`), the master
 * of a Redis Sentinel group (`redis.sentinels` + `redis.sentinelMaster`): node-redis asks the
 * sentinels for the master, follows a failover to the promoted replica, and replays the pub/sub
 * subscriptions there; or a Redis Cluster (`redis.clusterNodes`): each command goes to the master
 * of its key's slot (redis-command-key.ts), and node-redis follows MOVED replies and a replica's
 * promotion. Every way the rest of the core sees the thin NodeRedisClient of redis.ts.
 */
import { createClient, createCluster, createSentinel } from 'redis';
import type { Logger } from 'pino';
import type { NodeRedisClient, NodeRedisSubscriber } from './redis.js';
import { commandFirstKey } from './redis-command-key.js';

export type RedisTarget =
  | { kind: 'server'; url: string }
  | {
      kind: 'sentinel';
      /** the master group's name (`sentinel monitor <name> ...`) */
      masterName: string;
      sentinels: Array<{ host: string; port: number }>;
      /** AUTH for the data nodes, when they need it */
      password?: string;
    }
  | {
      kind: 'cluster';
      /** some of the cluster's nodes: the client learns the rest (CLUSTER SLOTS) from the first that answers */
      rootNodes: Array<{ host: string; port: number }>;
      /** AUTH for every node, when they need it */
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

/** A listener logging a connection's errors at warn (node-redis reconnects by itself). */
function warnOn(log: Logger, what: string): (err: unknown) => void {
  return (err) => log.warn({ err: err instanceof Error ? err.message : String(err) }, what);
}

export async function connectRedis(target: RedisTarget, log: Logger): Promise<RedisConnection> {
  if (target.kind === 'server') {
    const client = createClient({
      url: target.url, commandsQueueMaxLength: COMMANDS_QUEUE_MAX, disableOfflineQueue: DISABLE_OFFLINE_QUEUE, socket: { reconnectStrategy },
    });
    client.on('error', warnOn(log, 'redis connection error'));
    await client.connect();
    return { client, close: async () => void (await client.quit().catch(() => undefined)) };
  }
  if (target.kind === 'cluster') return connectCluster(target, log);
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
  sentinel.on('error', warnOn(log, 'redis sentinel error'));
  sentinel.on('topology-change', (event: unknown) => log.info({ event: topologyEvent(event) }, 'redis sentinel topology change'));
  await sentinel.connect();
  const client: NodeRedisClient = {
    // every command goes to the master (isReadonly false): reads must see the writes just made
    sendCommand: (args, options) => sentinel.sendCommand(false, args, options),
    duplicate: () => sentinel.duplicate() as unknown as NodeRedisSubscriber,
  };
  return { client, close: () => sentinel.close().catch(() => undefined) };
}

/**
 * A node that stops answering is given up for its replica once the cluster has promoted it: the
 * client re-reads the slot map this long after the node's first reconnection attempt (and again
 * as long as it keeps failing). node-redis's default is 5 s.
 */
const TOPOLOGY_REFRESH_MS = 1000;

async function connectCluster(target: Extract<RedisTarget, { kind: 'cluster' }>, log: Logger): Promise<RedisConnection> {
  const cluster = createCluster({
    rootNodes: target.rootNodes.map((node) => ({ socket: { host: node.host, port: node.port } })),
    defaults: {
      commandsQueueMaxLength: COMMANDS_QUEUE_MAX,
      disableOfflineQueue: DISABLE_OFFLINE_QUEUE,
      socket: { reconnectStrategy },
      ...(target.password ? { password: target.password } : {}),
    },
    // reads go to masters too: they must see the writes just made
    useReplicas: false,
    topologyRefreshOnReconnectionAttemptStrategy: TOPOLOGY_REFRESH_MS,
  });
  cluster.on('error', warnOn(log, 'redis cluster error'));
  cluster.on('node-error', warnOn(log, 'redis cluster node error'));
  await cluster.connect();
  const client: NodeRedisClient = {
    // isReadonly false: to the slot's master
    sendCommand: (args, options) => cluster.sendCommand(commandFirstKey(args), false, args, options),
    duplicate: () => clusterSubscriber(cluster.duplicate({ minimizeConnections: true }), log),
    masters: () => Promise.all(cluster.masters.map((master) => cluster.nodeClient(master))),
  };
  return { client, close: () => cluster.close().catch(() => undefined) };
}

type Cluster = ReturnType<typeof createCluster>;

/**
 * Pub/sub on a cluster: classic PUBLISH reaches the subscribers on every node, so node-redis keeps
 * one subscriber connection to a node of its choosing. The cluster object emits no 'ready' of its
 * own: 'node-ready' is what says that connection is (back) up. The duplicate connects to no node
 * but that one (minimizeConnections), so every 'node-ready' is the subscriber's: after a plain
 * reconnect (node-redis has resubscribed before 'ready') or on a new node after the old one left
 * the cluster (subscribed once the node's connect promise settles). Either way messages may have
 * been missed meanwhile, and 'ready' tells Redis.subscribe's caller so.
 */
function clusterSubscriber(subscriber: Cluster, log: Logger): NodeRedisSubscriber {
  return {
    connect: () => subscriber.connect(),
    subscribe: (channel, listener) => subscriber.subscribe(channel, (message: string, from: string) => listener(message, from)),
    close: () => subscriber.close(),
    on(event, listener) {
      if (event === 'error') {
        subscriber.on('error', listener);
        subscriber.on('node-error', listener);
      } else {
        subscriber.on('node-ready', (node: unknown) => {
          log.debug({ node }, 'redis cluster subscriber connection ready');
          // a new pub/sub node is subscribed when its connect promise settles
          void Promise.resolve(subscriber.pubSubNode?.connectPromise)
            .catch(() => undefined)
            .then(() => listener());
        });
      }
      return this;
    },
  };
}

function topologyEvent(event: unknown): string {
  const type = (event as { type?: unknown } | null)?.type;
  return typeof type === 'string' ? type : 'unknown';
}
