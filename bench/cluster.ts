/**
 * Bench section `cluster` (issue 14): two `dialcore start` processes as shipped (instance A on 127.0.0.3,
 * instance B on 127.0.0.4, each its own child process, so CPU is read per instance from /proc) on one real
 * Redis and one real rtpengine, with the same --nonce-secret and each its own --instance-address
 * (docs/deploying.md).
 *
 * 1. registrations spread over both: N SIPp phones (users created in Redis, each with a DID), half
 *    registering with A from one SIPp port, half with B from another (register-auth-uac.xml: REGISTER ->
 *    401 -> REGISTER with MD5 digest -> 200), both SIPps at once at a modest fixed rate; then a SIPp UAS
 *    (invite-uas-bye-remote.xml) answers on each of those two ports: the phones of A and of B;
 * 2. calls crossing instances: a SIPp carrier (127.0.0.2, the inbound trunk) sends INVITE-ACK-BYE calls
 *    (bench-invite-bye-uac.xml, one DID after the other) to B for phones registered with A: B places the
 *    call (rtpengine offer/answer/delete, as for any carrier call) and sends its B-leg to A with a signed
 *    X-Dialcore-Forward token; A relays it (signalling only) to the phone. Ascending steps up to and beyond
 *    the 100 calls/s target, stopping after the first step with failures;
 * 3. the cost of the hop: at each rate the same calls to B for phones registered with B itself (no hop)
 *    run beside the crossing step (local first at even steps, crossing first at odd ones); set-up time (SIPp -trace_rtt: INVITE sent -> 200 received) and the
 *    CPU of each instance process, of rtpengine and of Redis per call (net of the background each process
 *    shows with the phones registered and no call), crossing minus local.
 *
 *   npx tsx bench/run.ts cluster [--quick]
 *   npx tsx bench/cluster.ts [--quick]          (stand-alone)
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { createClient } from 'redis';
import { freePort, runSipp, startRedis, startRtpengine, startSippServer, type RedisServer, type RtpengineServer, type SippServer } from '../sip-tests/harness/index.js';
import { startLoopbackCore, type DialcoreProcess } from '../sip-tests/fixtures/cli-process.js';
import { CARRIER_IP } from '../sip-tests/calls/call-stack.js';
import { Redis } from '../src/app/users/redis.js';
import { UserStore } from '../src/app/users/user-store.js';
import { didRedisKey } from '../src/app/carriers/index.js';
import { cpuSeconds, redisCpuSeconds } from './process-stats.js';
import { percentile, type BenchOptions, type BenchSection, type BenchSectionResult } from './section.js';

const TARGET_CPS = 100;
const MAX_FAILURE_PCT = 0.1;
const REALM = 'dialcore.test';
const ADMIN_TOKEN = 'cluster-bench-admin-token-0123456789';
const NONCE_SECRET = 'cluster-bench-shared-nonce-secret-0123';
/** The phones' DIDs: FIRST_DID + index (E.164 digits, UK) */
const FIRST_DID = 442070010000;
const FIRST_LOGIN = 7100000;
/** SIPp's own receive/scheduling loops unthrottled, and a response that never comes fails the call in 5 s */
const SIPP_LOAD_ARGS = ['-recv_timeout', '5000', '-max_recv_loops', '10000', '-max_sched_loops', '10000'];

interface Instance {
  name: 'A' | 'B';
  ip: string;
  sipPort: number;
  httpBase: string;
  process: DialcoreProcess;
  pid: number;
}

interface Phone {
  login: string;
  password: string;
  did: string;
}

/** CPU seconds of each process taking part, read together. */
interface CpuReading {
  a: number;
  b: number;
  rtpengine: number;
  redis: number;
}

/** CPU milliseconds per call (or per registration) of each process. */
interface CpuPerItem {
  instanceA: number;
  instanceB: number;
  rtpengine: number;
  redis: number;
}

