/**
 * Child processes for integration tests (redis-server, rtpengine, SIPp, ...).
 *
 * `spawnService` starts a command with stdout and stderr written to a log file in its own
 * temp directory, and makes sure the process does not outlive the test process: every
 * live service is killed on process exit and on SIGINT/SIGTERM/SIGHUP.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { closeSync, mkdtempSync, openSync, readFileSync, rmSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export interface ServiceOptions {
  /** Short name used for the temp dir and in error messages. */
  name: string;
  command: string;
  args: readonly string[];
  /** The service's temp dir, from `makeServiceDir`; default a new one. Removed by `stop`. */
  dir?: string;
  /** Working directory; defaults to the service's temp dir. */
  cwd?: string;
  /** Added to the parent's environment. */
  env?: Record<string, string>;
  /** `pipe`: the process reads from `child.stdin` (a command-line client driven by the test). Default: no stdin. */
  stdin?: 'ignore' | 'pipe';
  /** Write stderr to its own file (`errLogFile`) instead of interleaving it into `logFile`. */
  separateStderr?: boolean;
}

export interface ServiceExit {
  code: number | null;
  signal: NodeJS.Signals | null;
  /** Set when the process could not be started at all (e.g. ENOENT). */
  spawnError?: Error;
}

export interface Service {
  readonly name: string;
  readonly pid: number;
  /** Temp directory owned by this service (removed by `stop` unless KEEP_TEST_LOGS is set). */
  readonly dir: string;
  /** stdout and stderr of the process (stdout only with `separateStderr`). */
  readonly logFile: string;
  /** stderr, with `separateStderr`; otherwise the same as `logFile`. */
  readonly errLogFile: string;
  readonly child: ChildProcess;
  /** Settles when the process has exited. */
  readonly exited: Promise<ServiceExit>;
  /** True until the process has exited. */
  running(): boolean;
  /** The log so far (last `maxBytes`, default 64 KiB). */
  log(maxBytes?: number): string;
  /** Sends `signal`, then SIGKILL after `graceMs`; resolves once exited. */
  stop(options?: { signal?: NodeJS.Signals; graceMs?: number; keepDir?: boolean }): Promise<ServiceExit>;
}

const liveChildren = new Set<ChildProcess>();
let cleanupInstalled = false;

function killAllLive(): void {
  for (const child of liveChildren) {
    try {
      child.kill('SIGKILL');
    } catch {
      // already gone
    }
  }
  liveChildren.clear();
}

function installCleanup(): void {
  if (cleanupInstalled) return;
  cleanupInstalled = true;
  process.on('exit', killAllLive);
  for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    const onSignal = (): void => {
      killAllLive();
      process.removeListener(signal, onSignal);
      // Only re-raise when nobody else handles it: then the default action (exit) applies.
      if (process.listenerCount(signal) === 0) process.kill(process.pid, signal);
    };
    process.on(signal, onSignal);
  }
}

/** The last `maxBytes` of a file ('' when it does not exist). */
export function tail(file: string, maxBytes: number): string {
  try {
    const text = readFileSync(file);
    return text.subarray(Math.max(0, text.length - maxBytes)).toString('utf8');
  } catch {
    return '';
  }
}

/** A new temp dir for a service, for files it needs before it starts. */
export function makeServiceDir(name: string): string {
  return mkdtempSync(join(tmpdir(), `dialcore-${name}-`));
}

export function spawnService(options: ServiceOptions): Service {
  installCleanup();
  const dir = options.dir ?? makeServiceDir(options.name);
  const logFile = join(dir, `${options.name}.log`);
  const errLogFile = options.separateStderr ? join(dir, `${options.name}.stderr.log`) : logFile;
  const logFd = openSync(logFile, 'a');
  const errFd = options.separateStderr ? openSync(errLogFile, 'a') : logFd;
  let child: ChildProcess;
  try {
    child = spawn(options.command, options.args, {
      cwd: options.cwd ?? dir,
      env: { ...process.env, ...options.env },
      stdio: [options.stdin ?? 'ignore', logFd, errFd],
    });
  } finally {
    closeSync(logFd);
    if (errFd !== logFd) closeSync(errFd);
  }
  liveChildren.add(child);

  let alive = true;
  const exited = new Promise<ServiceExit>((resolve) => {
    child.once('error', (spawnError) => {
      // spawn failure (ENOENT, ...): no 'exit' follows
      alive = false;
      liveChildren.delete(child);
      resolve({ code: null, signal: null, spawnError });
    });
    child.once('exit', (code, signal) => {
      alive = false;
      liveChildren.delete(child);
      resolve({ code, signal });
    });
  });

  const service: Service = {
    name: options.name,
    pid: child.pid ?? -1,
    dir,
    logFile,
    errLogFile,
    child,
    exited,
    running: () => alive,
    log: (maxBytes = 64 * 1024) => tail(logFile, maxBytes),
    async stop({ signal = 'SIGTERM', graceMs = 5000, keepDir = false } = {}) {
      if (alive) child.kill(signal);
      const timer = setTimeout(() => {
        if (alive) child.kill('SIGKILL');
      }, graceMs);
      const result = await exited;
      clearTimeout(timer);
      if (!keepDir && !process.env.KEEP_TEST_LOGS) rmSync(dir, { recursive: true, force: true });
      return result;
    },
  };
  return service;
}

/** Polls `check` every `intervalMs` until it returns true; throws after `timeoutMs`. */
export async function waitUntil(
  check: () => boolean | Promise<boolean>,
  { timeoutMs = 10_000, intervalMs = 50, what = 'condition' }: { timeoutMs?: number; intervalMs?: number; what?: string } = {},
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await check()) return;
    if (Date.now() >= deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, intervalMs));
  }
}

/**
 * Whether some process has a socket bound to 127.0.0.1:`port` (UDP) or listening on it
 * (TCP), read from /proc/net without touching the port.
 */
export async function isBound(port: number, protocol: 'udp' | 'tcp'): Promise<boolean> {
  const wanted = `0100007F:${port.toString(16).toUpperCase().padStart(4, '0')}`;
  let table: string;
  try {
    table = await readFile(`/proc/net/${protocol}`, 'utf8');
  } catch {
    return false;
  }
  for (const line of table.split('\n').slice(1)) {
    const fields = line.trim().split(/\s+/);
    if (fields[1] !== wanted) continue;
    // TCP state 0A = LISTEN; a bound UDP socket shows 07 (CLOSE)
    if (protocol === 'udp' || fields[3] === '0A') return true;
  }
  return false;
}

/** Message for a service that failed to come up, with the end of its log. */
export function startupError(service: Service, reason: string): Error {
  return new Error(`${service.name} ${reason}\n--- ${service.logFile} ---\n${service.log(4096)}`);
}
