/**
 * The drachtio protocol listener: drachtio-srf apps connect here (inbound connections,
 * like `drachtio --admin-port`). Handles authenticate / route / remove_route / ping itself and
 * hands `sip` and `proxy` commands to the controller.
 */
import net from 'node:net';
import tls from 'node:tls';
import { EventEmitter } from 'node:events';
import { timingSafeEqual, createHash } from 'node:crypto';
import type { Logger } from 'pino';
import { FrameDecoder } from './framing.js';
import { apiResponse, CRLF } from './wire-format.js';

export interface AppServerOptions {
  host: string;
  port: number;
  secret: string;
  tls?: { cert: string | Buffer; key: string | Buffer };
  /** e.g. "v0.9.10": srf only pings servers reporting >= v0.8.2 */
  version: string;
  /** `tcp/127.0.0.1:5060,udp/127.0.0.1:5060` */
  hostports: () => string;
  maxApps?: number;
  /** an app must authenticate within this time */
  authTimeoutMs?: number;
  logger?: Logger;
}

/** A `sip|txnId|dialogId[|outboundProxy]` command from an app. */
export interface AppSipCommand {
  app: AppConnection;
  msgId: string;
  transactionId: string;
  dialogId: string;
  outboundProxy: string;
  sip: string;
}

let nextAppId = 1;

/** The longest a deferred frame (AppConnection.sendSipDeferred) waits for another frame to go out with. */
export const DEFERRED_FRAME_DELAY_MS = 5;

export class AppConnection {
  readonly id = `app-${nextAppId++}`;
  authenticated = false;
  tags: string[] = [];
  readonly routes = new Set<string>();
  private readonly decoder = new FrameDecoder();

  constructor(readonly socket: net.Socket) {}

  private corked = false;
  private readonly uncork = (): void => {
    this.corked = false;
    this.socket.uncork();
  };

  /** Frames nothing waits on, held until the next frame to this app or DEFERRED_FRAME_DELAY_MS (sendSipDeferred). */
  private deferred: Array<{ head: string; sip: Buffer }> = [];
  private deferTimer: NodeJS.Timeout | undefined;
  private readonly flushDeferred = (): void => {
    clearTimeout(this.deferTimer);
    this.deferTimer = undefined;
    const frames = this.deferred;
    this.deferred = [];
    for (const frame of frames) this.sendSip(frame.head, frame.sip);
  };

  send(payload: string): void {
    if (this.deferred.length > 0) this.flushDeferred();
    if (!this.writable()) return;
    // `<bytes>#<payload>` written as one string: no intermediate Buffer copy (hot path)
    this.socket.write(`${Buffer.byteLength(payload, 'utf8')}#${payload}`, 'utf8');
  }

  /**
   * A frame carrying a SIP message: `<bytes>#<head>` CRLF `<sip>`, the message's bytes (as received or as sent)
   * written as they are, never decoded and re-encoded.
   */
  sendSip(head: string, sip: Buffer): void {
    if (this.deferred.length > 0) this.flushDeferred();
    if (!this.writable()) return;
    const leader = `${head}${CRLF}`;
    this.socket.write(`${Buffer.byteLength(leader, 'utf8') + sip.length}#${leader}`, 'utf8');
    this.socket.write(sip);
  }

  /**
   * A SIP frame no one waits on (the echo of a final response to a non-INVITE request: srf resolves nothing on
   * it), sent together with the next frame to this app, or after DEFERRED_FRAME_DELAY_MS if none comes. Frames
   * keep their order. Under load this saves a write here and a wake-up of the app per transaction.
   */
  sendSipDeferred(head: string, sip: Buffer): void {
    if (this.socket.destroyed) return;
    this.deferred.push({ head, sip });
    if (this.deferTimer === undefined) {
      this.deferTimer = setTimeout(this.flushDeferred, DEFERRED_FRAME_DELAY_MS);
      this.deferTimer.unref();
    }
  }

  /** Open, and corked for the rest of this turn of the event loop: frames written in one turn (e.g. for a burst of
   * datagrams read in one poll) go out in a single writev once it ends, instead of a syscall each. */
  private writable(): boolean {
    if (this.socket.destroyed) return false;
    if (!this.corked) {
      this.corked = true;
      this.socket.cork();
      setImmediate(this.uncork);
    }
    return true;
  }

  /** @internal */
  decode(chunk: Buffer): string[] {
    return this.decoder.push(chunk);
  }

  get remote(): string {
    return `${this.socket.remoteAddress}:${this.socket.remotePort}`;
  }
}

export declare interface AppServer {
  on(event: 'sip', listener: (cmd: AppSipCommand) => void): this;
  on(event: 'proxy', listener: (app: AppConnection, msgId: string, tokens: string[], sip: string) => void): this;
  on(event: 'app-gone', listener: (app: AppConnection) => void): this;
  on(event: 'close-flow', listener: (app: AppConnection, msgId: string, tokens: string[]) => void): this;
  on(event: 'listening', listener: () => void): this;
}

export class AppServer extends EventEmitter {
  private server?: net.Server;
  private readonly apps = new Set<AppConnection>();
  /** per method, the next index for round robin selection among apps routing it */
  private readonly roundRobin = new Map<string, number>();
  private readonly secretDigest: Buffer;

  constructor(private readonly opts: AppServerOptions) {
    super();
    this.secretDigest = createHash('sha256').update(opts.secret).digest();
  }