interface RegistrationStep {
  phones: number;
  offeredPerS: number;
  successful: number;
  failed: number;
  achievedPerS: number;
  retransmissions: number;
  p50Ms: number;
  p99Ms: number;
  samples: number;
  cpuMsPerRegistration: CpuPerItem;
}

interface CallStep {
  path: 'local' | 'crossing';
  offeredCps: number;
  planned: number;
  successful: number;
  failed: number;
  failurePct: number;
  achievedCps: number;
  retransmissions: number;
  setupP50Ms: number;
  setupP99Ms: number;
  /** the mean: SIPp's clock moves in 4 ms ticks, so a mean over many calls resolves small differences better */
  setupMeanMs: number;
  /** calls whose set-up time SIPp recorded */
  setupSamples: number;
  cpuMsPerCall: CpuPerItem;
  /** the same less each process's background CPU over the step (measured without calls, phones registered) */
  cpuMsPerCallNet: CpuPerItem;
  /** calls B still held (dialcore_calls_live) + calls rtpengine still held, after the step's drain wait */
  sessionsLeftAfter: number;
  /** the machine's 1-minute load average at the step's end: anything else running shows here */
  loadAverage: number;
}

interface HopCost {
  cps: number;
  setupP50Ms: number;
  setupP99Ms: number;
  setupMeanMs: number;
  cpuMsPerCallA: number;
  cpuMsPerCallB: number;
  cpuMsPerCallBoth: number;
}

async function startInstance(name: Instance['name'], ip: string, configFile: string, redis: RedisServer, rtpengine: RtpengineServer): Promise<Instance> {
  const sipPort = await freePort();
  const { core: proc, httpBase } = await startLoopbackCore({
    host: ip, sipPort, redis: ['--redis', redis.url], rtpengineNgPort: rtpengine.ngPort, token: ADMIN_TOKEN, env: { DIALCORE_CONFIG: configFile },
    extraArgs: [
      '--realm', REALM, '--domain', REALM, '--nonce-secret', NONCE_SECRET, '--instance-address', `${ip}:${sipPort}`, '--log-level', 'error',
      // diagnostics: BENCH_CLUSTER_HEP=127.0.0.1:<port> sends every SIP message both instances see to a HEP3 listener
      ...(process.env.BENCH_CLUSTER_HEP ? ['--hep', process.env.BENCH_CLUSTER_HEP, '--hep-agent-id', name === 'A' ? '1' : '2'] : []),
    ],
  });
  if (proc.child.pid === undefined) throw new Error(`instance ${name} has no pid`);
  return { name, ip, sipPort, httpBase, process: proc, pid: proc.child.pid };
}

/** dialcore_calls_live of an instance (its /metrics). */
async function liveCalls(instance: Instance): Promise<number> {
  const res = await fetch(`${instance.httpBase}/metrics`, { headers: { authorization: `Bearer ${ADMIN_TOKEN}` } });
  const match = /^dialcore_calls_live(?:\{[^}]*\})? (\d+)/m.exec(await res.text());
  return match ? Number(match[1]) : Number.NaN;
}

async function readCpu(a: Instance, b: Instance, rtpengine: RtpengineServer, redis: Redis): Promise<CpuReading> {
  return { a: cpuSeconds(a.pid) ?? Number.NaN, b: cpuSeconds(b.pid) ?? Number.NaN, rtpengine: cpuSeconds(rtpengine.pid) ?? Number.NaN, redis: (await redisCpuSeconds(redis)) ?? Number.NaN };
}

/** CPU ms per item between two readings; less `background` (CPU s per s) over `seconds` when given. */
function cpuPerItem(before: CpuReading, after: CpuReading, items: number, background?: { perS: CpuReading; seconds: number }): CpuPerItem {
  const ms = (key: keyof CpuReading): number =>
    (items > 0 ? ((after[key] - before[key] - (background ? background.perS[key] * background.seconds : 0)) * 1000) / items : Number.NaN);
  return { instanceA: ms('a'), instanceB: ms('b'), rtpengine: ms('rtpengine'), redis: ms('redis') };
}

