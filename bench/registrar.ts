/**
 * Bench section `registrar` (issue 3 item 6): authenticated two-step REGISTER (REGISTER -> 401 digest challenge,
 * REGISTER with credentials -> 200, RFC 3261 §10.3 / §22.4, RFC 7616 qop=auth) against the product registrar with
 * its bindings in a real Redis, and Kamailio 5.6 (bench/kamailio/kamailio.cfg, in-memory usrloc) under the same
 * SIPp load in the same run.
 *
 *   npx tsx bench/registrar.ts [--quick] [--app-workers N]      (or through bench/run.ts as section `registrar`)
 *
 * --app-workers N (or BENCH_APP_WORKERS=N): the stack process runs N more app processes (same srf app +
 * registrar, connected to its edge; the edge hands REGISTERs to its apps round robin); CPU and peak RSS are
 * then summed over the stack process and its workers.
 *
 * What it does, in order (everything on 127.0.0.1, every process it starts is stopped):
 *  1. redis-server (sip-tests/harness startRedis) and the stack process (bench/registrar-stack.ts, bundled with
 *     esbuild and run on plain node with --expose-gc: edge on its own thread as `dialcore start` runs it, srf app
 *     + startRegistrarServices on the main thread; BENCH_EDGE_THREAD=0: all on one thread);
 *  2. 10,000 users created through UserStore.create from this process (concurrent creates, which node-redis
 *     pipelines), timed; their logins and passwords go to per-SIPp-instance CSV files;
 *  3. "prime": every user registers once -> Redis INFO used_memory delta and stack VmRSS at 10k bindings;
 *  4. rate ramp: SIPP_INSTANCES SIPp processes in parallel (UDP, each on its own port with its own slice of the
 *     users) offer rising rates; the max is the highest offered rate with < 0.1 % failed or unfinished
 *     registrations and <= 1 % SIPp retransmissions (a late response means the stack is saturated);
 *  5. latency at half the max rate and at 2,500/s (the target's rate): SIPp `-trace_rtt` records response time 1
 *     of every registration, which the scenario starts at the first REGISTER and stops at the 200: the whole
 *     two-step registration. SIPp's timestamps come in 4 ms steps here, so p50/p99 are +-4 ms. Each latency
 *     step lasts 10 s (25,000 registrations at 2,500/s, p99 = the 250 slowest): slow registrations come in
 *     clusters of 50-200 (a GC, or both cores busy for a moment), so a 4 s step's p99 swung on one cluster;
 *  6. storm: 50,000 registrations (10k users x 5 rounds) offered at once, at most STORM_IN_FLIGHT in progress per
 *     SIPp instance (phones coming back after an outage, each finishing its registration before the next
 *     starts): the time until all are absorbed;
 *  7. 90,000 more users (UserStore.create) and their bindings, registered through SIPp when the measured rate
 *     does that in ~40 s, else written straight through BindingStore.apply (the registrar's own Redis script,
 *     no SIP; the result says which) -> Redis used_memory and stack VmRSS at 100k live bindings;
 *  8. a fresh stack process with the 100k bindings in Redis: its VmRSS before any traffic (a restarted core);
 *  9. the stack and Redis are stopped, Kamailio is started (htable of the same passwords loaded from a db_text
 *     directory) and gets the same prime, ramp, latency and storm; the ratio dialcore/Kamailio is printed.
 *
 * Quick mode (CI, ~45 s): the storm is 10,000 (each user once, which also primes), the ramp offers 2,500, 5,000
 * and 10,000/s with latency traced (the 2,500/s step is the latency figure), no 100k step.
 * BENCH_CPU_PROF=<dir> runs the stack process under `node --cpu-prof` and leaves the .cpuprofile there.
 *
 * Everything runs as shipped: no product limit is lifted.
 *
 * Knobs for work on the hot path (not used by `bench/run.ts`):
 *   BENCH_REGISTRAR_PROBE=<rate,rate,..>  after the prime, each rate once for BENCH_PROBE_SECONDS (4) with latency
 *                                         traced, then stop (no ramp, storm, 100k or Kamailio);
 *   BENCH_PROBE_STORM=<rounds>            with the probe: first up to 3 closed-loop storms of <rounds> x 10k
 *                                         registrations each, printing the stack's CPU per registration;
 *   BENCH_NODE_FLAGS="<flags>"            extra node flags for the stack process (e.g. --max-semi-space-size=32);
 *   BENCH_RTT_DIR=<dir>                   SIPp's rtt files of every latency step are copied there;
 *   BENCH_GC_LOG=1                        the stack prints GC pauses and event-loop delay to stderr every 5 s;
 *   BENCH_ALLOC_PROF=<file>               the stack samples allocations (collected objects included) and writes a
 *                                         .heapprofile-format JSON there on exit.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { createInterface, type Interface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';
import { createClient } from 'redis';
import {
  freePort,
  freePortRange,
  isBound,
  parseSippStatsCsv,
  readSippResponseTimes,
  releasePort,
  spawnService,
  startRedis,
  waitUntil,
  type PortRange,
  type RedisServer,
  type Service,
} from '../sip-tests/harness/index.js';
import { Redis } from '../src/app/users/redis.js';
import { UserStore } from '../src/app/users/user-store.js';
import { BindingStore, bindingIdFor } from '../src/app/registrar/binding-store.js';
import { keys } from '../src/app/users/keys.js';
import { MAX_FAILURE_PCT, MAX_RETRANSMISSION_PCT, parseSippDuration } from './load.js';
import { cpuSeconds, redisCpuSeconds, rssMiB, sampleRss, threadCpuSeconds, threadCpuSplit, udpReceiveBufferErrors } from './process-stats.js';
import { percentile, type BenchOptions, type BenchSection, type BenchSectionResult } from './section.js';
import type { RegistrarStackMemory, RegistrarStackReady } from './registrar-stack.js';

export const TARGETS = {
  /** two-step authenticated registrations per second with < 0.1 % failures */
  registrationsPerSecond: 5000,
  /** p99 of the two-step registration at 2,500/s */
  p99Ms: 10,
  latencyRate: 2500,
  /** stack process VmRSS with 100k live bindings */
  rssAt100kMiB: 300,
  /** 50,000 re-registrations absorbed within */
  stormSeconds: 10,
  stormPhones: 50_000,
} as const;

const HOST = '127.0.0.1';
const SIPP_INSTANCES = 3;

/** --app-workers N / BENCH_APP_WORKERS: extra app processes beside the stack's own app (0: edge + 1 app). */
function appWorkersOption(): number {
  const index = process.argv.indexOf('--app-workers');
  const raw = index === -1 ? process.env.BENCH_APP_WORKERS : process.argv[index + 1];
  const n = raw === undefined ? 0 : Number(raw);
  if (!Number.isInteger(n) || n < 0 || n > 16) throw new Error('--app-workers: an integer 0..16');
  return n;
}
const STORM_IN_FLIGHT = 100;
const SCENARIO = fileURLToPath(new URL('../sipp-scenarios/bench-register-digest-uac.xml', import.meta.url));
const KAMAILIO_CFG = fileURLToPath(new URL('./kamailio/kamailio.cfg', import.meta.url));
const REPO_ROOT = fileURLToPath(new URL('..', import.meta.url));
const STACK_SCRIPT = fileURLToPath(new URL('./registrar-stack.ts', import.meta.url));
const STACK_BUNDLE = fileURLToPath(new URL('../.run/bench-build/registrar-stack.mjs', import.meta.url));
const RESULTS_FILE = fileURLToPath(new URL('../.run/bench-registrar.json', import.meta.url));
const FIRST_LOGIN = 200_000;
/** the digest realm of the stack (registrar-stack.ts --realm) and of the bench scenario's From/To */
const BENCH_REALM = 'dialcore.test';

const sleep = (ms: number) => new Promise((done) => setTimeout(done, ms));

// ---------------------------------------------------------------------------------------------------------------
// phones: users, their CSV slices, and the SIPp instances that play them

