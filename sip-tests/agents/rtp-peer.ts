/**
 * A test's own RTP endpoint (RFC 3550) on 127.0.0.1: the SDP of a SIPp peer running
 * agent-uas-listen.xml points at it (-key rtp_port), so the test sees every packet rtpengine sends
 * that peer (payload type, payload) and can speak for the peer: `speak()` sends a G.711 A-law tone
 * to the port rtpengine allocated for it (found with an rtpengine `query`). Also the SIPp peers
 * that speak a tone of their own (`toneScenario`).
 */
import { createSocket } from 'node:dgram';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { RtpenginePool } from '../../src/app/media/index.js';

export interface RtpPacket {
  payloadType: number;
  marker: boolean;
  ssrc: number;
  payload: Buffer;
  at: number;
}

export interface RtpPeer {
  readonly port: number;
  readonly packets: RtpPacket[];
  /** Sends 20 ms A-law packets of a `hz` tone (PT 8) to 127.0.0.1:`port` until `close()`. */
  speak(port: number, hz: number): void;
  close(): void;
}

export async function rtpPeer(): Promise<RtpPeer> {
  const socket = createSocket('udp4');
  const packets: RtpPacket[] = [];
  socket.on('message', (msg) => {
    if (msg.length < 12 || msg[0]! >> 6 !== 2) return;
    const csrc = msg[0]! & 0x0f;
    const extension = (msg[0]! & 0x10) !== 0;
    let offset = 12 + 4 * csrc;
    if (extension && msg.length >= offset + 4) offset += 4 + 4 * msg.readUInt16BE(offset + 2);
    packets.push({ payloadType: msg[1]! & 0x7f, marker: (msg[1]! & 0x80) !== 0, ssrc: msg.readUInt32BE(8), payload: msg.subarray(offset), at: Date.now() });
  });
  await new Promise<void>((resolve) => socket.bind(0, '127.0.0.1', () => resolve()));
  let timer: NodeJS.Timeout | undefined;
  return {
    port: socket.address().port,
    packets,
    speak(port, hz) {
      const ssrc = Math.floor(Math.random() * 0xffffffff);
      let seq = 0;
      timer = setInterval(() => {
        const packet = Buffer.alloc(12 + 160);
        packet[0] = 0x80;
        packet[1] = 8;
        packet.writeUInt16BE(seq & 0xffff, 2);
        packet.writeUInt32BE((seq * 160) >>> 0, 4);
        packet.writeUInt32BE(ssrc >>> 0, 8);
        for (let i = 0; i < 160; i++) packet[12 + i] = linearToAlaw(Math.round(8000 * Math.sin((2 * Math.PI * hz * (seq * 160 + i)) / 8000)));
        seq++;
        socket.send(packet, port, '127.0.0.1');
      }, 20);
    },
    close() {
      clearInterval(timer);
      socket.close();
    },
  };
}

/** ITU-T G.711 A-law of a 16-bit sample (the Sun reference encoder). */
export function linearToAlaw(sample: number): number {
  let value = sample >> 3;
  let mask = 0xd5;
  if (value < 0) {
    mask = 0x55;
    value = -value - 1;
  }
  const ends = [0x1f, 0x3f, 0x7f, 0xff, 0x1ff, 0x3ff, 0x7ff, 0xfff];
  const segment = ends.findIndex((end) => value <= end);
  if (segment < 0) return 0x7f ^ mask;
  return ((segment << 4) | ((segment < 2 ? value >> 1 : value >> segment) & 0x0f)) ^ mask;
}

/** ITU-T G.711 A-law byte to a 16-bit sample. */
function alawToLinear(byte: number): number {
  const a = byte ^ 0x55;
  const segment = (a & 0x70) >> 4;
  let value = (a & 0x0f) << 4;
  value += segment === 0 ? 8 : 0x108;
  if (segment > 1) value <<= segment - 1;
  return a & 0x80 ? value : -value;
}

/** ITU-T G.711 mu-law byte to a 16-bit sample. */
function ulawToLinear(byte: number): number {
  const u = ~byte & 0xff;
  let value = (((u & 0x0f) << 3) + 0x84) << ((u & 0x70) >> 4);
  value -= 0x84;
  return u & 0x80 ? -value : value;
}

