/**
 * Bench section `b2bua` (issue 4 item 8): SIPp carrier (127.0.0.2) -> dialcore (edge + core in
 * this process, the product's call router) -> SIPp phone registered through the registrar, with
 * real redis and rtpengine.
 *
 * 1. set-ups and tear-downs per second: INVITE/200/ACK/BYE with rtpengine offer/answer/delete, no
 *    media (invite-bye-uac.xml -> invite-uas-bye-remote.xml), offered in ascending steps (stops at
 *    the first step with failures); target >= 200/s with < 0.1 % failed calls and nothing left;
 * 2. concurrent calls with RTP both ways: N calls held 8 s, both SIPps playing 7 s of G.711
 *    (236 packets each way per call); rtpengine's per-leg packet counters read just before each
 *    call ends give the loss; target 200 concurrent, no packet lost;
 * 3. memory per live call in this process (heap after a forced GC at N live calls minus the idle
 *    heap, divided by N; the embedded edge's share included); target < 50 KB.
 *
 *   npx tsx bench/run.ts b2bua [--quick]       (needs bench/run.ts to list the section)
 *   npx tsx bench/b2bua.ts [--quick]           (stand-alone)
 */
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { pathToFileURL } from 'node:url';
import { runSipp, startSippServer, type SippResult } from '../sip-tests/harness/index.js';
import { startCallStack, type CallStack } from '../sip-tests/calls/call-stack.js';
import type { BenchOptions, BenchSection, BenchSectionResult } from './section.js';

setFlagsFromString('--expose-gc');
const forceGc = runInNewContext('gc') as () => void;

const TARGET_CPS = 200;
const TARGET_CONCURRENT = 200;
const TARGET_KB_PER_CALL = 50;
const PCAP_PACKETS = 236; // /usr/share/sip-tester/g711a.pcap
const MAX_FAILURE_PCT = 0.1;

export interface B2buaBenchOptions {
  quick: boolean;
}

interface CpsStep {
  offeredCps: number;
  planned: number;
  successful: number;
  failed: number;
  achievedCps: number;
  retransmissions: number;
  failurePct: number;
  sessionsLeftAfter: number;
}

interface ConcurrencyResult {
  calls: number;
  peakLive: number;
  successful: number;
  failed: number;
  legsMeasured: number;
  packetsExpected: number;
  packetsReceived: number;
  lossPct: number;
  rtpengineErrors: number;
  heapPerCallKB: number;
  rssPerCallKB: number;
}

function heapMiB(): { heap: number; rss: number } {
  forceGc();
  forceGc();
  const m = process.memoryUsage();
  return { heap: m.heapUsed / 1024 / 1024, rss: m.rss / 1024 / 1024 };
}

async function waitUntil(check: () => boolean, timeoutMs: number): Promise<boolean> {
  const start = Date.now();
  while (!check()) {
    if (Date.now() - start > timeoutMs) return false;
    await new Promise((r) => setTimeout(r, 50));
  }
  return true;
}

function carrierArgs(cs: CallStack, extra: string[] = []): string[] {
  // a response that never comes fails the call within 5 s; SIPp's internal loops not throttled
  return [...cs.carrierSippArgs(), '-recv_timeout', '5000', '-max_recv_loops', '10000', '-max_sched_loops', '10000', ...extra];
}

async function cpsStep(cs: CallStack, did: string, cps: number, durationS: number): Promise<CpsStep> {
  const planned = Math.round(cps * durationS);
  const started = process.hrtime.bigint();
  const r: SippResult = await runSipp({
    scenario: 'invite-bye-uac.xml', target: cs.target, service: did, calls: planned, rate: cps,
    maxConcurrentCalls: 2000, extraArgs: carrierArgs(cs), timeoutMs: (durationS + 25) * 1000,
  });
  const wallS = Number(process.hrtime.bigint() - started) / 1e9;
  // calls a saturated peer abandoned end by the B2BUA's own timers (ring timeout, Timer F on a
  // BYE nobody answers): bounded, but allow them the time
  await waitUntil(() => cs.calls.count === 0 && cs.media.count === 0, 45_000);
  const notDone = Math.max(0, planned - r.stats.successful - r.stats.failed);
  return {
    offeredCps: cps,
    planned,
    successful: r.stats.successful,
    failed: r.stats.failed + notDone,
    achievedCps: r.stats.successful / wallS,
    retransmissions: r.stats.retransmissions,
    failurePct: ((r.stats.failed + notDone) / planned) * 100,
    sessionsLeftAfter: cs.calls.count + cs.media.count,
  };
}