interface Phone {
  login: string;
  password: string;
}

/** One SIPp instance's share of the phones: a CSV of its rows and the local port it always registers from. */
interface PhoneGroup {
  csv: string;
  rows: number;
  localPort: number;
}

function makePhones(from: number, count: number): Phone[] {
  return Array.from({ length: count }, (_, i) => ({ login: String(FIRST_LOGIN + from + i), password: randomBytes(6).toString('hex') }));
}

/**
 * Splits phones over `instances` CSV files (row i goes to instance i % instances), in the format the bench
 * scenario reads: login;[authentication username=<login> password=<password>].
 */
async function writePhoneGroups(dir: string, name: string, phones: Phone[], instances: number): Promise<PhoneGroup[]> {
  const groups: PhoneGroup[] = [];
  for (let instance = 0; instance < instances; instance++) {
    const lines = ['SEQUENTIAL'];
    for (let i = instance; i < phones.length; i += instances) {
      const phone = phones[i]!;
      lines.push(`${phone.login};[authentication username=${phone.login} password=${phone.password}]`);
    }
    const csv = join(dir, `${name}-${instance}.csv`);
    writeFileSync(csv, `${lines.join('\n')}\n`);
    groups.push({ csv, rows: lines.length - 1, localPort: await freePort() });
  }
  return groups;
}

// ---------------------------------------------------------------------------------------------------------------
// one load step: every group's SIPp in parallel

interface StepPlan {
  target: string;
  groups: PhoneGroup[];
  /** registrations per second offered, all instances together */
  rate: number;
  /** registrations per instance; default rate / instances * durationS */
  callsPerGroup?: number;
  durationS: number;
  /** -l: at most this many registrations in progress per instance */
  maxInFlightPerGroup?: number;
  /** record every registration's response time (-trace_rtt) */
  latency?: boolean;
  /** process(es) whose CPU and RSS to watch */
  measuredPids: number[];
  redis?: Redis;
}

export interface StepResult {
  offeredRate: number;
  planned: number;
  successful: number;
  failed: number;
  /** failed or unfinished, % of planned */
  failurePct: number;
  retransmissions: number;
  /** successful registrations / SIPp's elapsed time (whole seconds in its statistics; wall clock if absent) */
  achievedRate: number;
  wallS: number;
  /** wall clock from starting the SIPp instances until the last exited, s */
  measuredWallS: number;
  /** CPU of the measured process(es), % of one core */
  cpuPct: number | undefined;
  /** the same per measured process (stack process first, then its app workers) */
  cpuPctByProcess: Array<number | undefined>;
  redisCpuPct: number | undefined;
  peakRssMiB: number;
  udpDrops: number | undefined;
  p50Ms?: number;
  p99Ms?: number;
  maxMs?: number;
  latencySamples?: number;
  /** 503 responses SIPp received (logged as unexpected messages) */
  responses503: number;
  errorSample?: string;
}

interface SippRun {
  service: Service;
  media: PortRange;
  controlPort: number;
}

async function launchSipp(plan: StepPlan, group: PhoneGroup, rate: number, calls: number): Promise<SippRun> {
  const controlPort = await freePort();
  const media = await freePortRange(4);
  const args = [
    '-sf', SCENARIO, plan.target,
    '-i', HOST, '-mi', HOST, '-ci', HOST,
    '-cp', String(controlPort), '-p', String(group.localPort), '-mp', String(media.min),
    '-t', 'u1', '-nostdin',
    '-inf', group.csv,
    '-m', String(calls), '-r', String(Math.max(1, rate)),
    '-trace_stat', '-stf', 'stats.csv', '-fd', '1',
    '-trace_err', '-error_file', 'errors.log',
    '-max_recv_loops', '10000', '-max_sched_loops', '10000',
    '-timeout', `${Math.ceil(plan.durationS + 30)}s`,
  ];
  if (plan.maxInFlightPerGroup !== undefined) args.push('-l', String(plan.maxInFlightPerGroup));
  // -rtt_freq 1: SIPp writes each response time as the call ends; with a larger value it drops the last
  // (up to freq - 1) calls' times at exit, the end of every step
  if (plan.latency) args.push('-trace_rtt', '-rtt_freq', '1');
  const service = spawnService({ name: 'sipp-bench', command: 'sipp', args, separateStderr: true });
  return { service, media, controlPort };
}

/** BENCH_RTT_DIR=<dir>: SIPp's rtt files of every latency step are copied there (for per-registration analysis). */
function keepRttFiles(dir: string, label: string): void {
  const keepDir = process.env.BENCH_RTT_DIR;
  if (!keepDir) return;
  mkdirSync(keepDir, { recursive: true });
  for (const file of readdirSync(dir).filter((f) => f.endsWith('_rtt.csv'))) {
    writeFileSync(join(keepDir, `${label}-${file}`), readFileSync(join(dir, file)));
  }
}

async function runStep(plan: StepPlan): Promise<StepResult> {
  const perGroupRate = plan.rate / plan.groups.length;
  const calls = plan.callsPerGroup ?? Math.max(1, Math.round(perGroupRate * plan.durationS));
  const cpuBefore = plan.measuredPids.map(cpuSeconds);
  const redisCpuBefore = await redisCpuSeconds(plan.redis);
  const dropsBefore = udpReceiveBufferErrors();
  const rss = plan.measuredPids.map((pid) => sampleRss(pid));
  const started = process.hrtime.bigint();
  const startedWallMs = Date.now();
  const runs = await Promise.all(plan.groups.map((group) => launchSipp(plan, group, Math.round(perGroupRate), calls)));
  const hardKillMs = (plan.durationS + 40) * 1000;
  const exits = await Promise.all(runs.map(async (run) => {
    const timer = setTimeout(() => run.service.child.kill('SIGKILL'), hardKillMs);
    const exit = await run.service.exited;
    clearTimeout(timer);
    return exit;
  }));
  const wallS = Number(process.hrtime.bigint() - started) / 1e9;
  const cpuAfter = plan.measuredPids.map(cpuSeconds);
  const redisCpuAfter = await redisCpuSeconds(plan.redis);
  const dropsAfter = udpReceiveBufferErrors();
  const peakRssMiB = rss.map((r) => r.stop().peakMiB).reduce((a, b) => a + b, 0);

  let successful = 0;
  let failed = 0;
  let retransmissions = 0;
  let elapsedS = 0;
  const times: number[] = [];
  const errors: string[] = [];
  let responses503 = 0;
  for (const [index, run] of runs.entries()) {
    let stats;
    try {
      stats = parseSippStatsCsv(readFileSync(join(run.service.dir, 'stats.csv'), 'utf8'));
    } catch {
      stats = parseSippStatsCsv('');
    }
    successful += stats.successful;
    failed += stats.failed;
    retransmissions += stats.retransmissions;
    elapsedS = Math.max(elapsedS, parseSippDuration(stats.raw['ElapsedTime(C)']) ?? 0);
    if (plan.latency) {
      times.push(...readSippResponseTimes(run.service.dir));
      keepRttFiles(run.service.dir, `${startedWallMs}-${plan.rate}-${index}`);
    }
    if (stats.failed > 0 || stats.successful < calls) {
      let text = '';
      try {
        text = readFileSync(join(run.service.dir, 'errors.log'), 'utf8');
      } catch {
        text = run.service.log(2000);
      }
      responses503 += text.split("received 'SIP/2.0 503").length - 1;
      const exit = exits[index]!;
      errors.push(`sipp ${index} (exit ${exit.code ?? exit.signal}): ${text.split('\n').filter(Boolean).slice(0, 6).join('\n')}`);
    }
    await run.service.stop();
    releasePort(run.media);
    releasePort(run.controlPort);
  }
  const planned = calls * plan.groups.length;
  const notDone = Math.max(0, planned - successful - failed);
  times.sort((a, b) => a - b);
  const cpu = plan.measuredPids.reduce<number | undefined>((sum, _pid, i) => {
    const before = cpuBefore[i];
    const after = cpuAfter[i];
    return sum === undefined || before === undefined || after === undefined ? undefined : sum + (after - before);
  }, 0);
  const activeS = elapsedS > 0 ? elapsedS : wallS;
  return {
    offeredRate: plan.rate,
    planned,
    successful,
    failed,
    failurePct: planned === 0 ? 100 : ((failed + notDone) / planned) * 100,
    retransmissions,
    achievedRate: successful / activeS,
    wallS: activeS,
    measuredWallS: wallS,
    cpuPct: cpu === undefined ? undefined : (cpu / wallS) * 100,
    cpuPctByProcess: plan.measuredPids.map((_pid, i) => {
      const before = cpuBefore[i];
      const after = cpuAfter[i];
      return before === undefined || after === undefined ? undefined : ((after - before) / wallS) * 100;
    }),
    redisCpuPct: redisCpuBefore !== undefined && redisCpuAfter !== undefined ? ((redisCpuAfter - redisCpuBefore) / wallS) * 100 : undefined,
    peakRssMiB,
    responses503,
    udpDrops: dropsBefore !== undefined && dropsAfter !== undefined ? dropsAfter - dropsBefore : undefined,
    ...(plan.latency && times.length > 0
      ? { p50Ms: percentile(times, 50), p99Ms: percentile(times, 99), maxMs: times[times.length - 1], latencySamples: times.length }
      : {}),
    ...(errors.length > 0 ? { errorSample: errors.join('\n').slice(0, 1500) } : {}),
  };
}

