import { isUtf8 } from 'node:buffer';
import type { Socket } from 'node:net';
import type { WebSocket, RawData } from 'ws';
import { parseMessage, StreamFramer, type ParseResult, type ParseLimits } from '../message/index.js';
import type { Flow, TransportLimits } from './types.js';

export interface ConnectionHooks {
  /** a complete message (or a parse failure) arrived; `raw` is the message's bytes when known */
  onParsed(connection: StreamConnection, result: ParseResult, raw: Buffer | undefined): void;
  /** the underlying socket is gone (called exactly once) */
  onClosed(connection: StreamConnection): void;
  debug(context: Record<string, unknown>, message: string): void;
}

/** A connection-oriented flow: TCP/TLS socket (RFC 3261 18.3 framing) or WebSocket (RFC 7118). */
export abstract class StreamConnection {
  lastActivityAt = Date.now();
  /**
   * Since when the connection has been waiting for the rest of a message: the first byte of a partial message, or,
   * for accepted connections, the moment they opened until their first message. Used to close slowloris peers.
   */
  incompleteSince: number | undefined;
  readonly openedAt = Date.now();
  /** a complete SIP message has been received on this connection */
  sawMessage = false;
  private closedNotified = false;

  constructor(
    readonly flow: Flow,
    protected readonly hooks: ConnectionHooks,
    protected readonly limits: TransportLimits,
  ) {}

  abstract get isOpen(): boolean;
  /** bytes accepted for sending but not yet handed to the kernel */
  abstract get queuedBytes(): number;
  /** send one message; rejects when the connection is closed or its write queue is over the limit */
  abstract write(buf: Buffer): Promise<void>;
  /** close abruptly; 'flow-closed' follows once the socket is gone */
  abstract close(reason: string): void;

  protected checkWritable(buf: Buffer): Error | undefined {
    if (!this.isOpen) return new Error(`flow ${this.flow.id} is closed`);
    if (this.queuedBytes + buf.length > this.limits.maxWriteQueueBytes) {
      this.close('write queue over limit (slow reader)');
      return new Error(`flow ${this.flow.id}: write queue over ${this.limits.maxWriteQueueBytes} bytes, connection closed`);
    }
    return undefined;
  }

  protected notifyClosed(): void {
    if (this.closedNotified) return;
    this.closedNotified = true;
    this.hooks.onClosed(this);
  }
}

/** TCP or TLS: one StreamFramer per connection (RFC 3261 18.3), RFC 5626 4.4.1 CRLF keep-alive answered. */
export class SocketConnection extends StreamConnection {
  private readonly framer: StreamFramer;

  constructor(flow: Flow, readonly socket: Socket, hooks: ConnectionHooks, limits: TransportLimits,
    parseLimits: Partial<ParseLimits>, awaitingFirstMessage: boolean) {
    super(flow, hooks, limits);
    this.framer = new StreamFramer(parseLimits);
    if (awaitingFirstMessage) this.incompleteSince = Date.now();
    socket.setNoDelay(true);
    socket.on('data', (chunk: Buffer) => this.onData(chunk));
    socket.on('error', (err: Error) => hooks.debug({ flow: flow.id, err: err.message }, 'connection error'));
    socket.on('close', () => this.notifyClosed());
    if (socket.destroyed) queueMicrotask(() => this.notifyClosed());
  }

  get isOpen(): boolean { return !this.socket.destroyed && this.socket.writable; }
  get queuedBytes(): number { return this.socket.writableLength; }

  write(buf: Buffer): Promise<void> {
    const refused = this.checkWritable(buf);
    if (refused) return Promise.reject(refused);
    return new Promise((resolve, reject) => {
      this.socket.write(buf, (err) => (err ? reject(err) : resolve()));
    });
  }

  close(reason: string): void {
    if (this.socket.destroyed) return;
    this.hooks.debug({ flow: this.flow.id, reason }, 'closing connection');
    this.socket.destroy();
  }

