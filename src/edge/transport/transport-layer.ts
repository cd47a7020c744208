import { EventEmitter } from 'node:events';
import dgram from 'node:dgram';
import net from 'node:net';
import tls from 'node:tls';
import { isStunBindingRequest, stunBindingResponse } from './stun-keepalive.js';
import http from 'node:http';
import https from 'node:https';
import type { Duplex } from 'node:stream';
import { WebSocketServer, type WebSocket } from 'ws';
import type { Logger } from 'pino';
import { parseMessage, type ParseLimits, type ParseResult } from '../message/index.js';
import { hostPort, ipFamily, isWildcardAddress, normalizeIp } from './addresses.js';
import { SocketConnection, WebSocketConnection, isBlank, errorText, type ConnectionHooks, type StreamConnection } from './connections.js';
import { resolveLimits } from './limits.js';
import { formatListenSpec } from './listen-spec.js';
import { stampTopVia } from './via-stamp.js';
import type {
  Flow, InboundMessage, ListenSpec, MalformedInbound, SendTarget, SentInfo, TransportLimits, TransportOptions, TransportProtocol,
} from './types.js';

export interface TransportEvents {
  message: [InboundMessage];
  malformed: [MalformedInbound];
  'flow-closed': [Flow];
}

type BoundListener =
  | { kind: 'udp'; spec: ListenSpec; family: 4 | 6; socket: dgram.Socket }
  | { kind: 'stream'; spec: ListenSpec; family: 4 | 6; server: net.Server }
  | { kind: 'web'; spec: ListenSpec; family: 4 | 6; server: http.Server | https.Server; wss: WebSocketServer };

type StreamProtocol = 'tcp' | 'tls';

/**
 * RFC 3261 section 18 transports (UDP, TCP, TLS) plus RFC 7118 WebSocket (WS, WSS). See index.ts for the contract.
 * Every callback driven by network input is guarded: a failure is logged at debug and the connection is destroyed.
 */
export class TransportLayer extends EventEmitter<TransportEvents> {
  private readonly limits: TransportLimits;
  private readonly parseLimits: Partial<ParseLimits>;
  private readonly log: Logger | undefined;
  private readonly bound: BoundListener[] = [];
  /** established connection-oriented flows by flow id */
  private readonly connections = new Map<string, StreamConnection>();
  /** RFC 3261 18.2.2 / 18.1.1 reuse: protocol|ip|port -> most recent open connection to/from that peer */
  private readonly connectionsByPeer = new Map<string, StreamConnection>();
  private readonly pendingConnects = new Map<string, Promise<StreamConnection>>();
  /** accepted raw sockets (incl. TLS / HTTP before their handshake) for the per-IP and total caps */
  private readonly acceptedSockets = new Set<net.Socket>();
  private readonly acceptedPerIp = new Map<string, number>();
  private outboundConnections = 0;
  private flowSequence = 0;
  private sweepTimer: NodeJS.Timeout | undefined;
  private pingTimer: NodeJS.Timeout | undefined;
  private state: 'new' | 'started' | 'stopped' = 'new';
  private readonly hooks: ConnectionHooks;

  constructor(private readonly options: TransportOptions) {
    super();
    this.limits = resolveLimits(options.limits);
    this.parseLimits = { maxMessageBytes: this.limits.maxMessageBytes, maxHeaderCount: this.limits.maxHeaderCount };
    this.log = options.logger;
    this.hooks = {
      onParsed: (connection, result, raw) => this.dispatch(result, raw, connection.flow, true),
      onClosed: (connection) => this.forgetConnection(connection),
      debug: (context, message) => this.log?.debug(context, message),
    };
  }

  /** Binds every listen spec; on failure closes what was bound and rejects naming the spec. */
  async start(): Promise<void> {
    if (this.state !== 'new') throw new Error('TransportLayer.start() called twice');
    this.state = 'started';
    for (const spec of this.options.listen) {
      try {
        this.bound.push(await this.bind(spec));
      } catch (err) {
        await this.stop();
        throw new Error(`cannot listen on ${formatListenSpec(spec)}: ${errorText(err)}`);
      }
    }
    const sweepEvery = Math.max(20, Math.min(1000, Math.floor(
      Math.min(this.limits.incompleteMessageTimeoutMs, this.limits.idleConnectionTimeoutMs) / 4)));
    this.sweepTimer = setInterval(() => this.sweep(), sweepEvery);
    this.sweepTimer.unref();
    if (this.bound.some((l) => l.kind === 'web') && this.limits.wsPingIntervalMs > 0) {
      this.pingTimer = setInterval(() => this.pingWebSockets(), this.limits.wsPingIntervalMs);
      this.pingTimer.unref();
    }
  }