function isClean(step: StepResult): boolean {
  return step.failurePct < MAX_FAILURE_PCT && (step.retransmissions / Math.max(1, step.planned)) * 100 <= MAX_RETRANSMISSION_PCT;
}

interface RampOutcome {
  steps: StepResult[];
  maxCleanRate: number;
  maxCleanAchieved: number;
  /** failure % of the max clean step */
  failurePctAtMax: number;
}

/**
 * Offers `rates` in ascending order until a step is not clean or the budget is spent; then, with `bisect`, when a
 * step failed, offers the midpoint between the last clean and the first unclean rate once (rounded to 250/s).
 */
async function ramp(
  base: Omit<StepPlan, 'rate'>,
  rates: readonly number[],
  budgetMs: number,
  label: string,
  pids: number[],
  bisect: boolean,
): Promise<RampOutcome> {
  const deadline = Date.now() + budgetMs;
  const steps: StepResult[] = [];
  let maxCleanRate = 0;
  let maxCleanAchieved = 0;
  let failurePctAtMax = Number.NaN;
  let firstUnclean: number | undefined;
  const offer = async (rate: number): Promise<boolean> => {
    const step = await runStep({ ...base, rate });
    steps.push(step);
    console.log(stepLine(label, step));
    if (isClean(step) && rate > maxCleanRate) {
      maxCleanRate = rate;
      maxCleanAchieved = step.achievedRate;
      failurePctAtMax = step.failurePct;
    }
    await quiesce(pids); // let the backlog and retransmissions drain
    return isClean(step);
  };
  for (const rate of rates) {
    if (steps.length > 0 && Date.now() + (base.durationS + 4) * 1000 > deadline) {
      console.log(`${label}: ramp budget (${budgetMs / 1000} s) spent before ${rate}/s: the maximum is at least ${maxCleanRate}/s`);
      break;
    }
    if (!(await offer(rate))) {
      firstUnclean = rate;
      break;
    }
  }
  if (bisect && firstUnclean !== undefined && Date.now() + (base.durationS + 4) * 1000 <= deadline) {
    const mid = Math.round((maxCleanRate + firstUnclean) / 2 / 250) * 250;
    if (mid > maxCleanRate && mid < firstUnclean) await offer(mid);
  }
  return { steps, maxCleanRate, maxCleanAchieved, failurePctAtMax };
}

// ---------------------------------------------------------------------------------------------------------------
// printing

function fmt(value: number | undefined, digits = 0): string {
  return value === undefined || Number.isNaN(value) ? '-' : value.toFixed(digits);
}

const HEADER = ['system / step'.padEnd(22), 'offered'.padStart(7), 'achieved'.padStart(9), 'ok/planned'.padStart(13), 'fail%'.padStart(7),
  'retrans'.padStart(7), 'p50'.padStart(4), 'p99'.padStart(4), 'cpu%'.padStart(5), 'redis%'.padStart(6), 'rss MiB'.padStart(8),
  'udp drops'.padStart(9)].join(' ');

function stepLine(label: string, r: StepResult): string {
  return [label.padEnd(22), fmt(r.offeredRate).padStart(7), fmt(r.achievedRate).padStart(9), `${r.successful}/${r.planned}`.padStart(13),
    fmt(r.failurePct, 3).padStart(7), String(r.retransmissions).padStart(7), fmt(r.p50Ms).padStart(4), fmt(r.p99Ms).padStart(4),
    fmt(r.cpuPct).padStart(5), fmt(r.redisCpuPct).padStart(6), fmt(r.peakRssMiB, 1).padStart(8), fmt(r.udpDrops).padStart(9),
    r.cpuPctByProcess.length > 1 ? ` cpu% by process ${r.cpuPctByProcess.map((c) => fmt(c)).join('/')}` : ''].join(' ');
}

// ---------------------------------------------------------------------------------------------------------------
// the dialcore stack process

interface StackProcess extends RegistrarStackReady {
  /** VmRSS after a full GC, plus heap and cache size; workersVmRssMiB: the app workers' VmRSS summed (after a GC in each) */
  memory(): Promise<RegistrarStackMemory & { vmRssMiB: number; workersVmRssMiB: number }>;
  stop(): Promise<void>;
}

async function bundleStack(): Promise<string> {
  mkdirSync(fileURLToPath(new URL('../.run/bench-build/', import.meta.url)), { recursive: true });
  await build({
    entryPoints: [STACK_SCRIPT], outfile: STACK_BUNDLE, bundle: true, platform: 'node', format: 'esm',
    target: 'node20', packages: 'external', sourcemap: false, logLevel: 'warning',
  });
  return STACK_BUNDLE;
}

async function startStackProcess(redisUrl: string, extraArgs: string[]): Promise<StackProcess> {
  const profileDir = process.env.BENCH_CPU_PROF;
  const script = await bundleStack();
  const workers = appWorkersOption();
  if (workers > 0) extraArgs = [...extraArgs, '--app-workers', String(workers)];
  const child: ChildProcess = spawn(
    process.execPath,
    ['--expose-gc', ...(process.env.BENCH_NODE_FLAGS?.split(' ').filter(Boolean) ?? []), ...(profileDir ? ['--cpu-prof', '--cpu-prof-dir', resolve(profileDir)] : []), script, '--redis', redisUrl, '--realm', BENCH_REALM, ...extraArgs],
    { cwd: REPO_ROOT, stdio: ['pipe', 'pipe', 'inherit'] },
  );
  const exited = new Promise<void>((done) => child.once('exit', () => done()));
  const lines: Interface = createInterface({ input: child.stdout! });
  const pending: Array<(line: string) => void> = [];
  lines.on('line', (line) => pending.shift()?.(line));
  const nextLine = (timeoutMs: number, what: string) => new Promise<string>((resolveLine, reject) => {
    const timer = setTimeout(() => reject(new Error(`stack process: no ${what} within ${timeoutMs} ms`)), timeoutMs);
    const onExit = (code: number | null): void => {
      clearTimeout(timer);
      reject(new Error(`stack process exited (${code}) while waiting for ${what}`));
    };
    pending.push((line) => {
      clearTimeout(timer);
      child.off('exit', onExit);
      resolveLine(line);
    });
    child.once('exit', onExit);
  });
  let ready: RegistrarStackReady;
  try {
    ready = JSON.parse(await nextLine(20_000, 'ready line')) as RegistrarStackReady;
  } catch (err) {
    child.kill('SIGKILL');
    throw err;
  }
  return {
    ...ready,
    async memory() {
      const reply = nextLine(10_000, 'memory reply');
      child.stdin!.write(`${JSON.stringify({ cmd: 'memory' })}\n`);
      const memory = JSON.parse(await reply) as RegistrarStackMemory;
      const workersVmRssMiB = memory.workersRssMiB.reduce((sum, rss) => sum + rss, 0);
      return { ...memory, vmRssMiB: rssMiB(ready.pid) ?? Number.NaN, workersVmRssMiB };
    },
    async stop() {
      if (child.exitCode !== null || child.signalCode !== null) return;
      child.kill('SIGTERM');
      const killer = setTimeout(() => child.kill('SIGKILL'), 10_000);
      await exited;
      clearTimeout(killer);
    },
  };
}

