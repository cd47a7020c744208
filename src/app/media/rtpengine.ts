/**
 * The one typed wrapper over rtpengine's ng control protocol, spoken through rtpengine-client's
 * UDP `Client` (the package ships no types and is CommonJS; its TcpClient and WsClient have
 * defects, see shared/reference/media-and-test-peers.md, so only the UDP Client is used).
 *
 * - Types for the ng commands dialcore sends (request option shapes and validated replies).
 * - `RtpenginePool`: engines from config ("host:port"), periodic ng ping, an engine is unhealthy
 *   after N consecutive failures (timeouts or send errors), new calls go to a healthy engine
 *   (round robin) and fail over to the next one, a call sticks to the engine that took its
 *   offer (bounded call-id -> engine map, forgotten on delete), every ng request has a timeout,
 *   and latency/health land in prom-client metrics on the Registry passed in.
 *
 * rtpengine replies are validated before use: the engine is a peer on the network like any other.
 */
import { createRequire } from 'node:module';
import { isIP } from 'node:net';
import { Gauge, Histogram, Registry } from 'prom-client';
import type { Logger } from 'pino';

// ---------------------------------------------------------------------------------------------
// ng protocol types
// ---------------------------------------------------------------------------------------------

export type TransportProtocol =
  | 'RTP/AVP'
  | 'RTP/SAVP'
  | 'RTP/AVPF'
  | 'RTP/SAVPF'
  | 'UDP/TLS/RTP/SAVP'
  | 'UDP/TLS/RTP/SAVPF';

/** `ICE` option: remove candidates, force rtpengine's own, leave as is, ... */
export type IceOption = 'remove' | 'force' | 'default' | 'force-relay' | 'optional';
/** `DTLS` option. Leaving it out keeps rtpengine's default role (it answers `a=setup:active`). */
export type DtlsOption = 'off' | 'no' | 'disable' | 'passive' | 'active';
/** `SDES` entries. Must be sent as a list: a plain string `'off'` is ignored by rtpengine 10.5. */
export type SdesOption = 'off' | 'no' | 'unencrypted_srtp' | 'unencrypted_srtcp' | 'unauthenticated_srtp' | 'pad';
export type RtcpMuxOption = 'offer' | 'require' | 'demux' | 'accept' | 'reject';
export type ReplaceOption =
  | 'origin'
  | 'session-connection'
  | 'session-name'
  | 'SDP-version'
  | 'username'
  | 'zero-address'
  | 'force-increment-sdp-ver';

/** Flags dialcore uses; rtpengine knows more, hence the open string tail. */
export type NgFlag =
  | 'trust-address'
  | 'symmetric'
  | 'asymmetric'
  | 'generate mid'
  | 'inject DTMF'
  | 'detect DTMF'
  | 'strict-source'
  | 'media-handover'
  | 'port-latching'
  | 'record-call'
  | 'always-transcode'
  | 'single-codec'
  | 'strip-extmap'
  | 'original-sendrecv'
  | 'all'
  | (string & {});

/** `codec` dictionary: codec names as in rtpmap (`PCMU`, `opus`, `telephone-event`). */
export interface CodecOptions {
  strip?: string[];
  offer?: string[];
  transcode?: string[];
  mask?: string[];
  accept?: string[];
  consume?: string[];
  except?: string[];
  set?: string[];
}

/** Options shaping the SDP rtpengine writes (offer and answer). */
export interface NgMediaOptions {
  flags?: NgFlag[];
  replace?: ReplaceOption[];
  'transport-protocol'?: TransportProtocol;
  ICE?: IceOption;
  DTLS?: DtlsOption;
  SDES?: SdesOption[];
  'rtcp-mux'?: RtcpMuxOption[];
  codec?: CodecOptions;
  /** Interface names for the two sides, when rtpengine has several. */
  direction?: [string, string];
  'record call'?: 'yes' | 'no';
  'media address'?: string;
  ptime?: number;
}

export interface NgCallRef {
  'call-id': string;
  'from-tag'?: string;
  'to-tag'?: string;
  'via-branch'?: string;
  label?: string;
}

export interface NgOfferRequest extends NgCallRef, NgMediaOptions {
  'from-tag': string;
  sdp: string;
}

export interface NgAnswerRequest extends NgCallRef, NgMediaOptions {
  'from-tag': string;
  'to-tag': string;
  sdp: string;
}

