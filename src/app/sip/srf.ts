/**
 * The one typed wrapper over drachtio-srf 5.x.
 *
 * drachtio-srf ships types (lib/@types/index.d.ts) that are wrong or incomplete in ways that
 * matter here (no Dialog.id, connect() typed as Promise<void> though it resolves the app,
 * missing connect options enablePing/pingInterval/tags/reconnect, srf.request mistyped, `any`
 * in callbacks). Everything in the app imports SIP-facing types from this file only; no other
 * module imports 'drachtio-srf' directly.
 */
import { createRequire } from 'node:module';
import type { EventEmitter } from 'node:events';
import type { Writable } from 'node:stream';

const require = createRequire(import.meta.url);

export type SipMethod =
  | 'ACK' | 'BYE' | 'CANCEL' | 'INFO' | 'INVITE' | 'MESSAGE' | 'NOTIFY' | 'OPTIONS' | 'PRACK'
  | 'PUBLISH' | 'REFER' | 'REGISTER' | 'SUBSCRIBE' | 'UPDATE';

export type SipHeaders = Record<string, string>;

/** A name-addr as drachtio-srf's parser returns it from getParsedHeader('to'|'from'|'contact'...). */
export interface ParsedNameAddr {
  name?: string;
  uri: string;
  params: Record<string, string | null | undefined>;
}

export interface ParsedVia {
  version: string;
  protocol: string;
  host: string;
  port?: string;
  params?: Record<string, string | null | undefined>;
}

export interface ParsedUri {
  family?: 'ipv4' | 'ipv6';
  scheme: string;
  user?: string;
  password?: string;
  host?: string;
  port?: number | string;
  params: Record<string, string | null>;
  headers: Record<string, string>;
}

/** Fields common to a drachtio-srf request or response. */
export interface SrfMessage {
  readonly type: 'request' | 'response';
  body: string;
  readonly headers: Record<string, string>;
  readonly raw: string;
  readonly source: 'network' | 'application';
  /** IP of the peer the message came from (network) or went to (application) */
  readonly source_address: string;
  readonly source_port: string;
  /** 'udp' | 'tcp' | 'tls' | 'ws' | 'wss' */
  readonly protocol: string;
  readonly stackTime: string;
  readonly calledNumber: string;
  readonly callingNumber: string;
  get(name: string): string | undefined;
  has(name: string): boolean;
  getParsedHeader(name: 'contact' | 'Contact'): ParsedNameAddr[];
  getParsedHeader(name: 'via' | 'Via'): ParsedVia[];
  getParsedHeader(name: 'to' | 'To' | 'from' | 'From' | 'p-asserted-identity' | 'remote-party-id' | 'refer-to' | 'referred-by'): ParsedNameAddr;
}

export interface SrfRequest extends SrfMessage {
  readonly method: SipMethod;
  readonly uri: string;
  readonly callId: string;
  readonly from: string;
  readonly to: string;
  readonly stackTxnId: string;
  readonly stackDialogId?: string;
  readonly isNewInvite: boolean;
  readonly registration?: { type: 'register' | 'unregister'; expires: number; contact: ParsedNameAddr[]; aor: string };
  /** locals bag for middleware */
  locals: Record<string, unknown>;
  cancel(opts?: { headers?: SipHeaders }, callback?: (err: Error | null, cancel?: SrfRequest) => void): void;
  on(event: 'cancel', listener: (cancel: SrfMessage) => void): this;
  on(event: 'response', listener: (res: SrfResponse, ack: (opts?: { sdp?: string }) => void) => void): this;
  on(event: 'update', listener: (req: SrfRequest, res: SrfResponse) => void): this;
  removeAllListeners(event?: string): this;
}

export interface SendResponseOptions {
  headers?: SipHeaders;
  body?: string;
}

export interface SrfResponse extends SrfMessage {
  status: number;
  statusCode: number;
  reason: string;
  readonly finalResponseSent: boolean;
  send(status: number, opts?: SendResponseOptions): void;
  send(status: number, reason: string, opts?: SendResponseOptions, callback?: (err: Error | null, msg?: SrfMessage) => void): void;
  /** adds a header to the response being built (a second value of the same name is joined with a comma) */
  setHeader(name: string, value: string): void;
}

/** What sendFinalResponse needs of a response. */
export type FinalResponder = Pick<SrfResponse, 'send' | 'setHeader'>;

/**
 * Send a final response with extra headers (values may hold `\r\nName: ` for repeated headers), set on the
 * response before send(): given in send()'s options, drachtio-srf parses the whole message again to add them
 * and serialises it once more (agent.sendMessage), a parse and a serialisation per response for nothing. Only
 * for final responses: headers set this way would stay on a response that is sent again.
 */