  async start(): Promise<{ host: string; port: number }> {
    const onConnection = (socket: net.Socket) => this.accept(socket);
    this.server = this.opts.tls ? tls.createServer({ cert: this.opts.tls.cert, key: this.opts.tls.key }, onConnection) : net.createServer(onConnection);
    const server = this.server;
    await new Promise<void>((resolve, reject) => {
      server.once('error', (err) => reject(new Error(`drachtio admin listener ${this.opts.host}:${this.opts.port}: ${err.message}`)));
      server.listen(this.opts.port, this.opts.host, () => resolve());
    });
    server.on('error', (err) => this.opts.logger?.error({ err }, 'drachtio admin listener error'));
    const addr = server.address() as net.AddressInfo;
    return { host: addr.address, port: addr.port };
  }

  async stop(): Promise<void> {
    for (const app of this.apps) app.socket.destroy();
    this.apps.clear();
    const server = this.server;
    if (server) await new Promise<void>((resolve) => server.close(() => resolve()));
  }

  get connectedApps(): number {
    return this.apps.size;
  }

  findById(id: string): AppConnection | undefined {
    for (const app of this.apps) if (app.id === id) return app;
    return undefined;
  }

  /**
   * Send a server notice (e.g. flow-closed) to the apps that asked for it with `route|<notice>`:
   * drachtio-srf throws on message types it doesn't know, so unmodified apps never get one.
   */
  notify(notice: string, payload: string): void {
    for (const app of this.apps) if (app.authenticated && app.routes.has(notice)) app.send(payload);
  }

  /** Round robin among authenticated apps that routed this (lower-case) method, optionally with a tag. */
  selectApp(method: string, tag?: string): AppConnection | undefined {
    const verb = method.toLowerCase();
    const candidates: AppConnection[] = [];
    for (const app of this.apps) {
      if (app.authenticated && app.routes.has(verb) && (!tag || app.tags.includes(tag))) candidates.push(app);
    }
    if (candidates.length === 0) return undefined;
    const next = (this.roundRobin.get(verb) ?? 0) % candidates.length;
    this.roundRobin.set(verb, next + 1);
    return candidates[next];
  }

  private accept(socket: net.Socket): void {
    const maxApps = this.opts.maxApps ?? 100;
    if (this.apps.size >= maxApps) {
      socket.destroy();
      return;
    }
    socket.setNoDelay(true);
    socket.setKeepAlive(true);
    const app = new AppConnection(socket);
    this.apps.add(app);
    const authTimer = setTimeout(() => {
      if (!app.authenticated) socket.destroy();
    }, this.opts.authTimeoutMs ?? 10_000);
    socket.on('data', (chunk: Buffer) => {
      let frames: string[];
      try {
        frames = app.decode(chunk);
      } catch (err) {
        this.opts.logger?.warn({ app: app.remote, err: (err as Error).message }, 'drachtio protocol error, closing app connection');
        socket.destroy();
        return;
      }
      for (const frame of frames) {
        try {
          this.handleFrame(app, frame);
        } catch (err) {
          this.opts.logger?.error({ app: app.remote, err }, 'error handling drachtio frame');
        }
      }
    });
    socket.on('error', () => socket.destroy());
    socket.on('close', () => {
      clearTimeout(authTimer);
      if (this.apps.delete(app) && app.authenticated) this.emit('app-gone', app);
    });
  }

  private checkSecret(candidate: string): boolean {
    const digest = createHash('sha256').update(candidate).digest();
    return timingSafeEqual(digest, this.secretDigest);
  }

  private handleFrame(app: AppConnection, frame: string): void {
    const eol = frame.indexOf(CRLF);
    const leader = eol === -1 ? frame : frame.slice(0, eol);
    const body = eol === -1 ? '' : frame.slice(eol + 2);
    const tokens = leader.split('|');
    const [msgId, type] = tokens;
    if (!msgId || !type) throw new Error('malformed drachtio frame');

    if (!app.authenticated) {
      if (type !== 'authenticate') {
        app.socket.destroy();
        return;
      }
      if (this.checkSecret(tokens[2] ?? '')) {
        app.authenticated = true;
        app.tags = (tokens[3] ?? '').split(',').filter(Boolean);
        const hostports = this.opts.hostports();
        app.send(apiResponse(msgId, 'OK', hostports, this.opts.version, hostports));
        this.opts.logger?.info({ app: app.remote, tags: app.tags }, 'drachtio app connected');
      } else {
        this.opts.logger?.warn({ app: app.remote }, 'drachtio app failed to authenticate');
        app.send(apiResponse(msgId, 'NO', 'incorrect secret'));
        app.socket.end();
      }
      return;
    }

    switch (type) {
      case 'route':
        if (tokens[2]) app.routes.add(tokens[2].toLowerCase());
        app.send(apiResponse(msgId, 'OK'));
        break;
      case 'remove_route':
        if (tokens[2]) app.routes.delete(tokens[2].toLowerCase());
        app.send(apiResponse(msgId, 'OK'));
        break;
      case 'ping':
        app.send(apiResponse(msgId, 'OK', 'pong'));
        break;
      case 'authenticate':
        app.send(apiResponse(msgId, 'OK', this.opts.hostports(), this.opts.version, this.opts.hostports()));
        break;
      case 'sip':
        this.emit('sip', {
          app, msgId, transactionId: tokens[2] ?? '', dialogId: tokens[3] ?? '', outboundProxy: tokens[4] ?? '', sip: body,
        } satisfies AppSipCommand);
        break;
      case 'proxy':
        this.emit('proxy', app, msgId, tokens, body);
        break;
      case 'close_flow':
        // dialcore extension (not in drachtio-server, which answers NOK): close_flow|<proto>|<ip>|<port>
        this.emit('close-flow', app, msgId, tokens);
        break;
      default:
        app.send(apiResponse(msgId, 'NOK', 'Unknown message type'));
    }
  }
}