export interface NgDeleteRequest extends NgCallRef {
  /** Seconds rtpengine keeps the call after delete (its default is 30); dialcore sends 0. */
  'delete-delay'?: number;
  flags?: ('fatal' | (string & {}))[];
}

export type NgQueryRequest = NgCallRef;

/**
 * `play media`: plays a file to the party named by `from-tag`. `blob` is deliberately absent:
 * rtpengine-client corrupts binary blobs (string join).
 */
export interface NgPlayMediaRequest extends NgCallRef {
  'from-tag': string;
  file?: string;
  'db-id'?: number;
  'repeat-times'?: number;
  'start-pos'?: number;
  duration?: number;
}

export interface NgStopMediaRequest extends NgCallRef {
  'from-tag': string;
}

/** `play DTMF` (needs `inject DTMF` in offer and answer, and RTP already flowing). */
export interface NgPlayDtmfRequest extends NgCallRef {
  code: string;
  /** ms */
  duration?: number;
  /** dBm0, positive number = negative level */
  volume?: number;
  /** ms between digits */
  pause?: number;
}

export interface NgBlockDtmfRequest extends NgCallRef {
  flags?: ('detect DTMF' | 'all' | (string & {}))[];
  'DTMF-security'?: 'drop' | 'silence' | 'tone' | 'zero' | 'DTMF' | 'random' | 'off';
}

export type NgUnblockDtmfRequest = NgCallRef;
/** `block media` / `silence media` (and their `un` forms): media *from* the party named by `from-tag`. */
export interface NgMediaControlRequest extends NgCallRef {
  'from-tag': string;
}
export type NgRecordingRequest = NgCallRef;

/** Every ng reply: `result` is `ok`/`pong`; `error` replies become `RtpengineError`s. */
export interface NgReply {
  result: 'ok' | 'pong';
  warning?: string;
  /** All other members, unvalidated. */
  fields: Readonly<Record<string, unknown>>;
}

export interface NgSdpReply extends NgReply {
  sdp: string;
}

export interface NgQueryReply extends NgReply {
  created?: number;
  /** Monologues by tag (shape as rtpengine sends it; unvalidated). */
  tags: Readonly<Record<string, unknown>>;
}

/** The commands and their request/reply types. */
export interface NgCommands {
  ping: { request: Record<string, never>; reply: NgReply };
  offer: { request: NgOfferRequest; reply: NgSdpReply };
  answer: { request: NgAnswerRequest; reply: NgSdpReply };
  delete: { request: NgDeleteRequest; reply: NgReply };
  query: { request: NgQueryRequest; reply: NgQueryReply };
  'play media': { request: NgPlayMediaRequest; reply: NgReply };
  'stop media': { request: NgStopMediaRequest; reply: NgReply };
  'play DTMF': { request: NgPlayDtmfRequest; reply: NgReply };
  'block DTMF': { request: NgBlockDtmfRequest; reply: NgReply };
  'unblock DTMF': { request: NgUnblockDtmfRequest; reply: NgReply };
  'block media': { request: NgMediaControlRequest; reply: NgReply };
  'unblock media': { request: NgMediaControlRequest; reply: NgReply };
  'silence media': { request: NgMediaControlRequest; reply: NgReply };
  'unsilence media': { request: NgMediaControlRequest; reply: NgReply };
  'start recording': { request: NgRecordingRequest; reply: NgReply };
  'stop recording': { request: NgRecordingRequest; reply: NgReply };
}
export type NgCommand = keyof NgCommands;

/** rtpengine-client's method name for each ng command. */
const CLIENT_METHOD: Record<NgCommand, string> = {
  ping: 'ping',
  offer: 'offer',
  answer: 'answer',
  delete: 'delete',
  query: 'query',
  'play media': 'playMedia',
  'stop media': 'stopMedia',
  'play DTMF': 'playDTMF',
  'block DTMF': 'blockDTMF',
  'unblock DTMF': 'unblockDTMF',
  'block media': 'blockMedia',
  'unblock media': 'unblockMedia',
  'silence media': 'silenceMedia',
  'unsilence media': 'unsilenceMedia',
  'start recording': 'startRecording',
  'stop recording': 'stopRecording',
};