// ---------------------------------------------------------------------------------------------------------------
// Redis side: users in bulk, memory

async function usedMemoryMiB(redis: Redis): Promise<number> {
  const info = String(await redis.send(['INFO', 'memory']));
  const match = /used_memory:(\d+)/.exec(info);
  return match ? Number(match[1]) / 1048576 : Number.NaN;
}

async function dbSize(redis: Redis): Promise<number> {
  return Number(await redis.send(['DBSIZE']));
}

/** Creates the users through UserStore.create, CONCURRENCY at a time (node-redis pipelines the commands). */
async function createUsers(store: UserStore, phones: Phone[]): Promise<{ seconds: number; ids: string[] }> {
  const CONCURRENCY = 1000;
  const started = Date.now();
  const ids: string[] = [];
  for (let i = 0; i < phones.length; i += CONCURRENCY) {
    const batch = phones.slice(i, i + CONCURRENCY);
    const created = await Promise.all(batch.map((phone) => store.create({
      username: `bench-${phone.login}`, login: phone.login, password: phone.password, connectionMethod: 'sip-phone', active: true,
    })));
    ids.push(...created.map((user) => user.id));
  }
  return { seconds: (Date.now() - started) / 1000, ids };
}

/**
 * One binding per user written through BindingStore.apply (the registrar's own Redis script, without the SIP
 * and digest work), as if each phone had registered once from the SIPp group that owns it.
 */
async function insertBindings(bindings: BindingStore, ids: string[], phones: Phone[], groups: PhoneGroup[]): Promise<number> {
  const CONCURRENCY = 1000;
  const started = Date.now();
  for (let i = 0; i < ids.length; i += CONCURRENCY) {
    const now = Date.now();
    await Promise.all(ids.slice(i, i + CONCURRENCY).map((userId, k) => {
      const index = i + k;
      const login = phones[index]!.login;
      const port = groups[index % groups.length]!.localPort;
      const contact = `sip:${login}@${HOST}:${port}`;
      return bindings.apply({
        userId, userVersion: 1, nonce: 'bulk', nc: 0, nonceTtlMs: 1000, maxSessions: 0, sessionTimeoutMs: 43_200_000,
        minExpiresMs: 60_000, removeAll: false, now,
        changes: [{
          expires: 3600,
          binding: {
            id: bindingIdFor(contact, null, null), userId, contact, params: {}, instanceId: null, regId: null,
            callId: `bulk-${index}@${HOST}`, cseq: 2, flow: { address: HOST, port, transport: 'udp', receivedOn: null },
            userAgent: 'dialcore-bench', connectionMethod: 'sip-phone',
          },
        }],
      });
    }));
  }
  return (Date.now() - started) / 1000;
}

/** Live binding keys and nonce-count keys, counted with SCAN. */
async function countKeys(redis: Redis): Promise<{ bindingKeys: number; nonceCountKeys: number }> {
  let cursor = '0';
  let bindingKeys = 0;
  let nonceCountKeys = 0;
  do {
    const reply = await redis.send(['SCAN', cursor, 'COUNT', '10000']);
    if (!Array.isArray(reply)) break;
    cursor = String(reply[0]);
    for (const key of (reply[1] as unknown[]).map(String)) {
      if (key.endsWith(':bindings')) bindingKeys++;
      else if (key.includes(':nc:')) nonceCountKeys++;
    }
  } while (cursor !== '0');
  return { bindingKeys, nonceCountKeys };
}

/** Mean MEMORY USAGE of up to `sample` binding keys, bytes. */
async function meanBindingKeyBytes(redis: Redis, ids: string[], sample = 200): Promise<number> {
  const picked = ids.filter((_, i) => i % Math.max(1, Math.floor(ids.length / sample)) === 0).slice(0, sample);
  const sizes = await Promise.all(picked.map((id) => redis.send(['MEMORY', 'USAGE', keys.bindings(id)])));
  const numbers = sizes.map(Number).filter((n) => Number.isFinite(n) && n > 0);
  return numbers.length ? numbers.reduce((a, b) => a + b, 0) / numbers.length : Number.NaN;
}

// ---------------------------------------------------------------------------------------------------------------
// Kamailio

interface KamailioProcess {
  pid: number;
  port: number;
  /** pids of the main process and its children (for CPU) */
  pids(): number[];
  stop(): Promise<void>;
}

function childPids(parent: number): number[] {
  try {
    return readFileSync(`/proc/${parent}/task/${parent}/children`, 'utf8').trim().split(/\s+/).filter(Boolean).map(Number);
  } catch {
    return [];
  }
}

async function startKamailio(phones: Phone[]): Promise<KamailioProcess> {
  const dir = mkdtempSync(join(tmpdir(), 'dialcore-kamailio-'));
  const dbDir = join(dir, 'db');
  const runDir = join(dir, 'run');
  mkdirSync(dbDir);
  mkdirSync(runDir);
  // db_text tables: htable (login -> password, key_type 0 = plain key, value_type 0 = string) and its version row
  writeFileSync(join(dbDir, 'version'), 'id(int,auto) table_name(string) table_version(int) \n0:htable:2\n');
  const rows = phones.map((p, i) => `${i + 1}:${p.login}:0:0:${p.password}:0`);
  writeFileSync(join(dbDir, 'htable'), `id(int,auto) key_name(string) key_type(int) value_type(int) key_value(string) expires(int) \n${rows.join('\n')}\n`);
  const port = await freePort();
  const service = spawnService({
    name: 'kamailio',
    command: 'kamailio',
    dir,
    args: ['-f', KAMAILIO_CFG, '-DD', '-E', '-n', '2', '-m', '256', '-M', '16', '-l', `udp:${HOST}:${port}`,
      '-P', join(dir, 'kamailio.pid'), '-Y', runDir, '-A', `PASSWORD_DB="text://${dbDir}"`],
  });
  try {
    await waitUntil(async () => !service.running() || (await isBound(port, 'udp')), { timeoutMs: 15_000, what: `kamailio on ${HOST}:${port}` });
    if (!service.running()) throw new Error('exited during start-up');
    await sleep(500); // the htable is loaded before the workers bind; give the workers a moment
  } catch (err) {
    const log = service.log(3000);
    await service.stop({ graceMs: 2000 });
    releasePort(port);
    throw new Error(`kamailio did not start: ${err instanceof Error ? err.message : String(err)}\n${log}`);
  }
  return {
    pid: service.pid,
    port,
    pids: () => [service.pid, ...childPids(service.pid)],
    async stop() {
      await service.stop({ graceMs: 5000 });
      releasePort(port);
    },
  };
}

// ---------------------------------------------------------------------------------------------------------------
// the section

export interface SystemResult {
  /** highest clean offered rate of the ramp */
  maxRate: number;
  maxAchieved: number;
  failurePctAtMax: number;
  prime?: StepResult;
  ramp: StepResult[];
  latencyAtHalfMax?: StepResult;
  latencyAtTargetRate: StepResult;
  storm: StepResult & { phones: number; absorbSeconds: number };
}

