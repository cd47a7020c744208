/**
 * The process the registrar bench measures: the embedded SIP edge (UDP on one loopback port), a drachtio-srf
 * app connected to it over the drachtio protocol, and the product registrar wired by startRegistrarServices
 * on a node-redis client — the REGISTER path of `dialcore start` (RFC 3261 §10.3, digest per RFC 7616).
 *
 * Run: node --import tsx bench/registrar-stack.ts --redis redis://127.0.0.1:<port> [--realm dialcore.test]
 *        [--max-server-transactions N]
 *      (bench/registrar.ts runs an esbuild bundle of this file on plain node, like the edge bench.)
 * Prints one JSON line on stdout once ready: {"pid":..,"sipPort":..,"adminPort":..}
 * Then reads commands from stdin, one JSON object a line, and answers each with one JSON line on stdout:
 *   {"cmd":"memory"}  -> {"rssMiB":..,"heapUsedMiB":..,"cachedUsers":..,"serverTransactions":..}
 *                        (after a full GC when node runs with --expose-gc)
 * Stops cleanly on SIGTERM / SIGINT or stdin EOF (so `node --cpu-prof` writes its profile).
 *
 * --max-server-transactions N is a what-if, not a product setting: it overrides the edge's cap on live server
 * transactions (src/edge/transaction, default 20,000, not reachable through EdgeOptions) after start, so the
 * bench can measure the registrar path beyond the throughput that cap allows over UDP (a non-INVITE server
 * transaction stays 64*T1 = 32 s in Completed, RFC 3261 §17.2.2 Timer J: 2 transactions per registration
 * => at most 20,000 / 64 ~ 312 registrations/s sustained).
 *
 * Bench-only settings, not product defaults: every SIPp phone comes from 127.0.0.1, so 127.0.0.1 is never
 * banned by the abuse guard (one NAT'd office would get the same treatment via `neverBan`); MD5 is offered
 * first because SIPp 3.6.1 answers only the first challenge and knows only MD5 (SHA-256 is offered too).
 */
import { randomBytes } from 'node:crypto';
import { createInterface } from 'node:readline';
import { createClient } from 'redis';
import { Edge } from '../src/edge/edge.js';
import { connectSrf, createSrf } from '../src/app/sip/srf.js';
import { startRegistrarServices } from '../src/app/registrar/services.js';
import { freePort } from '../sip-tests/harness/ports.js';

export interface RegistrarStackReady {
  pid: number;
  sipPort: number;
  adminPort: number;
}

export interface RegistrarStackMemory {
  rssMiB: number;
  heapUsedMiB: number;
  cachedUsers: number;
  /** live server transactions in the edge (Completed ones included), when the edge internals expose them */
  serverTransactions: number | null;
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

/** Live server transactions of the edge, read from its internals for the memory report (null if they moved). */
function serverTransactionCount(edge: Edge): number | null {
  const count = (edge as unknown as { transactions?: { serverTransactionCount?: unknown } }).transactions?.serverTransactionCount;
  return typeof count === 'number' ? count : null;
}

/** The what-if override: the edge keeps its transaction layer in a private field, with the cap a plain property. */
function overrideServerTransactionCap(edge: Edge, cap: number): void {
  const layer = (edge as unknown as { transactions?: { maxServerTransactions?: unknown } }).transactions;
  if (!layer || typeof layer.maxServerTransactions !== 'number') throw new Error('edge internals changed: no transactions.maxServerTransactions to override');
  layer.maxServerTransactions = cap;
}

async function main(): Promise<void> {
  const redisUrl = argument('redis');
  const realm = argument('realm', DEFAULT_REALM);

  const sipPort = await freePort();
  const edge = new Edge({
    sip: [{ protocol: 'udp', host: HOST, port: sipPort }],
    admin: { host: HOST, port: 0 },
    secret: SECRET,
  });
  const addresses = await edge.start();
  const maxServerTransactions = process.argv.includes('--max-server-transactions') ? Number(argument('max-server-transactions')) : undefined;
  if (maxServerTransactions !== undefined) {
    if (!Number.isInteger(maxServerTransactions) || maxServerTransactions < 1) throw new Error('--max-server-transactions: a positive integer');
    overrideServerTransactionCap(edge, maxServerTransactions);
  }

  const client = createClient({ url: redisUrl });
  client.on('error', () => undefined);
  await client.connect();
  const services = await startRegistrarServices({
    client,
    realm,
    nonceSecret: randomBytes(24).toString('hex'),
    algorithms: ['MD5', 'SHA-256'],
    abuse: { neverBan: [HOST] },
  });

  const srf = createSrf();
  await connectSrf(srf, { host: HOST, port: addresses.admin.port, secret: SECRET });
  srf.register(services.registerHandler);

  let stopping = false;
  const stop = async (): Promise<void> => {
    if (stopping) return;
    stopping = true;
    srf.disconnect();
    await services.stop();
    await edge.stop();
    await client.close().catch(() => undefined);
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
      gc?.();
      const usage = process.memoryUsage();
      const memory: RegistrarStackMemory = {
        rssMiB: usage.rss / 1048576,
        heapUsedMiB: usage.heapUsed / 1048576,
        cachedUsers: services.cache.size,
        serverTransactions: serverTransactionCount(edge),
      };
      process.stdout.write(`${JSON.stringify(memory)}\n`);
    }
  });
  commands.on('close', () => void stop());

  const ready: RegistrarStackReady = { pid: process.pid, sipPort, adminPort: addresses.admin.port };
  process.stdout.write(`${JSON.stringify(ready)}\n`);
}

main().catch((err: unknown) => {
  process.stderr.write(`registrar-stack failed: ${err instanceof Error ? err.stack : String(err)}\n`);
  process.exit(1);
});