async function concurrency(cs: CallStack, did: string, calls: number): Promise<ConcurrencyResult> {
  const base = heapMiB();
  const liveBefore = cs.calls.count;
  const received: number[] = [];
  let rtpengineErrors = 0;
  let answered = 0;
  const onSession = (session: import('../src/app/calls/index.js').CallSession): void => {
    session.on('answered', () => {
      answered++;
      // the pcap lasts 7.05 s from the ACK; the caller hangs up at 8 s
      const timer = setTimeout(() => {
        const media = cs.media.get(session.callId);
        if (!media) return;
        cs.pool.query({ 'call-id': session.callId }).then((reply) => {
          for (const tag of [media.aTag, media.bTag]) {
            const { packets, errors } = legStats(reply.tags[tag]);
            received.push(packets);
            rtpengineErrors += errors;
          }
        }, () => undefined);
      }, 7500);
      session.once('ended', () => clearTimeout(timer));
    });
  };
  cs.calls.on('session', onSession);
  let peakLive = 0;
  let memory = { heap: base.heap, rss: base.rss };
  const run = runSipp({
    scenario: 'call-carrier-uac.xml', target: cs.target, service: did, calls, rate: 100, maxConcurrentCalls: calls,
    keys: { caller: '+447700900123', caller_national: '07700900123' },
    extraArgs: carrierArgs(cs, ['-d', '8000']), timeoutMs: 60_000,
  });
  const allUp = await waitUntil(() => {
    peakLive = Math.max(peakLive, cs.calls.count);
    return answered >= calls;
  }, 20_000);
  if (allUp) {
    peakLive = Math.max(peakLive, cs.calls.count);
    memory = heapMiB();
  }
  const r = await run;
  cs.calls.off('session', onSession);
  await waitUntil(() => cs.calls.count === 0 && cs.media.count === 0, 10_000);
  const packetsExpected = received.length * PCAP_PACKETS;
  const packetsReceived = received.reduce((a, b) => a + Math.min(b, PCAP_PACKETS), 0);
  const live = Math.max(1, peakLive - liveBefore);
  return {
    calls,
    peakLive,
    successful: r.stats.successful,
    failed: r.stats.failed,
    legsMeasured: received.length,
    packetsExpected,
    packetsReceived,
    lossPct: packetsExpected ? ((packetsExpected - packetsReceived) / packetsExpected) * 100 : 100,
    rtpengineErrors,
    heapPerCallKB: allUp ? ((memory.heap - base.heap) * 1024) / live : Number.NaN,
    rssPerCallKB: allUp ? ((memory.rss - base.rss) * 1024) / live : Number.NaN,
  };
}

function legStats(monologue: unknown): { packets: number; errors: number } {
  let packets = 0;
  let errors = 0;
  const medias = (monologue as { medias?: unknown })?.medias;
  for (const media of Array.isArray(medias) ? medias : []) {
    const streams = (media as { streams?: unknown })?.streams;
    for (const stream of Array.isArray(streams) ? streams : []) {
      const flags = (stream as { flags?: unknown }).flags;
      if (!Array.isArray(flags) || !flags.includes('RTP')) continue;
      const stats = (stream as { stats?: { packets?: unknown; errors?: unknown } }).stats;
      if (typeof stats?.packets === 'number') packets += stats.packets;
      if (typeof stats?.errors === 'number') errors += stats.errors;
    }
  }
  return { packets, errors };
}

