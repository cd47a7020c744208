/**
 * A throw-away userspace rtpengine for one test file, on 127.0.0.1 with its own ng port
 * and its own media port range (see shared/reference/media-and-test-peers.md):
 *
 *   const rtpengine = await startRtpengine();   // { host, ngPort, portMin, portMax, ... }
 *   ...
 *   await rtpengine.stop();
 *
 * `--config-file=none` keeps /etc/rtpengine/rtpengine.conf out; `--table=-1` = no kernel
 * forwarding. Readiness is an ng `ping` answered with `pong`, sent with rtpengine-client's
 * UDP Client (the application's typed wrapper lives in src/app/media; this is only a probe).
 */
import { createRequire } from 'node:module';
import { freePort, freePortRange, releasePort } from './ports.js';
import { spawnService, startupError, waitUntil } from './service.js';

const HOST = '127.0.0.1';

export interface RtpengineServer {
  readonly host: string;
  /** ng control port (UDP). */
  readonly ngPort: number;
  /** ng control over TCP, when asked for with `tcpNg: true`. */
  readonly tcpNgPort?: number;
  /** Media port range given to rtpengine (inclusive). */
  readonly portMin: number;
  readonly portMax: number;
  /** Where rtpengine sends DTMF events as UDP JSON, when asked for. */
  readonly dtmfLogPort?: number;
  /** The rtpengine process (for CPU readings in benches). */
  readonly pid: number;
  /** Call-ids rtpengine holds now (ng `list`, at most 1000). */
  callIds(): Promise<string[]>;
  stop(): Promise<void>;
  log(): string;
}

export interface RtpengineOptions {
  /** Number of media ports (at most 1000). Default 100 = 50 RTP/RTCP pairs. */
  mediaPorts?: number;
  /** Also listen for ng over TCP. */
  tcpNg?: boolean;
  /** `--dtmf-log-dest=127.0.0.1:<port>`: the test listens there for DTMF events. */
  dtmfLogPort?: number;
  /** Extra command-line arguments. */
  extraArgs?: readonly string[];
}

/** The part of rtpengine-client's UDP Client used here (the package ships no types). */
interface NgUdpClient {
  ping(destination: { port: number; host: string }): Promise<unknown>;
  list(destination: { port: number; host: string }, options: Record<string, unknown>): Promise<unknown>;
  on(event: 'error', listener: (err: unknown) => void): unknown;
  close(): void;
}
type NgUdpClientConstructor = new (options: { localAddress: string; localPort: number; timeout: number }) => NgUdpClient;

function loadNgUdpClient(): NgUdpClientConstructor {
  const require = createRequire(import.meta.url);
  const exported: unknown = require('rtpengine-client');
  if (typeof exported === 'object' && exported !== null && 'Client' in exported && typeof exported.Client === 'function') {
    return exported.Client as NgUdpClientConstructor;
  }
  throw new Error('rtpengine-client does not export Client');
}

/** Sends one ng ping; true when rtpengine answers `result: pong`. */
export async function rtpengineAnswersPing(ngPort: number, host = HOST, timeoutMs = 500): Promise<boolean> {
  const Client = loadNgUdpClient();
  const client = new Client({ localAddress: HOST, localPort: 0, timeout: timeoutMs });
  client.on('error', () => undefined); // late or uncorrelated replies: the ping result decides
  try {
    const reply = await client.ping({ port: ngPort, host });
    return typeof reply === 'object' && reply !== null && 'result' in reply && reply.result === 'pong';
  } catch {
    return false;
  } finally {
    client.close();
  }
}

export async function startRtpengine(options: RtpengineOptions = {}): Promise<RtpengineServer> {
  const mediaPorts = options.mediaPorts ?? 100;
  const ngPort = await freePort();
  const tcpNgPort = options.tcpNg ? await freePort() : undefined;
  const range = await freePortRange(mediaPorts);
  const args = [
    '--config-file=none',
    '--table=-1',
    `--interface=${HOST}`,
    `--listen-ng=${HOST}:${ngPort}`,
    `--port-min=${range.min}`,
    `--port-max=${range.max}`,
    '--foreground',
    '--log-stderr',
    '--pidfile=rtpengine.pid', // in the service's temp dir
  ];
  if (tcpNgPort !== undefined) args.push(`--listen-tcp-ng=${HOST}:${tcpNgPort}`);
  if (options.dtmfLogPort !== undefined) args.push(`--dtmf-log-dest=${HOST}:${options.dtmfLogPort}`);
  args.push(...(options.extraArgs ?? []));

  const service = spawnService({ name: 'rtpengine', command: 'rtpengine', args });
  try {
    await waitUntil(async () => !service.running() || (await rtpengineAnswersPing(ngPort)), {
      timeoutMs: 15_000,
      intervalMs: 100,
      what: `rtpengine ng ping on ${HOST}:${ngPort}`,
    });
  } catch {
    await service.stop({ keepDir: true });
    releasePort(range);
    throw startupError(service, `did not answer ng ping on ${HOST}:${ngPort}`);
  }
  if (!service.running()) {
    releasePort(range);
    throw startupError(service, 'exited during start-up');
  }

  return {
    host: HOST,
    ngPort,
    tcpNgPort,
    portMin: range.min,
    portMax: range.max,
    dtmfLogPort: options.dtmfLogPort,
    pid: service.pid,
    async callIds() {
      const Client = loadNgUdpClient();
      const client = new Client({ localAddress: HOST, localPort: 0, timeout: 2000 });
      client.on('error', () => undefined);
      try {
        const reply = await client.list({ port: ngPort, host: HOST }, { limit: 1000 });
        const calls = typeof reply === 'object' && reply !== null && 'calls' in reply ? reply.calls : undefined;
        return Array.isArray(calls) ? calls.map(String) : [];
      } finally {
        client.close();
      }
    },
    async stop() {
      await service.stop();
      releasePort(range);
    },
    log: () => service.log(),
  };
}