  async stop(): Promise<void> {
    this.state = 'stopped';
    clearInterval(this.sweepTimer);
    clearInterval(this.pingTimer);
    for (const connection of [...this.connections.values()]) connection.close('transport layer stopping');
    for (const socket of this.acceptedSockets) socket.destroy();
    const closing = this.bound.splice(0).map((listener) => new Promise<void>((resolve) => {
      if (listener.kind === 'udp') {
        try { listener.socket.close(() => resolve()); } catch { resolve(); }
        return;
      }
      if (listener.kind === 'web') {
        listener.wss.close();
        listener.server.closeAllConnections();
      }
      listener.server.close(() => resolve());
    }));
    await Promise.all(closing);
  }

  /** The listen specs with the ports actually bound (port 0 replaced by the OS's choice). */
  boundListeners(): ListenSpec[] {
    return this.bound.map((l) => ({ ...l.spec }));
  }

  /** The listener to advertise (Via sent-by, Contact, Record-Route) for a protocol, preferring an address family. */
  listenerFor(protocol: TransportProtocol, family?: 4 | 6): ListenSpec | undefined {
    const candidates = this.bound.filter((l) => l.spec.protocol === protocol);
    const chosen = candidates.find((l) => family === undefined || l.family === family) ?? candidates[0];
    return chosen ? { ...chosen.spec } : undefined;
  }

  /** An open connection-oriented flow, or for a UDP flow id one of our UDP listeners, else undefined. */
  getFlow(id: string): Flow | undefined {
    const connection = this.connections.get(id);
    if (connection) return connection.isOpen ? { ...connection.flow } : undefined;
    const udp = this.parseUdpFlowId(id);
    return udp ? { ...udp.flow } : undefined;
  }

  /** Close a connection-oriented flow (e.g. the WebSocket of a user who was kicked off). False when not open. */
  closeFlow(id: string): boolean {
    const connection = this.connections.get(id);
    if (!connection) return false;
    connection.close('closed by application');
    return true;
  }

  /** Close the open connection to a peer (protocol, ip, port), e.g. a kicked user's WebSocket. False when none. */
  closeFlowTo(protocol: TransportProtocol, address: string, port: number): boolean {
    const connection = this.connectionsByPeer.get(peerKey(protocol, normalizeIp(address), port));
    if (!connection) return false;
    connection.close('closed by application');
    return true;
  }

  /** Number of open connection-oriented flows, optionally of one protocol. */
  flowCount(protocol?: TransportProtocol): number {
    if (!protocol) return this.connections.size;
    let count = 0;
    for (const connection of this.connections.values()) if (connection.flow.protocol === protocol) count++;
    return count;
  }

  /**
   * Send one serialised message (rules in index.ts). Resolves once the bytes are handed to the OS;
   * rejects when there is no route, the connection fails or times out, or a write queue overflows.
   */
  send(buf: Buffer, target: SendTarget): Promise<SentInfo> {
    const capture = this.options.capture;
    if (!capture) return this.sendToTarget(buf, target);
    return this.sendToTarget(buf, target).then((sent) => {
      capture.capture('sent', buf, sent.flow);
      return sent;
    });
  }