  private onData(chunk: Buffer): void {
    try {
      const now = Date.now();
      this.lastActivityAt = now;
      let completed = false;
      for (const result of this.framer.push(chunk)) {
        if (this.socket.destroyed) return;
        if ('fatal' in result) {
          this.close(`framing error: ${result.fatal}`);
          return;
        }
        completed = true;
        if ('keepalive' in result) {
          this.write(Buffer.from('\r\n')).catch(() => undefined);   // RFC 5626 4.4.1: CRLFCRLF ping -> CRLF pong
          continue;
        }
        this.sawMessage = true;
        this.hooks.onParsed(this, result, rawBytesOf(result));
      }
      const pending = this.framer.pendingBytes;
      if (completed) this.incompleteSince = pending > 0 ? now : undefined;
      else if (pending > 0 && this.incompleteSince === undefined) this.incompleteSince = now;
    } catch (err) {
      this.hooks.debug({ flow: this.flow.id, err: errorText(err) }, 'error handling inbound bytes');
      this.close('internal error handling inbound bytes');
    }
  }
}

/** RFC 7118: exactly one SIP message per WebSocket message, text or binary. */
export class WebSocketConnection extends StreamConnection {
  /** cleared on each ping round, set by the pong (or any traffic) */
  private alive = true;

  constructor(flow: Flow, readonly ws: WebSocket, hooks: ConnectionHooks, limits: TransportLimits,
    private readonly parseLimits: Partial<ParseLimits>) {
    super(flow, hooks, limits);
    // WebSocket messages are atomic: no partial-message timer. A WS peer that never sends SIP is dropped by the
    // transport layer after the idle timeout (keep-alive pongs do not count for that, see TransportLayer.sweep).
    ws.on('message', (data: RawData) => this.onMessage(data));
    ws.on('pong', () => this.touch());
    ws.on('ping', () => this.touch());
    ws.on('error', (err: Error) => hooks.debug({ flow: flow.id, err: err.message }, 'websocket error'));
    ws.on('close', () => this.notifyClosed());
  }

  get isOpen(): boolean { return this.ws.readyState === this.ws.OPEN; }
  get queuedBytes(): number { return this.ws.bufferedAmount; }

  write(buf: Buffer): Promise<void> {
    const refused = this.checkWritable(buf);
    if (refused) return Promise.reject(refused);
    // a text frame must be valid UTF-8 (RFC 6455 5.6); a SIP message with a binary body goes as a binary frame
    return new Promise((resolve, reject) => {
      this.ws.send(buf, { binary: !isUtf8(buf) }, (err) => (err ? reject(err) : resolve()));
    });
  }

  close(reason: string): void {
    if (this.ws.readyState === this.ws.CLOSED) return;
    this.hooks.debug({ flow: this.flow.id, reason }, 'closing websocket');
    this.ws.terminate();
  }

  /** keep-alive round: a peer that did not answer the previous ping is dead */
  ping(): void {
    if (!this.alive) {
      this.close('no pong to keep-alive ping');
      return;
    }
    this.alive = false;
    try {
      this.ws.ping();
    } catch (err) {
      this.close(`ping failed: ${errorText(err)}`);
    }
  }

  private touch(): void {
    this.alive = true;
    this.lastActivityAt = Date.now();
  }

  private onMessage(data: RawData): void {
    try {
      this.touch();
      const buf = Array.isArray(data) ? Buffer.concat(data) : Buffer.isBuffer(data) ? data : Buffer.from(data);
      if (isBlank(buf)) return;   // CRLF keep-alives some clients send over WS
      this.sawMessage = true;
      this.hooks.onParsed(this, parseMessage(buf, this.parseLimits), buf);
    } catch (err) {
      this.hooks.debug({ flow: this.flow.id, err: errorText(err) }, 'error handling websocket message');
      this.close('internal error handling websocket message');
    }
  }
}

/** a framer result may carry the message's bytes; otherwise the caller re-serialises */
function rawBytesOf(result: ParseResult): Buffer | undefined {
  if ('raw' in result && Buffer.isBuffer(result.raw)) return result.raw;
  return undefined;
}

export function isBlank(buf: Buffer): boolean {
  for (const byte of buf) if (byte !== 0x0d && byte !== 0x0a && byte !== 0x20 && byte !== 0x09 && byte !== 0) return false;
  return true;
}

export function errorText(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