export function sendFinalResponse(res: FinalResponder, status: number, reason: string, headers: Readonly<Record<string, string>>): void {
  for (const name of Object.keys(headers)) res.setHeader(name, headers[name]!);
  res.send(status, reason);
}

export interface DialogSipInfo { callId: string; localTag: string; remoteTag: string }

export interface Dialog extends EventEmitter {
  readonly id: string;
  readonly type: 'uac' | 'uas';
  readonly sip: DialogSipInfo;
  readonly local: { uri: string; sdp: string; contact?: string };
  readonly remote: { uri: string; sdp: string; contact?: string };
  readonly req: SrfRequest;
  /** uac: the 2xx that created the dialog; uas: the response we sent */
  readonly res: SrfMessage;
  readonly onHold: boolean;
  connected: boolean;
  other?: Dialog;
  destroy(opts?: { headers?: SipHeaders }): Promise<SrfRequest>;
  modify(sdp: string, opts?: { noAck?: boolean; headers?: SipHeaders }): Promise<string>;
  request(opts: { method: SipMethod; headers?: SipHeaders; body?: string }): Promise<SrfResponse>;
  on(event: 'destroy', listener: (req: SrfRequest, reason?: string) => void): this;
  on(event: 'ack', listener: (req: SrfRequest) => void): this;
  on(event: 'modify' | 'info' | 'refer' | 'notify' | 'update' | 'options' | 'message', listener: (req: SrfRequest, res: SrfResponse) => void): this;
  on(event: 'refresh', listener: (req: SrfRequest) => void): this;
  on(event: 'hold' | 'unhold', listener: (req: SrfRequest) => void): this;
}

export interface ConnectOptions {
  host: string;
  port: number;
  secret: string;
  tags?: string[];
  enablePing?: boolean;
  /** ms, 5000..300000 */
  pingInterval?: number;
  reconnect?: { retryMaxDelay?: number | null; maxAttempts?: number; connectTimeout?: number };
  tls?: Record<string, unknown>;
}

export interface CreateUasOptions { localSdp?: string | (() => Promise<string>); headers?: SipHeaders; body?: string }

export interface CreateUacOptions {
  uri?: string;
  headers?: SipHeaders;
  localSdp?: string;
  noAck?: boolean;
  /** sip URI of the next hop (outbound proxy); the request is sent there, Request-URI unchanged */
  proxy?: string;
  auth?: { username: string; password: string };
  method?: SipMethod;
}

export interface UacProgress {
  cbRequest?: (err: Error | null, req: SrfRequest) => void;
  cbProvisional?: (res: SrfResponse) => void;
}

export interface CreateB2buaOptions {
  headers?: SipHeaders;
  responseHeaders?: SipHeaders | ((uacRes: SrfResponse, headers: SipHeaders) => SipHeaders | null);
  localSdpA?: string | ((sdp: string, res: SrfResponse) => string | Promise<string>);
  localSdpB?: string | ((sdp: string) => string | Promise<string>);
  proxyRequestHeaders?: string[];
  proxyResponseHeaders?: string[];
  passFailure?: boolean;
  passProvisionalResponses?: boolean;
  proxy?: string;
  auth?: { username: string; password: string };
}

export interface RequestOptions { method: SipMethod; headers?: SipHeaders; body?: string; proxy?: string; auth?: { username: string; password: string } }

/** Error thrown by createUAC/createB2BUA when the far end answers with a failure. */
export interface SipFailure extends Error { status: number; reason?: string; res?: SrfResponse }

export function isSipFailure(err: unknown): err is SipFailure {
  return err instanceof Error && typeof (err as { status?: unknown }).status === 'number';
}

/** srf.proxyRequest options (drachtio-srf Request#proxy). */
export interface ProxyRequestOptions {
  /** add our Record-Route so the dialog's later requests come through us (drachtio: remainInDialog) */
  recordRoute?: boolean;
  /** destinations tried one after another (serial, the default) or at once (simultaneous) */
  forking?: 'serial' | 'simultaneous';
  /** headers added to (or replacing those of) the forwarded request */
  headers?: SipHeaders;
}

/** What srf.proxyRequest resolves with: each final response, grouped by the address it came from. */
export interface ProxyResult {
  connected: boolean;
  finalStatus?: number;
  responses: Array<{ address: string; port: number; msgs: Array<{ time: string; status: number; msg: { status: number; get(name: string): string | undefined } }> }>;
}