export interface RegistrarBenchResult extends BenchSectionResult {
  quick: boolean;
  targets: typeof TARGETS;
  verdicts: Record<string, boolean>;
  sippInstances: number;
  method: Record<string, string>;
  users: { count: number; createSeconds: number; perSecond: number };
  memory: Record<string, unknown>;
  /** the product stack as shipped */
  dialcore: SystemResult;
  kamailio?: SystemResult | { error: string };
  ratioDialcoreToKamailio?: number;
}

interface Plan {
  stepS: number;
  rates: number[];
  kamailioRates: number[];
  rampBudgetMs: number;
  latencyS: number;
  stormPhones: number;
  primeRate: number;
}

/** Waits until the processes use < 15 % of a core over 500 ms (backlog and retransmissions drained), at most maxMs. */
async function quiesce(pids: number[], maxMs = 20_000): Promise<void> {
  const deadline = Date.now() + maxMs;
  await sleep(1000);
  while (Date.now() < deadline) {
    const before = pids.map(cpuSeconds).reduce<number>((a, b) => a + (b ?? 0), 0);
    await sleep(500);
    const after = pids.map(cpuSeconds).reduce<number>((a, b) => a + (b ?? 0), 0);
    if ((after - before) / 0.5 < 0.15) return;
  }
}

/**
 * The load every system gets. Full: prime (each user once) -> memory hook -> ramp -> latency at half max and at
 * 2,500/s -> storm of 50k. Quick: the storm (10k: each user once, which also primes) -> memory hook -> ramp of the
 * target rates -> latency at 2,500/s.
 */
async function measureSystem(
  name: string,
  base: Omit<StepPlan, 'rate'>,
  plan: Plan,
  rates: number[],
  quick: boolean,
  afterPrime: () => Promise<void>,
  /** after the ramp: may replace the process under test (returns the base for the remaining steps) */
  afterRamp?: () => Promise<Omit<StepPlan, 'rate'>>,
): Promise<SystemResult> {
  const userCount = base.groups.reduce((sum, g) => sum + g.rows, 0);
  const rowsPerGroup = Math.max(...base.groups.map((g) => g.rows));
  const stormRounds = Math.max(1, Math.round(plan.stormPhones / userCount));
  const runStorm = async (): Promise<SystemResult['storm']> => {
    // (reads `base` when called: afterRamp may have replaced it)
    // -r far above any capacity: SIPp starts a registration whenever one of its STORM_IN_FLIGHT slots frees
    const step = await runStep({
      ...base, rate: 30_000, durationS: plan.stormPhones / 2000, callsPerGroup: rowsPerGroup * stormRounds, maxInFlightPerGroup: STORM_IN_FLIGHT,
    });
    console.log(stepLine(`${name} storm ${step.planned}`, step));
    await quiesce(base.measuredPids);
    return { ...step, phones: step.planned, absorbSeconds: step.wallS };
  };

  let prime: StepResult | undefined;
  let storm: SystemResult['storm'] | undefined;
  if (quick) {
    storm = await runStorm();
  } else {
    prime = await runStep({ ...base, rate: plan.primeRate, callsPerGroup: rowsPerGroup, durationS: userCount / plan.primeRate });
    console.log(stepLine(`${name} prime ${userCount}`, prime));
    await quiesce(base.measuredPids);
  }
  await afterPrime();

  // quick: the ramp steps trace latency too, and the 2,500/s step is the latency measurement
  const rampOutcome = await ramp({ ...base, latency: quick }, rates, plan.rampBudgetMs, name, base.measuredPids, !quick);
  const halfMax = Math.max(250, Math.round(rampOutcome.maxCleanRate / 2 / 250) * 250);
  if (afterRamp) base = await afterRamp();
  let latencyAtHalfMax: StepResult | undefined;
  if (!quick) {
    latencyAtHalfMax = await runStep({ ...base, rate: halfMax, durationS: plan.latencyS, latency: true });
    console.log(stepLine(`${name} latency ${halfMax}/s`, latencyAtHalfMax));
    await quiesce(base.measuredPids);
  }
  let latencyAtTargetRate = quick
    ? rampOutcome.steps.find((step) => step.offeredRate === TARGETS.latencyRate)
    : halfMax === TARGETS.latencyRate ? latencyAtHalfMax : undefined;
  if (!latencyAtTargetRate) {
    latencyAtTargetRate = await runStep({ ...base, rate: TARGETS.latencyRate, durationS: plan.latencyS, latency: true });
    console.log(stepLine(`${name} latency ${TARGETS.latencyRate}/s`, latencyAtTargetRate));
    await quiesce(base.measuredPids);
  }
  storm ??= await runStorm();
  return {
    maxRate: rampOutcome.maxCleanRate,
    maxAchieved: rampOutcome.maxCleanAchieved,
    failurePctAtMax: rampOutcome.failurePctAtMax,
    ...(prime ? { prime } : {}),
    ramp: rampOutcome.steps,
    ...(latencyAtHalfMax ? { latencyAtHalfMax } : {}),
    latencyAtTargetRate,
    storm,
  };
}

/** UserCache's default maxEntries (src/app/users/user-cache.ts). */
const USER_CACHE_MAX_ENTRIES = 20_000;