  private async sendToTarget(buf: Buffer, target: SendTarget): Promise<SentInfo> {
    if (this.state !== 'started') throw new Error('transport layer is not running');
    if (target.flowId) {
      const connection = this.connections.get(target.flowId);
      if (connection?.isOpen) return this.writeTo(connection, buf);
      const udp = this.parseUdpFlowId(target.flowId);
      if (udp && target.protocol === 'udp') return this.sendDatagram(udp.listener, buf, target.address, target.port);
    }
    const address = normalizeIp(target.address);
    const family = ipFamily(address);
    if (family === 0) throw new Error(`send target "${target.address}" is not an IP address (resolve DNS first)`);
    if (!Number.isInteger(target.port) || target.port < 1 || target.port > 65535) throw new Error(`bad send target port ${target.port}`);
    switch (target.protocol) {
      case 'udp': {
        const listeners = this.bound.filter((l): l is Extract<BoundListener, { kind: 'udp' }> => l.kind === 'udp');
        const listener = listeners.find((l) => l.family === family) ?? listeners[0];
        if (!listener) throw new Error('no udp listener to send from');
        return this.sendDatagram(listener, buf, address, target.port);
      }
      case 'tcp':
      case 'tls': {
        const existing = this.connectionsByPeer.get(peerKey(target.protocol, address, target.port));
        const connection = existing?.isOpen ? existing : await this.connect(target.protocol, address, target.port, target.serverName);
        return this.writeTo(connection, buf);
      }
      case 'ws':
      case 'wss': {
        // RFC 7118: a WebSocket client is only reachable over the connection it opened; we never dial out.
        // The URI transport parameter is "ws" for WS and WSS alike (section 5.2), so either may be asked for.
        const other: TransportProtocol = target.protocol === 'ws' ? 'wss' : 'ws';
        const existing = this.connectionsByPeer.get(peerKey(target.protocol, address, target.port))
          ?? this.connectionsByPeer.get(peerKey(other, address, target.port));
        if (existing?.isOpen) return this.writeTo(existing, buf);
        throw new Error(`no open ${target.protocol} flow to ${hostPort(address, target.port)}`);
      }
      default:
        throw new Error(`unsupported transport ${String(target.protocol)}`);
    }
  }

  // ---------------------------------------------------------------------------------------------- listeners

  private async bind(spec: ListenSpec): Promise<BoundListener> {
    const family = ipFamily(spec.host);
    if (family === 0) throw new Error('host must be an IP literal');
    const secure = spec.protocol === 'tls' || spec.protocol === 'wss';
    const tlsOptions = this.options.tls;
    if (secure && !tlsOptions) throw new Error('a tls/wss listener needs the tls cert and key options');
    switch (spec.protocol) {
      case 'udp':
        return this.bindUdp(spec, family);
      case 'tcp':
      case 'tls': {
        const server = spec.protocol === 'tcp'
          ? net.createServer()
          : tls.createServer({ ...tlsOptions, handshakeTimeout: this.limits.incompleteMessageTimeoutMs });
        const listener: BoundListener = { kind: 'stream', spec: { ...spec }, family, server };
        server.maxConnections = this.limits.maxConnections;
        if (spec.protocol === 'tcp') {
          server.on('connection', (socket: net.Socket) => {
            if (this.admit(socket)) this.acceptSocket(socket, listener);
          });
        } else {
          server.on('connection', (socket: net.Socket) => { this.admit(socket); });
          server.on('secureConnection', (socket: tls.TLSSocket) => this.acceptSocket(socket, listener));
          server.on('tlsClientError', (err: Error, socket: tls.TLSSocket) => {
            this.log?.debug({ err: err.message, remote: socket.remoteAddress }, 'tls handshake failed');
            socket.destroy();
          });
        }
        server.on('error', (err: Error) => this.log?.debug({ err: err.message, listener: formatListenSpec(spec) }, 'listener error'));
        listener.spec.port = await listen(server, spec);
        return listener;
      }
      case 'ws':
      case 'wss': {
        const timeouts = {
          headersTimeout: this.limits.incompleteMessageTimeoutMs,
          requestTimeout: this.limits.incompleteMessageTimeoutMs + 1,
          connectionsCheckingInterval: Math.max(50, Math.min(30000, Math.floor(this.limits.incompleteMessageTimeoutMs / 2))),
        };
        const server = spec.protocol === 'ws'
          ? http.createServer(timeouts)
          : https.createServer({ ...tlsOptions, ...timeouts, handshakeTimeout: this.limits.incompleteMessageTimeoutMs });
        const wss = new WebSocketServer({
          noServer: true,
          clientTracking: false,
          maxPayload: this.limits.wsMaxPayloadBytes,
          perMessageDeflate: false,
          handleProtocols: (offered: Set<string>) => (offered.has('sip') ? 'sip' : false),
        });
        const listener: BoundListener = { kind: 'web', spec: { ...spec }, family, server, wss };
        server.maxConnections = this.limits.maxConnections;
        server.on('connection', (socket: net.Socket) => { this.admit(socket); });
        server.on('upgrade', (req: http.IncomingMessage, socket: Duplex, head: Buffer) => this.onUpgrade(listener, req, socket, head));
        server.on('request', (_req: http.IncomingMessage, res: http.ServerResponse) => {
          res.writeHead(426, { Upgrade: 'websocket', Connection: 'close', 'Content-Type': 'text/plain' });
          res.end('SIP over WebSocket (RFC 7118) only\n');
        });
        server.on('clientError', (err: Error, socket: Duplex) => {
          this.log?.debug({ err: err.message }, 'http client error on websocket listener');
          socket.destroy();
        });
        if (spec.protocol === 'wss') {
          server.on('tlsClientError', (err: Error, socket: tls.TLSSocket) => {
            this.log?.debug({ err: err.message, remote: socket.remoteAddress }, 'tls handshake failed');
            socket.destroy();
          });
        }
        server.on('error', (err: Error) => this.log?.debug({ err: err.message, listener: formatListenSpec(spec) }, 'listener error'));
        listener.spec.port = await listen(server, spec);
        return listener;
      }
      default:
        throw new Error(`unknown protocol ${String(spec.protocol)}`);
    }
  }