/** CPU seconds per second of each process while nothing but the background runs (heartbeats, NAT keep-alive OPTIONS). */
async function backgroundCpu(cpu: () => Promise<CpuReading>, seconds: number): Promise<CpuReading> {
  const before = await cpu();
  await new Promise((resolve) => setTimeout(resolve, seconds * 1000));
  const after = await cpu();
  return { a: (after.a - before.a) / seconds, b: (after.b - before.b) / seconds, rtpengine: (after.rtpengine - before.rtpengine) / seconds, redis: (after.redis - before.redis) / seconds };
}

const fmt = (value: number, digits = 2): string => (Number.isFinite(value) ? value.toFixed(digits) : '-');
const signed = (value: number, digits = 2): string => `${value >= 0 ? '+' : ''}${fmt(value, digits)}`;

async function registerPhones(a: Instance, b: Instance, phonesA: Phone[], phonesB: Phone[], portA: number, portB: number, perS: number, cpu: () => Promise<CpuReading>): Promise<RegistrationStep> {
  const before = await cpu();
  const started = process.hrtime.bigint();
  const register = (instance: Instance, phones: Phone[], localPort: number) => runSipp({
    scenario: 'register-auth-uac.xml', target: `${instance.ip}:${instance.sipPort}`, localPort, calls: phones.length, rate: perS / 2,
    inf: { rows: phones.map((p) => [p.login, p.password, REALM]) }, responseTimes: true, extraArgs: SIPP_LOAD_ARGS,
    timeoutMs: (phones.length / (perS / 2) + 20) * 1000,
  });
  const results = await Promise.all([register(a, phonesA, portA), register(b, phonesB, portB)]);
  const wallS = Number(process.hrtime.bigint() - started) / 1e9;
  const after = await cpu();
  const successful = results.reduce((sum, r) => sum + r.stats.successful, 0);
  const times = results.flatMap((r) => r.responseTimesMs ?? []);
  return {
    phones: phonesA.length + phonesB.length,
    offeredPerS: perS,
    successful,
    failed: phonesA.length + phonesB.length - successful,
    achievedPerS: successful / wallS,
    retransmissions: results.reduce((sum, r) => sum + r.stats.retransmissions, 0),
    p50Ms: percentile(times, 50),
    p99Ms: percentile(times, 99),
    samples: times.length,
    cpuMsPerRegistration: cpuPerItem(before, after, successful),
  };
}

async function callStep(
  path: CallStep['path'], b: Instance, rtpengine: RtpengineServer, dids: string[], cps: number, durationS: number, cpu: () => Promise<CpuReading>, background?: CpuReading,
): Promise<CallStep> {
  const planned = Math.round(cps * durationS);
  const before = await cpu();
  const started = process.hrtime.bigint();
  const r = await runSipp({
    scenario: 'bench-invite-bye-uac.xml', target: `${b.ip}:${b.sipPort}`, calls: planned, rate: cps, maxConcurrentCalls: 2000,
    inf: { rows: dids.map((did) => [did]) }, responseTimes: true,
    // the carrier trunk's source address (the last -i/-mi win over the harness's 127.0.0.1)
    extraArgs: ['-i', CARRIER_IP, '-mi', CARRIER_IP, ...SIPP_LOAD_ARGS],
    timeoutMs: (durationS + 25) * 1000,
  });
  const wallS = Number(process.hrtime.bigint() - started) / 1e9;
  const after = await cpu();
  // calls a saturated peer abandoned end by the B2BUA's own timers: bounded, but allow them the time
  let left = Number.NaN;
  for (const deadline = Date.now() + 40_000; Date.now() < deadline;) {
    left = (await liveCalls(b)) + (await rtpengine.callIds()).length;
    if (left === 0) break;
    await new Promise((resolve) => setTimeout(resolve, 250));
  }
  const notDone = Math.max(0, planned - r.stats.successful - r.stats.failed);
  const failed = r.stats.failed + notDone;
  const times = r.responseTimesMs ?? [];
  return {
    path,
    offeredCps: cps,
    planned,
    successful: r.stats.successful,
    failed,
    failurePct: (failed / planned) * 100,
    achievedCps: r.stats.successful / wallS,
    retransmissions: r.stats.retransmissions,
    setupP50Ms: percentile(times, 50),
    setupP99Ms: percentile(times, 99),
    setupMeanMs: times.length ? times.reduce((sum, t) => sum + t, 0) / times.length : Number.NaN,
    setupSamples: times.length,
    cpuMsPerCall: cpuPerItem(before, after, r.stats.successful),
    cpuMsPerCallNet: cpuPerItem(before, after, r.stats.successful, background ? { perS: background, seconds: wallS } : undefined),
    sessionsLeftAfter: left,
    loadAverage: loadavg()[0]!,
  };
}

