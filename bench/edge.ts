/**
 * Bench section `edge` (issue 2 item 7): OPTIONS/s and INVITE-BYE calls/s through the embedded SIP edge
 * plus a trivial drachtio-srf app (bench/trivial-app-stack.ts, its own process), driven over UDP by several
 * SIPp instances in parallel, and the stack process's memory (VmRSS) idle and under load.
 *
 * Targets (2-core machine, SIPp on the same machine): >= 4000 OPTIONS/s and >= 500 INVITE-BYE calls/s with
 * < 0.1 % failures; idle RSS < 80 MiB.
 *
 * The stack process runs on plain node from an esbuild bundle of bench/trivial-app-stack.ts (packages left
 * external), so its RSS is the edge's and the app's, not tsx's loader thread (~45 MiB on its own). The idle RSS
 * under tsx, as `dialcore start` runs today, is measured too and reported beside it.
 *
 * BENCH_CPU_PROF=<dir> runs the stack process under `node --cpu-prof` and leaves the .cpuprofile there.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { build } from 'esbuild';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import type { BenchOptions, BenchSection, BenchSectionResult } from './section.js';
import { rssMiB } from './process-stats.js';
import { MAX_FAILURE_PCT, MAX_RETRANSMISSION_PCT, isClean, rampRate, runLoadStep, type LoadStepResult, type RampResult } from './load.js';
import type { StackReady } from './trivial-app-stack.js';

const TARGETS = { optionsPerSecond: 4000, inviteByePerSecond: 500, idleRssMiB: 80 } as const;
/** full mode also holds each target rate this long on a fresh stack (longer than timer J / RFC 6026's 64*T1) */
const SUSTAIN_SECONDS = 40;
const REPO_ROOT = fileURLToPath(new URL('..', import.meta.url));
const STACK_SCRIPT = fileURLToPath(new URL('./trivial-app-stack.ts', import.meta.url));
const STACK_BUNDLE = fileURLToPath(new URL('../.run/bench-build/trivial-app-stack.mjs', import.meta.url));

/** One ESM file for plain node; node_modules stay external (resolved from the repo's node_modules). */
async function bundleStack(): Promise<string> {
  await build({
    entryPoints: [STACK_SCRIPT], outfile: STACK_BUNDLE, bundle: true, platform: 'node', format: 'esm',
    target: 'node20', packages: 'external', sourcemap: false, logLevel: 'warning',
  });
  return STACK_BUNDLE;
}

interface RunningStack extends StackReady {
  child: ChildProcess;
  stop(): Promise<void>;
}

/** `script` is the bundle (plain node) or, with `viaTsx`, the TypeScript source run through tsx. */
async function startStackProcess(script: string, viaTsx: boolean, cpuProfileDir?: string): Promise<RunningStack> {
  const nodeArgs = [...(cpuProfileDir ? ['--cpu-prof', '--cpu-prof-dir', cpuProfileDir] : []), ...(viaTsx ? ['--import', 'tsx'] : []), script];
  const child = spawn(process.execPath, nodeArgs, { cwd: REPO_ROOT, stdio: ['ignore', 'pipe', 'inherit'] });
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const ready = await new Promise<StackReady>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('stack process did not report ready within 20 s')), 20_000);
    const lines = createInterface({ input: child.stdout! });
    lines.once('line', (line) => {
      clearTimeout(timer);
      try {
        resolve(JSON.parse(line) as StackReady);
      } catch {
        reject(new Error(`stack process printed ${line}`));
      }
    });
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`stack process exited with ${code} before ready`));
    });
  });
  return {
    ...ready,
    child,
    async stop() {
      if (child.exitCode !== null) return;
      child.kill('SIGTERM');
      const killer = setTimeout(() => child.kill('SIGKILL'), 10_000);
      await exited;
      clearTimeout(killer);
    },
  };
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

function fmt(value: number | undefined, digits = 0): string {
  return value === undefined ? '-' : value.toFixed(digits);
}

