/**
 * A throw-away redis-server for one test file: 127.0.0.1 on a free port, no persistence
 * (`--save '' --appendonly no`), data dir in a temp dir.
 *
 *   const redis = await startRedis();   // redis.url = redis://127.0.0.1:<port>
 *   ...
 *   await redis.stop();
 *
 * Also a Sentinel (startRedisSentinel) and a whole Redis Cluster (startRedisCluster).
 */
import { execFile } from 'node:child_process';
import { connect } from 'node:net';
import { promisify } from 'node:util';
import { freePort } from './ports.js';
import { spawnService, startupError, waitUntil, type Service } from './service.js';

const HOST = '127.0.0.1';
const execFileAsync = promisify(execFile);

export interface RedisServer {
  readonly host: string;
  readonly port: number;
  /** redis://127.0.0.1:<port> */
  readonly url: string;
  /** Stops the server (data is lost). */
  stop(): Promise<void>;
  /** Stops and starts a new server on the same port (empty data set). */
  restart(): Promise<void>;
  /** The server's log so far. */
  log(): string;
}

/** Sends PING over a raw socket; true on +PONG. */
export function redisAnswersPing(port: number, host = HOST, timeoutMs = 500): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect({ port, host });
    let reply = '';
    const finish = (ok: boolean): void => {
      socket.destroy();
      resolve(ok);
    };
    socket.setTimeout(timeoutMs, () => finish(false));
    socket.once('error', () => finish(false));
    socket.once('connect', () => socket.write('PING\r\n'));
    socket.on('data', (chunk) => {
      reply += chunk.toString('latin1');
      if (reply.includes('\r\n')) finish(reply.startsWith('+PONG'));
    });
  });
}

async function launch(port: number, extraArgs: readonly string[] = []): Promise<Service> {
  const service = spawnService({
    name: 'redis',
    command: 'redis-server',
    args: [
      '--bind', HOST,
      '--port', String(port),
      '--save', '',
      '--appendonly', 'no',
      '--protected-mode', 'yes',
      '--daemonize', 'no',
      '--dir', '.', // the service's temp dir (its cwd)
      ...extraArgs,
    ],
  });
  try {
    await waitUntil(async () => !service.running() || (await redisAnswersPing(port)), {
      timeoutMs: 10_000,
      what: `redis-server PING on ${HOST}:${port}`,
    });
  } catch {
    await service.stop({ keepDir: true });
    throw startupError(service, `did not answer PING on ${HOST}:${port}`);
  }
  if (!service.running()) throw startupError(service, 'exited during start-up');
  return service;
}

export interface RedisOptions {
  /** start as a replica of this master (`--replicaof`) */
  replicaOf?: { host: string; port: number };
}

export async function startRedis(options: RedisOptions = {}): Promise<RedisServer> {
  const port = await freePort();
  const extraArgs = options.replicaOf ? ['--replicaof', options.replicaOf.host, String(options.replicaOf.port)] : [];
  let service = await launch(port, extraArgs);
  return {
    host: HOST,
    port,
    url: `redis://${HOST}:${port}`,
    async stop() {
      await service.stop();
    },
    async restart() {
      await service.stop();
      service = await launch(port, extraArgs);
    },
    log: () => service.log(),
  };
}

export interface RedisSentinel {
  readonly host: string;
  readonly port: number;
  stop(): Promise<void>;
  log(): string;
}

/**
 * A Redis Sentinel (redis-server --sentinel) on a free loopback port, monitoring one master with a
 * quorum of 1 and short timers, so a test sees a failover within a few seconds of the master's end.
 */
export async function startRedisSentinel(options: { masterName: string; master: { host: string; port: number }; downAfterMs?: number }): Promise<RedisSentinel> {
  const port = await freePort();
  const { masterName, master } = options;
  const config = [
    `bind ${HOST}`,
    `port ${port}`,
    'protected-mode yes',
    `sentinel monitor ${masterName} ${master.host} ${master.port} 1`,
    `sentinel down-after-milliseconds ${masterName} ${options.downAfterMs ?? 1000}`,
    `sentinel failover-timeout ${masterName} 5000`,
    `sentinel parallel-syncs ${masterName} 1`,
  ].join('\n');
  // sentinel rewrites its config file: it lives in the service's temp dir (its cwd)
  const service = spawnService({
    name: 'redis-sentinel',
    command: 'sh',
    args: ['-c', `printf '%s\\n' "$0" > sentinel.conf && exec redis-server sentinel.conf --sentinel`, config],
  });
  try {
    await waitUntil(async () => !service.running() || (await redisAnswersPing(port)), { timeoutMs: 10_000, what: `redis sentinel on ${HOST}:${port}` });
  } catch {
    await service.stop({ keepDir: true });
    throw startupError(service, `did not answer PING on ${HOST}:${port}`);
  }
  if (!service.running()) throw startupError(service, 'exited during start-up');
  return { host: HOST, port, stop: async () => void (await service.stop()), log: () => service.log() };
}

export interface RedisClusterNode {
  readonly host: string;
  readonly port: number;
  running(): boolean;
  log(): string;
}

export interface RedisCluster {
  /** every node, as started (masters and replicas; roles change on failover) */
  readonly nodes: readonly RedisClusterNode[];
  /** "127.0.0.1:<port>,..." of every node, for --redis-cluster */
  readonly rootNodes: string;
  /** Runs redis-cli against one node (`redis-cli -h 127.0.0.1 -p <port> ...args`); its stdout. */
  cli(port: number, ...args: string[]): Promise<string>;
  /** The port of the live master serving `key`'s slot now (as a running node sees it). */
  masterOf(key: string): Promise<number>;
  /** The port of a live replica of the master on `masterPort`. */
  replicaOf(masterPort: number): Promise<number>;
  /** Kills one node at once (SIGKILL: a crash, no goodbye to the cluster). */
  kill(port: number): Promise<void>;
  /** Resolves once every running node reports cluster_state:ok and agrees who serves every slot. */
  waitHealthy(timeoutMs?: number): Promise<void>;
  /** Stops every node (their temp dirs go with them). */
  stop(): Promise<void>;
}