  private async bindUdp(spec: ListenSpec, family: 4 | 6): Promise<BoundListener> {
    const socket = dgram.createSocket({ type: family === 6 ? 'udp6' : 'udp4', lookup: ipLiteralLookup });
    const listener: Extract<BoundListener, { kind: 'udp' }> = { kind: 'udp', spec: { ...spec }, family, socket };
    await new Promise<void>((resolve, reject) => {
      socket.once('error', reject);
      socket.bind({ address: spec.host, port: spec.port, exclusive: true }, () => {
        socket.off('error', reject);
        resolve();
      });
    });
    socket.on('error', (err: Error) => this.log?.debug({ err: err.message, listener: formatListenSpec(spec) }, 'udp socket error'));
    this.sizeUdpBuffers(socket, spec);
    socket.on('message', (buf: Buffer, rinfo: dgram.RemoteInfo) => this.onDatagram(listener, buf, rinfo));
    listener.spec.port = socket.address().port;
    return listener;
  }

  /** Large socket buffers absorb bursts while the event loop is busy (GC, a batch of messages) instead of dropping. */
  private sizeUdpBuffers(socket: dgram.Socket, spec: ListenSpec): void {
    const bytes = this.limits.udpSocketBufferBytes;
    if (bytes <= 0) return;
    try {
      if (socket.getRecvBufferSize() < bytes) socket.setRecvBufferSize(bytes);
      if (socket.getSendBufferSize() < bytes) socket.setSendBufferSize(bytes);
    } catch (err) {
      this.log?.warn({ err: errorText(err), listener: formatListenSpec(spec) }, 'could not enlarge the UDP socket buffers');
    }
  }

  // ---------------------------------------------------------------------------------------------- inbound

  private onDatagram(listener: Extract<BoundListener, { kind: 'udp' }>, buf: Buffer, rinfo: dgram.RemoteInfo): void {
    try {
      if (buf.length > this.limits.maxMessageBytes) {
        this.log?.debug({ bytes: buf.length, remote: hostPort(rinfo.address, rinfo.port) }, 'oversize datagram dropped');
        return;
      }
      // RFC 5626 keep-alives: CRLF datagrams are ignored; a STUN Binding request is answered (§4.4.2), other STUN
      // dropped. STUN is told apart by a first byte of 0-3 (RFC 7983 section 7): a wider test would also drop
      // requests whose method starts with a digit or one of the token characters ! % ' * + - . (RFC 4475 3.1.1.2 intmeth)
      if (isBlank(buf)) return;
      if (buf[0] <= 0x03) {
        const response = isStunBindingRequest(buf) ? stunBindingResponse(buf, normalizeIp(rinfo.address), rinfo.port) : null;
        if (response) listener.socket.send(response, rinfo.port, rinfo.address, () => undefined);
        return;
      }
      const flow = this.udpFlow(listener, normalizeIp(rinfo.address), rinfo.port);
      this.dispatch(parseMessage(buf, this.parseLimits), buf, flow, false);
    } catch (err) {
      this.log?.debug({ err: errorText(err), remote: hostPort(rinfo.address, rinfo.port) }, 'error handling datagram');
    }
  }

