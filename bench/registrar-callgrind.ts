/**
 * Instructions per two-step digest registration of the registrar stack (bench/registrar-stack.ts: edge thread +
 * srf app + product registrar on a real Redis), counted by valgrind's callgrind rather than timed. The count
 * does not depend on what else the machine is doing, so two checkouts can be compared on a loaded or drifting
 * VM, where timed storms are +-40 us apart run to run (docs/performance.md).
 *
 *   npx tsx bench/registrar-callgrind.ts [--tree <checkout>] [--label name] [--warm 1500] [--measured 1500]
 *
 * --tree: the checkout whose stack and user store are measured (default: this one); users are created with
 * that checkout's UserStore, its registrar-stack.ts is bundled with esbuild into <tree>/.run/ and run on plain
 * node under `valgrind --tool=callgrind --instr-atstart=no`. SIPp registers 500 users, 4 in flight: --warm
 * registrations first (caches, JIT), then instrumentation is switched on for --measured registrations.
 * Prints the instructions per registration and the top functions (callgrind_annotate); the profile stays in
 * .run/callgrind/. Two runs of the same code differ by up to ~15 % in total (TurboFan compiles and GC land in
 * different windows); the steady-state builtins (string, IC, regexp) agree within ~1 %, so compare those
 * too. Two runs take ~3 minutes each, one core each: A and B can run side by side.
 */
import { execFileSync, spawn } from 'node:child_process';
import { mkdirSync, readdirSync, readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';
import { createClient } from 'redis';
import { runSipp, startRedis } from '../sip-tests/harness/index.js';

const REPO_ROOT = fileURLToPath(new URL('..', import.meta.url));
const USERS = 500;
const IN_FLIGHT = 4;
const REALM = 'dialcore.test';

function option(name: string, fallback: string): string {
  const index = process.argv.indexOf(`--${name}`);
  return index === -1 ? fallback : (process.argv[index + 1] ?? fallback);
}

const tree = resolve(option('tree', REPO_ROOT));
const label = option('label', 'registrar');
const warm = Number(option('warm', '1500'));
const measured = Number(option('measured', '1500'));
const outDir = resolve(REPO_ROOT, '.run/callgrind');
mkdirSync(outDir, { recursive: true });
mkdirSync(resolve(tree, '.run'), { recursive: true });

const redis = await startRedis();
const client = createClient({ url: redis.url });
await client.connect();
try {
  // the measured checkout's own user model (its record format may differ from this one's)
  const { Redis } = (await import(resolve(tree, 'src/app/users/redis.ts'))) as typeof import('../src/app/users/redis.js');
  const { UserStore } = (await import(resolve(tree, 'src/app/users/user-store.ts'))) as typeof import('../src/app/users/user-store.js');
  const store = new UserStore({ redis: new Redis(client), realm: REALM });
  const rows: string[][] = [];
  for (let i = 0; i < USERS; i++) {
    const login = String(300_000 + i);
    const password = `callgrind-${i}-secret`;
    await store.create({ username: `callgrind-${login}`, login, password, connectionMethod: 'sip-phone', active: true });
    rows.push([login, password, REALM]);
  }

  const bundle = resolve(tree, '.run/callgrind-stack.mjs');
  await build({
    entryPoints: [resolve(tree, 'bench/registrar-stack.ts')], outfile: bundle, bundle: true, platform: 'node', format: 'esm',
    target: 'node20', packages: 'external', logLevel: 'warning',
  });
  const stack = spawn('valgrind', [
    '--tool=callgrind', '--instr-atstart=no', `--callgrind-out-file=${outDir}/${label}.%p`,
    process.execPath, '--expose-gc', bundle, '--redis', redis.url, '--realm', REALM,
  ], { cwd: tree, stdio: ['pipe', 'pipe', 'pipe'] });
  let stderr = '';
  stack.stderr!.on('data', (chunk: Buffer) => (stderr = (stderr + chunk.toString()).slice(-4000)));
  const ready = JSON.parse(await new Promise<string>((resolveLine, reject) => {
    const timer = setTimeout(() => reject(new Error(`stack not ready under valgrind in 180 s:\n${stderr}`)), 180_000);
    createInterface({ input: stack.stdout! }).once('line', (line) => {
      clearTimeout(timer);
      resolveLine(line);
    });
  })) as { sipPort: number };

  const register = async (calls: number): Promise<string> => {
    const started = Date.now();
    const result = await runSipp({
      scenario: 'register-auth-uac.xml', target: `127.0.0.1:${ready.sipPort}`, calls, rate: 1000,
      maxConcurrentCalls: IN_FLIGHT, timeoutMs: 900_000, inf: { rows },
    });
    if (result.stats.successful !== calls) throw new Error(`${result.stats.successful}/${calls} registrations succeeded: ${result.errors}`);
    return `${calls} registrations, ${result.stats.retransmissions} retransmissions, ${((Date.now() - started) / 1000).toFixed(0)} s`;
  };
  const control = (...args: string[]): void => void execFileSync('callgrind_control', [...args, String(stack.pid)], { stdio: 'ignore' });

  console.log(`${label} warm-up: ${await register(warm)}`);
  control('-i', 'on');
  console.log(`${label} measured: ${await register(measured)}`);
  control('-i', 'off');
  control('-d');
  stack.stdin!.end();
  stack.kill('SIGTERM');
  await new Promise((done) => stack.once('exit', done));

  const files = readdirSync(outDir).filter((name) => name.startsWith(`${label}.${stack.pid}`)).map((name) => `${outDir}/${name}`);
  let total = 0;
  let largest = files[0] ?? '';
  for (const file of files) {
    const totals = Number(/^totals: (\d+)/m.exec(readFileSync(file, 'utf8'))?.[1] ?? 0);
    total += totals;
    if (totals > 0) largest = file;
  }
  console.log(`${label}: ${(total / measured / 1e6).toFixed(3)} M instructions per registration (${total} in ${measured}); profile ${largest}`);
  const annotated = execFileSync('callgrind_annotate', ['--threshold=60', largest], { encoding: 'utf8' });
  console.log(annotated.split('\n').filter((line) => /^\s*[\d,]+ \(/.test(line)).slice(1, 21).map((line) => line.slice(0, 140)).join('\n'));
} finally {
  await client.quit().catch(() => undefined);
  await redis.stop();
}