export async function runRegistrarBench(opts: BenchOptions): Promise<RegistrarBenchResult> {
  const quick = opts.quick;
  const plan: Plan = quick
    ? { stepS: 2, rates: [2500, 5000, 10000], kamailioRates: [2500, 5000, 10000], rampBudgetMs: 15_000, latencyS: 2, stormPhones: 10_000, primeRate: 1000 }
    : {
      stepS: 4, rates: [1000, 2000, 3000, 4000, 5000, 6000, 7000, 8000],
      kamailioRates: [2000, 4000, 6000, 8000, 10000, 12000, 14000, 16000, 20000], rampBudgetMs: 60_000, latencyS: 10,
      stormPhones: TARGETS.stormPhones, primeRate: 1000,
    };
  const userCount = 10_000;
  const workDir = mkdtempSync(join(tmpdir(), 'dialcore-bench-registrar-'));
  const method: Record<string, string> = {
    load: `${SIPP_INSTANCES} SIPp 3.6.1 processes over UDP, each on its own port with its own slice of the users (CSV -inf), scenario sipp-scenarios/bench-register-digest-uac.xml; a registration = REGISTER -> 401 -> REGISTER(MD5 digest, qop=auth) -> 200`,
    maxRate: `highest offered rate (steps of ${plan.stepS} s) with < ${MAX_FAILURE_PCT}% failed or unfinished registrations and <= ${MAX_RETRANSMISSION_PCT}% SIPp retransmissions; one bisection step after the first unclean rate`,
    latency: 'SIPp -trace_rtt: response time 1 of every registration, from the first REGISTER sent to the 200 received (the whole two-step registration); SIPp timestamps come in 4 ms steps on this machine, so p50/p99 are +-4 ms',
    storm: `${quick ? 'quick: 10,000 phones, each user once (this also primes the bindings)' : '10,000 users x 5 rounds'}; all offered at once (-r far above capacity) with at most ${STORM_IN_FLIGHT} registrations in progress per SIPp instance (${STORM_IN_FLIGHT * SIPP_INSTANCES} phones in flight); absorb time = SIPp's elapsed time until the last 200 (whole seconds in its statistics)`,
    memory: 'Redis INFO used_memory deltas and MEMORY USAGE of sampled binding keys; stack process VmRSS (/proc/<pid>/status) after a full GC (--expose-gc), with the live server transactions and cached users at that moment, and peak VmRSS during load',
    stack: `bench/registrar-stack.ts bundled with esbuild, on plain node: edge (UDP) ${process.env.BENCH_EDGE_THREAD === '0' ? 'on the main thread (BENCH_EDGE_THREAD=0)' : 'on a worker thread of its own, as dialcore start runs it'} + drachtio-srf app + startRegistrarServices on the main thread (MD5 offered first, 127.0.0.1 exempt from abuse bans since every SIPp phone shares it)`,
    transactions: 'as shipped: the edge caps the server transactions still waiting for a final response (20,000); a completed UDP REGISTER transaction is kept 32 s (Timer J) as a compact record in a separate table (500,000 at most), so the cap does not bind at these rates',
    cpuPerRegistration: 'during the storm (closed loop, the stack saturated): stack CPU seconds (utime+stime of the process and its app workers) / registrations; the stack\'s cost per two-step registration independent of SIPp\'s pacing',
  };
  const appWorkers = appWorkersOption();
  method.appWorkers = appWorkers === 0
    ? 'one app in the stack process (edge + srf app + registrar)'
    : `${appWorkers + 1} apps: one in the stack process and ${appWorkers} worker process(es) on the same edge (round robin); CPU and peak RSS summed over all of them`;
  console.log(`registrar bench${quick ? ' (quick)' : ''}: ${userCount} users, ${SIPP_INSTANCES} SIPp instances, edge ${process.env.BENCH_EDGE_THREAD === '0' ? 'on the app thread' : 'on its own thread'}, ${appWorkers} extra app worker(s), work dir ${workDir}`);

  let redisServer: RedisServer | undefined;
  let stack: StackProcess | undefined;
  let kamailio: KamailioProcess | undefined;
  const clients: Array<{ close(): Promise<unknown> }> = [];
  try {
    redisServer = await startRedis();
    const client = createClient({ url: redisServer.url });
    client.on('error', () => undefined);
    await client.connect();
    clients.push(client);
    const redis = new Redis(client);
    const store = new UserStore({ redis, realm: BENCH_REALM });
    const bindingStore = new BindingStore(redis);

    stack = await startStackProcess(redisServer.url, []);
    const target = `${HOST}:${stack.sipPort}`;
    await sleep(1000);
    const idle = await stack.memory();
    const redisBase = await usedMemoryMiB(redis);
    console.log(`dialcore stack pid ${stack.pid} on udp ${target}; idle VmRSS ${idle.vmRssMiB.toFixed(1)} MiB; redis used_memory ${redisBase.toFixed(1)} MiB`);

    // users
    const phones = makePhones(0, userCount);
    const created = await createUsers(store, phones);
    const redisAfterUsers = await usedMemoryMiB(redis);
    const groups = await writePhoneGroups(workDir, 'phones', phones, SIPP_INSTANCES);
    console.log(`created ${userCount} users through UserStore.create in ${created.seconds.toFixed(2)} s (${(userCount / created.seconds).toFixed(0)}/s); redis +${(redisAfterUsers - redisBase).toFixed(1)} MiB`);

    console.log(HEADER);
    const base = { target, groups, durationS: plan.stepS, measuredPids: [stack.pid, ...stack.workerPids], redis };
    let at10k: Record<string, unknown> = {};
    let rampPeakRssMiB = 0;
    const probeRates = process.env.BENCH_REGISTRAR_PROBE?.split(',').map(Number).filter((r) => r > 0);
    if (probeRates?.length) {
      // dev knob for A/B work on the hot path: prime, then each rate once with latency traced, then stop
      const primeThreadsBefore = threadCpuSeconds(stack.pid);
      const prime = await runStep({ ...base, rate: plan.primeRate, callsPerGroup: Math.max(...groups.map((g) => g.rows)), durationS: userCount / plan.primeRate });
      const primeSplit = threadCpuSplit(stack.pid, primeThreadsBefore, threadCpuSeconds(stack.pid));
      const perPrime = (seconds: number): string => (seconds * 1e6 / Math.max(1, prime.successful)).toFixed(0);
      console.log(`${stepLine('dialcore prime', prime)} first registration of each user, CPU us per registration: main ${perPrime(primeSplit.main)}, busiest other ${perPrime(primeSplit.busiestOther)}, rest ${perPrime(primeSplit.rest)}`);
      await quiesce(base.measuredPids);
      const stormRounds = Number(process.env.BENCH_PROBE_STORM ?? 0);
      for (let i = 0; i < Math.min(3, stormRounds); i++) {
        const rows = Math.max(...groups.map((g) => g.rows));
        const threadsBefore = threadCpuSeconds(stack.pid);
        const step = await runStep({ ...base, rate: 30_000, durationS: 5, callsPerGroup: rows * stormRounds, maxInFlightPerGroup: STORM_IN_FLIGHT });
        const split = threadCpuSplit(stack.pid, threadsBefore, threadCpuSeconds(stack.pid));
        const cpuS = ((step.cpuPct ?? 0) / 100) * step.measuredWallS;
        const us = (seconds: number): string => (seconds * 1e6 / step.successful).toFixed(0);
        console.log(`${stepLine('dialcore closed loop', step)} wall ${step.measuredWallS.toFixed(2)} s -> ${(step.successful / step.measuredWallS).toFixed(0)}/s; stack CPU ${us(cpuS)} us per registration (threads: main ${us(split.main)}, busiest other ${us(split.busiestOther)}, rest ${us(split.rest)})`);
        await quiesce(base.measuredPids);
      }
      for (const rate of probeRates) {
        console.log(stepLine('dialcore probe', await runStep({ ...base, rate, durationS: Number(process.env.BENCH_PROBE_SECONDS ?? 4), latency: true })));
        await quiesce(base.measuredPids);
      }
      throw new ProbeFinished();
    }
    const dialcore = await measureSystem('dialcore', base, plan, plan.rates, quick, async () => {
      const counted = await countKeys(redis);
      const redisNow = await usedMemoryMiB(redis);
      const mem = await stack!.memory();
      at10k = {
        liveBindingKeys: counted.bindingKeys,
        nonceCountKeys: counted.nonceCountKeys,
        redisBindingsDeltaMiB: redisNow - redisAfterUsers,
        meanBindingKeyBytes: await meanBindingKeyBytes(redis, created.ids),
        stackVmRssMiB: mem.vmRssMiB,
        workersVmRssMiB: mem.workersVmRssMiB,
        stackHeapUsedMiB: mem.heapUsedMiB,
        edgeThreadHeapUsedMiB: mem.edgeHeapUsedMiB,
        stackCachedUsers: mem.cachedUsers,
        stackServerTransactions: mem.serverTransactions,
      };
      console.log(`10k: ${counted.bindingKeys} binding keys, ${counted.nonceCountKeys} nonce-count keys, redis +${(redisNow - redisAfterUsers).toFixed(1)} MiB; stack VmRSS ${mem.vmRssMiB.toFixed(1)} MiB after GC (+ workers ${mem.workersVmRssMiB.toFixed(1)} MiB) (heap ${mem.heapUsedMiB.toFixed(1)} + edge thread ${mem.edgeHeapUsedMiB.toFixed(1)} MiB, ${mem.cachedUsers} cached users, ${mem.serverTransactions} live server transactions)`);
    }, quick ? undefined : async () => {
      // An overloaded ramp step leaves ~1 GB of completed transactions and a heap that keeps the process slow for
      // 30+ s: latency and storm run on a fresh process (same Redis), warmed up as the first one was by the prime:
      // each user registers once, so the latency step measures the steady state of this load (every user
      // re-registers every few seconds), not the first seconds of a restart (JIT, heap growth, users uncached).
      const before = await stack!.memory();
      rampPeakRssMiB = rssMiB(stack!.pid) ?? 0;
      // the edge thread's heap is known only when the edge has a thread of its own (BENCH_EDGE_THREAD != 0)
      const perTransaction = before.serverTransactions && before.edgeHeapUsedMiB ? ` (edge thread heap ${before.edgeHeapUsedMiB.toFixed(1)} MiB: ${((before.edgeHeapUsedMiB * 1048576) / before.serverTransactions).toFixed(0)} bytes per live transaction, all counted)` : '';
      console.log(`after the ramp: VmRSS ${before.vmRssMiB.toFixed(1)} MiB after GC, ${before.serverTransactions} live server transactions${perTransaction}; restarting the stack process`);
      await stack!.stop();
      stack = await startStackProcess(redisServer!.url, []);
      const fresh = { ...base, target: `${HOST}:${stack.sipPort}`, measuredPids: [stack.pid, ...stack.workerPids] };
      await sleep(1000);
      const warm = await runStep({ ...fresh, rate: plan.primeRate, callsPerGroup: Math.max(...groups.map((g) => g.rows)), durationS: userCount / plan.primeRate });
      console.log(stepLine('dialcore warm-up (new)', warm));
      await quiesce(fresh.measuredPids);
      return fresh;
    });
    const target2 = `${HOST}:${stack.sipPort}`;
    const peakRssUnderLoadMiB = Math.max(rampPeakRssMiB, dialcore.prime?.peakRssMiB ?? 0, ...dialcore.ramp.map((s) => s.peakRssMiB), dialcore.storm.peakRssMiB, dialcore.latencyAtTargetRate.peakRssMiB);

    // 100k live bindings (full mode)
    let memory100k: Record<string, unknown> | undefined;
    if (!quick) {
      const morePhones = makePhones(userCount, 90_000);
      const redisBefore = await usedMemoryMiB(redis);
      const more = await createUsers(store, morePhones);
      const redisAfterMoreUsers = await usedMemoryMiB(redis);
      console.log(`created 90000 more users in ${more.seconds.toFixed(1)} s (${(90_000 / more.seconds).toFixed(0)}/s)`);
      const moreGroups = await writePhoneGroups(workDir, 'phones-100k', morePhones, SIPP_INSTANCES);
      // through SIPp at 60 % of the clean rate (these users are not cached yet: each costs a Redis read) when that
      // registers 90k within ~40 s, else through BindingStore.apply
      const registerRate = Math.min(5000, Math.floor((dialcore.maxRate * 0.6) / 250) * 250);
      let how: string;
      let registerStep: StepResult | undefined;
      if (registerRate > 0 && 90_000 / registerRate <= 40) {
        registerStep = await runStep({
          target: target2, groups: moreGroups, rate: registerRate, callsPerGroup: moreGroups[0]!.rows, durationS: 90_000 / registerRate,
          measuredPids: [stack.pid, ...stack.workerPids], redis,
        });
        console.log(stepLine('dialcore +90k register', registerStep));
        how = `SIPp at ${registerRate}/s (${registerStep.successful} of ${registerStep.planned} registered)`;
        await quiesce([stack.pid, ...stack.workerPids]);
      } else {
        const seconds = await insertBindings(bindingStore, more.ids, morePhones, moreGroups);
        how = `the 90k beyond the SIPp-registered 10k written through BindingStore.apply (the registrar's Redis script, no SIP) in ${seconds.toFixed(1)} s, because SIPp at the measured clean rate (${dialcore.maxRate}/s) would exceed the time budget; these users are not in the stack's user cache`;
        console.log(`inserted 90000 bindings through BindingStore.apply in ${seconds.toFixed(1)} s`);
      }
      // measured once Timer J has let the storm's completed transactions go (at most ~32 s), so what remains is state
      let stackAt100k = await stack.memory();
      const drainDeadline = Date.now() + 40_000;
      while (stackAt100k.serverTransactions > 0 && Date.now() < drainDeadline) {
        await sleep(3000);
        stackAt100k = await stack.memory();
      }
      const redisAt100k = await usedMemoryMiB(redis);
      const keys100k = await countKeys(redis);
      memory100k = {
        bindingsPath: how,
        liveBindingKeys: keys100k.bindingKeys,
        nonceCountKeys: keys100k.nonceCountKeys,
        createMoreUsersSeconds: more.seconds,
        redisUsedMiB: redisAt100k,
        redisUsersDeltaMiBPer90k: redisAfterMoreUsers - redisBefore,
        redisBindingsDeltaMiBPer90k: redisAt100k - redisAfterMoreUsers,
        meanBindingKeyBytes: await meanBindingKeyBytes(redis, more.ids),
        stackVmRssMiB: stackAt100k.vmRssMiB,
        workersVmRssMiB: stackAt100k.workersVmRssMiB,
        stackHeapUsedMiB: stackAt100k.heapUsedMiB,
        stackCachedUsers: stackAt100k.cachedUsers,
        stackServerTransactions: stackAt100k.serverTransactions,
        ...(registerStep ? { stackPeakRssMiB: registerStep.peakRssMiB, register: registerStep } : {}),
      };
      console.log(`100k: ${keys100k.bindingKeys} binding keys, ${keys100k.nonceCountKeys} nonce-count keys; redis ${redisAt100k.toFixed(1)} MiB; stack VmRSS ${stackAt100k.vmRssMiB.toFixed(1)} MiB after GC (+ workers ${stackAt100k.workersVmRssMiB.toFixed(1)} MiB) (heap ${stackAt100k.heapUsedMiB.toFixed(1)} + edge thread ${stackAt100k.edgeHeapUsedMiB.toFixed(1)} MiB, ${stackAt100k.cachedUsers} cached users, ${stackAt100k.serverTransactions} live server transactions)`);
    }
    await stack.stop();
    stack = undefined;

    // a fresh stack process with 100k bindings in Redis: what a restarted core holds before any traffic
    let freshStackAt100k: { vmRssMiB: number; heapUsedMiB: number } | undefined;
    if (!quick) {
      stack = await startStackProcess(redisServer.url, []);
      await sleep(1000);
      const fresh = await stack.memory();
      freshStackAt100k = { vmRssMiB: fresh.vmRssMiB, heapUsedMiB: fresh.heapUsedMiB };
      console.log(`fresh stack process, 100k live bindings in Redis, nothing cached: VmRSS ${fresh.vmRssMiB.toFixed(1)} MiB after GC (heap ${fresh.heapUsedMiB.toFixed(1)} MiB)`);
      await stack.stop();
      stack = undefined;
    }

    // Heap per cached user, measured at 100k (the user cache keeps at most 20,000 registrants by default, least
    // recently used evicted, 60 s TTL): the cache's worst case is that times 20,000, whatever the user count.
    let cacheProjection: Record<string, number> | undefined;
    if (memory100k && memory100k.stackServerTransactions === 0 && typeof memory100k.stackCachedUsers === 'number' && memory100k.stackCachedUsers > 0) {
      const perUserKiB = (((memory100k.stackHeapUsedMiB as number) - idle.heapUsedMiB) * 1024) / memory100k.stackCachedUsers;
      cacheProjection = {
        heapKiBPerCachedUser: perUserKiB,
        cachedUsers: memory100k.stackCachedUsers,
        fullCacheHeapMiB: (perUserKiB * USER_CACHE_MAX_ENTRIES) / 1024,
      };
      console.log(`user cache: ${memory100k.stackCachedUsers} cached users, ${perUserKiB.toFixed(2)} KiB heap each (all heap growth since idle counted) -> at most ~${cacheProjection.fullCacheHeapMiB!.toFixed(0)} MiB for a full cache of ${USER_CACHE_MAX_ENTRIES}`);
    }
    const memory: Record<string, unknown> = {
      stackIdleVmRssMiB: idle.vmRssMiB,
      stackIdleHeapUsedMiB: idle.heapUsedMiB,
      redisBaseMiB: redisBase,
      redisUsersDeltaMiBPer10k: redisAfterUsers - redisBase,
      at10k,
      ...(memory100k ? { at100k: memory100k } : {}),
      ...(freshStackAt100k ? { freshStackWith100kBindings: freshStackAt100k } : {}),
      ...(cacheProjection ? { userCacheProjection: cacheProjection } : {}),
      stackPeakRssUnderLoadMiB: peakRssUnderLoadMiB,
    };
    await Promise.all(clients.splice(0).map((c) => c.close().catch(() => undefined)));
    await redisServer.stop();
    redisServer = undefined;

    // Kamailio, same phones, same load
    let kamailioResult: SystemResult | { error: string };
    try {
      kamailio = await startKamailio(phones);
      const kTarget = `${HOST}:${kamailio.port}`;
      console.log(`kamailio pid ${kamailio.pid} (+ ${kamailio.pids().length - 1} children) on udp ${kTarget}`);
      const kBase = { target: kTarget, groups, durationS: plan.stepS, measuredPids: kamailio.pids() };
      kamailioResult = await measureSystem('kamailio', kBase, plan, plan.kamailioRates, quick, async () => undefined);
    } catch (err) {
      kamailioResult = { error: err instanceof Error ? err.message : String(err) };
      console.log(`kamailio part failed: ${kamailioResult.error}`);
    } finally {
      await kamailio?.stop();
      kamailio = undefined;
    }

    // verdicts and summary
    const storm = dialcore.storm;
    const cpuPerRegistrationUs = (step: StepResult): number | undefined =>
      step.cpuPct === undefined || step.successful === 0 ? undefined : ((step.cpuPct / 100) * step.measuredWallS * 1e6) / step.successful;
    const stormScaledTarget = TARGETS.stormSeconds * (storm.phones / TARGETS.stormPhones);
    // the stack process plus its app workers, if any
    const at100kRss = memory100k ? (memory100k.stackVmRssMiB as number) + (memory100k.workersVmRssMiB as number) : undefined;
    const latency = dialcore.latencyAtTargetRate;
    const verdicts: Record<string, boolean> = {
      rate: dialcore.maxRate >= TARGETS.registrationsPerSecond,
      p99: (latency.p99Ms ?? Number.POSITIVE_INFINITY) < TARGETS.p99Ms && isClean(latency),
      storm: storm.failurePct < MAX_FAILURE_PCT && storm.absorbSeconds <= stormScaledTarget,
      ...(at100kRss !== undefined ? { rss100k: at100kRss < TARGETS.rssAt100kMiB } : {}),
    };
    const k = 'maxRate' in kamailioResult ? kamailioResult : undefined;
    const ratio = k && k.maxRate > 0 ? dialcore.maxRate / k.maxRate : undefined;
    const mark = (ok: boolean | undefined) => (ok === undefined ? '' : ok ? 'PASS' : 'MISS');
    const lat = (r: StepResult | undefined) => (r ? `${fmt(r.p50Ms)}/${fmt(r.p99Ms)} (${fmt(r.failurePct, 1)}%f)` : '-');
    console.log('');
    console.log(`registrar summary${quick ? ` (quick: only the target rates were offered, the ceiling was not searched; storm scaled to ${storm.phones})` : ''}`);
    const row = (what: string, d: string, kam: string, targetText: string, verdict: string) =>
      console.log(`  ${what.padEnd(36)} ${d.padStart(20)} ${kam.padStart(20)}   ${targetText.padEnd(14)} ${verdict}`);
    row('', 'dialcore', 'kamailio 5.6', 'target', '');
    row('max 2-step REGISTER/s (offered)', String(dialcore.maxRate), fmt(k?.maxRate), `>= ${TARGETS.registrationsPerSecond}`, mark(verdicts.rate));
    row('  achieved at max', fmt(dialcore.maxAchieved), fmt(k?.maxAchieved), '', '');
    row('  failure % at max', fmt(dialcore.failurePctAtMax, 3), fmt(k?.failurePctAtMax, 3), `< ${MAX_FAILURE_PCT}`, '');
    row('p50/p99 ms at half max', `${lat(dialcore.latencyAtHalfMax)} @${dialcore.latencyAtHalfMax?.offeredRate ?? '-'}`,
      `${lat(k?.latencyAtHalfMax)} @${k?.latencyAtHalfMax?.offeredRate ?? '-'}`, '', '');
    row(`p50/p99 ms at ${TARGETS.latencyRate}/s`, lat(latency), lat(k?.latencyAtTargetRate), `p99 < ${TARGETS.p99Ms}`, mark(verdicts.p99));
    row(`storm ${storm.phones} registrations, s`, `${fmt(storm.absorbSeconds, 1)} (${fmt(storm.failurePct, 2)}%f)`,
      k ? `${fmt(k.storm.absorbSeconds, 1)} (${fmt(k.storm.failurePct, 2)}%f)` : '-', `<= ${fmt(stormScaledTarget, 0)}`, mark(verdicts.storm));
    row('  CPU per registration in the storm, us', fmt(cpuPerRegistrationUs(storm)), k ? fmt(cpuPerRegistrationUs(k.storm)) : '-', '', '');
    row('stack VmRSS idle/10k/100k MiB', `${fmt(idle.vmRssMiB)}/${fmt(at10k.stackVmRssMiB as number)}/${fmt(at100kRss)}`, '', `100k < ${TARGETS.rssAt100kMiB}`, mark(verdicts.rss100k));
    if (freshStackAt100k) row('  fresh process, 100k in Redis MiB', fmt(freshStackAt100k.vmRssMiB), '', '', '');
    if (cacheProjection) row(`  user cache (max ${USER_CACHE_MAX_ENTRIES}) heap MiB`, fmt(cacheProjection.fullCacheHeapMiB), '', '', '');
    row('stack VmRSS peak under load MiB', fmt(peakRssUnderLoadMiB), '', '', '');
    row('redis MiB per 10k users', fmt(redisAfterUsers - redisBase, 1), '', '', '');
    row('redis MiB per 10k bindings (+nc keys)', fmt(at10k.redisBindingsDeltaMiB as number, 1), '', '', '');
    if (memory100k) row('redis MiB per +90k bindings', fmt(memory100k.redisBindingsDeltaMiBPer90k as number, 1), '', '', '');
    row('users created per second', fmt(userCount / created.seconds), '', '', '');
    if (ratio !== undefined) console.log(`  ratio dialcore/Kamailio (max clean rate): ${ratio.toFixed(2)}`);

    return {
      passed: Object.values(verdicts).every(Boolean),
      quick,
      targets: TARGETS,
      verdicts,
      sippInstances: SIPP_INSTANCES,
      method,
      users: { count: userCount, createSeconds: created.seconds, perSecond: userCount / created.seconds },
      memory,
      dialcore,
      kamailio: kamailioResult,
      ...(ratio !== undefined ? { ratioDialcoreToKamailio: ratio } : {}),
    };
  } finally {
    await kamailio?.stop().catch(() => undefined);
    await stack?.stop().catch(() => undefined);
    await Promise.all(clients.map((c) => c.close().catch(() => undefined)));
    await redisServer?.stop().catch(() => undefined);
    rmSync(workDir, { recursive: true, force: true });
  }
}

