/**
 * Diagnostics a bench stack process can turn on from its environment, for work on the hot path:
 *   BENCH_GC_LOG=1          every 5 s on stderr: event-loop delay (p50/p99/max) and GC pauses by kind (count,
 *                           total, max, how many over 10 ms);
 *   BENCH_STALL_LOG=1       each event-loop gap over 8 ms and each GC pause over 3 ms on stderr, with wall-clock
 *                           times (to line up with SIPp's per-registration times, BENCH_RTT_DIR);
 *   BENCH_ALLOC_PROF=<file> V8's sampling heap profiler with collected objects included (allocation volume, not
 *                           only what survives), written to <file> as JSON (.heapprofile format) by stop().
 */
import { writeFileSync } from 'node:fs';
import { Session } from 'node:inspector';
import { monitorEventLoopDelay, PerformanceObserver } from 'node:perf_hooks';
import { isMainThread, threadId } from 'node:worker_threads';

/** how a worker thread's lines are labelled (the edge thread of bench/registrar-stack.ts is the only one) */
const threadName = (): string => `thread ${threadId} (edge)`;

const GC_KINDS: Record<number, string> = { 1: 'scavenge', 2: 'minor-mark-sweep', 4: 'mark-compact', 8: 'incremental', 16: 'weak-callbacks' };

interface PauseStats { count: number; totalMs: number; maxMs: number; over10Ms: number }

function logGcAndLoopDelay(): () => void {
  const pauses = new Map<string, PauseStats>();
  const observer = new PerformanceObserver((list) => {
    for (const entry of list.getEntries()) {
      const kind = GC_KINDS[(entry as { detail?: { kind?: number } }).detail?.kind ?? 0] ?? 'other';
      const stats = pauses.get(kind) ?? { count: 0, totalMs: 0, maxMs: 0, over10Ms: 0 };
      stats.count++;
      stats.totalMs += entry.duration;
      stats.maxMs = Math.max(stats.maxMs, entry.duration);
      if (entry.duration > 10) stats.over10Ms++;
      pauses.set(kind, stats);
    }
  });
  observer.observe({ entryTypes: ['gc'] });
  const loop = monitorEventLoopDelay({ resolution: 1 });
  loop.enable();
  const ms = (ns: number): string => (ns / 1e6).toFixed(1);
  const timer = setInterval(() => {
    const gc = Object.fromEntries([...pauses].map(([kind, p]) => [kind, { ...p, totalMs: Math.round(p.totalMs), maxMs: Math.round(p.maxMs) }]));
    process.stderr.write(`${isMainThread ? '' : `${threadName()}: `}loop delay ms p50 ${ms(loop.percentile(50))} p99 ${ms(loop.percentile(99))} max ${ms(loop.max)}; gc ${JSON.stringify(gc)}\n`);
    loop.reset();
    pauses.clear();
  }, 5000);
  timer.unref();
  return () => {
    clearInterval(timer);
    observer.disconnect();
    loop.disable();
  };
}

/** BENCH_STALL_LOG=1: every event-loop gap over 8 ms and every GC pause over 3 ms, with wall-clock times. */
function logStalls(): () => void {
  const label = isMainThread ? 'main' : 'edge';
  const observer = new PerformanceObserver((list) => {
    for (const entry of list.getEntries()) {
      if (entry.duration < 3) continue;
      const kind = GC_KINDS[(entry as { detail?: { kind?: number } }).detail?.kind ?? 0] ?? 'other';
      process.stderr.write(`stall ${label} gc ${kind} at ${Math.round(performance.timeOrigin + entry.startTime)} ${entry.duration.toFixed(1)} ms\n`);
    }
  });
  observer.observe({ entryTypes: ['gc'] });
  let last = performance.now();
  const timer = setInterval(() => {
    const now = performance.now();
    if (now - last > 8) process.stderr.write(`stall ${label} loop at ${Math.round(performance.timeOrigin + last)} ${(now - last).toFixed(1)} ms\n`);
    last = now;
  }, 2);
  timer.unref();
  return () => {
    clearInterval(timer);
    observer.disconnect();
  };
}

async function sampleAllocations(file: string): Promise<() => Promise<void>> {
  const session = new Session();
  session.connect();
  const post = (method: string, params: object = {}): Promise<unknown> =>
    new Promise((resolve, reject) => session.post(method, params, (err, result) => (err ? reject(err) : resolve(result))));
  await post('HeapProfiler.enable');
  await post('HeapProfiler.startSampling', { samplingInterval: 4096, includeObjectsCollectedByMajorGC: true, includeObjectsCollectedByMinorGC: true });
  return async () => {
    const { profile } = (await post('HeapProfiler.stopSampling')) as { profile: unknown };
    writeFileSync(file, JSON.stringify(profile));
    session.disconnect();
  };
}

/** Starts what the environment asks for; stop() writes the allocation profile, if any. */
export async function startDiagnostics(env: NodeJS.ProcessEnv): Promise<{ stop(): Promise<void> }> {
  const stopLog = env.BENCH_GC_LOG === '1' ? logGcAndLoopDelay() : undefined;
  const stopStalls = env.BENCH_STALL_LOG === '1' ? logStalls() : undefined;
  const stopSampling = env.BENCH_ALLOC_PROF ? await sampleAllocations(env.BENCH_ALLOC_PROF) : undefined;
  return {
    async stop() {
      stopLog?.();
      stopStalls?.();
      await stopSampling?.();
    },
  };
}
