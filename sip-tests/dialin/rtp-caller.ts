/**
 * The media side of a test dial-in caller: a UDP socket the caller's SDP offer points at (SIPp
 * does the signalling, -key rtp_port). It counts the RTP rtpengine sends (the prompts), learns
 * rtpengine's address from the first packet, and from then sends 20 ms PCMU frames: silence, and
 * on request key presses as RFC 4733 telephone-events (PT 101; RFC 4733 §2.5: one event, the
 * same timestamp, growing duration, the end bit sent three times) or as in-band DTMF tones in
 * G.711 µ-law (ITU-T Q.23 frequency pairs, encoded per ITU-T G.711).
 */
import { createSocket, type Socket } from 'node:dgram';
import { waitUntil } from '../harness/index.js';

const ROWS = [697, 770, 852, 941];
const COLUMNS = [1209, 1336, 1477, 1633];
const KEYPAD = ['123A', '456B', '789C', '*0#D'];
const EVENT_CODES = '0123456789*#ABCD';
const FRAME_SAMPLES = 160; // 20 ms at 8 kHz
const TELEPHONE_EVENT_PT = 101;

/** ITU-T G.711 µ-law encoding of one 16-bit linear sample. */
export function muLaw(sample: number): number {
  const BIAS = 0x84;
  const CLIP = 32635;
  let s = Math.max(-CLIP, Math.min(CLIP, Math.round(sample)));
  const sign = s < 0 ? 0x80 : 0;
  if (s < 0) s = -s;
  s += BIAS;
  let exponent = 7;
  for (let mask = 0x4000; (s & mask) === 0 && exponent > 0; mask >>= 1) exponent--;
  const mantissa = (s >> (exponent + 3)) & 0x0f;
  return ~(sign | (exponent << 4) | mantissa) & 0xff;
}

function toneFrequencies(key: string): [number, number] {
  const row = KEYPAD.findIndex((r) => r.includes(key));
  if (row < 0) throw new Error(`not a DTMF key: ${key}`);
  return [ROWS[row]!, COLUMNS[KEYPAD[row]!.indexOf(key)]!];
}

interface Frame {
  pt: number;
  payload: Buffer;
  marker?: boolean;
  /** RFC 4733 packets of one event share the timestamp of the event's first packet. */
  event?: 'first' | 'next';
  /** Samples the timestamp advances after this frame. */
  advance: number;
  /** Sent in the same tick as the previous frame (RFC 4733 end retransmissions). */
  sameTick?: boolean;
}

export type DigitMode = 'rfc4733' | 'inband';

export class RtpCaller {
  private sequence = Math.floor(Math.random() * 1000);
  private timestamp = Math.floor(Math.random() * 100_000);
  private readonly ssrc = Math.floor(Math.random() * 0xffffffff);
  private readonly queue: Frame[] = [];
  private ticker?: NodeJS.Timeout;
  private peer?: { address: string; port: number };
  private received = 0;
  private phase = 0;
  private closed = false;
  private eventTimestamp = 0;
  private lastReceivedAt = 0;

  private constructor(private readonly socket: Socket) {
    socket.on('message', (msg, rinfo) => {
      if (msg.length < 12 || msg[0]! >> 6 !== 2) return;
      this.received++;
      this.lastReceivedAt = Date.now();
      if (!this.peer) {
        this.peer = { address: rinfo.address, port: rinfo.port };
        this.ticker = setInterval(() => this.tick(), 20);
      }
    });
  }

  /** A socket on `host` (the address the caller's SDP names: the carrier trunk's is 127.0.0.2). */
  static async open(host = '127.0.0.1'): Promise<RtpCaller> {
    const socket = createSocket('udp4');
    await new Promise<void>((resolve) => socket.bind(0, host, () => resolve()));
    return new RtpCaller(socket);
  }

  get port(): number {
    return this.socket.address().port;
  }

  /** RTP packets received from rtpengine (prompts, hold music). */
  get packetsReceived(): number {
    return this.received;
  }

