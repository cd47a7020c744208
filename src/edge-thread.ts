/**
 * The embedded SIP edge on a thread of its own (node:worker_threads), as `dialcore start` runs it.
 *
 * One Node thread runs one event loop on one core. With the edge and the app in one thread, parsing and
 * sending SIP, the transaction layer, srf, the policies and the Redis client all queue behind each other,
 * and the second core is left to SIPp-like peers and Redis. On its own thread, the edge parses, matches
 * transactions, absorbs retransmissions and sends on one core while the app works on the other. The two
 * still meet only on the drachtio protocol port, over loopback TCP, exactly as an app and a separate
 * drachtio-server would: the app can't tell the difference, and nothing here reaches into either side.
 *
 * This module is the thread's composition root (as cli.ts is the process's): `startEdgeThread` runs on the
 * main thread; `runEdgeThread` is what the worker runs (edge-thread-main.ts calls it).
 */
import { extname } from 'node:path';
import { getHeapStatistics } from 'node:v8';
import { fileURLToPath } from 'node:url';
import { Worker, isMainThread, parentPort, threadId, workerData, type MessagePort } from 'node:worker_threads';
import { Edge, type EdgeAddresses, type EdgeOptions } from './edge/edge.js';
import { createLogger } from './app/observability/logger.js';

/** Everything `Edge` takes except the logger, which the thread makes for itself at this level. */
export interface EdgeThreadOptions extends Omit<EdgeOptions, 'logger'> {
  logLevel: string;
}

export type EdgeStats = ReturnType<Edge['stats']>;

export interface EdgeThread {
  readonly addresses: EdgeAddresses;
  /** Stops the edge (listeners closed, apps disconnected) and ends the thread. */
  stop(): Promise<void>;
  /** The edge's counters (dialogs, transactions, connected apps). */
  stats(): Promise<EdgeStats>;
  /**
   * Runs a full GC in the edge thread when node was started with --expose-gc (diagnostics, benchmarks); resolves
   * with the thread's V8 heap in use after it, in bytes.
   */
  collectGarbage(): Promise<number>;
}

export interface StartEdgeThreadOptions {
  /** the thread died after it started (an uncaught exception in the edge, or it exited): the process must not run on */
  onFailure: (err: Error) => void;
  /** script the worker runs; it must call runEdgeThread(). Defaults to edge-thread-main next to this module. */
  entry?: URL;
}

/** What the edge thread was started with: how the worker knows it is one. */
interface EdgeThreadData {
  dialcoreEdge: EdgeThreadOptions;
}

type ToEdgeThread = { type: 'stop' } | { type: 'stats'; id: number } | { type: 'gc'; id: number };
type FromEdgeThread =
  | { type: 'started'; addresses: EdgeAddresses }
  | { type: 'start-failed'; name: string; message: string }
  | { type: 'stopped' }
  | { type: 'stats'; id: number; stats: EdgeStats }
  | { type: 'gc'; id: number; heapUsedBytes: number };

const STOP_TIMEOUT_MS = 5000;
const REQUEST_TIMEOUT_MS = 10_000;

function defaultEntry(): URL {
  // edge-thread-main.js next to the compiled module, edge-thread-main.ts when running from source
  return new URL(`./edge-thread-main${extname(fileURLToPath(import.meta.url))}`, import.meta.url);
}

/**
 * A Worker for `entry`. When it is TypeScript (running from source, as bin/dialcore.js does without dist/), the
 * worker first registers tsx's loader in its own thread, then imports it.
 */
function createWorker(entry: URL, data: EdgeThreadData): Worker {
  if (!entry.pathname.endsWith('.ts')) return new Worker(entry, { workerData: data });
  const source = `import('tsx/esm/api').then(({ register }) => { register(); return import(${JSON.stringify(entry.href)}); })`;
  return new Worker(source, { eval: true, workerData: data });
}

