/**
 * The process the registrar bench measures: the embedded SIP edge (UDP on one loopback port) on a thread of its
 * own (src/edge-thread.ts, as `dialcore start` runs it; BENCH_EDGE_THREAD=0 keeps it on the main thread), a
 * drachtio-srf app connected to it over the drachtio protocol, and the product registrar wired by
 * startRegistrarServices on a node-redis client — the REGISTER path of `dialcore start` (RFC 3261 §10.3, digest
 * per RFC 7616). This bundle is also the edge thread's entry: main() runs the edge when it is that thread.
 *
 * Run: node --import tsx bench/registrar-stack.ts --redis redis://127.0.0.1:<port> [--realm dialcore.test]
 *        [--app-workers N]
 *      (bench/registrar.ts runs an esbuild bundle of this file on plain node, like the edge bench.)
 * Prints one JSON line on stdout once ready: {"pid":..,"sipPort":..,"adminPort":..,"workerPids":[..]}
 *
 * --app-workers N: besides the app in this process, N more node processes run the same srf app + registrar
 * (this script with --worker) and connect to this edge's drachtio port; the edge hands REGISTERs to its apps
 * round robin, so the app side (srf parsing, digest, Redis) spreads over N + 1 processes. They share the nonce
 * secret (a 401 from one app is answered to another) and Redis; their user caches follow dc:events like any
 * core instance's. Workers stop when this process does (their stdin closes).
 * Then reads commands from stdin, one JSON object a line, and answers each with one JSON line on stdout:
 *   {"cmd":"memory"}  -> {"rssMiB":..,"heapUsedMiB":..,"cachedUsers":..,"serverTransactions":..,"workersRssMiB":[..]}
 *                        (after a full GC when node runs with --expose-gc; workers too)
 * Stops cleanly on SIGTERM / SIGINT or stdin EOF (so `node --cpu-prof` writes its profile).
 * BENCH_GC_LOG / BENCH_ALLOC_PROF turn on the diagnostics of bench/diagnostics.ts.
 *
 * Bench-only settings, not product defaults: every SIPp phone comes from 127.0.0.1, so 127.0.0.1 is never
 * banned by the abuse guard (one NAT'd office would get the same treatment via `neverBan`); MD5 is offered
 * first because SIPp 3.6.1 answers only the first challenge and knows only MD5 (SHA-256 is offered too).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { createClient } from 'redis';
import { Edge } from '../src/edge/edge.js';
import { isEdgeThread, runEdgeThread, startEdgeThread, type EdgeStats } from '../src/edge-thread.js';
import { connectSrf, createSrf, useEnvironmentSnapshot } from '../src/app/sip/srf.js';
import { startRegistrarServices } from '../src/app/registrar/services.js';
import { freePort } from '../sip-tests/harness/ports.js';
import { tuneGarbageCollection } from '../src/gc-tuning.js';
import { startDiagnostics } from './diagnostics.js';

export interface RegistrarStackReady {
  pid: number;
  sipPort: number;
  adminPort: number;
  /** pids of the --app-workers processes (CPU and RSS are measured over the stack pid and these) */
  workerPids: number[];
}

export interface RegistrarStackMemory {
  rssMiB: number;
  heapUsedMiB: number;
  /** the edge thread's V8 heap after a full GC in it (0 when the edge runs on the main thread: in heapUsedMiB) */
  edgeHeapUsedMiB: number;
  cachedUsers: number;
  /** live server transactions in the edge (Completed ones included), from Edge.stats() */
  serverTransactions: number;
  /** each app worker's VmRSS after a full GC in it, MiB */
  workersRssMiB: number[];
}

const DEFAULT_REALM = 'dialcore.test';
const HOST = '127.0.0.1';
const SECRET = 'bench-secret';

function argument(name: string, fallback?: string): string {
  const index = process.argv.indexOf(`--${name}`);
  const value = index === -1 ? fallback : process.argv[index + 1];
  if (value === undefined) throw new Error(`missing --${name}`);
  return value;
}