  /** Admission control for every accepted socket: total and per-source-IP caps. */
  private admit(socket: net.Socket): boolean {
    const ip = normalizeIp(socket.remoteAddress ?? '');
    if (!ip || socket.destroyed) {
      socket.destroy();
      return false;
    }
    const fromIp = this.acceptedPerIp.get(ip) ?? 0;
    const total = this.acceptedSockets.size + this.outboundConnections + this.pendingConnects.size;
    if (this.state !== 'started' || total >= this.limits.maxConnections || fromIp >= this.limits.maxConnectionsPerIp) {
      this.log?.debug({ remote: ip, fromIp, total }, 'connection refused: limit reached');
      socket.destroy();
      return false;
    }
    this.acceptedSockets.add(socket);
    this.acceptedPerIp.set(ip, fromIp + 1);
    socket.once('close', () => {
      this.acceptedSockets.delete(socket);
      const left = (this.acceptedPerIp.get(ip) ?? 1) - 1;
      if (left > 0) this.acceptedPerIp.set(ip, left);
      else this.acceptedPerIp.delete(ip);
    });
    // errors before the connection is adopted (e.g. reset during a TLS handshake) must not be unhandled
    socket.on('error', (err: Error) => this.log?.debug({ err: err.message, remote: ip }, 'accepted socket error'));
    return true;
  }

  private acceptSocket(socket: net.Socket, listener: BoundListener): void {
    try {
      if (socket.destroyed) return;
      const flow = this.connectionFlow(listener.spec.protocol, socket, listener.spec, false);
      this.registerConnection(new SocketConnection(flow, socket, this.hooks, this.limits, this.parseLimits, true));
    } catch (err) {
      this.log?.debug({ err: errorText(err) }, 'error accepting connection');
      socket.destroy();
    }
  }

  /** RFC 7118 section 4: the handshake must negotiate the "sip" subprotocol. */
  private onUpgrade(listener: Extract<BoundListener, { kind: 'web' }>, req: http.IncomingMessage, socket: Duplex, head: Buffer): void {
    try {
      const offered = String(req.headers['sec-websocket-protocol'] ?? '').split(',').map((p) => p.trim());
      if (!offered.includes('sip') || this.state !== 'started') {
        this.log?.debug({ remote: req.socket.remoteAddress, offered }, 'websocket handshake without the sip subprotocol refused');
        socket.end('HTTP/1.1 400 Bad Request\r\nConnection: close\r\nContent-Length: 0\r\n\r\n');
        setTimeout(() => socket.destroy(), 1000).unref();
        return;
      }
      const rawSocket = req.socket;
      listener.wss.handleUpgrade(req, socket, head, (ws: WebSocket) => {
        try {
          const flow = this.connectionFlow(listener.spec.protocol, rawSocket, listener.spec, false);
          this.registerConnection(new WebSocketConnection(flow, ws, this.hooks, this.limits, this.parseLimits));
        } catch (err) {
          this.log?.debug({ err: errorText(err) }, 'error accepting websocket');
          ws.terminate();
        }
      });
    } catch (err) {
      this.log?.debug({ err: errorText(err) }, 'error during websocket upgrade');
      socket.destroy();
    }
  }

  /** Parsed inbound message -> events. Requests get their top Via stamped (RFC 3261 18.2.1, RFC 3581 4). */
  private dispatch(result: ParseResult, raw: Buffer | undefined, flow: Flow, isStream: boolean): void {
    if (this.options.capture) {
      const bytes = raw ?? (result.ok ? result.message.serialise() : undefined);
      if (bytes) this.options.capture.capture('received', bytes, flow);
    }
    if (result.ok) {
      const { message } = result;
      const rawBytes = raw ?? message.serialise();
      if (message.isRequest) stampTopVia(message, flow.remoteAddress, flow.remotePort, isStream);
      this.safeEmit('message', { message, raw: rawBytes, flow: { ...flow }, receivedAt: Date.now(), verbatim: result.verbatim });
      return;
    }
    if (result.status !== undefined && result.message?.isRequest) {
      const { message } = result;
      try {
        stampTopVia(message, flow.remoteAddress, flow.remotePort, isStream);
      } catch (err) {
        this.log?.debug({ err: errorText(err) }, 'could not stamp Via of malformed request');
      }
      this.safeEmit('malformed', { error: result.error, status: result.status, message, flow: { ...flow } });
      return;
    }
    this.log?.debug({ flow: flow.id, error: result.error }, 'unparseable message dropped');
  }

