/**
 * Raw SIP peers for the bad-input suites: bytes go out exactly as given (no SIP stack on our side),
 * responses come back as text. Every socket binds 127.0.0.1.
 */
import dgram from 'node:dgram';
import net from 'node:net';
import { randomBytes } from 'node:crypto';
import { afterAll, afterEach, beforeAll, expect } from 'vitest';
import { startEdgeStack, type StackOptions, type EdgeTestStack } from '../fixtures/stack.js';
import type { Srf } from '../../src/app/sip/srf.js';

const HOST = '127.0.0.1';

/** A status line's code, or undefined for anything else (requests, garbage). */
export function statusOf(message: string): number | undefined {
  const match = /^SIP\/2\.0 (\d{3}) /.exec(message);
  return match ? Number(match[1]) : undefined;
}

export function headerOf(message: string, name: string): string | undefined {
  const match = new RegExp(`^${name}\\s*:\\s*(.*)$`, 'im').exec(message);
  return match ? match[1].trim() : undefined;
}

/** An OPTIONS request with fresh branch / tags / Call-ID; `rport` so UDP responses come back to our socket. */
export function optionsRequest(targetPort: number, localPort: number, protocol: 'UDP' | 'TCP' = 'UDP', extraHeaders: string[] = []): string {
  const id = randomBytes(6).toString('hex');
  return [
    `OPTIONS sip:probe@${HOST}:${targetPort} SIP/2.0`,
    `Via: SIP/2.0/${protocol} ${HOST}:${localPort};rport;branch=z9hG4bK-${id}`,
    'Max-Forwards: 70',
    `From: <sip:faults@${HOST}>;tag=${id}`,
    `To: <sip:probe@${HOST}:${targetPort}>`,
    `Call-ID: ${id}@faults`,
    'CSeq: 1 OPTIONS',
    ...extraHeaders,
    'Content-Length: 0',
    '', '',
  ].join('\r\n');
}

/** An INVITE with an SDP body, for truncation tests; `extraHeaders` (e.g. a User-Agent) go before Content-Type. */
export function inviteRequest(targetPort: number, localPort: number, extraHeaders: string[] = [], localHost = HOST): string {
  const id = randomBytes(6).toString('hex');
  const sdp = ['v=0', `o=- 1 1 IN IP4 ${HOST}`, 's=-', `c=IN IP4 ${HOST}`, 't=0 0', 'm=audio 40000 RTP/AVP 0', 'a=rtpmap:0 PCMU/8000', ''].join('\r\n');
  return [
    `INVITE sip:callee@${HOST}:${targetPort} SIP/2.0`,
    `Via: SIP/2.0/UDP ${localHost}:${localPort};rport;branch=z9hG4bK-${id}`,
    'Max-Forwards: 70',
    `From: <sip:faults@${HOST}>;tag=${id}`,
    `To: <sip:callee@${HOST}:${targetPort}>`,
    `Call-ID: ${id}@faults`,
    'CSeq: 1 INVITE',
    `Contact: <sip:faults@${localHost}:${localPort}>`,
    ...extraHeaders,
    'Content-Type: application/sdp',
    `Content-Length: ${Buffer.byteLength(sdp)}`,
    '',
    sdp,
  ].join('\r\n');
}

/** A UDP socket on 127.0.0.1 that records every datagram it receives. */
export class UdpPeer {
  readonly received: string[] = [];
  private waiters: Array<() => void> = [];

  private constructor(private readonly socket: dgram.Socket) {
    socket.on('message', (buf) => {
      this.received.push(buf.toString('latin1'));
      for (const wake of this.waiters.splice(0)) wake();
    });
  }

  /** Bound to `host` (default 127.0.0.1; any 127/8 address works on Linux, e.g. for a source of its own). */
  static async open(host = HOST): Promise<UdpPeer> {
    const socket = dgram.createSocket('udp4');
    await new Promise<void>((resolve) => socket.bind(0, host, () => resolve()));
    return new UdpPeer(socket);
  }

  get port(): number {
    return this.socket.address().port;
  }

  send(payload: string | Buffer, port: number): Promise<void> {
    return new Promise((resolve, reject) => this.socket.send(payload, port, HOST, (err) => (err ? reject(err) : resolve())));
  }