export type RtpengineErrorKind =
  /** rtpengine answered `result: error` (the engine is alive; e.g. unknown call-id, bad SDP). */
  | 'error-reply'
  /** rtpengine answered `result: load limit`. */
  | 'load-limit'
  /** no reply within the request timeout. */
  | 'timeout'
  /** the datagram could not be sent. */
  | 'transport'
  /** a reply that is not a valid ng reply. */
  | 'protocol'
  /** no healthy engine in the pool, or the call's engine is gone. */
  | 'unavailable';

export class RtpengineError extends Error {
  constructor(
    readonly kind: RtpengineErrorKind,
    message: string,
    readonly command?: NgCommand,
    readonly engine?: string,
    /** rtpengine's `error-reason`, for `error-reply`. */
    readonly reason?: string,
  ) {
    super(message);
    this.name = 'RtpengineError';
  }

  /** rtpengine does not know the call (deleted, never created, or timed out on its side). */
  get isUnknownCall(): boolean {
    return this.kind === 'error-reply' && /unknown call-id/i.test(this.reason ?? '');
  }

  /** The engine did not answer (counts against its health; a new call may go elsewhere). */
  get engineUnreachable(): boolean {
    return this.kind === 'timeout' || this.kind === 'transport';
  }
}

// ---------------------------------------------------------------------------------------------
// rtpengine-client (CommonJS, untyped): the part used here
// ---------------------------------------------------------------------------------------------

interface NgDestination {
  host: string;
  port: number;
}

interface UdpNgClient {
  on(event: 'error', listener: (err: unknown) => void): unknown;
  close(): void;
  [method: string]: unknown;
}

type UdpNgClientConstructor = new (options: {
  localAddress?: string;
  localPort: number;
  timeout: number;
}) => UdpNgClient;

function loadUdpNgClient(): UdpNgClientConstructor {
  const require = createRequire(import.meta.url);
  const exported: unknown = require('rtpengine-client');
  if (typeof exported === 'object' && exported !== null && 'Client' in exported && typeof exported.Client === 'function') {
    return exported.Client as UdpNgClientConstructor;
  }
  throw new Error('rtpengine-client does not export a Client constructor');
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value) && !Buffer.isBuffer(value);
}

/** Turns a raw ng reply into a typed one, or an RtpengineError. Never throws anything else. */
export function parseNgReply<C extends NgCommand>(
  command: C,
  raw: unknown,
  engine?: string,
): NgCommands[C]['reply'] | RtpengineError {
  if (!isRecord(raw)) return new RtpengineError('protocol', `rtpengine ${command}: reply is not a dictionary`, command, engine);
  const result = raw.result;
  const warning = typeof raw.warning === 'string' ? raw.warning : undefined;
  if (result === 'error') {
    const reason = typeof raw['error-reason'] === 'string' ? raw['error-reason'] : 'unspecified error';
    return new RtpengineError('error-reply', `rtpengine ${command} failed: ${reason}`, command, engine, reason);
  }
  if (result === 'load limit') {
    return new RtpengineError('load-limit', `rtpengine ${command}: load limit reached`, command, engine);
  }
  const expected = command === 'ping' ? 'pong' : 'ok';
  if (result !== expected) {
    return new RtpengineError('protocol', `rtpengine ${command}: unexpected result ${JSON.stringify(result)}`, command, engine);
  }
  const base: NgReply = { result: expected, warning, fields: raw };
  if (command === 'offer' || command === 'answer') {
    if (typeof raw.sdp !== 'string' || raw.sdp.length === 0) {
      return new RtpengineError('protocol', `rtpengine ${command}: reply has no sdp`, command, engine);
    }
    const reply: NgSdpReply = { ...base, sdp: raw.sdp };
    return reply as NgCommands[C]['reply'];
  }
  if (command === 'query') {
    const reply: NgQueryReply = {
      ...base,
      created: typeof raw.created === 'number' ? raw.created : undefined,
      tags: isRecord(raw.tags) ? raw.tags : {},
    };
    return reply as NgCommands[C]['reply'];
  }
  return base as NgCommands[C]['reply'];
}

// ---------------------------------------------------------------------------------------------
// Pool
// ---------------------------------------------------------------------------------------------