  /** Waits until rtpengine has sent `count` packets (the first prompt is playing). */
  async waitForPrompt(count = 5, timeoutMs = 15_000): Promise<void> {
    await waitUntil(() => this.received >= count, { timeoutMs, what: `${count} RTP packets from rtpengine` });
  }

  /**
   * Waits for the next prompt to play to its end: packets beyond `afterPackets` (default: those
   * received so far), then nothing for `quietMs`.
   */
  async waitForNextPrompt(afterPackets = this.received, quietMs = 400, timeoutMs = 20_000): Promise<void> {
    await this.waitForPrompt(afterPackets + 5, timeoutMs);
    await waitUntil(() => Date.now() - this.lastReceivedAt >= quietMs, { timeoutMs, intervalMs: 50, what: `${quietMs} ms without RTP from rtpengine` });
  }

  /** Presses keys one after the other (`gapMs` of silence after each); resolves when all were sent. */
  async press(keys: string, mode: DigitMode, gapMs = 300): Promise<void> {
    await this.waitForPrompt(1);
    for (const key of keys) {
      if (mode === 'rfc4733') this.queueEvent(key);
      else this.queueTone(key);
      for (let i = 0; i < Math.ceil(gapMs / 20); i++) this.queue.push(this.silence());
    }
    await waitUntil(() => this.queue.length === 0, { timeoutMs: 10_000 + keys.length * (gapMs + 500), what: 'the key presses sent' });
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    clearInterval(this.ticker);
    this.socket.close();
  }

  private queueEvent(key: string): void {
    const code = EVENT_CODES.indexOf(key);
    if (code < 0) throw new Error(`not a DTMF key: ${key}`);
    const frames = 8; // 160 ms
    const payload = (duration: number, end: boolean) => Buffer.from([code, (end ? 0x80 : 0) | 10, duration >> 8, duration & 0xff]);
    for (let i = 1; i <= frames; i++) {
      this.queue.push({ pt: TELEPHONE_EVENT_PT, payload: payload(i * FRAME_SAMPLES, false), marker: i === 1, event: i === 1 ? 'first' : 'next', advance: 0 });
    }
    for (let i = 0; i < 3; i++) {
      this.queue.push({ pt: TELEPHONE_EVENT_PT, payload: payload(frames * FRAME_SAMPLES, true), event: 'next', advance: i === 2 ? frames * FRAME_SAMPLES : 0, sameTick: i > 0 });
    }
  }

  private queueTone(key: string): void {
    const [low, high] = toneFrequencies(key);
    for (let f = 0; f < 8; f++) {
      const payload = Buffer.alloc(FRAME_SAMPLES);
      for (let i = 0; i < FRAME_SAMPLES; i++, this.phase++) {
        const t = this.phase / 8000;
        payload[i] = muLaw(7000 * (Math.sin(2 * Math.PI * low * t) + Math.sin(2 * Math.PI * high * t)));
      }
      this.queue.push({ pt: 0, payload, advance: FRAME_SAMPLES });
    }
  }

  private silence(): Frame {
    return { pt: 0, payload: Buffer.alloc(FRAME_SAMPLES, 0xff), advance: FRAME_SAMPLES };
  }

  private tick(): void {
    const first = this.queue.shift() ?? this.silence();
    this.sendFrame(first);
    while (this.queue[0]?.sameTick) this.sendFrame(this.queue.shift()!);
  }

  private sendFrame(frame: Frame): void {
    if (!this.peer || this.closed) return;
    const header = Buffer.alloc(12);
    header[0] = 0x80;
    header[1] = (frame.marker ? 0x80 : 0) | frame.pt;
    header.writeUInt16BE(this.sequence++ & 0xffff, 2);
    if (frame.event === 'first') this.eventTimestamp = this.timestamp;
    header.writeUInt32BE((frame.event ? this.eventTimestamp : this.timestamp) >>> 0, 4);
    header.writeUInt32BE(this.ssrc >>> 0, 8);
    this.timestamp = (this.timestamp + frame.advance) >>> 0;
    this.socket.send(Buffer.concat([header, frame.payload]), this.peer.port, this.peer.address);
  }
}