  /** Resolves with the first received message satisfying `match` (looking at old ones too), or undefined after `timeoutMs`. */
  async waitFor(match: (message: string) => boolean, timeoutMs: number): Promise<string | undefined> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const found = this.received.find(match);
      if (found !== undefined) return found;
      const left = deadline - Date.now();
      if (left <= 0) return undefined;
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, left);
        this.waiters.push(() => {
          clearTimeout(timer);
          resolve();
        });
      });
    }
  }

  /** The first final response (>= 200), or undefined after `timeoutMs`. */
  finalResponse(timeoutMs: number): Promise<string | undefined> {
    return this.waitFor((m) => (statusOf(m) ?? 0) >= 200, timeoutMs);
  }

  close(): void {
    this.socket.close();
  }
}

/** A TCP connection that splits what it receives into SIP messages (Content-Length framing, RFC 3261 18.3). */
export class TcpPeer {
  readonly messages: string[] = [];
  /** resolves when the server closed (or reset) the connection */
  readonly closed: Promise<void>;
  private buffer = '';
  private waiters: Array<() => void> = [];

  private constructor(readonly socket: net.Socket) {
    socket.on('data', (chunk: Buffer) => {
      this.buffer += chunk.toString('latin1');
      this.split();
      for (const wake of this.waiters.splice(0)) wake();
    });
    socket.on('error', () => undefined);
    this.closed = new Promise((resolve) => socket.once('close', () => resolve()));
  }

  static connect(port: number, localAddress = HOST): Promise<TcpPeer> {
    return new Promise((resolve, reject) => {
      const socket = net.connect({ host: HOST, port, localAddress });
      socket.once('connect', () => {
        socket.off('error', reject);
        resolve(new TcpPeer(socket));
      });
      socket.once('error', reject);
    });
  }

  get localPort(): number {
    return this.socket.localPort ?? 0;
  }

  get isClosed(): boolean {
    return this.socket.destroyed || this.socket.readableEnded;
  }

  send(payload: string | Buffer): Promise<void> {
    return new Promise((resolve, reject) => this.socket.write(payload, (err) => (err ? reject(err) : resolve())));
  }

  async waitFor(match: (message: string) => boolean, timeoutMs: number): Promise<string | undefined> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const found = this.messages.find(match);
      if (found !== undefined) return found;
      const left = deadline - Date.now();
      if (left <= 0 || this.socket.destroyed) return undefined;
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, Math.min(left, 100));
        this.waiters.push(() => {
          clearTimeout(timer);
          resolve();
        });
      });
    }
  }

  finalResponse(timeoutMs: number): Promise<string | undefined> {
    return this.waitFor((m) => (statusOf(m) ?? 0) >= 200, timeoutMs);
  }

  /** true if the server closed the connection within `timeoutMs` */
  async closedWithin(timeoutMs: number): Promise<boolean> {
    let timer: NodeJS.Timeout | undefined;
    const timedOut = new Promise<false>((resolve) => { timer = setTimeout(() => resolve(false), timeoutMs); });
    const result = await Promise.race([this.closed.then(() => true as const), timedOut]);
    clearTimeout(timer);
    return result;
  }

  destroy(): void {
    this.socket.destroy();
  }

  private split(): void {
    for (;;) {
      const headEnd = this.buffer.indexOf('\r\n\r\n');
      if (headEnd === -1) return;
      const head = this.buffer.slice(0, headEnd);
      const length = Number(/^(?:Content-Length|l)\s*:\s*(\d+)/im.exec(head)?.[1] ?? 0);
      const end = headEnd + 4 + length;
      if (this.buffer.length < end) return;
      this.messages.push(this.buffer.slice(0, end));
      this.buffer = this.buffer.slice(end);
    }
  }
}

/** One OPTIONS round trip over UDP; the final response, or undefined after `timeoutMs`. */
export async function udpOptions(sipPort: number, timeoutMs = 3000): Promise<string | undefined> {
  const peer = await UdpPeer.open();
  try {
    await peer.send(optionsRequest(sipPort, peer.port, 'UDP'), sipPort);
    return await peer.finalResponse(timeoutMs);
  } finally {
    peer.close();
  }
}

