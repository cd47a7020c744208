/**
 * Memory and CPU of a process, read from Linux /proc (proc(5)): VmRSS from /proc/<pid>/status,
 * utime + stime from /proc/<pid>/stat.
 */
import { readFileSync } from 'node:fs';

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
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // the command name (field 2) may contain spaces: fields are counted after its closing parenthesis
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    const utime = Number(fields[11]);
    const stime = Number(fields[12]);
    return Number.isFinite(utime) && Number.isFinite(stime) ? (utime + stime) / CLOCK_TICKS_PER_SECOND : undefined;
  } catch {
    return undefined;
  }
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