export type RequestHandler = (req: SrfRequest, res: SrfResponse) => void;
export type Middleware = (req: SrfRequest, res: SrfResponse, next: (err?: Error) => void) => void;

export interface Srf extends EventEmitter {
  connect(opts: ConnectOptions): Srf;
  disconnect(): void;
  use(mw: Middleware): void;
  use(method: string, mw: Middleware): void;
  invite(handler: RequestHandler): void;
  register(handler: RequestHandler): void;
  options(handler: RequestHandler): void;
  subscribe(handler: RequestHandler): void;
  message(handler: RequestHandler): void;
  info(handler: RequestHandler): void;
  notify(handler: RequestHandler): void;
  publish(handler: RequestHandler): void;
  refer(handler: RequestHandler): void;
  bye(handler: RequestHandler): void;
  createUAS(req: SrfRequest, res: SrfResponse, opts: CreateUasOptions): Promise<Dialog>;
  createUAC(uri: string, opts?: CreateUacOptions, progress?: UacProgress): Promise<Dialog>;
  createB2BUA(req: SrfRequest, res: SrfResponse, uri: string, opts?: CreateB2buaOptions,
    progress?: UacProgress & { cbFinalizedUac?: (uac: Dialog) => void }): Promise<{ uas: Dialog; uac: Dialog }>;
  /** Resolves when the server echoes the request; prefer the callback form to attach 'response' listeners in time. */
  request(uri: string, opts: RequestOptions): Promise<SrfRequest>;
  request(uri: string, opts: RequestOptions, callback: (err: Error | null, req?: SrfRequest) => void): Srf;
  findDialogById(id: string): Dialog | undefined;
  /** Stateful proxying of a network request by the SIP server (RFC 3261 §16); resolves once it is done. */
  proxyRequest(req: SrfRequest, destination: string | string[], opts?: ProxyRequestOptions): Promise<ProxyResult>;
  on(event: 'connect', listener: (err: Error | null, hostport: string, serverVersion?: string, localHostports?: string) => void): this;
  on(event: 'error', listener: (err: Error) => void): this;
  on(event: 'disconnect' | 'reconnecting' | 'close', listener: (...args: unknown[]) => void): this;
  locals: Record<string, unknown>;
}

interface SrfModule {
  new(tags?: string | string[]): Srf;
  parseUri(uri: string): ParsedUri | undefined;
  stringifyUri(uri: ParsedUri): string;
}

const SrfCtor = require('drachtio-srf') as SrfModule;

/** The 2xx to an INVITE we sent without an offer (RFC 3261 §14.1 / §13.2.1): its offer is answered in the ACK. */
export interface OfferIn2xx {
  res: SrfResponse;
  /** The offer in the 2xx ('' when the peer broke §13.3.1 and sent none). */
  sdp: string;
  /** Sends the ACK carrying our answer. */
  ack(answerSdp: string): void;
}

/**
 * A re-INVITE on a dialog (RFC 3261 §14.1) whose final response is returned with its headers
 * (srf's Dialog.modify gives only the body). With `sdp` it is an offer and srf ACKs the 2xx; without,
 * it asks the peer for an offer and the 2xx comes with `ack` for our answer. A non-2xx final rejects
 * with a SipFailure. The caller serialises re-INVITEs on one dialog (§14.1: one at a time).
 */
export function sendReinvite(dialog: Dialog, opts: { sdp?: string; headers?: SipHeaders }): Promise<OfferIn2xx | { res: SrfResponse }> {
  interface DialogRequestWithAck {
    request(
      opts: { method: 'INVITE'; headers: SipHeaders; body?: string; noAck?: boolean },
      callback: (err: Error | null, res?: SrfResponse, ack?: (o?: { body?: string }) => void) => void,
    ): unknown;
  }
  const headers: SipHeaders = { ...(opts.sdp ? { 'Content-Type': 'application/sdp' } : {}), ...(dialog.local.contact ? { Contact: dialog.local.contact } : {}), ...opts.headers };
  return new Promise((resolve, reject) => {
    (dialog as unknown as DialogRequestWithAck).request(
      { method: 'INVITE', headers, ...(opts.sdp ? { body: opts.sdp } : { noAck: true }) },
      (err, res, ack) => {
        if (err || !res) return reject(err ?? new Error('re-INVITE failed'));
        if (res.status < 200) return; // srf calls back for provisionals too
        if (res.status >= 300) return reject(Object.assign(new Error(`${res.status} ${res.reason}`), { status: res.status, reason: res.reason, res }));
        if (ack && !opts.sdp) return resolve({ res, sdp: res.body ?? '', ack: (answerSdp: string) => ack({ body: answerSdp }) });
        resolve({ res });
      },
    );
  });
}