export interface RtpenginePoolOptions {
  /** ng UDP addresses: "host:port", "[v6]:port". */
  engines: readonly string[];
  /** Interval between health pings to each engine; 0 disables periodic pings. Default 5000. */
  pingIntervalMs?: number;
  /** Consecutive failures (ping or request timeouts/send errors) that make an engine unhealthy. Default 3. */
  failuresBeforeUnhealthy?: number;
  /** Timeout of every ng request. Default 2000. */
  requestTimeoutMs?: number;
  /** Bound on the call-id -> engine map (oldest entries evicted). Default 100000. */
  maxTrackedCalls?: number;
  /** Local address of the ng socket; default 127.0.0.1 when every engine is on loopback, else any. */
  localAddress?: string;
  /** Metrics go here (the app passes src/app/observability/metrics.ts's registry). */
  registry?: Registry;
  logger?: Logger;
}

export interface EngineStatus {
  /** "host:port" */
  readonly id: string;
  readonly healthy: boolean;
  readonly consecutiveFailures: number;
  readonly lastError?: string;
  /** Calls in this pool's call-id map that live on this engine. */
  readonly calls: number;
}

interface Engine {
  readonly id: string;
  readonly destination: NgDestination;
  healthy: boolean;
  consecutiveFailures: number;
  lastError?: string;
  calls: number;
}

/** Parses "host:port" / "[v6]:port"; error message names the bad entry. */
export function parseEngineAddress(entry: string): NgDestination | string {
  const match = /^\[([0-9a-fA-F:.]+)\]:(\d{1,5})$/.exec(entry) ?? /^([^:\s[\]]+):(\d{1,5})$/.exec(entry);
  if (!match) return `rtpengine address "${entry}" is not host:port`;
  const host = match[1]!;
  const port = Number(match[2]);
  if (port < 1 || port > 65535) return `rtpengine address "${entry}": port out of range`;
  if (entry.startsWith('[') && isIP(host) !== 6) return `rtpengine address "${entry}": bad IPv6 address`;
  return { host, port };
}

const NG_DURATION = 'dialcore_rtpengine_ng_request_duration_seconds';
const ENGINE_HEALTHY = 'dialcore_rtpengine_engine_healthy';
const TRACKED_CALLS = 'dialcore_rtpengine_tracked_calls';

function histogramOn(registry: Registry): Histogram<'engine' | 'command' | 'outcome'> {
  const existing = registry.getSingleMetric(NG_DURATION);
  if (existing instanceof Histogram) return existing as Histogram<'engine' | 'command' | 'outcome'>;
  return new Histogram({
    name: NG_DURATION,
    help: 'rtpengine ng request latency by engine, command and outcome (ok, error, timeout, ...)',
    labelNames: ['engine', 'command', 'outcome'] as const,
    buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
    registers: [registry],
  });
}

function gaugeOn<L extends string>(registry: Registry, name: string, help: string, labelNames: readonly L[]): Gauge<L> {
  const existing = registry.getSingleMetric(name);
  if (existing instanceof Gauge) return existing as Gauge<L>;
  return new Gauge({ name, help, labelNames, registers: [registry] });
}

/**
 * A pool of rtpengines. Create, `start()` (first ping at once, then every pingIntervalMs),
 * `close()` at shutdown.
 */
export class RtpenginePool {
  private readonly engines: Engine[];
  private readonly client: UdpNgClient;
  private readonly callEngines = new Map<string, Engine>();
  private readonly pingIntervalMs: number;
  private readonly failuresBeforeUnhealthy: number;
  private readonly maxTrackedCalls: number;
  private readonly logger?: Logger;
  private readonly latency: Histogram<'engine' | 'command' | 'outcome'>;
  private readonly healthGauge: Gauge<'engine'>;
  private readonly trackedGauge: Gauge<'pool'>;
  private readonly poolLabel: string;
  private pingTimer?: NodeJS.Timeout;
  private nextEngine = 0;
  private closed = false;