/** Starts the edge on its own thread; resolves once it listens (rejects with the edge's own error if it can't). */
export function startEdgeThread(options: EdgeThreadOptions, control: StartEdgeThreadOptions): Promise<EdgeThread> {
  const entry = control.entry ?? defaultEntry();
  const data: EdgeThreadData = { dialcoreEdge: options };
  const worker = createWorker(entry, data);
  let stopping = false;
  let started = false;
  let exited = false;
  let nextId = 1;
  const pending = new Map<number, (reply: FromEdgeThread) => void>();

  const ask = <T extends FromEdgeThread['type']>(type: 'stats' | 'gc'): Promise<Extract<FromEdgeThread, { type: T }>> =>
    new Promise((resolve, reject) => {
      if (exited) return reject(new Error('the edge thread has exited'));
      const id = nextId++;
      const timer = setTimeout(() => {
        pending.delete(id);
        reject(new Error(`edge thread did not answer "${type}" within ${REQUEST_TIMEOUT_MS} ms`));
      }, REQUEST_TIMEOUT_MS);
      pending.set(id, (reply) => {
        clearTimeout(timer);
        resolve(reply as Extract<FromEdgeThread, { type: T }>);
      });
      worker.postMessage({ type, id } satisfies ToEdgeThread);
    });

  return new Promise<EdgeThread>((resolve, reject) => {
    let stopped: (() => void) | undefined;
    worker.on('message', (message: FromEdgeThread) => {
      switch (message.type) {
        case 'started':
          started = true;
          resolve({
            addresses: message.addresses,
            stats: async () => (await ask<'stats'>('stats')).stats,
            collectGarbage: async () => (await ask<'gc'>('gc')).heapUsedBytes,
            stop: () => {
              if (stopping || exited) return Promise.resolve();
              stopping = true;
              const done = new Promise<void>((finish) => {
                stopped = finish;
                setTimeout(finish, STOP_TIMEOUT_MS).unref();
              });
              worker.postMessage({ type: 'stop' } satisfies ToEdgeThread);
              return done.then(() => worker.terminate()).then(() => undefined);
            },
          });
          break;
        case 'start-failed': {
          stopping = true;
          const err = new Error(message.message);
          err.name = message.name;
          reject(err);
          void worker.terminate();
          break;
        }
        case 'stopped':
          stopped?.();
          break;
        case 'stats':
        case 'gc':
          pending.get(message.id)?.(message);
          pending.delete(message.id);
          break;
      }
    });
    /** after the start: reported once ('error' is followed by 'exit'), and not while stopping */
    let failed = false;
    const fail = (err: Error): void => {
      if (failed || stopping) return;
      failed = true;
      control.onFailure(err);
    };
    worker.on('error', (err) => {
      // an uncaught exception ends the worker ('exit' follows)
      exited = true;
      if (!started) {
        stopping = true;
        reject(err);
      } else {
        fail(err);
      }
    });
    worker.on('exit', (code) => {
      exited = true;
      stopped?.();
      if (!started) reject(new Error(`edge thread exited (code ${code}) before it listened`));
      else fail(new Error(`edge thread exited unexpectedly (code ${code})`));
    });
  });
}

/** Whether this thread is an edge thread started by startEdgeThread (a bundle that is also its own entry checks this). */
export function isEdgeThread(): boolean {
  return !isMainThread && typeof (workerData as Partial<EdgeThreadData> | null)?.dialcoreEdge === 'object';
}

/** The worker's side: start the edge from workerData, report, and serve stop / stats / gc from the main thread. */
export function runEdgeThread(): void {
  if (!isEdgeThread() || parentPort === null) throw new Error('runEdgeThread: not an edge thread started by startEdgeThread');
  const port: MessagePort = parentPort;
  const { logLevel, ...edgeOptions } = (workerData as EdgeThreadData).dialcoreEdge;
  const logger = createLogger({ level: logLevel }).child({ component: 'edge', thread: threadId });
  const edge = new Edge({ ...edgeOptions, logger });
  const send = (message: FromEdgeThread): void => port.postMessage(message);

  port.on('message', (message: ToEdgeThread) => {
    switch (message.type) {
      case 'stop':
        void edge.stop().catch((err: unknown) => logger.warn({ err }, 'edge stop failed')).finally(() => {
          send({ type: 'stopped' });
          port.close();
        });
        break;
      case 'stats':
        send({ type: 'stats', id: message.id, stats: edge.stats() });
        break;
      case 'gc':
        (globalThis as { gc?: () => void }).gc?.();
        send({ type: 'gc', id: message.id, heapUsedBytes: getHeapStatistics().used_heap_size });
        break;
    }
  });
  edge.start().then(
    (addresses) => send({ type: 'started', addresses }),
    (err: unknown) => {
      const error = err instanceof Error ? err : new Error(String(err));
      send({ type: 'start-failed', name: error.name, message: error.message });
      port.close();
    },
  );
}
