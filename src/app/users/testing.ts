/**
 * Test support (not used in production code): a throw-away redis-server and connected
 * clients wrapped as `Redis`.
 */
import { afterAll, beforeAll, beforeEach } from 'vitest';
import { createClient } from 'redis';
import { startRedis, type RedisServer } from '../../../sip-tests/harness/redis.js';
import { Redis } from './redis.js';

export interface TestRedis {
  server: RedisServer;
  /** A new connected client (closed by close()). */
  connect(): Promise<Redis>;
  flush(): Promise<void>;
  close(): Promise<void>;
}

export async function startTestRedis(): Promise<TestRedis> {
  const server = await startRedis();
  const clients: Array<{ close(): Promise<unknown> }> = [];
  let admin: Redis | null = null;
  const connect = async (): Promise<Redis> => {
    const client = createClient({ url: server.url });
    client.on('error', () => undefined);
    await client.connect();
    clients.push(client);
    return new Redis(client);
  };
  return {
    server,
    connect,
    async flush() {
      admin ??= await connect();
      await admin.send(['FLUSHALL']);
    },
    async close() {
      await Promise.all(clients.map((c) => c.close().catch(() => undefined)));
      await server.stop();
    },
  };
}

export function waitFor(predicate: () => boolean, timeoutMs = 2000): Promise<void> {
  const started = Date.now();
  return new Promise((resolve, reject) => {
    const tick = (): void => {
      if (predicate()) resolve();
      else if (Date.now() - started > timeoutMs) reject(new Error(`condition not met within ${timeoutMs} ms`));
      else setTimeout(tick, 10);
    };
    tick();
  });
}

/**
 * A test file's Redis: started before its tests, flushed before each, stopped after.
 * `onStarted` receives it (assign it to the file's variable).
 */
export function useTestRedis(onStarted: (redis: TestRedis) => void): void {
  let started: TestRedis | undefined;
  beforeAll(async () => {
    started = await startTestRedis();
    onStarted(started);
  });
  afterAll(async () => {
    await started?.close();
  });
  beforeEach(async () => {
    await started?.flush();
  });
}