  constructor(options: RtpenginePoolOptions) {
    if (options.engines.length === 0) throw new Error('rtpengine pool: engines must list at least one host:port');
    this.engines = options.engines.map((entry, index) => {
      const destination = parseEngineAddress(entry);
      if (typeof destination === 'string') throw new Error(`rtpengine pool: engines[${index}]: ${destination}`);
      const id = destination.host.includes(':') ? `[${destination.host}]:${destination.port}` : `${destination.host}:${destination.port}`;
      return { id, destination, healthy: true, consecutiveFailures: 0, calls: 0 };
    });
    this.pingIntervalMs = options.pingIntervalMs ?? 5000;
    this.failuresBeforeUnhealthy = Math.max(1, options.failuresBeforeUnhealthy ?? 3);
    this.maxTrackedCalls = Math.max(1, options.maxTrackedCalls ?? 100_000);
    this.logger = options.logger;
    this.poolLabel = this.engines.map((e) => e.id).join(',');

    const registry = options.registry ?? new Registry();
    this.latency = histogramOn(registry);
    this.healthGauge = gaugeOn(registry, ENGINE_HEALTHY, 'rtpengine health as seen by this instance (1 healthy, 0 not)', ['engine'] as const);
    this.trackedGauge = gaugeOn(registry, TRACKED_CALLS, 'Calls whose media is on an rtpengine of this pool', ['pool'] as const);
    for (const engine of this.engines) this.healthGauge.set({ engine: engine.id }, 1);
    this.trackedGauge.set({ pool: this.poolLabel }, 0);

    const allLoopback = this.engines.every((e) => e.destination.host === '127.0.0.1' || e.destination.host === 'localhost');
    const localAddress = options.localAddress ?? (allLoopback ? '127.0.0.1' : undefined);
    const Client = loadUdpNgClient();
    this.client = new Client({ localAddress, localPort: 0, timeout: Math.max(1, options.requestTimeoutMs ?? 2000) });
    // Late replies (after a timeout) and stray datagrams surface as 'error' events: never fatal.
    this.client.on('error', (err) => {
      this.logger?.debug({ err: err instanceof Error ? err.message : String(err) }, 'rtpengine-client error event');
    });
  }

  /** Pings every engine now, then every pingIntervalMs. */
  start(): void {
    if (this.closed || this.pingTimer) return;
    void this.pingAll();
    if (this.pingIntervalMs > 0) {
      this.pingTimer = setInterval(() => void this.pingAll(), this.pingIntervalMs);
      this.pingTimer.unref();
    }
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    if (this.pingTimer) clearInterval(this.pingTimer);
    this.pingTimer = undefined;
    try {
      this.client.close();
    } catch {
      // already closed
    }
  }

  status(): EngineStatus[] {
    return this.engines.map((e) => ({
      id: e.id,
      healthy: e.healthy,
      consecutiveFailures: e.consecutiveFailures,
      lastError: e.lastError,
      calls: e.calls,
    }));
  }

  /** Calls currently mapped to an engine. */
  get trackedCalls(): number {
    return this.callEngines.size;
  }

  /** The engine ("host:port") holding a call's media, if this pool placed it. */
  engineOf(callId: string): string | undefined {
    return this.callEngines.get(callId)?.id;
  }

  /** Pings every engine once; resolves when all have answered or failed. */
  async pingAll(): Promise<void> {
    await Promise.all(
      this.engines.map(async (engine) => {
        try {
          await this.send(engine, 'ping', {});
        } catch {
          // recorded in the engine's health
        }
      }),
    );
  }

  /** Pings one engine (by id), for probes. */
  async ping(engineId: string): Promise<NgReply> {
    const engine = this.engines.find((e) => e.id === engineId);
    if (!engine) throw new RtpengineError('unavailable', `rtpengine ${engineId} is not in the pool`, 'ping');
    return this.send(engine, 'ping', {});
  }

  /**
   * offer: a call already placed goes to its engine (re-INVITE); a new call goes to the next
   * healthy engine, and to the one after it if that engine does not answer or is at its load limit.
   */
  async offer(request: NgOfferRequest): Promise<NgSdpReply> {
    const callId = request['call-id'];
    const placed = this.callEngines.get(callId);
    if (placed) return this.send(placed, 'offer', request);

    const candidates = this.healthyEnginesInTurn();
    if (candidates.length === 0) throw this.noHealthyEngine('offer');
    let lastError: RtpengineError | undefined;
    for (const engine of candidates) {
      try {
        const reply = await this.send(engine, 'offer', request);
        this.track(callId, engine);
        return reply;
      } catch (err) {
        const error = asRtpengineError(err, 'offer', engine.id);
        if (!error.engineUnreachable && error.kind !== 'load-limit') throw error;
        lastError = error;
        if (error.engineUnreachable) {
          // The offer may have reached it: make sure no orphan session stays there.
          void this.send(engine, 'delete', { 'call-id': callId, 'delete-delay': 0 }).catch(() => undefined);
        }
        this.logger?.warn({ engine: engine.id, callId, err: error.message }, 'rtpengine offer failed, trying another engine');
      }
    }
    throw new RtpengineError(
      'unavailable',
      `no rtpengine took the offer (last error: ${lastError?.message ?? 'none'})`,
      'offer',
    );
  }