export async function runB2buaBench(options: B2buaBenchOptions): Promise<BenchSectionResult> {
  const quick = options.quick;
  // 3000 media ports (~700 calls at 4 ports each), below the harness region's end and the ephemeral range
  const cs = await startCallStack({ rtpengineArgs: ['--port-min=20000', '--port-max=22999'], timers: { ringTimeoutMs: 20_000 } });
  try {
    const plainUser = await cs.createUser({ login: 'bench-plain' });
    cs.routeDid('442070000100', plainUser.id);
    const plainPhone = await startSippServer({ scenario: 'invite-uas-bye-remote.xml', localPort: await cs.registerPhone(plainUser), timeoutMs: 10 * 60_000 });
    const rtpUser = await cs.createUser({ login: 'bench-rtp' });
    cs.routeDid('442070000200', rtpUser.id);
    const rtpPhone = await startSippServer({ scenario: 'uas-answer-rtp.xml', localPort: await cs.registerPhone(rtpUser), timeoutMs: 10 * 60_000 });

    // concurrency and memory first, on a fresh process heap (after a warm-up: code paths compiled,
    // pools and caches filled, so the heap delta is the calls'); then the set-up rate ramp
    await cpsStep(cs, '442070000100', 50, 1);
    const calls = TARGET_CONCURRENT;
    const held = await concurrency(cs, '442070000200', calls);
    console.log(
      `  concurrent: ${held.peakLive} live (of ${calls}), ${held.successful} ok / ${held.failed} failed; RTP legs measured ${held.legsMeasured}, ` +
        `${held.packetsReceived}/${held.packetsExpected} packets (loss ${held.lossPct.toFixed(3)} %), rtpengine errors ${held.rtpengineErrors}`,
    );
    console.log(`  memory per live call: heap ${held.heapPerCallKB.toFixed(1)} KB, RSS ${held.rssPerCallKB.toFixed(1)} KB (core + embedded edge)`);


    const steps: CpsStep[] = [];
    const rates = quick ? [TARGET_CPS] : [100, 200, 250, 300];
    for (const cps of rates) {
      const step = await cpsStep(cs, '442070000100', cps, quick ? 5 : 10);
      steps.push(step);
      console.log(
        `  cps ${String(cps).padStart(4)}: ${step.successful}/${step.planned} ok, achieved ${step.achievedCps.toFixed(0)}/s, ` +
          `failed ${step.failurePct.toFixed(2)} %, retrans ${step.retransmissions}, left ${step.sessionsLeftAfter}`,
      );
      if (step.failurePct >= MAX_FAILURE_PCT) break;
    }
    const clean = steps.filter((s) => s.failurePct < MAX_FAILURE_PCT && s.sessionsLeftAfter === 0);
    const maxCleanCps = clean.length ? Math.max(...clean.map((s) => s.offeredCps)) : 0;

    await plainPhone.stop(2000);
    await rtpPhone.stop(2000);
    let leftInRtpengine = (await cs.rtpengineCalls()).length;
    for (let i = 0; i < 100 && leftInRtpengine > 0; i++) {
      await new Promise((r) => setTimeout(r, 200));
      leftInRtpengine = (await cs.rtpengineCalls()).length;
    }
    const passed =
      maxCleanCps >= TARGET_CPS &&
      held.peakLive >= TARGET_CONCURRENT &&
      held.failed === 0 &&
      held.lossPct === 0 &&
      held.heapPerCallKB > 0 &&
      held.heapPerCallKB < TARGET_KB_PER_CALL &&
      leftInRtpengine === 0;
    return {
      passed,
      targets: { cps: TARGET_CPS, concurrent: TARGET_CONCURRENT, kbPerCall: TARGET_KB_PER_CALL },
      cps: { steps, maxCleanCps },
      concurrent: held,
      leftInRtpengine,
    };
  } finally {
    await cs.stop();
  }
}

export const b2buaSection: BenchSection = {
  name: 'b2bua',
  description: 'SIPp carrier -> dialcore B2BUA (rtpengine) -> SIPp phone: set-ups/s, concurrent calls with RTP, memory per call',
  run: (options: BenchOptions) => runB2buaBench(options),
};

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  const result = await runB2buaBench({ quick: process.argv.includes('--quick') });
  console.log(JSON.stringify(result, null, 2));
  process.exit(result.passed ? 0 : 1);
}
