/**
 * Call recordings. rtpengine records a call's RTP (`start recording`, `--recording-method=pcap`:
 * one pcap per rtpengine call under `<recording-dir>/pcaps/`); when the call ends dialcore turns
 * each pcap into a stereo WAV next to it (`<recording-dir>/wav/`), one channel per direction
 * (customer, agent), samples placed by capture time so gaps stay gaps. No audio is mixed.
 *
 * Debian's rtpengine-recording-daemon cannot be used here: it reads the packets through the
 * kernel module's /proc interface (`--recording-method=proc`), and rtpengine runs in userspace.
 *
 * Only G.711 (RFC 3551 payload types 0 and 8) is decoded: a customer leg's internal side always
 * speaks it (media/parked-sdp.ts), so does every carrier here; other payloads are skipped.
 */
import { existsSync, mkdirSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { pcm16Wav } from '../media/wav.js';

const RATE = 8000;

export interface RecordingFile {
  /** WAV file name (under the recordings directory's wav/). */
  file: string;
  bytes: number;
  seconds: number;
}

/** ITU-T G.711 mu-law and A-law expansion to 16-bit linear. */
function ulawToLinear(byte: number): number {
  const u = ~byte & 0xff;
  const t = (((u & 0x0f) << 3) + 0x84) << ((u & 0x70) >> 4);
  return u & 0x80 ? 0x84 - t : t - 0x84;
}

function alawToLinear(byte: number): number {
  const a = byte ^ 0x55;
  let t = (a & 0x0f) << 4;
  const segment = (a & 0x70) >> 4;
  if (segment === 0) t += 8;
  else if (segment === 1) t += 0x108;
  else t = (t + 0x108) << (segment - 1);
  return a & 0x80 ? t : -t;
}

interface RtpPacket {
  /** capture time, ms */
  at: number;
  stream: string;
  payloadType: number;
  payload: Buffer;
}

/** UDP/RTP packets of a pcap (link types Ethernet, raw IP, IPv4, Linux cooked). */
export function readPcapRtp(data: Buffer): RtpPacket[] {
  if (data.length < 24) return [];
  const magic = data.readUInt32LE(0);
  const little = magic === 0xa1b2c3d4 || magic === 0xa1b23c4d;
  if (!little && data.readUInt32BE(0) !== 0xa1b2c3d4 && data.readUInt32BE(0) !== 0xa1b23c4d) return [];
  const nano = magic === 0xa1b23c4d || data.readUInt32BE(0) === 0xa1b23c4d;
  const u32 = (offset: number): number => (little ? data.readUInt32LE(offset) : data.readUInt32BE(offset));
  const linkType = u32(20);
  const linkHeader = linkType === 1 ? 14 : linkType === 113 ? 16 : linkType === 101 || linkType === 228 || linkType === 12 ? 0 : -1;
  if (linkHeader < 0) return [];
  const packets: RtpPacket[] = [];
  for (let offset = 24; offset + 16 <= data.length; ) {
    const at = u32(offset) * 1000 + u32(offset + 4) / (nano ? 1e6 : 1e3);
    const length = u32(offset + 8);
    const start = offset + 16;
    offset = start + length;
    if (offset > data.length) break;
    const ip = start + linkHeader;
    if (ip >= offset || data[ip]! >> 4 !== 4) continue;
    const ihl = (data[ip]! & 0x0f) * 4;
    if (data[ip + 9] !== 17) continue;
    const udp = ip + ihl;
    const rtp = udp + 8;
    if (rtp + 12 > offset || data[rtp]! >> 6 !== 2) continue;
    const source = `${data[ip + 12]}.${data[ip + 13]}.${data[ip + 14]}.${data[ip + 15]}:${data.readUInt16BE(udp)}`;
    const csrcs = data[rtp]! & 0x0f;
    let payloadStart = rtp + 12 + csrcs * 4;
    if (data[rtp]! & 0x10 && payloadStart + 4 <= offset) payloadStart += 4 + data.readUInt16BE(payloadStart + 2) * 4;
    let payloadEnd = offset;
    if (data[rtp]! & 0x20) payloadEnd -= data[offset - 1]!;
    if (payloadStart >= payloadEnd) continue;
    packets.push({ at, stream: source, payloadType: data[rtp + 1]! & 0x7f, payload: data.subarray(payloadStart, payloadEnd) });
  }
  return packets;
}

/** A stereo 16-bit WAV of the two busiest G.711 streams of the packets (empty when there is no audio). */
export function rtpToStereoWav(packets: readonly RtpPacket[]): Buffer | null {
  const audio = packets.filter((p) => p.payloadType === 0 || p.payloadType === 8);
  if (audio.length === 0) return null;
  const counts = new Map<string, number>();
  for (const p of audio) counts.set(p.stream, (counts.get(p.stream) ?? 0) + 1);
  const streams = [...counts.entries()].sort((a, b) => b[1] - a[1]).slice(0, 2).map(([s]) => s);
  const t0 = Math.min(...audio.map((p) => p.at));
  const end = Math.max(...audio.map((p) => p.at + (p.payload.length / RATE) * 1000));
  const frames = Math.min(Math.ceil(((end - t0) / 1000) * RATE), RATE * 3600 * 4);
  const data = Buffer.alloc(frames * 4);
  for (const p of audio) {
    const channel = streams.indexOf(p.stream);
    if (channel < 0) continue;
    const first = Math.round(((p.at - t0) / 1000) * RATE);
    const expand = p.payloadType === 0 ? ulawToLinear : alawToLinear;
    for (let i = 0; i < p.payload.length && first + i < frames; i++) {
      data.writeInt16LE(expand(p.payload[i]!), (first + i) * 4 + channel * 2);
    }
  }
  return pcm16Wav(data, 2, RATE);
}

/**
 * Converts the pcaps rtpengine wrote for `rtpCallId` into WAVs named after the dialer's call id;
 * returns what was written. Never throws (a missing or unreadable pcap is no recording).
 */
export function convertCallRecordings(directory: string, rtpCallId: string, callId: string): RecordingFile[] {
  const pcaps = join(directory, 'pcaps');
  if (!existsSync(pcaps)) return [];
  const out = join(directory, 'wav');
  const written: RecordingFile[] = [];
  try {
    mkdirSync(out, { recursive: true });
    const files = readdirSync(pcaps).filter((f) => f.startsWith(`${rtpCallId}-`) && f.endsWith('.pcap')).sort();
    files.forEach((name, index) => {
      const wav = rtpToStereoWav(readPcapRtp(readFileSync(join(pcaps, name))));
      if (!wav) return;
      const file = `${callId}-${index + 1}.wav`;
      writeFileSync(join(out, file), wav);
      written.push({ file, bytes: statSync(join(out, file)).size, seconds: Math.round(((wav.length - 44) / (RATE * 4)) * 10) / 10 });
    });
  } catch {
    return written;
  }
  return written;
}