  private safeEmit<K extends keyof TransportEvents>(event: K, ...args: TransportEvents[K]): void {
    try {
      (this.emit as (event: K, ...args: TransportEvents[K]) => boolean)(event, ...args);
    } catch (err) {
      // a bug in an upper layer must not take the socket (or the process) down
      this.log?.error({ err: errorText(err), event }, 'transport event handler threw');
    }
  }

  // ---------------------------------------------------------------------------------------------- outbound

  private sendDatagram(listener: Extract<BoundListener, { kind: 'udp' }>, buf: Buffer, address: string, port: number): Promise<SentInfo> {
    const remote = normalizeIp(address);
    const flow = this.udpFlow(listener, remote, port);
    // a dual-stack "::" socket reaches IPv4 peers through their IPv4-mapped address
    const destination = listener.family === 6 && ipFamily(remote) === 4 ? `::ffff:${remote}` : remote;
    return new Promise((resolve, reject) => {
      listener.socket.send(buf, port, destination, (err) => (err ? reject(err) : resolve({ flow, bytes: buf.length })));
    });
  }

  private async writeTo(connection: StreamConnection, buf: Buffer): Promise<SentInfo> {
    connection.lastActivityAt = Date.now();
    await connection.write(buf);
    return { flow: { ...connection.flow }, bytes: buf.length };
  }

  /** RFC 3261 18.1.1 / 18.2.2: one connection per peer; concurrent sends share the pending connect. */
  private connect(protocol: StreamProtocol, address: string, port: number, serverName: string | undefined): Promise<StreamConnection> {
    const key = peerKey(protocol, address, port);
    const pending = this.pendingConnects.get(key);
    if (pending) return pending;
    const total = this.acceptedSockets.size + this.outboundConnections + this.pendingConnects.size;
    if (total >= this.limits.maxConnections) return Promise.reject(new Error('connection limit reached'));
    const family = ipFamily(address) === 6 ? 6 : 4;
    const listener = this.bound.find((l) => l.spec.protocol === protocol && l.family === family);
    const localAddress = listener && !isWildcardAddress(listener.spec.host) ? listener.spec.host : undefined;
    const attempt = new Promise<StreamConnection>((resolve, reject) => {
      const tlsOptions = this.options.tls;
      // localAddress is passed through to net.Socket.connect (missing from the tls typings)
      const tlsConnectOptions: tls.ConnectionOptions & { localAddress?: string } = {
        host: address, port, localAddress,
        servername: serverName && ipFamily(serverName) === 0 ? serverName : undefined,
        ca: tlsOptions?.ca, cert: tlsOptions?.cert, key: tlsOptions?.key,
        rejectUnauthorized: tlsOptions?.rejectUnauthorized ?? true,
      };
      const socket: net.Socket = protocol === 'tcp'
        ? net.connect({ host: address, port, localAddress })
        : tls.connect(tlsConnectOptions);
      const fail = (err: Error): void => {
        clearTimeout(timer);
        socket.destroy();
        reject(new Error(`${protocol} connect to ${hostPort(address, port)} failed: ${err.message}`));
      };
      const timer = setTimeout(() => fail(new Error(`timeout after ${this.limits.connectTimeoutMs} ms`)), this.limits.connectTimeoutMs);
      socket.once('error', fail);
      const onConnected = (): void => {
        clearTimeout(timer);
        socket.off('error', fail);
        if (this.state !== 'started') {
          socket.destroy();
          reject(new Error('transport layer stopped'));
          return;
        }
        const flow = this.connectionFlow(protocol, socket, listener?.spec, true);
        const connection = new SocketConnection(flow, socket, this.hooks, this.limits, this.parseLimits, false);
        this.outboundConnections++;
        this.registerConnection(connection);
        resolve(connection);
      };
      if (protocol === 'tls') socket.once('secureConnect', onConnected);
      else socket.once('connect', onConnected);
    }).finally(() => this.pendingConnects.delete(key));
    this.pendingConnects.set(key, attempt);
    return attempt;
  }

  // ---------------------------------------------------------------------------------------------- bookkeeping

  private registerConnection(connection: StreamConnection): void {
    const { flow } = connection;
    this.connections.set(flow.id, connection);
    this.connectionsByPeer.set(peerKey(flow.protocol, flow.remoteAddress, flow.remotePort), connection);
    this.log?.debug({ flow: flow.id }, 'connection open');
  }