  answer(request: NgAnswerRequest): Promise<NgSdpReply> {
    return this.send(this.engineOfCall(request['call-id'], 'answer'), 'answer', request);
  }

  /**
   * delete: the whole call (all tags) with no delete delay, on its engine; the mapping is
   * forgotten whatever the outcome. A call this pool does not know (mapping evicted) is deleted
   * on every healthy engine. An already gone call is not an error.
   */
  async delete(request: NgDeleteRequest): Promise<void> {
    const callId = request['call-id'];
    const placed = this.callEngines.get(callId);
    this.untrack(callId);
    const full: NgDeleteRequest = { 'delete-delay': 0, ...request };
    const targets = placed ? [placed] : this.engines.filter((e) => e.healthy);
    const outcomes = await Promise.allSettled(targets.map((engine) => this.send(engine, 'delete', full)));
    const failure = outcomes.find(
      (o): o is PromiseRejectedResult => o.status === 'rejected' && !asRtpengineError(o.reason, 'delete').isUnknownCall,
    );
    if (placed && failure) throw asRtpengineError(failure.reason, 'delete', placed.id);
  }

  /**
   * query: on the call's engine; a call this pool does not track (deleted, evicted) is asked of
   * every healthy engine, and rejects with an `isUnknownCall` error when none has it.
   */
  async query(request: NgQueryRequest): Promise<NgQueryReply> {
    const placed = this.callEngines.get(request['call-id']);
    if (placed) return this.send(placed, 'query', request);
    const healthy = this.engines.filter((e) => e.healthy);
    if (healthy.length === 0) throw this.noHealthyEngine('query');
    const outcomes = await Promise.allSettled(healthy.map((engine) => this.send(engine, 'query', request)));
    const found = outcomes.find((o): o is PromiseFulfilledResult<NgQueryReply> => o.status === 'fulfilled');
    if (found) return found.value;
    const reasons = outcomes.map((o) => asRtpengineError((o as PromiseRejectedResult).reason, 'query'));
    throw reasons.find((e) => !e.isUnknownCall) ?? reasons[0]!;
  }

  playMedia(request: NgPlayMediaRequest): Promise<NgReply> {
    return this.send(this.engineOfCall(request['call-id'], 'play media'), 'play media', request);
  }

  stopMedia(request: NgStopMediaRequest): Promise<NgReply> {
    return this.send(this.engineOfCall(request['call-id'], 'stop media'), 'stop media', request);
  }

  playDtmf(request: NgPlayDtmfRequest): Promise<NgReply> {
    return this.send(this.engineOfCall(request['call-id'], 'play DTMF'), 'play DTMF', request);
  }

  blockDtmf(request: NgBlockDtmfRequest): Promise<NgReply> {
    return this.send(this.engineOfCall(request['call-id'], 'block DTMF'), 'block DTMF', request);
  }

  unblockDtmf(request: NgUnblockDtmfRequest): Promise<NgReply> {
    return this.send(this.engineOfCall(request['call-id'], 'unblock DTMF'), 'unblock DTMF', request);
  }

  /** block / unblock / silence / unsilence media from `from-tag` (mute, hold). */
  controlMedia(command: 'block media' | 'unblock media' | 'silence media' | 'unsilence media', request: NgMediaControlRequest): Promise<NgReply> {
    return this.send(this.engineOfCall(request['call-id'], command), command, request);
  }

  startRecording(request: NgRecordingRequest): Promise<NgReply> {
    return this.send(this.engineOfCall(request['call-id'], 'start recording'), 'start recording', request);
  }

  stopRecording(request: NgRecordingRequest): Promise<NgReply> {
    return this.send(this.engineOfCall(request['call-id'], 'stop recording'), 'stop recording', request);
  }

  // -------------------------------------------------------------------------------------------

