/**
 * A throw-away redis-server for one test file: 127.0.0.1 on a free port, no persistence
 * (`--save '' --appendonly no`), data dir in a temp dir.
 *
 *   const redis = await startRedis();   // redis.url = redis://127.0.0.1:<port>
 *   ...
 *   await redis.stop();
 */
import { connect } from 'node:net';
import { freePort } from './ports.js';
import { spawnService, startupError, waitUntil, type Service } from './service.js';

const HOST = '127.0.0.1';

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