/** The edge as this process runs it: on a thread of its own (as `dialcore start` does) or on this thread. */
interface BenchEdge {
  adminPort: number;
  stats(): Promise<EdgeStats>;
  /** full GC in the edge thread; its heap in use after it, bytes (0 when the edge shares this thread) */
  collectGarbage(): Promise<number>;
  stop(): Promise<void>;
}

async function startBenchEdge(sipPort: number): Promise<BenchEdge> {
  const options = { sip: [{ protocol: 'udp' as const, host: HOST, port: sipPort }], admin: { host: HOST, port: 0 }, secret: SECRET };
  if (process.env.BENCH_EDGE_THREAD === '0') {
    const edge = new Edge(options);
    const addresses = await edge.start();
    return { adminPort: addresses.admin.port, stats: async () => edge.stats(), collectGarbage: async () => 0, stop: () => edge.stop() };
  }
  // this bundle is its own worker entry (main() below runs the edge when it is the edge thread)
  const edge = await startEdgeThread({ ...options, logLevel: 'warn' }, {
    entry: new URL(import.meta.url),
    onFailure: (err) => {
      process.stderr.write(`edge thread failed: ${err.stack ?? err.message}\n`);
      process.exit(1);
    },
  });
  return { adminPort: edge.addresses.admin.port, stats: () => edge.stats(), collectGarbage: () => edge.collectGarbage(), stop: () => edge.stop() };
}

/** The srf app + registrar, connected to the edge at adminPort: what this process and every worker run. */
async function startApp(redisUrl: string, realm: string, adminPort: number, nonceSecret: string) {
  const client = createClient({ url: redisUrl });
  client.on('error', () => undefined);
  await client.connect();
  const services = await startRegistrarServices({
    client,
    realm,
    nonceSecret,
    algorithms: ['MD5', 'SHA-256'],
    abuse: { neverBan: [HOST] },
  });
  const srf = createSrf();
  await connectSrf(srf, { host: HOST, port: adminPort, secret: SECRET });
  srf.register(services.registerHandler);
  return {
    services,
    async stop() {
      srf.disconnect();
      await services.stop();
      await client.close().catch(() => undefined);
    },
  };
}

/** --worker: one more app process; stops when its parent closes stdin (or on SIGTERM). */
async function worker(): Promise<void> {
  const secret = process.env.BENCH_NONCE_SECRET;
  if (!secret) throw new Error('worker: BENCH_NONCE_SECRET missing');
  const app = await startApp(argument('redis'), argument('realm', DEFAULT_REALM), Number(argument('admin-port')), secret);
  let stopping = false;
  const stop = async (): Promise<void> => {
    if (stopping) return;
    stopping = true;
    await app.stop();
    process.exit(0);
  };
  process.on('SIGTERM', () => void stop());
  process.on('SIGINT', () => void stop());
  process.stdin.on('end', () => void stop());
  // "memory" -> one JSON line {"rssMiB":..} after a full GC (node inherits --expose-gc from the stack process)
  createInterface({ input: process.stdin }).on('line', (line) => {
    if (line.trim() !== 'memory') return;
    (globalThis as { gc?: () => void }).gc?.();
    process.stdout.write(`${JSON.stringify({ rssMiB: process.memoryUsage().rss / 1048576 })}\n`);
  });
  process.stdout.write('ready\n');
}

interface AppWorker {
  child: ChildProcess;
  /** VmRSS after a full GC in the worker, MiB */
  memory(): Promise<number>;
}