/** What createUAC resolves with for an INVITE without SDP and `noAck` (drachtio-srf's 3pcc mode). */
export interface LateOfferAnswered {
  res: SrfResponse;
  /** The offer in B's 2xx. */
  sdp: string;
  /** ACKs with our answer; resolves with the confirmed dialog. */
  ack(answerSdp: string): Promise<Dialog>;
  /** ACKs the 2xx (echoing its SDP) and BYEs it: a fork that lost or a call that ended meanwhile. */
  destroy(): Promise<void>;
}

/**
 * An INVITE without SDP (late offer, RFC 3264 §5 / RFC 3261 §13.2.1): the callee's 2xx carries the
 * offer and our answer goes in the ACK. A 2xx without SDP (the callee broke §13.3.1) resolves a Dialog
 * as usual, which the caller ends.
 */
export function createLateOfferUAC(srf: Srf, uri: string, opts: Omit<CreateUacOptions, 'localSdp' | 'noAck'>, progress: UacProgress): Promise<LateOfferAnswered | Dialog> {
  return (srf.createUAC as unknown as (uri: string, opts: CreateUacOptions, progress: UacProgress) => Promise<LateOfferAnswered | Dialog>)(
    uri, { ...opts, noAck: true }, progress,
  );
}

export function isLateOfferAnswered(value: LateOfferAnswered | Dialog): value is LateOfferAnswered {
  return typeof (value as LateOfferAnswered).ack === 'function' && !('sip' in value);
}

/**
 * An UPDATE in the early dialog of an INVITE we sent (RFC 3311 §5.2) goes to the request's 'update'
 * listeners; drachtio-srf's createUAC adds one that answers 200 with our INVITE's SDP whatever the
 * UPDATE holds. It adds it right after calling cbRequest: called from cbRequest, this replaces it
 * once that synchronous code is done.
 */
export function handleEarlyUpdates(req: SrfRequest, handler: (update: SrfRequest, res: SrfResponse) => void): void {
  queueMicrotask(() => {
    req.removeAllListeners('update');
    req.on('update', handler);
  });
}

/**
 * The dialcore edge names itself `<drachtio version>-dialcore` in its reply to `authenticate`
 * (EDGE_VERSION in src/edge/edge.ts). Only then does the app use the edge's extensions of the
 * drachtio protocol (`close_flow`, `route|flow-closed`): the C++ drachtio-server answers a command
 * it does not know with NO and drops the app's connection.
 */
export function isDialcoreEdgeVersion(serverVersion: string | undefined): boolean {
  return typeof serverVersion === 'string' && serverVersion.endsWith('-dialcore');
}

/** Per srf: whether the server it is connected to now is the dialcore edge (set on every (re)connect). */
const connectedToDialcoreEdge = new WeakMap<Srf, boolean>();

export function createSrf(tags?: string[]): Srf {
  const srf = new SrfCtor(tags);
  srf.on('connect', (err, _hostport, serverVersion) => connectedToDialcoreEdge.set(srf, !err && isDialcoreEdgeVersion(serverVersion)));
  return srf;
}

/** drachtio-srf's own URI parser (tolerant); undefined when the string is not a URI. */
export function parseSipUri(uri: string): ParsedUri | undefined {
  try {
    return SrfCtor.parseUri(uri) ?? undefined;
  } catch {
    return undefined;
  }
}

type WireMsgListener = (socket: unknown, msg: string) => void;

interface SrfAgentInternals {
  app?: {
    client?: {
      wp?: {
        send(socket: unknown, msg: string): string;
        on(event: 'msg', listener: WireMsgListener): void;
        on(event: 'connect', listener: (socket: Writable) => void): void;
        listeners(event: 'msg'): WireMsgListener[];
        removeAllListeners(event: 'msg'): void;
      };
      route?(verb: string): void;
      _getDefaultSocket?(): unknown;
    };
  };
}

/**
 * Called when the SIP server reports that a connection (ws, wss, tcp, tls) closed: a dialcore edge
 * extension of the drachtio protocol. The app opts in with `route|flow-closed` (kept across
 * reconnects by srf's route list); the edge then sends `flow-closed|proto|ip|port`. srf itself
 * throws on message types it doesn't know, so those frames are taken out before srf sees them.
 * Call after connectSrf; false (nothing asked) when the link isn't up or the server is not the
 * dialcore edge (drachtio-server has no such notice).
 */
