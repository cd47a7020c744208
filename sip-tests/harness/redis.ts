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

async function launch(port: number): Promise<Service> {
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

export async function startRedis(): Promise<RedisServer> {
  const port = await freePort();
  let service = await launch(port);
  return {
    host: HOST,
    port,
    url: `redis://${HOST}:${port}`,
    async stop() {
      await service.stop();
    },
    async restart() {
      await service.stop();
      service = await launch(port);
    },
    log: () => service.log(),
  };
}