function printCallStep(step: CallStep): void {
  const c = step.cpuMsPerCallNet;
  console.log(
    `  ${step.path.padEnd(8)} ${String(step.offeredCps).padStart(4)}/s: ${step.successful}/${step.planned} ok, achieved ${fmt(step.achievedCps, 1)}/s, ` +
      `failed ${fmt(step.failurePct)} %, retrans ${step.retransmissions}, set-up p50 ${fmt(step.setupP50Ms, 0)} / p99 ${fmt(step.setupP99Ms, 0)} / mean ${fmt(step.setupMeanMs, 1)} ms, ` +
      `CPU ms/call (net of background) A ${fmt(c.instanceA)} B ${fmt(c.instanceB)} rtpengine ${fmt(c.rtpengine)} redis ${fmt(c.redis)}, left ${step.sessionsLeftAfter}, load ${fmt(step.loadAverage, 1)}`,
  );
}

export async function runClusterBench(options: BenchOptions): Promise<BenchSectionResult> {
  const quick = options.quick;
  const phoneCount = quick ? 200 : 2000;
  const registrationsPerS = quick ? 200 : 400;
  // probing knobs: BENCH_CLUSTER_RATES=10,25 (calls/s steps), BENCH_CLUSTER_STEP_S=10 (and BENCH_CLUSTER_HEP above)
  const rates = process.env.BENCH_CLUSTER_RATES?.split(',').map(Number).filter((n) => n > 0 && n <= 500) ?? (quick ? [TARGET_CPS] : [25, 50, TARGET_CPS, 150]);
  const stepS = Math.min(60, Number(process.env.BENCH_CLUSTER_STEP_S) || (quick ? 4 : 20));

  const dir = mkdtempSync(join(tmpdir(), 'dialcore-cluster-bench-'));
  let redisServer: RedisServer | undefined;
  let rtpengine: RtpengineServer | undefined;
  const instances: Instance[] = [];
  const phoneServers: SippServer[] = [];
  let redisClient: ReturnType<typeof createClient> | undefined;
  try {
    redisServer = await startRedis();
    // 1000 media ports: 250 calls in flight at 4 ports each, far above what these steps hold at once
    rtpengine = await startRtpengine({ mediaPorts: 1000 });
    const configFile = join(dir, 'dialcore.jsonc');
    writeFileSync(configFile, JSON.stringify({
      carriers: { outboundGateways: [], inboundTrunks: [{ name: 'carrier', sources: [`${CARRIER_IP}/32`], didLookup: 'redis' }] },
      dialPlans: { default: { defaultCountryCode: '44' } },
    }));
    const a = await startInstance('A', '127.0.0.3', configFile, redisServer, rtpengine);
    instances.push(a);
    const b = await startInstance('B', '127.0.0.4', configFile, redisServer, rtpengine);
    instances.push(b);
    console.log(`instances: A ${a.ip}:${a.sipPort} (pid ${a.pid}), B ${b.ip}:${b.sipPort} (pid ${b.pid}); redis ${redisServer.url}; rtpengine ng ${rtpengine.ngPort} (pid ${rtpengine.pid})`);

    // users and their DIDs, written to the shared Redis as the admin API would (UserStore, dc:did:<digits>)
    redisClient = createClient({ url: redisServer.url });
    redisClient.on('error', () => undefined);
    await redisClient.connect();
    const redis = new Redis(redisClient);
    const store = new UserStore({ redis, realm: REALM });
    const phones: Phone[] = Array.from({ length: phoneCount }, (_, i) => ({
      login: String(FIRST_LOGIN + i), password: randomBytes(6).toString('hex'), did: String(FIRST_DID + i),
    }));
    for (let i = 0; i < phones.length; i += 200) {
      await Promise.all(phones.slice(i, i + 200).map(async (phone) => {
        const user = await store.create({ username: `bench-${phone.login}`, login: phone.login, password: phone.password, connectionMethod: 'sip-phone', active: true });
        await redis.send(['SET', didRedisKey(phone.did), user.id]);
      }));
    }
    const phonesA = phones.filter((_, i) => i % 2 === 0);
    const phonesB = phones.filter((_, i) => i % 2 === 1);
    const cpu = () => readCpu(a, b, rtpengine!, redis);

    const portA = await freePort();
    const portB = await freePort();
    const registration = await registerPhones(a, b, phonesA, phonesB, portA, portB, registrationsPerS, cpu);
    const rc = registration.cpuMsPerRegistration;
    console.log(
      `  registrations: ${registration.successful}/${registration.phones} ok (half with A, half with B) at ${registration.offeredPerS}/s offered, ` +
        `achieved ${fmt(registration.achievedPerS, 0)}/s, retrans ${registration.retransmissions}, p50 ${fmt(registration.p50Ms, 1)} / p99 ${fmt(registration.p99Ms, 1)} ms, ` +
        `CPU ms/registration A ${fmt(rc.instanceA)} B ${fmt(rc.instanceB)} redis ${fmt(rc.redis)}`,
    );
    for (const port of [portA, portB]) {
      // -aa: the phones answer the instances' NAT keep-alive OPTIONS (every 30 s) as a real phone does
      phoneServers.push(await startSippServer({ scenario: 'invite-uas-bye-remote.xml', localPort: port, extraArgs: [...SIPP_LOAD_ARGS, '-aa'], timeoutMs: 15 * 60_000 }));
    }

    // warm-up: both paths compiled (the first calls cost several times a steady one) and pools filled before
    // anything is measured
    const warmUpS = quick ? 2 : 6;
    await callStep('local', b, rtpengine, phonesB.map((p) => p.did), 50, warmUpS, cpu);
    await callStep('crossing', b, rtpengine, phonesA.map((p) => p.did), 50, warmUpS, cpu);

    // the background the per-call CPU is net of: each instance pings its UDP bindings every 30 s (NAT keep-alive
    // OPTIONS, 1 per phone per 30 s), so the full run watches one whole interval
    const backgroundS = quick ? 4 : 30;
    const background = await backgroundCpu(cpu, backgroundS);
    const backgroundCpuPct = { instanceA: background.a * 100, instanceB: background.b * 100, rtpengine: background.rtpengine * 100, redis: background.redis * 100 };
    console.log(`  background CPU (${backgroundS} s, no calls, ${phoneCount / 2} phones per instance): A ${fmt(backgroundCpuPct.instanceA, 1)} %, B ${fmt(backgroundCpuPct.instanceB, 1)} %, rtpengine ${fmt(backgroundCpuPct.rtpengine, 1)} %, redis ${fmt(backgroundCpuPct.redis, 1)} % of a core`);

    const steps: CallStep[] = [];
    const hopCost: HopCost[] = [];
    for (const [index, cps] of rates.entries()) {
      const run = (path: CallStep['path']) => callStep(path, b, rtpengine!, (path === 'local' ? phonesB : phonesA).map((p) => p.did), cps, stepS, cpu, background);
      // the order alternates from one rate to the next, so drift over the run (JIT, heap, other load) does not
      // always land on the same side
      const measured: Partial<Record<CallStep['path'], CallStep>> = {};
      for (const path of index % 2 === 0 ? (['local', 'crossing'] as const) : (['crossing', 'local'] as const)) {
        measured[path] = await run(path);
        printCallStep(measured[path]);
      }
      const local = measured.local!;
      const crossing = measured.crossing!;
      steps.push(local, crossing);
      const cost: HopCost = {
        cps,
        setupP50Ms: crossing.setupP50Ms - local.setupP50Ms,
        setupP99Ms: crossing.setupP99Ms - local.setupP99Ms,
        setupMeanMs: crossing.setupMeanMs - local.setupMeanMs,
        cpuMsPerCallA: crossing.cpuMsPerCallNet.instanceA - local.cpuMsPerCallNet.instanceA,
        cpuMsPerCallB: crossing.cpuMsPerCallNet.instanceB - local.cpuMsPerCallNet.instanceB,
        cpuMsPerCallBoth: crossing.cpuMsPerCallNet.instanceA + crossing.cpuMsPerCallNet.instanceB - local.cpuMsPerCallNet.instanceA - local.cpuMsPerCallNet.instanceB,
      };
      hopCost.push(cost);
      console.log(
        `  hop cost at ${cps}/s: set-up ${signed(cost.setupP50Ms, 1)} ms p50, ${signed(cost.setupP99Ms, 1)} ms p99, ${signed(cost.setupMeanMs, 1)} ms mean; ` +
          `CPU ${signed(cost.cpuMsPerCallBoth)} ms per call over both instances (A ${signed(cost.cpuMsPerCallA)}, B ${signed(cost.cpuMsPerCallB)})`,
      );
      if (crossing.failurePct >= MAX_FAILURE_PCT || local.failurePct >= MAX_FAILURE_PCT) break;
    }
    const clean = steps.filter((s) => s.path === 'crossing' && s.failurePct < MAX_FAILURE_PCT && s.sessionsLeftAfter === 0);
    const maxCleanCrossingCps = clean.length ? Math.max(...clean.map((s) => s.offeredCps)) : 0;
    return {
      passed: maxCleanCrossingCps >= TARGET_CPS && registration.failed === 0,
      targets: { crossingCps: TARGET_CPS, maxFailurePct: MAX_FAILURE_PCT },
      method: {
        instances: 'two `dialcore start` child processes (A 127.0.0.3, B 127.0.0.4, UDP), one redis-server, one rtpengine (userspace), same --nonce-secret, own --instance-address; CPU = utime + stime from /proc/<pid>/stat over the step (Redis: INFO cpu)',
        registrations: `SIPp register-auth-uac.xml (REGISTER -> 401 -> REGISTER MD5 digest -> 200), ${phoneCount} phones, half with each instance from two SIPps at once`,
        calls: `SIPp carrier (${CARRIER_IP}) bench-invite-bye-uac.xml to B (INVITE -> 200 -> ACK -> BYE, no pause, rtpengine offer/answer/delete on B, no RTP); local = DIDs of phones registered with B; crossing = DIDs of phones registered with A (B -> A forward with X-Dialcore-Forward, A relays to the phone); ${stepS} s per step; set-up = SIPp -trace_rtt INVITE sent -> 200 received`,
      },
      backgroundCpuPct,
      registration,
      steps,
      hopCost,
      maxCleanCrossingCps,
    };
  } finally {
    await redisClient?.close().catch(() => undefined);
    await Promise.all(phoneServers.map((s) => s.stop(2000)));
    await Promise.all(instances.map((i) => i.process.stop()));
    await rtpengine?.stop();
    await redisServer?.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}

export const clusterSection: BenchSection = {
  name: 'cluster',
  description: 'two dialcore instances on one Redis: registrations spread over both, carrier calls crossing B -> A per second, the cost of the hop',
  run: (options: BenchOptions) => runClusterBench(options),
};

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  const result = await runClusterBench({ quick: process.argv.includes('--quick') });
  console.log(JSON.stringify(result, null, 2));
  process.exit(result.passed ? 0 : 1);
}