  private forgetConnection(connection: StreamConnection): void {
    const { flow } = connection;
    if (this.connections.get(flow.id) !== connection) return;
    this.connections.delete(flow.id);
    const key = peerKey(flow.protocol, flow.remoteAddress, flow.remotePort);
    if (this.connectionsByPeer.get(key) === connection) this.connectionsByPeer.delete(key);
    if (flow.outbound) this.outboundConnections--;
    this.log?.debug({ flow: flow.id }, 'connection closed');
    this.safeEmit('flow-closed', { ...flow });
  }

  /** Slowloris and idle clean-up. */
  private sweep(): void {
    const now = Date.now();
    for (const connection of this.connections.values()) {
      if (connection.incompleteSince !== undefined && now - connection.incompleteSince >= this.limits.incompleteMessageTimeoutMs) {
        connection.close('incomplete message timeout');
      } else if (now - connection.lastActivityAt >= this.limits.idleConnectionTimeoutMs) {
        connection.close('idle timeout');
      } else if (!connection.sawMessage && !connection.flow.outbound && now - connection.openedAt >= this.limits.idleConnectionTimeoutMs) {
        connection.close('no SIP message within the idle timeout');
      }
    }
  }

  private pingWebSockets(): void {
    for (const connection of this.connections.values()) {
      if (connection instanceof WebSocketConnection) connection.ping();
    }
  }

  private connectionFlow(protocol: TransportProtocol, socket: net.Socket, listener: ListenSpec | undefined, outbound: boolean): Flow {
    const remoteAddress = normalizeIp(socket.remoteAddress ?? '');
    const remotePort = socket.remotePort ?? 0;
    const localAddress = normalizeIp(socket.localAddress ?? '');
    const localPort = socket.localPort ?? 0;
    const id = `${protocol}:${localAddress}:${localPort}:${remoteAddress}:${remotePort}#${++this.flowSequence}`;
    const flow: Flow = { id, protocol, remoteAddress, remotePort, localAddress, localPort, outbound };
    if (listener) flow.listener = { ...listener };
    return flow;
  }

  private udpFlow(listener: Extract<BoundListener, { kind: 'udp' }>, remoteAddress: string, remotePort: number): Flow {
    const { host, port } = listener.spec;
    return {
      id: `udp:${host}:${port}:${remoteAddress}:${remotePort}`,
      protocol: 'udp', remoteAddress, remotePort, localAddress: host, localPort: port,
      listener: { ...listener.spec }, outbound: false,
    };
  }

  /** `udp:<localHost>:<localPort>:<remoteHost>:<remotePort>` -> our listener and the flow, when it is ours. */
  private parseUdpFlowId(id: string): { listener: Extract<BoundListener, { kind: 'udp' }>; flow: Flow } | undefined {
    if (!id.startsWith('udp:')) return undefined;
    for (const listener of this.bound) {
      if (listener.kind !== 'udp') continue;
      const prefix = `udp:${listener.spec.host}:${listener.spec.port}:`;
      if (!id.startsWith(prefix)) continue;
      const remote = id.slice(prefix.length);
      const colon = remote.lastIndexOf(':');
      const remoteAddress = remote.slice(0, colon);
      const remotePort = Number(remote.slice(colon + 1));
      if (colon <= 0 || ipFamily(remoteAddress) === 0 || !Number.isInteger(remotePort) || remotePort < 1 || remotePort > 65535) return undefined;
      return { listener, flow: this.udpFlow(listener, remoteAddress, remotePort) };
    }
    return undefined;
  }
}

/**
 * dgram resolves every send's address through dns.lookup, even an IP literal (a deferred callback per datagram).
 * We only ever send to IP literals (names are resolved by RFC 3263 before the transport), so answer at once;
 * anything else is an error.
 */
function ipLiteralLookup(address: string, family: unknown, callback: (err: Error | null, address: string, family: number) => void): void {
  const actual = ipFamily(address);
  if (actual === 0) callback(new Error(`"${address}" is not an IP address`), address, 0);
  else callback(null, address, actual);
}

function peerKey(protocol: TransportProtocol, address: string, port: number): string {
  return `${protocol}|${address}|${port}`;
}

function listen(server: net.Server, spec: ListenSpec): Promise<number> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen({ host: spec.host, port: spec.port, exclusive: true, backlog: 511 }, () => {
      server.off('error', reject);
      const address = server.address();
      resolve(typeof address === 'object' && address ? address.port : spec.port);
    });
  });
}