export function onFlowClosed(srf: Srf, listener: (protocol: string, address: string, port: number) => void): boolean {
  const client = (srf as unknown as SrfAgentInternals).app?.client;
  const wp = client?.wp;
  if (!wp || !client?.route || !connectedToDialcoreEdge.get(srf)) return false;
  const isNotice = (msg: string): boolean => msg.startsWith('flow-closed|', msg.indexOf('|') + 1);
  const srfListeners = wp.listeners('msg');
  wp.removeAllListeners('msg');
  wp.on('msg', (socket, msg) => {
    if (!isNotice(msg)) {
      for (const l of srfListeners) l(socket, msg);
      return;
    }
    const eol = msg.indexOf('\r\n');
    const tokens = (eol === -1 ? msg : msg.slice(0, eol)).split('|');
    const port = Number(tokens[4]);
    if (tokens[2] && tokens[3] && Number.isInteger(port)) listener(tokens[2], tokens[3], port);
  });
  client.route('flow-closed');
  return true;
}

/**
 * Ask the SIP server to close a connection-oriented flow (a kicked user's WebSocket/TCP/TLS).
 * A dialcore edge extension of the drachtio protocol (`close_flow|proto|ip|port`), sent only to
 * the dialcore edge: the C++ drachtio-server answers "Unknown message type" and then drops the
 * app's connection (false: not sent; the kicked device's bindings are gone all the same). srf has
 * no public API for raw commands, so this is the one place that reaches into its agent.
 */
export function requestCloseFlow(srf: Srf, protocol: string, address: string, port: number): boolean {
  if (!['tcp', 'tls', 'ws', 'wss'].includes(protocol) || !connectedToDialcoreEdge.get(srf)) return false;
  const client = (srf as unknown as SrfAgentInternals).app?.client;
  const socket = client?._getDefaultSocket?.();
  if (!client?.wp || !socket) return false;
  client.wp.send(socket, `close_flow|${protocol}|${address}|${port}`);
  return true;
}

/**
 * drachtio-srf's SIP parser reads `process.env.DRACHTIO_PRESERVE_HEADER_NAMES` every time it maps a header name
 * (each header it parses, each `get`/`has`), and Node's process.env is backed by the C environment: every read is
 * a getenv() and a new string. Replacing it with a plain copy, once, halves srf's parse time (a REGISTER parsed
 * plus five header reads: 14.7 -> 7 us; under registrar load getHeaderName went from ~4.5 % to ~1.7 % of the
 * stack's CPU). For a process entry point to call before traffic (the CLI, the bench stacks), never from a
 * library: afterwards, variables set in process.env reach child processes as before but no longer native code's
 * getenv() (nothing in dialcore sets any after start).
 */
export function useEnvironmentSnapshot(): void {
  process.env = { ...process.env };
}

/**
 * drachtio-srf writes every frame to its socket as soon as it is made: one write syscall per frame. Corked from
 * the first write of a turn until process.nextTick, the frames of one burst (all the responses sent from one batch
 * of Redis replies, say) leave in one writev. nextTick, not setImmediate: the route frames srf writes when it has
 * authenticated are flushed before it emits 'connect' (on setImmediate), so the SIP server knows the app's routes
 * before the app is told it is connected. Installed on every (re)connected socket.
 */
function corkWritesPerTick(socket: Writable): void {
  const write = socket.write;
  let corked = false;
  const uncork = (): void => {
    corked = false;
    socket.uncork();
  };
  socket.write = function corkedWrite(this: Writable, ...args: Parameters<Writable['write']>): boolean {
    if (!corked) {
      corked = true;
      socket.cork();
      process.nextTick(uncork);
    }
    return write.apply(this, args);
  } as Writable['write'];
}

/** Resolves once the srf app is connected and authenticated, rejects on an auth failure or timeout. */
export function connectSrf(srf: Srf, opts: ConnectOptions, timeoutMs = 10_000): Promise<{ hostport: string; serverVersion?: string }> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`drachtio connect to ${opts.host}:${opts.port} timed out`)), timeoutMs);
    srf.on('connect', (err, hostport, serverVersion) => {
      clearTimeout(timer);
      if (err) reject(err);
      else resolve({ hostport, serverVersion });
    });
    // srf emits 'error' for a refused connection; without a listener Node would throw.
    srf.on('error', () => { /* reconnect is srf's job; connect timeout reports persistent failure */ });
    srf.connect(opts);
    (srf as unknown as SrfAgentInternals).app?.client?.wp?.on('connect', corkWritesPerTick);
  });
}
