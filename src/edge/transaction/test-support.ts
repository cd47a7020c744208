/**
 * Test doubles for the transaction layer's unit tests: a fake transport recording what is sent (with the fake
 * clock's time), a layer on it with vitest hooks, and message builders. Not used by production code.
 */
import { EventEmitter } from 'node:events';
import { afterEach, beforeEach, vi } from 'vitest';
import { SipMessage } from '../message/index.js';
import type { Flow, InboundMessage, MalformedInbound, SendTarget, SentInfo, TransportProtocol } from '../transport/index.js';
import { TransactionLayer } from './transaction-layer.js';
import type { ServerTransaction, TransactionLayerOptions } from './types.js';

export interface SentRecord {
  at: number;
  text: string;
  message: SipMessage;
  target: SendTarget;
}

/** Minimal reader for what the layer serialises (no folding, one value per line) — keeps tests parser-independent. */
export function readWire(buf: Buffer | string): SipMessage {
  const text = typeof buf === 'string' ? buf : buf.toString('utf8');
  const headEnd = text.indexOf('\r\n\r\n');
  const lines = text.slice(0, headEnd < 0 ? text.length : headEnd).split('\r\n');
  const msg = new SipMessage();
  const [a = '', b = '', ...rest] = (lines[0] ?? '').split(' ');
  if (a === 'SIP/2.0') {
    msg.status = Number(b);
    msg.reason = rest.join(' ');
  } else {
    msg.method = a;
    msg.requestUri = b;
  }
  for (const line of lines.slice(1)) {
    const colon = line.indexOf(':');
    if (colon > 0) msg.append(line.slice(0, colon).trim(), line.slice(colon + 1).trim());
  }
  if (headEnd >= 0) msg.body = Buffer.from(text.slice(headEnd + 4));
  return msg;
}

export function flowFor(protocol: TransportProtocol = 'udp', remotePort = 5070, remoteAddress = '127.0.0.2'): Flow {
  const id = protocol === 'udp' ? `udp:127.0.0.1:5060:${remoteAddress}:${remotePort}` : `${protocol}-flow-${remoteAddress}-${remotePort}`;
  return { id, protocol, remoteAddress, remotePort, localAddress: '127.0.0.1', localPort: 5060 };
}

export class FakeTransport extends EventEmitter {
  readonly sent: SentRecord[] = [];
  /** when set, send() rejects with this error */
  failWith: Error | undefined;

  send(buf: Buffer, target: SendTarget): Promise<SentInfo> {
    if (this.failWith !== undefined) return Promise.reject(this.failWith);
    const text = buf.toString('utf8');
    this.sent.push({ at: Date.now(), text, message: readWire(text), target });
    const flow = flowFor(target.protocol, target.port, target.address);
    return Promise.resolve({ flow, bytes: buf.length });
  }

  deliver(message: SipMessage, flow: Flow = flowFor()): InboundMessage {
    const inbound: InboundMessage = { message, raw: message.serialise(), flow, receivedAt: Date.now() };
    this.emit('message', inbound);
    return inbound;
  }

  deliverMalformed(malformed: MalformedInbound): void {
    this.emit('malformed', malformed);
  }

  /** sent messages filtered by request method or response status */
  sentWhere(pred: (m: SipMessage) => boolean): SentRecord[] {
    return this.sent.filter((r) => pred(r.message));
  }

  clear(): void {
    this.sent.length = 0;
  }
}

/** A request the layer passed up to the TU, with the server transaction created for it. */
export interface PassedUpRequest {
  req: InboundMessage;
  stx: ServerTransaction;
}

/** A TransactionLayer on a FakeTransport, recording what it passes up to the TU ('request' and 'ack'). */
export class LayerUnderTest {
  transport!: FakeTransport;
  txl!: TransactionLayer;
  requests: PassedUpRequest[] = [];
  /** ACKs for 2xx (and ACKs in RFC 6026 Accepted) passed up */
  acks: InboundMessage[] = [];

  constructor(private readonly options: TransactionLayerOptions) {}

  /** A fresh transport, layer and records, for the next test. */
  reset(): void {
    this.transport = new FakeTransport();
    this.requests = [];
    this.acks = [];
    this.txl = this.startLayer(this.options);
  }

  /** Stop the layer and start another on the same transport with other options, recording into the same arrays. */
  restart(options: TransactionLayerOptions): void {
    this.txl.stop();
    this.txl = this.startLayer(options);
  }

  private startLayer(options: TransactionLayerOptions): TransactionLayer {
    const txl = new TransactionLayer(this.transport, options);
    txl.on('request', (req, stx) => this.requests.push({ req, stx }));
    txl.on('ack', (ack) => this.acks.push(ack));
    return txl;
  }
}

/**
 * Registers vitest hooks in the calling describe block: before each test fake timers start at t = 0 and the layer
 * (with `options`) is reset; after it the layer is stopped and real timers restored.
 */
export function useLayerOnFakeClock(options: TransactionLayerOptions = {}): LayerUnderTest {
  const layer = new LayerUnderTest(options);
  beforeEach(() => {
    vi.useFakeTimers({ now: 0 });
    layer.reset();
  });
  afterEach(() => {
    layer.txl.stop();
    vi.useRealTimers();
  });
  return layer;
}

export interface RequestFields {
  method: string;
  branch?: string | null;        // null: no branch parameter (RFC 2543)
  via?: string;                  // full top Via value, overrides branch
  uri?: string;
  callId?: string;
  cseq?: number;
  fromTag?: string | null;
  toTag?: string;
  routes?: string[];
}

export function makeRequest(f: RequestFields): SipMessage {
  const msg = new SipMessage();
  msg.method = f.method;
  msg.requestUri = f.uri ?? 'sip:bob@127.0.0.1:5060';
  const branch = f.branch === undefined ? 'z9hG4bK-test-1' : f.branch;
  msg.append('Via', f.via ?? `SIP/2.0/UDP 127.0.0.2:5070${branch === null ? '' : `;branch=${branch}`};rport`);
  msg.append('Max-Forwards', '70');
  for (const r of f.routes ?? []) msg.append('Route', r);
  msg.append('From', `"Alice" <sip:alice@127.0.0.2>${f.fromTag === null ? '' : `;tag=${f.fromTag ?? 'from-1'}`}`);
  msg.append('To', `<sip:bob@127.0.0.1>${f.toTag === undefined ? '' : `;tag=${f.toTag}`}`);
  msg.append('Call-ID', f.callId ?? 'call-1@test');
  msg.append('CSeq', `${f.cseq ?? 1} ${f.method}`);
  return msg;
}

/** A response to `req` as a UAS would send it (Via copied), To tag added for non-100. */
export function makeResponse(req: SipMessage, status: number, toTag = 'to-1'): SipMessage {
  const res = new SipMessage();
  res.status = status;
  res.reason = 'Test';
  for (const v of req.getAll('Via')) res.append('Via', v);
  res.append('From', req.get('From') ?? '');
  const to = req.get('To') ?? '';
  res.append('To', status === 100 || req.toTag !== undefined ? to : `${to};tag=${toTag}`);
  res.append('Call-ID', req.get('Call-ID') ?? '');
  res.append('CSeq', req.get('CSeq') ?? '');
  return res;
}
