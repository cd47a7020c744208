/**
 * Bounded SIP load with several SIPp instances in parallel (sip-tests/harness runSipp), and a rate
 * ramp that finds the highest offered rate still served cleanly. Shared by the bench sections.
 */
import { runSipp, type SippResult, type SippTransport } from '../sip-tests/harness/index.js';
import { cpuSeconds, sampleRss, udpReceiveBufferErrors } from './process-stats.js';

export interface LoadStep {
  /** SIPp scenario: built-in name (`uac`) or XML file in sipp-scenarios/ */
  scenario: string;
  /** host:port of the system under test */
  target: string;
  transport?: SippTransport;
  /** SIPp processes run in parallel, each on its own ports; the rate is split between them */
  instances: number;
  /** calls (OPTIONS or INVITE-BYE) per second offered, all instances together */
  rate: number;
  /** seconds of offered load; each instance makes rate/instances * durationS calls */
  durationS: number;
  /** process to watch for CPU and RSS while the step runs */
  measuredPid: number;
}

export interface LoadStepResult {
  offeredRate: number;
  /** successful calls per second of wall-clock time, SIPp start-up and exit included (slightly pessimistic) */
  achievedRate: number;
  planned: number;
  created: number;
  successful: number;
  failed: number;
  /** failed or never completed, in % of planned */
  failurePct: number;
  retransmissions: number;
  /** mean response time of the measured request (rtd: INVITE -> 200, OPTIONS -> 200), ms, averaged over instances */
  meanResponseMs: number | undefined;
  wallS: number;
  /** CPU used by the measured process during the step, % of one core */
  cpuPct: number | undefined;
  peakRssMiB: number;
  /** UDP datagrams dropped machine-wide for a full receive buffer during the step */
  udpDrops: number | undefined;
  /** first SIPp error lines, when anything failed */
  errorSample?: string;
}

/** 0.1 %: the failure budget of issue 2 */
export const MAX_FAILURE_PCT = 0.1;

/** SIPp time columns: `00:00:00:147000` (h:m:s:microseconds) or `00:00:05` (h:m:s). */
export function parseSippDuration(value: string | undefined): number | undefined {
  if (!value) return undefined;
  const parts = value.trim().split(':');
  if (parts.length !== 3 && parts.length !== 4) return undefined;
  const [h, m, s, micros] = parts;
  const seconds = Number(h) * 3600 + Number(m) * 60 + Number(s) + (micros === undefined ? 0 : Number(micros) / 1e6);
  return Number.isFinite(seconds) ? seconds : undefined;
}

function splitRate(total: number, parts: number): number[] {
  const base = Math.floor(total / parts);
  return Array.from({ length: parts }, (_, i) => base + (i < total - base * parts ? 1 : 0));
}

export async function runLoadStep(step: LoadStep): Promise<LoadStepResult> {
  const rates = splitRate(step.rate, step.instances);
  const cpuBefore = cpuSeconds(step.measuredPid);
  const dropsBefore = udpReceiveBufferErrors();
  const rss = sampleRss(step.measuredPid);
  const started = process.hrtime.bigint();
  const results: SippResult[] = await Promise.all(rates.map((rate) => runSipp({
    scenario: step.scenario,
    target: step.target,
    transport: step.transport ?? 'u1',
    rate,
    calls: Math.max(1, Math.round(rate * step.durationS)),
    // a response that never comes fails the call within 5 s instead of SIPp's 32 s of retransmissions
    extraArgs: ['-recv_timeout', '5000', '-max_recv_loops', '10000', '-max_sched_loops', '10000'],
    timeoutMs: (step.durationS + 20) * 1000,
  })));
  const wallS = Number(process.hrtime.bigint() - started) / 1e9;
  const cpuAfter = cpuSeconds(step.measuredPid);
  const dropsAfter = udpReceiveBufferErrors();
  const { peakMiB } = rss.stop();

  const planned = rates.reduce((sum, rate) => sum + Math.max(1, Math.round(rate * step.durationS)), 0);
  let created = 0;
  let successful = 0;
  let failed = 0;
  let retransmissions = 0;
  const responseTimes: number[] = [];
  for (const result of results) {
    created += result.stats.created;
    successful += result.stats.successful;
    failed += result.stats.failed;
    retransmissions += result.stats.retransmissions;
    const rt = parseSippDuration(result.stats.raw['ResponseTime1(C)']);
    if (rt !== undefined && result.stats.successful > 0) responseTimes.push(rt * 1000);
  }
  const notDone = Math.max(0, planned - successful - failed);
  const failurePct = planned === 0 ? 100 : ((failed + notDone) / planned) * 100;
  const errorSample = failurePct > 0
    ? results.map((r) => r.errors.trim() || r.stderr.trim()).filter(Boolean).join('\n').split('\n').slice(0, 8).join('\n')
    : undefined;
  return {
    offeredRate: step.rate,
    achievedRate: successful / wallS,
    planned, created, successful, failed, failurePct, retransmissions,
    meanResponseMs: responseTimes.length ? responseTimes.reduce((a, b) => a + b, 0) / responseTimes.length : undefined,
    wallS,
    cpuPct: cpuBefore !== undefined && cpuAfter !== undefined ? ((cpuAfter - cpuBefore) / wallS) * 100 : undefined,
    peakRssMiB: peakMiB,
    udpDrops: dropsBefore !== undefined && dropsAfter !== undefined ? dropsAfter - dropsBefore : undefined,
    errorSample: errorSample || undefined,
  };
}

/** At most 1 % of requests retransmitted by SIPp (a response later than T1 = 500 ms): beyond, the stack is saturated. */
export const MAX_RETRANSMISSION_PCT = 1;

/**
 * A step is clean when every planned call completed, under the failure budget, and responses kept up: SIPp paces
 * calls itself, so a saturated stack shows as late responses (retransmissions) and then failures.
 */
export function isClean(result: LoadStepResult): boolean {
  return result.failurePct < MAX_FAILURE_PCT && (result.retransmissions / Math.max(1, result.planned)) * 100 <= MAX_RETRANSMISSION_PCT;
}

export interface RampResult {
  steps: LoadStepResult[];
  /** highest offered rate with a clean step, 0 if none */
  maxCleanRate: number;
  /** achieved rate of that step */
  maxCleanAchieved: number;
}

/**
 * Offers each rate in turn (ascending) and stops at the first unclean step or when the time budget is
 * spent. `settleMs` between steps lets retransmissions and lingering transactions drain.
 */
export async function rampRate(
  base: Omit<LoadStep, 'rate'>,
  rates: readonly number[],
  budgetMs: number,
  onStep: (result: LoadStepResult) => void,
  settleMs = 1000,
): Promise<RampResult> {
  const deadline = Date.now() + budgetMs;
  const steps: LoadStepResult[] = [];
  let maxCleanRate = 0;
  let maxCleanAchieved = 0;
  for (const rate of rates) {
    if (steps.length > 0 && Date.now() + (base.durationS + 2) * 1000 > deadline) break;
    const result = await runLoadStep({ ...base, rate });
    steps.push(result);
    onStep(result);
    if (!isClean(result)) break;
    maxCleanRate = rate;
    maxCleanAchieved = result.achievedRate;
    await new Promise((resolve) => setTimeout(resolve, settleMs));
  }
  return { steps, maxCleanRate, maxCleanAchieved };
}
