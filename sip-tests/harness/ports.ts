/**
 * Free ports on 127.0.0.1 for test servers.
 *
 * - `freePort()` returns a port that is free for both UDP and TCP (SIP listens on both),
 *   taken from the kernel's ephemeral range (bind to port 0).
 * - `freePortRange(count)` returns a block of consecutive ports below the ephemeral range
 *   (10000-19999, claimed in blocks of 100), for processes that take a range: rtpengine `--port-min/--port-max`,
 *   SIPp media ports.
 *
 * Every port or block handed out is claimed with a lock file in the OS temp directory
 * (owner pid inside, stale locks of dead processes are taken over), so concurrent test
 * files never get the same one, and the claim is released when this process exits.
 */
import { createSocket } from 'node:dgram';
import { createServer } from 'node:net';
import { linkSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const HOST = '127.0.0.1';
const LOCK_DIR = join(tmpdir(), 'dialcore-test-ports');
const RANGE_REGION_START = 10_000;
const RANGE_REGION_END = 20_000; // below scripts/start.sh's rtpengine range (23000-32000) and the ephemeral range (32768+)
const RANGE_BLOCK = 100;
const MAX_ATTEMPTS = 200;

const claimedLocks = new Set<string>();
let exitHookInstalled = false;

function releaseAllClaims(): void {
  for (const lock of claimedLocks) rmSync(lock, { force: true });
  claimedLocks.clear();
}

function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

function lockOwner(lock: string): number {
  try {
    return Number.parseInt(readFileSync(lock, 'utf8'), 10);
  } catch {
    return Number.NaN; // vanished meanwhile
  }
}

function ownerAlive(owner: number): boolean {
  return Number.isInteger(owner) && owner > 0 && processAlive(owner);
}

let sweptStaleLocks = false;

/** Once per process: removes locks left by processes that died without releasing them. */
function sweepStaleLocks(): void {
  if (sweptStaleLocks) return;
  sweptStaleLocks = true;
  for (const name of readdirSync(LOCK_DIR)) {
    const lock = join(LOCK_DIR, name);
    if (!ownerAlive(lockOwner(lock))) rmSync(lock, { force: true });
  }
}

/** Claims `name` across processes; false if another live process holds it. */
function claim(name: string): boolean {
  mkdirSync(LOCK_DIR, { recursive: true });
  sweepStaleLocks();
  const lock = join(LOCK_DIR, name);
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      // written beside, then hard-linked into place: a lock file is never seen without its pid
      const pending = `${lock}.${process.pid}.pending`;
      writeFileSync(pending, String(process.pid));
      try {
        linkSync(pending, lock);
      } finally {
        rmSync(pending, { force: true });
      }
      claimedLocks.add(lock);
      if (!exitHookInstalled) {
        exitHookInstalled = true;
        process.on('exit', releaseAllClaims);
      }
      return true;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      if (ownerAlive(lockOwner(lock))) return false;
      rmSync(lock, { force: true }); // stale: its owner is gone
    }
  }
  return false;
}

function udpFree(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = createSocket('udp4');
    socket.once('error', () => {
      socket.close();
      resolve(false);
    });
    socket.bind(port, HOST, () => socket.close(() => resolve(true)));
  });
}

function tcpBind(port: number): Promise<number | null> {
  return new Promise((resolve) => {
    const server = createServer();
    server.once('error', () => resolve(null));
    server.listen({ port, host: HOST, exclusive: true }, () => {
      const address = server.address();
      const bound = typeof address === 'object' && address !== null ? address.port : null;
      server.close(() => resolve(bound));
    });
  });
}

/** A port free on 127.0.0.1 for both UDP and TCP, not handed out to anyone else. */
export async function freePort(): Promise<number> {
  for (let attempt = 0; attempt < MAX_ATTEMPTS; attempt++) {
    const port = await tcpBind(0);
    if (port === null) continue;
    if (!(await udpFree(port))) continue;
    if (claim(`port-${port}`)) return port;
  }
  throw new Error('freePort: no free UDP+TCP port found on 127.0.0.1');
}

/** Several distinct free ports. */
export async function freePorts(count: number): Promise<number[]> {
  const ports: number[] = [];
  for (let i = 0; i < count; i++) ports.push(await freePort());
  return ports;
}

export interface PortRange {
  /** First port, even. */
  min: number;
  /** Last port, inclusive. */
  max: number;
}

/** Most ports one range may have. */
const MAX_RANGE = 1_000;

/**
 * `count` consecutive ports (at most 1000), all free on 127.0.0.1 for UDP and TCP now,
 * starting on an even port (RTP convention). Claimed in blocks of 100.
 */
export async function freePortRange(count: number): Promise<PortRange> {
  if (!Number.isInteger(count) || count < 1 || count > MAX_RANGE) {
    throw new RangeError(`freePortRange: count must be 1..${MAX_RANGE}`);
  }
  const blocksNeeded = Math.ceil(count / RANGE_BLOCK);
  const blocks = Math.floor((RANGE_REGION_END - RANGE_REGION_START) / RANGE_BLOCK);
  const starts = blocks - blocksNeeded + 1;
  const offset = Math.floor(Math.random() * starts);
  for (let i = 0; i < starts; i++) {
    const first = (offset + i) % starts;
    const names = Array.from({ length: blocksNeeded }, (_, k) => blockName(first + k));
    const claimed: string[] = [];
    for (const name of names) {
      if (!claim(name)) break;
      claimed.push(name);
    }
    const min = RANGE_REGION_START + first * RANGE_BLOCK;
    const max = min + count - 1;
    if (claimed.length === names.length && (await rangeFree(min, max))) return { min, max };
    for (const name of claimed) releaseClaim(name);
  }
  throw new Error(`freePortRange: no ${count} consecutive free ports in ${RANGE_REGION_START}-${RANGE_REGION_END - 1}`);
}

function blockName(block: number): string {
  return `range-${RANGE_REGION_START + block * RANGE_BLOCK}`;
}

async function rangeFree(min: number, max: number): Promise<boolean> {
  for (let port = min; port <= max; port++) {
    if (!(await udpFree(port))) return false;
    if ((await tcpBind(port)) === null) return false;
  }
  return true;
}

function releaseClaim(name: string): void {
  const lock = join(LOCK_DIR, name);
  if (claimedLocks.delete(lock)) rmSync(lock, { force: true });
}

/** Gives a port or range back early (otherwise released when the process exits). */
export function releasePort(portOrRange: number | PortRange): void {
  if (typeof portOrRange === 'number') {
    releaseClaim(`port-${portOrRange}`);
    return;
  }
  for (let start = portOrRange.min; start <= portOrRange.max; start += RANGE_BLOCK) releaseClaim(`range-${start}`);
}