interface ClusterNodeLine {
  id: string;
  port: number;
  flags: string[];
  masterId: string;
  slots: Array<[number, number]>;
}

/** CLUSTER NODES output: "<id> <ip:port@cport> <flags> <master> <ping> <pong> <epoch> <link> <slot>..." */
function parseClusterNodes(text: string): ClusterNodeLine[] {
  return text.trim().split('\n').filter(Boolean).map((line) => {
    const [id = '', address = '', flags = '', masterId = '', , , , , ...slots] = line.trim().split(' ');
    return {
      id,
      port: Number(/:(\d+)@/.exec(address)?.[1] ?? 0),
      flags: flags.split(','),
      masterId,
      slots: slots.filter((s) => /^\d+(-\d+)?$/.test(s)).map((s) => {
        const [from, to] = s.split('-').map(Number);
        return [from!, to ?? from!] as [number, number];
      }),
    };
  });
}

/**
 * A Redis Cluster of real redis-server processes (`cluster-enabled yes`) on free loopback ports,
 * each with its own bus port (`cluster-port`) and temp dir (its nodes.conf), created with
 * `redis-cli --cluster create ... --cluster-replicas N`. A short `cluster-node-timeout` (1 s by
 * default) makes a replica take over within a few seconds of its master's end.
 */
export async function startRedisCluster(options: { masters?: number; replicasPerMaster?: number; nodeTimeoutMs?: number } = {}): Promise<RedisCluster> {
  const masters = options.masters ?? 3;
  const replicas = options.replicasPerMaster ?? 1;
  const count = masters * (1 + replicas);
  const services = new Map<number, Service>();
  const cli = async (port: number, ...args: string[]): Promise<string> =>
    (await execFileAsync('redis-cli', ['-h', HOST, '-p', String(port), ...args], { timeout: 30_000 })).stdout;
  const stop = async (): Promise<void> => {
    await Promise.all([...services.values()].map((service) => service.stop({ signal: 'SIGKILL' })));
  };
  try {
    for (let i = 0; i < count; i++) {
      const [port, busPort] = [await freePort(), await freePort()];
      services.set(port, await launch(port, [
        '--cluster-enabled', 'yes',
        '--cluster-config-file', 'nodes.conf',
        '--cluster-node-timeout', String(options.nodeTimeoutMs ?? 1000),
        '--cluster-port', String(busPort!),
        // a replica takes over however long ago it last heard from its master (the default
        // refuses when the data looks stale, which a freshly created test cluster's can)
        '--cluster-replica-validity-factor', '0',
      ]));
    }
    const ports = [...services.keys()];
    await execFileAsync('redis-cli', ['--cluster', 'create', ...ports.map((p) => `${HOST}:${p}`), '--cluster-replicas', String(replicas), '--cluster-yes'], { timeout: 60_000 });
  } catch (err) {
    await stop();
    throw err;
  }
  const running = () => [...services.entries()].filter(([, service]) => service.running()).map(([port]) => port);
  const view = async (): Promise<ClusterNodeLine[]> => {
    for (const port of running()) {
      try {
        return parseClusterNodes(await cli(port, 'CLUSTER', 'NODES'));
      } catch {
        // that node is going: ask the next
      }
    }
    throw new Error('no Redis Cluster node answers');
  };
  const liveMasters = (nodes: ClusterNodeLine[]) => nodes.filter((n) => n.flags.includes('master') && !n.flags.some((f) => f.startsWith('fail')));
  const cluster: RedisCluster = {
    nodes: [...services.entries()].map(([port, service]) => ({ host: HOST, port, running: () => service.running(), log: () => service.log() })),
    rootNodes: [...services.keys()].map((port) => `${HOST}:${port}`).join(','),
    cli,
    async masterOf(key) {
      const slot = Number((await cli(running()[0]!, 'CLUSTER', 'KEYSLOT', key)).trim());
      const owner = liveMasters(await view()).find((n) => n.slots.some(([from, to]) => slot >= from && slot <= to));
      if (!owner) throw new Error(`no live master serves slot ${slot}`);
      return owner.port;
    },
    async replicaOf(masterPort) {
      const nodes = await view();
      const master = nodes.find((n) => n.port === masterPort);
      const replica = nodes.find((n) => master && n.masterId === master.id && !n.flags.some((f) => f.startsWith('fail')));
      if (!replica) throw new Error(`no live replica of ${HOST}:${masterPort}`);
      return replica.port;
    },
    async kill(port) {
      await services.get(port)?.stop({ signal: 'SIGKILL' });
    },
    async waitHealthy(timeoutMs = 20_000) {
      await waitUntil(async () => {
        for (const port of running()) {
          const info = await cli(port, 'CLUSTER', 'INFO').catch(() => '');
          if (!/cluster_state:ok/.test(info)) return false;
          // every slot served by a live master, in this node's view
          const served = liveMasters(parseClusterNodes(await cli(port, 'CLUSTER', 'NODES'))).filter((n) => running().includes(n.port));
          if (served.reduce((sum, n) => sum + n.slots.reduce((s, [from, to]) => s + to - from + 1, 0), 0) !== 16384) return false;
        }
        return true;
      }, { timeoutMs, intervalMs: 200, what: 'Redis Cluster state ok on every node' });
    },
    stop,
  };
  await cluster.waitHealthy();
  return cluster;
}