function stepLine(kind: string, r: LoadStepResult): string {
  return [
    kind.padEnd(11), fmt(r.offeredRate).padStart(7), fmt(r.achievedRate).padStart(9),
    `${r.successful}/${r.planned}`.padStart(13), fmt(r.failurePct, 3).padStart(8), String(r.retransmissions).padStart(8),
    fmt(r.meanResponseMs, 1).padStart(8), fmt(r.cpuPct).padStart(6), fmt(r.peakRssMiB, 1).padStart(8), fmt(r.udpDrops).padStart(9),
  ].join(' ');
}

const HEADER = ['kind'.padEnd(11), 'offered'.padStart(7), 'achieved'.padStart(9), 'ok/planned'.padStart(13),
  'fail%'.padStart(8), 'retrans'.padStart(8), 'rt ms'.padStart(8), 'cpu%'.padStart(6), 'rss MiB'.padStart(8), 'udp drops'.padStart(9)].join(' ');

export const edgeSection: BenchSection = {
  name: 'edge',
  description: 'OPTIONS/s and INVITE-BYE calls/s through the SIP edge + a trivial srf app, with memory',
  async run({ quick }: BenchOptions): Promise<BenchSectionResult> {
    const plan = quick
      ? { instances: 3, durationS: 2, options: [2000, 4000], invites: [250, 500], budgetMs: 12_000 }
      : {
        instances: 3, durationS: 5,
        options: [1000, 2000, 3000, 4000, 5000, 6000, 7000, 8000, 10000, 12000],
        invites: [100, 250, 400, 500, 600, 800, 1000, 1200],
        budgetMs: 75_000,
      };
    const tsxStack = await startStackProcess(STACK_SCRIPT, true);
    await sleep(1500);
    const idleRssTsxMiB = rssMiB(tsxStack.pid) ?? Number.NaN;
    await tsxStack.stop();

    // each ramp on a fresh stack: UDP server transactions linger 64*T1 = 32 s (timer J / RFC 6026 Accepted),
    // so one ramp's leftovers would otherwise weigh on the next
    const bundle = await bundleStack();
    console.log(HEADER);
    const optionsRun = await rampOnFreshStack(bundle, 'OPTIONS', 'bench-options-uac.xml', plan.options, plan);
    const invitesRun = await rampOnFreshStack(bundle, 'INVITE-BYE', 'uac', plan.invites, plan);
    // the targets are sustained rates: hold each for longer than the 32 s a UDP transaction outlives its request
    const sustain = { instances: plan.instances, durationS: SUSTAIN_SECONDS, budgetMs: (SUSTAIN_SECONDS + 10) * 1000 };
    const sustainedOptions = quick ? undefined
      : (await rampOnFreshStack(bundle, 'OPTIONS 40s', 'bench-options-uac.xml', [TARGETS.optionsPerSecond], sustain)).ramp.steps[0];
    const sustainedInvites = quick ? undefined
      : (await rampOnFreshStack(bundle, 'INV-BYE 40s', 'uac', [TARGETS.inviteByePerSecond], sustain)).ramp.steps[0];
    const options = optionsRun.ramp;
    const invites = invitesRun.ramp;
    const idleRssMiB = optionsRun.idleRssMiB;
    const loadedRssMiB = Math.max(optionsRun.peakRssMiB, invitesRun.peakRssMiB, sustainedOptions?.peakRssMiB ?? 0, sustainedInvites?.peakRssMiB ?? 0);
    const afterRssMiB = Math.max(optionsRun.afterRssMiB, invitesRun.afterRssMiB);
    {
      const verdicts = {
        options: options.maxCleanRate >= TARGETS.optionsPerSecond && (sustainedOptions === undefined || isClean(sustainedOptions)),
        inviteBye: invites.maxCleanRate >= TARGETS.inviteByePerSecond && (sustainedInvites === undefined || isClean(sustainedInvites)),
        idleRss: idleRssMiB < TARGETS.idleRssMiB,
      };
      const mark = (ok: boolean) => (ok ? 'PASS' : 'MISS');
      console.log('');
      console.log(`edge summary (clean = every call completed, < ${MAX_FAILURE_PCT}% failed, <= ${MAX_RETRANSMISSION_PCT}% of requests retransmitted by SIPp)`);
      console.log(`  OPTIONS/s     max clean offered ${options.maxCleanRate} (achieved ${options.maxCleanAchieved.toFixed(0)})   target >= ${TARGETS.optionsPerSecond}  ${mark(verdicts.options)}`);
      console.log(`  INVITE-BYE/s  max clean offered ${invites.maxCleanRate} (achieved ${invites.maxCleanAchieved.toFixed(0)})   target >= ${TARGETS.inviteByePerSecond}  ${mark(verdicts.inviteBye)}`);
      const held = (step: LoadStepResult | undefined) => (step === undefined ? 'not run (quick)'
        : `${isClean(step) ? 'clean' : 'NOT clean'}: ${step.successful}/${step.planned} ok, ${step.failurePct.toFixed(3)}% failed, ${step.retransmissions} retransmitted`);
      console.log(`  held ${SUSTAIN_SECONDS} s at target: OPTIONS ${held(sustainedOptions)}; INVITE-BYE ${held(sustainedInvites)}`);
      console.log(`  RSS idle      ${idleRssMiB.toFixed(1)} MiB   target < ${TARGETS.idleRssMiB}  ${mark(verdicts.idleRss)}   (under tsx: ${idleRssTsxMiB.toFixed(1)} MiB)`);
      console.log(`  RSS peak under load ${loadedRssMiB.toFixed(1)} MiB, 2 s after the load ${afterRssMiB.toFixed(1)} MiB`);
      const quickNote = quick ? ' (quick: short bursts at the target rates only; neither the ceiling nor the sustained rate was measured)' : '';
      if (quickNote) console.log(quickNote);

      return {
        passed: verdicts.options && verdicts.inviteBye && verdicts.idleRss,
        quick,
        targets: TARGETS,
        verdicts,
        sippInstances: plan.instances,
        stepSeconds: plan.durationS,
        transport: 'udp',
        options: { maxCleanRate: options.maxCleanRate, maxCleanAchieved: options.maxCleanAchieved, steps: options.steps },
        inviteBye: { maxCleanRate: invites.maxCleanRate, maxCleanAchieved: invites.maxCleanAchieved, steps: invites.steps },
        sustained: { seconds: SUSTAIN_SECONDS, options: sustainedOptions ?? null, inviteBye: sustainedInvites ?? null },
        memory: { idleRssMiB, idleRssTsxMiB, peakRssUnderLoadMiB: loadedRssMiB, rssAfterLoadMiB: afterRssMiB },
      };
    }
  },
};