/** Thrown once a BENCH_REGISTRAR_PROBE run has printed its steps (the cleanup in `finally` still runs). */
class ProbeFinished extends Error {
  constructor() {
    super('probe finished (BENCH_REGISTRAR_PROBE)');
  }
}

export const registrarSection: BenchSection = {
  name: 'registrar',
  description: '2-step authenticated REGISTER/s with bindings in Redis, latency, storm and memory, side by side with Kamailio',
  run: runRegistrarBench,
};

// standalone: npx tsx bench/registrar.ts [--quick]
if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const quick = process.argv.includes('--quick');
  const started = Date.now();
  runRegistrarBench({ quick }).then(
    (result) => {
      mkdirSync(fileURLToPath(new URL('../.run/', import.meta.url)), { recursive: true });
      writeFileSync(RESULTS_FILE, `${JSON.stringify({ section: 'registrar', date: new Date().toISOString(), durationS: (Date.now() - started) / 1000, ...result }, null, 2)}\n`);
      console.log(`=== registrar: ${result.passed ? 'all targets met' : 'targets MISSED'} in ${((Date.now() - started) / 1000).toFixed(0)} s; results in ${RESULTS_FILE}`);
    },
    (err: unknown) => {
      if (err instanceof ProbeFinished) return;
      console.error(`registrar bench failed: ${err instanceof Error ? err.stack : String(err)}`);
      process.exitCode = 1;
    },
  );
}
