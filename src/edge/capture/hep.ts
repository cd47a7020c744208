/**
 * HEP version 3 (the Homer Encapsulation Protocol, sipcapture.org HEP3 spec): one SIP message and
 * where it went, for a capture server such as Homer (heplify-server) or Kamailio's sipcapture.
 *
 *   "HEP3" | total length (uint16) | chunks...
 *   chunk = vendor id (uint16, 0 = generic) | type id (uint16) | chunk length incl. this 6-byte header (uint16) | value
 *
 * All integers are network byte order.
 */
import { isIPv4, isIPv6 } from 'node:net';

/** Generic chunk types (vendor 0x0000) of the HEP3 spec that a SIP capture carries. */
export const HepChunk = {
  ipFamily: 0x0001,
  ipProtocol: 0x0002,
  ipv4Source: 0x0003,
  ipv4Destination: 0x0004,
  ipv6Source: 0x0005,
  ipv6Destination: 0x0006,
  sourcePort: 0x0007,
  destinationPort: 0x0008,
  timestampSeconds: 0x0009,
  timestampMicroseconds: 0x000a,
  protocolType: 0x000b,
  captureAgentId: 0x000c,
  authKey: 0x000e,
  payload: 0x000f,
  correlationId: 0x0011,
} as const;

/** protocolType values: 1 = SIP */
export const HEP_PROTOCOL_SIP = 1;
/** ipFamily values (the socket API's AF_INET / AF_INET6) */
const AF_INET = 2;
const AF_INET6 = 10;
/** ipProtocol values (IANA protocol numbers): TCP carries TLS and WebSocket too */
const IPPROTO_TCP = 6;
const IPPROTO_UDP = 17;
/** Whole packet, in its uint16 length field. */
export const HEP_MAX_PACKET_BYTES = 0xffff;

export interface HepPacket {
  sourceAddress: string;
  sourcePort: number;
  destinationAddress: string;
  destinationPort: number;
  transport: 'udp' | 'tcp' | 'tls' | 'ws' | 'wss';
  /** capture time, ms since the epoch (with a fraction for microseconds) */
  timeMs: number;
  captureAgentId: number;
  /** the SIP message's Call-ID (Homer correlates the capture of one call with it) */
  correlationId?: string;
  /** HEP "auth key" the capture server may require */
  password?: string;
  payload: Buffer;
}

/** Encodes one HEP3 packet; undefined when it would not fit the 16-bit length or an address is not an IP. */
export function encodeHep3(p: HepPacket): Buffer | undefined {
  const v4 = isIPv4(p.sourceAddress) && isIPv4(p.destinationAddress);
  if (!v4 && !(isIPv6(p.sourceAddress) && isIPv6(p.destinationAddress))) return undefined;
  const chunks: Buffer[] = [
    uint8(HepChunk.ipFamily, v4 ? AF_INET : AF_INET6),
    uint8(HepChunk.ipProtocol, p.transport === 'udp' ? IPPROTO_UDP : IPPROTO_TCP),
    bytes(v4 ? HepChunk.ipv4Source : HepChunk.ipv6Source, ipBytes(p.sourceAddress)),
    bytes(v4 ? HepChunk.ipv4Destination : HepChunk.ipv6Destination, ipBytes(p.destinationAddress)),
    uint16(HepChunk.sourcePort, p.sourcePort),
    uint16(HepChunk.destinationPort, p.destinationPort),
    uint32(HepChunk.timestampSeconds, Math.floor(p.timeMs / 1000)),
    uint32(HepChunk.timestampMicroseconds, Math.floor((p.timeMs % 1000) * 1000)),
    uint8(HepChunk.protocolType, HEP_PROTOCOL_SIP),
    uint32(HepChunk.captureAgentId, p.captureAgentId),
  ];
  if (p.password) chunks.push(bytes(HepChunk.authKey, Buffer.from(p.password, 'utf8')));
  if (p.correlationId) chunks.push(bytes(HepChunk.correlationId, Buffer.from(p.correlationId, 'utf8')));
  chunks.push(bytes(HepChunk.payload, p.payload));
  const length = 6 + chunks.reduce((n, c) => n + c.length, 0);
  if (length > HEP_MAX_PACKET_BYTES) return undefined;
  const header = Buffer.alloc(6);
  header.write('HEP3', 0, 'latin1');
  header.writeUInt16BE(length, 4);
  return Buffer.concat([header, ...chunks], length);
}

function chunk(type: number, valueLength: number): Buffer {
  const b = Buffer.alloc(6 + valueLength);
  b.writeUInt16BE(0, 0);
  b.writeUInt16BE(type, 2);
  b.writeUInt16BE(6 + valueLength, 4);
  return b;
}

function uint8(type: number, value: number): Buffer {
  const b = chunk(type, 1);
  b.writeUInt8(value, 6);
  return b;
}

function uint16(type: number, value: number): Buffer {
  const b = chunk(type, 2);
  b.writeUInt16BE(value, 6);
  return b;
}

function uint32(type: number, value: number): Buffer {
  const b = chunk(type, 4);
  b.writeUInt32BE(value >>> 0, 6);
  return b;
}

function bytes(type: number, value: Buffer): Buffer {
  const b = chunk(type, value.length);
  value.copy(b, 6);
  return b;
}

/** 4 or 16 bytes of an IP address in text form (IPv6 with :: and an embedded IPv4 tail). */
export function ipBytes(address: string): Buffer {
  if (isIPv4(address)) return Buffer.from(address.split('.').map(Number));
  let text = address.split('%')[0]!;
  const v4Tail = /(\d+\.\d+\.\d+\.\d+)$/.exec(text)?.[1];
  if (v4Tail) {
    const [a, b, c, d] = v4Tail.split('.').map(Number) as [number, number, number, number];
    text = `${text.slice(0, -v4Tail.length)}${((a << 8) | b).toString(16)}:${((c << 8) | d).toString(16)}`;
  }
  const [head, tail] = text.includes('::') ? text.split('::') as [string, string] : [text, undefined];
  const headGroups = head ? head.split(':') : [];
  const tailGroups = tail ? tail.split(':') : [];
  const groups = tail === undefined ? headGroups : [...headGroups, ...Array(8 - headGroups.length - tailGroups.length).fill('0'), ...tailGroups];
  const out = Buffer.alloc(16);
  groups.forEach((g, i) => out.writeUInt16BE(parseInt(g, 16), i * 2));
  return out;
}