/** Starts a worker process and waits for its ready line. */
function startWorker(redisUrl: string, realm: string, adminPort: number, nonceSecret: string): Promise<AppWorker> {
  const script = fileURLToPath(import.meta.url);
  const child = spawn(process.execPath, [...process.execArgv, script, '--worker', '--redis', redisUrl, '--realm', realm, '--admin-port', String(adminPort)], {
    stdio: ['pipe', 'pipe', 'inherit'],
    env: { ...process.env, BENCH_NONCE_SECRET: nonceSecret },
  });
  const lines = createInterface({ input: child.stdout! });
  const waiting: Array<(line: string) => void> = [];
  lines.on('line', (line) => waiting.shift()?.(line));
  const memory = (): Promise<number> => new Promise((resolve) => {
    const timer = setTimeout(() => resolve(Number.NaN), 10_000);
    waiting.push((line) => {
      clearTimeout(timer);
      try {
        resolve(Number((JSON.parse(line) as { rssMiB?: unknown }).rssMiB));
      } catch {
        resolve(Number.NaN);
      }
    });
    child.stdin?.write('memory\n');
  });
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('app worker not ready within 20 s')), 20_000);
    waiting.push(() => {
      clearTimeout(timer);
      resolve({ child, memory });
    });
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`app worker exited (${code}) during start-up`));
    });
  });
}

async function main(): Promise<void> {
  if (isEdgeThread()) {
    await startDiagnostics(process.env); // BENCH_GC_LOG lines of the edge thread are labelled with its thread id
    return runEdgeThread();
  }
  useEnvironmentSnapshot(); // as the CLI does (src/cli.ts)
  tuneGarbageCollection(); // likewise
  const diagnostics = await startDiagnostics(process.env);
  if (process.argv.includes('--worker')) return worker();
  const redisUrl = argument('redis');
  const realm = argument('realm', DEFAULT_REALM);
  const appWorkers = process.argv.includes('--app-workers') ? Number(argument('app-workers')) : 0;
  if (!Number.isInteger(appWorkers) || appWorkers < 0) throw new Error('--app-workers: a non-negative integer');

  const sipPort = await freePort();
  const edge = await startBenchEdge(sipPort);

  const nonceSecret = randomBytes(24).toString('hex');
  const app = await startApp(redisUrl, realm, edge.adminPort, nonceSecret);
  const services = app.services;
  const workers = await Promise.all(Array.from({ length: appWorkers }, () => startWorker(redisUrl, realm, edge.adminPort, nonceSecret)));

  let stopping = false;
  const stop = async (): Promise<void> => {
    if (stopping) return;
    stopping = true;
    await Promise.all(workers.map(({ child }) => new Promise<void>((done) => {
      if (child.exitCode !== null || child.signalCode !== null) return done();
      child.once('exit', () => done());
      child.stdin?.end();
      setTimeout(() => child.kill('SIGKILL'), 5000).unref();
    })));
    await app.stop();
    await edge.stop();
    await diagnostics.stop();
    process.exit(0);
  };
  process.on('SIGTERM', () => void stop());
  process.on('SIGINT', () => void stop());

  const gc = (globalThis as { gc?: () => void }).gc;
  const commands = createInterface({ input: process.stdin });
  commands.on('line', (line) => {
    if (line.length > 1024) return;
    let command: unknown;
    try {
      command = JSON.parse(line);
    } catch {
      return;
    }
    if (typeof command === 'object' && command !== null && (command as { cmd?: unknown }).cmd === 'memory') {
      void Promise.all([Promise.all(workers.map((w) => w.memory())), edge.collectGarbage(), edge.stats()]).then(([workersRssMiB, edgeHeapBytes, edgeStats]) => {
        gc?.();
        const usage = process.memoryUsage();
        const memory: RegistrarStackMemory = {
          rssMiB: usage.rss / 1048576,
          heapUsedMiB: usage.heapUsed / 1048576,
          edgeHeapUsedMiB: edgeHeapBytes / 1048576,
          cachedUsers: services.cache.size,
          serverTransactions: edgeStats.serverTransactions,
          workersRssMiB,
        };
        process.stdout.write(`${JSON.stringify(memory)}\n`);
      });
    }
  });
  commands.on('close', () => void stop());

  const ready: RegistrarStackReady = { pid: process.pid, sipPort, adminPort: edge.adminPort, workerPids: workers.map((w) => w.child.pid ?? 0) };
  process.stdout.write(`${JSON.stringify(ready)}\n`);
}

main().catch((err: unknown) => {
  process.stderr.write(`registrar-stack failed: ${err instanceof Error ? err.stack : String(err)}\n`);
  process.exit(1);
});