/** Mean absolute sample of a G.711 packet (PT 0 or 8); undefined for other payload types. */
export function loudness(packet: RtpPacket): number | undefined {
  const decode = packet.payloadType === 8 ? alawToLinear : packet.payloadType === 0 ? ulawToLinear : undefined;
  if (!decode || packet.payload.length === 0) return undefined;
  let sum = 0;
  for (const byte of packet.payload) sum += Math.abs(decode(byte));
  return sum / packet.payload.length;
}

/** Speech-level audio (a tone at -12 dBFS is about 5000; G.711 silence decodes to 0 or 8). */
export const LOUD = 500;

/** Audio packets (PT 0/8) received in [from, to): how many, and how many of them carry sound. */
export function audioIn(peer: RtpPeer, from: number, to = Date.now()): { packets: number; loud: number } {
  const audio = peer.packets.filter((p) => p.at >= from && p.at < to && (p.payloadType === 0 || p.payloadType === 8));
  return { packets: audio.length, loud: audio.filter((p) => (loudness(p) ?? 0) > LOUD).length };
}

/**
 * The port rtpengine allocated for the peer whose SDP named 127.0.0.1:`peerPort` (the `local port`
 * of the stream whose endpoint is that port), or undefined while no call has it.
 */
export async function rtpenginePortFor(pool: RtpenginePool, callIds: readonly string[], peerPort: number): Promise<number | undefined> {
  for (const callId of callIds) {
    const reply = await pool.query({ 'call-id': callId }).catch(() => undefined);
    for (const monologue of Object.values(reply?.tags ?? {})) {
      const medias = (monologue as { medias?: unknown }).medias;
      if (!Array.isArray(medias)) continue;
      for (const media of medias) {
        const streams = (media as { streams?: unknown }).streams;
        if (!Array.isArray(streams)) continue;
        for (const stream of streams as Array<Record<string, unknown>>) {
          const endpoints = [stream.endpoint, stream['advertised endpoint']] as Array<{ port?: unknown } | undefined>;
          if (endpoints.some((e) => e?.port === peerPort) && typeof stream['local port'] === 'number') return stream['local port'];
        }
      }
    }
  }
  return undefined;
}

/**
 * Share of the energy at `hz` (0..1) in the G.711 packets with sound received since `from`,
 * averaged per packet (20 ms: 400, 600 and 800 Hz are whole cycles): a lone tone near 1, a tone
 * that is not there near 0. 0 when nothing loud arrived.
 */
export function heardTone(peer: RtpPeer, from: number, hz: number): number {
  const decode = (p: RtpPacket) => (p.payloadType === 8 ? alawToLinear : ulawToLinear);
  let sum = 0;
  let count = 0;
  for (const packet of peer.packets) {
    if (packet.at < from || (loudness(packet) ?? 0) <= LOUD) continue;
    const samples = [...packet.payload].map(decode(packet));
    let re = 0;
    let im = 0;
    let energy = 0;
    samples.forEach((x, n) => {
      re += x * Math.cos((2 * Math.PI * hz * n) / 8000);
      im -= x * Math.sin((2 * Math.PI * hz * n) / 8000);
      energy += x * x;
    });
    sum += (2 * (re * re + im * im)) / samples.length / energy;
    count++;
  }
  return count === 0 ? 0 : sum / count;
}

/**
 * uas-answer-rtp-stream.xml looping one second of a tone (raw A-law): SIPp reads the rtp_stream
 * file when it loads the scenario, so the copy names the file itself.
 */
export function toneScenario(hz: number): string {
  const dir = mkdtempSync(join(tmpdir(), 'dialcore-tone-'));
  const audio = join(dir, `${hz}.alaw`);
  const bytes = Buffer.alloc(8000);
  for (let i = 0; i < bytes.length; i++) bytes[i] = linearToAlaw(Math.round(8000 * Math.sin((2 * Math.PI * hz * i) / 8000)));
  writeFileSync(audio, bytes);
  const scenario = join(dir, 'uas-answer-rtp-stream.xml');
  writeFileSync(scenario, readFileSync(new URL('../../sipp-scenarios/uas-answer-rtp-stream.xml', import.meta.url), 'utf8').replaceAll('[audio_file]', audio));
  return scenario;
}