/** One OPTIONS round trip over a new TCP connection. */
export async function tcpOptions(sipPort: number, timeoutMs = 3000, localAddress = HOST): Promise<string | undefined> {
  const peer = await TcpPeer.connect(sipPort, localAddress);
  try {
    await peer.send(optionsRequest(sipPort, peer.localPort, 'TCP'));
    return await peer.finalResponse(timeoutMs);
  } finally {
    peer.destroy();
  }
}

/** Status codes of an OPTIONS round trip over UDP and over TCP: what every fault test checks afterwards. */
export async function servingStatuses(sipPort: number): Promise<{ udp: number | undefined; tcp: number | undefined }> {
  const [udp, tcp] = await Promise.all([udpOptions(sipPort), tcpOptions(sipPort)]);
  return { udp: udp === undefined ? undefined : statusOf(udp), tcp: tcp === undefined ? undefined : statusOf(tcp) };
}

/** Deterministic bytes (mulberry32), so a failing run can be reproduced from its seed. */
export function seededBytes(seed: number): (length: number) => Buffer {
  let state = seed >>> 0;
  const next = (): number => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  return (length: number) => {
    const buf = Buffer.alloc(length);
    for (let i = 0; i < length; i++) buf[i] = Math.floor(next() * 256);
    return buf;
  };
}

export function seededInt(seed: number): (max: number) => number {
  const bytes = seededBytes(seed);
  return (max: number) => bytes(4).readUInt32BE(0) % max;
}

/** Adds `;rport` to the first value of the first Via header field (folded lines included). */
/** RFC 3581: makes the edge answer to the datagram's source port instead of the Via's sent-by. */
export function withRport(message: Buffer): Buffer {
  const text = message.toString('latin1');
  const via = /(^|\r?\n)(via|v)[ \t]*:/i.exec(text);
  if (!via) return message;
  const valueStart = via.index + via[0].length;
  let fieldEnd = valueStart;
  for (;;) {
    const eol = text.indexOf('\n', fieldEnd);
    if (eol === -1) { fieldEnd = text.length; break; }
    const next = text[eol + 1];
    if (next === ' ' || next === '\t') { fieldEnd = eol + 1; continue; }
    fieldEnd = text[eol - 1] === '\r' ? eol - 1 : eol;
    break;
  }
  const value = text.slice(valueStart, fieldEnd);
  if (/;\s*rport/i.test(value)) return message;
  const comma = value.indexOf(',');
  const insertAt = comma === -1 ? fieldEnd : valueStart + comma;
  return Buffer.concat([message.subarray(0, insertAt), Buffer.from(';rport'), message.subarray(insertAt)]);
}

/** The stack a bad-input suite attacks; set in beforeAll. */
export interface EdgeUnderAttack {
  stack: EdgeTestStack;
}

/** What a bad-input suite adds to the defaults of useEdgeUnderAttack(). */
export interface AttackSuiteExtras {
  /** routes the app registers besides answering OPTIONS 200 */
  addRoutes?: (app: Srf) => void;
  /** runs after each test, once the edge was seen still serving */
  alsoCheckAfterEach?: (stack: EdgeTestStack) => void;
}

/**
 * Registers vitest hooks in the calling describe block: before all, a stack started with `options` and an app on it
 * answering OPTIONS 200; after each test the edge must still answer OPTIONS over UDP and TCP; after all, the stack
 * stops.
 */
export function useEdgeUnderAttack(options: StackOptions = {}, extras: AttackSuiteExtras = {}): EdgeUnderAttack {
  const edge = {} as EdgeUnderAttack;
  beforeAll(async () => {
    edge.stack = await startEdgeStack(options);
    const app = await edge.stack.connectApp();
    app.options((_req, res) => res.send(200));
    extras.addRoutes?.(app);
  });
  afterAll(async () => {
    await edge.stack?.stop();
  });
  afterEach(async () => {
    expect(await servingStatuses(edge.stack.sipPort)).toEqual({ udp: 200, tcp: 200 });
    extras.alsoCheckAfterEach?.(edge.stack);
  });
  return edge;
}