  private engineOfCall(callId: string, command: NgCommand): Engine {
    const engine = this.callEngines.get(callId);
    if (!engine) {
      throw new RtpengineError('unavailable', `rtpengine ${command}: call ${callId} has no media session in this pool`, command);
    }
    return engine;
  }

  private healthyEnginesInTurn(): Engine[] {
    const count = this.engines.length;
    const start = this.nextEngine % count;
    this.nextEngine = (start + 1) % count;
    const ordered: Engine[] = [];
    for (let i = 0; i < count; i++) {
      const engine = this.engines[(start + i) % count]!;
      if (engine.healthy) ordered.push(engine);
    }
    return ordered;
  }

  private noHealthyEngine(command: NgCommand): RtpengineError {
    const detail = this.engines.map((e) => `${e.id}: ${e.lastError ?? 'unhealthy'}`).join('; ');
    return new RtpengineError('unavailable', `no healthy rtpengine in the pool (${detail})`, command);
  }

  private track(callId: string, engine: Engine): void {
    if (this.callEngines.size >= this.maxTrackedCalls) {
      const oldest = this.callEngines.keys().next();
      if (!oldest.done) {
        this.logger?.warn({ callId: oldest.value }, 'rtpengine call map full: forgetting the oldest call');
        this.untrack(oldest.value);
      }
    }
    this.callEngines.set(callId, engine);
    engine.calls++;
    this.trackedGauge.set({ pool: this.poolLabel }, this.callEngines.size);
  }

  private untrack(callId: string): void {
    const engine = this.callEngines.get(callId);
    if (!engine) return;
    this.callEngines.delete(callId);
    engine.calls--;
    this.trackedGauge.set({ pool: this.poolLabel }, this.callEngines.size);
  }

  private recordSuccess(engine: Engine): void {
    engine.consecutiveFailures = 0;
    engine.lastError = undefined;
    if (!engine.healthy) {
      engine.healthy = true;
      this.healthGauge.set({ engine: engine.id }, 1);
      this.logger?.info({ engine: engine.id }, 'rtpengine is healthy again');
    }
  }

  private recordFailure(engine: Engine, error: RtpengineError): void {
    engine.consecutiveFailures++;
    engine.lastError = error.message;
    if (engine.healthy && engine.consecutiveFailures >= this.failuresBeforeUnhealthy) {
      engine.healthy = false;
      this.healthGauge.set({ engine: engine.id }, 0);
      this.logger?.warn({ engine: engine.id, err: error.message }, 'rtpengine marked unhealthy');
    }
  }

  private async send<C extends NgCommand>(
    engine: Engine,
    command: C,
    request: NgCommands[C]['request'],
  ): Promise<NgCommands[C]['reply']> {
    if (this.closed) throw new RtpengineError('unavailable', `rtpengine pool is closed`, command, engine.id);
    const method = this.client[CLIENT_METHOD[command]];
    if (typeof method !== 'function') {
      throw new RtpengineError('protocol', `rtpengine-client has no method for ${command}`, command, engine.id);
    }
    const stopTimer = this.latency.startTimer({ engine: engine.id, command });
    let raw: unknown;
    try {
      raw = await (method as (dest: NgDestination, opts: object) => Promise<unknown>).call(this.client, engine.destination, request);
    } catch (err) {
      const error = asRtpengineError(err, command, engine.id);
      stopTimer({ outcome: error.kind });
      this.recordFailure(engine, error);
      throw error;
    }
    const reply = parseNgReply(command, raw, engine.id);
    if (reply instanceof RtpengineError) {
      stopTimer({ outcome: reply.kind });
      if (reply.kind === 'protocol') this.recordFailure(engine, reply);
      else this.recordSuccess(engine); // it answered: alive
      throw reply;
    }
    stopTimer({ outcome: 'ok' });
    this.recordSuccess(engine);
    return reply;
  }
}

/** Classifies whatever rtpengine-client rejected with. */
function asRtpengineError(err: unknown, command: NgCommand, engine?: string): RtpengineError {
  if (err instanceof RtpengineError) return err;
  const message = err instanceof Error ? err.message : String(err);
  if (/timeout/i.test(message)) {
    return new RtpengineError('timeout', `rtpengine ${command} to ${engine ?? '?'} timed out`, command, engine);
  }
  return new RtpengineError('transport', `rtpengine ${command} to ${engine ?? '?'} failed: ${message}`, command, engine);
}