interface StackRamp {
  ramp: RampResult;
  idleRssMiB: number;
  peakRssMiB: number;
  afterRssMiB: number;
}

/** Starts the stack, warms it up, ramps `rates` with `scenario`, stops it. */
async function rampOnFreshStack(
  bundle: string, kind: string, scenario: string, rates: readonly number[],
  plan: { instances: number; durationS: number; budgetMs: number },
): Promise<StackRamp> {
  const stack = await startStackProcess(bundle, false, process.env.BENCH_CPU_PROF);
  try {
    const target = `127.0.0.1:${stack.sipPort}`;
    await sleep(1500);
    const idleRssMiB = rssMiB(stack.pid) ?? Number.NaN;
    // warm-up (JIT, the app connection): not reported
    const warm = await runLoadStep({ scenario, target, instances: 1, rate: 100, durationS: 1, measuredPid: stack.pid });
    if (warm.successful === 0) throw new Error(`edge did not serve the ${kind} warm-up: ${warm.errorSample ?? 'no response'}`);
    const ramp = await rampRate(
      { scenario, target, instances: plan.instances, durationS: plan.durationS, measuredPid: stack.pid },
      rates, plan.budgetMs, (r) => {
        console.log(stepLine(kind, r));
        if (r.errorSample) console.log(`           SIPp: ${r.errorSample.split('\n').filter((line) => line.trim()).slice(0, 3).map((line) => line.slice(0, 160)).join('\n                 ')}`);
      },
    );
    await sleep(2000);
    return {
      ramp, idleRssMiB,
      peakRssMiB: Math.max(0, ...ramp.steps.map((step) => step.peakRssMiB)),
      afterRssMiB: rssMiB(stack.pid) ?? Number.NaN,
    };
  } finally {
    await stack.stop();
  }
}
