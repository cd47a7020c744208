/**
 * Memory and CPU of a process, read from Linux /proc (proc(5)): VmRSS from /proc/<pid>/status,
 * utime + stime from /proc/<pid>/stat.
 */
import { readdirSync, readFileSync } from 'node:fs';
import type { Redis } from '../src/app/users/redis.js';

/** Clock ticks per second for /proc/<pid>/stat times; 100 on every Linux we run on. */
const CLOCK_TICKS_PER_SECOND = 100;

/** Resident set size of `pid` in MiB, or undefined when the process is gone. */
export function rssMiB(pid: number): number | undefined {
  try {
    const status = readFileSync(`/proc/${pid}/status`, 'utf8');
    const match = /^VmRSS:\s+(\d+)\s+kB/m.exec(status);
    return match ? Number(match[1]) / 1024 : undefined;
  } catch {
    return undefined;
  }
}

/** CPU seconds (user + system) used so far by `pid`, or undefined when the process is gone. */
export function cpuSeconds(pid: number): number | undefined {
  return statCpuSeconds(`/proc/${pid}/stat`);
}

/** utime + stime in seconds from a proc(5) stat file (a process's or a thread's), undefined when it is gone. */
function statCpuSeconds(statFile: string): number | undefined {
  try {
    const stat = readFileSync(statFile, 'utf8');
    // the command name (field 2) may contain spaces: fields are counted after its closing parenthesis
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    const utime = Number(fields[11]);
    const stime = Number(fields[12]);
    return Number.isFinite(utime) && Number.isFinite(stime) ? (utime + stime) / CLOCK_TICKS_PER_SECOND : undefined;
  } catch {
    return undefined;
  }
}

/** CPU seconds (user + system) of each thread of `pid` so far, by thread id (/proc/<pid>/task/<tid>/stat). */
export function threadCpuSeconds(pid: number): Map<number, number> {
  const out = new Map<number, number>();
  let tids: string[];
  try {
    tids = readdirSync(`/proc/${pid}/task`);
  } catch {
    return out;
  }
  for (const tid of tids) {
    const seconds = statCpuSeconds(`/proc/${pid}/task/${tid}/stat`);
    if (seconds !== undefined) out.set(Number(tid), seconds);
  }
  return out;
}

/**
 * Per-thread CPU seconds between two threadCpuSeconds() readings of `pid`, grouped: the main thread (tid = pid),
 * the busiest other thread (in the registrar bench, the edge thread) and the rest (V8's GC and compiler helpers,
 * libuv's pool).
 */
export function threadCpuSplit(pid: number, before: Map<number, number>, after: Map<number, number>): { main: number; busiestOther: number; rest: number } {
  let main = 0;
  const others: number[] = [];
  for (const [tid, seconds] of after) {
    const used = seconds - (before.get(tid) ?? 0);
    if (tid === pid) main = used;
    else others.push(used);
  }
  others.sort((a, b) => b - a);
  return { main, busiestOther: others[0] ?? 0, rest: others.slice(1).reduce((sum, x) => sum + x, 0) };
}

/** Samples RSS every `intervalMs` while running; `stop()` returns the peak and last values. */
export function sampleRss(pid: number, intervalMs = 250): { stop(): { peakMiB: number; lastMiB: number } } {
  let peak = 0;
  let last = 0;
  const take = (): void => {
    const value = rssMiB(pid);
    if (value === undefined) return;
    last = value;
    if (value > peak) peak = value;
  };
  take();
  const timer = setInterval(take, intervalMs);
  return {
    stop() {
      clearInterval(timer);
      take();
      return { peakMiB: peak, lastMiB: last };
    },
  };
}

/**
 * UDP datagrams the kernel dropped for a full socket receive buffer, machine-wide (/proc/net/snmp Udp RcvbufErrors).
 * Other processes' drops count too; on a quiet machine a rise during a step means the stack read too slowly.
 */
export function udpReceiveBufferErrors(): number | undefined {
  try {
    const lines = readFileSync('/proc/net/snmp', 'utf8').split('\n').filter((line) => line.startsWith('Udp:'));
    if (lines.length < 2) return undefined;
    const names = lines[0].split(/\s+/);
    const values = lines[1].split(/\s+/);
    const value = Number(values[names.indexOf('RcvbufErrors')]);
    return Number.isFinite(value) ? value : undefined;
  } catch {
    return undefined;
  }
}

/** CPU seconds (user + system) the Redis server used so far (INFO cpu), undefined without a client. */
export async function redisCpuSeconds(redis: Redis | undefined): Promise<number | undefined> {
  if (!redis) return undefined;
  const info = String(await redis.send(['INFO', 'cpu']));
  const user = /used_cpu_user:([\d.]+)/.exec(info);
  const sys = /used_cpu_sys:([\d.]+)/.exec(info);
  return user && sys ? Number(user[1]) + Number(sys[1]) : undefined;
}
