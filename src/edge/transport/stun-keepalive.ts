/**
 * RFC 5626 §4.4.2 / §8: a UA using SIP outbound over UDP keeps its flow alive with STUN Binding requests
 * (RFC 5389) sent to the SIP port; the server answers each with a Binding success response carrying
 * XOR-MAPPED-ADDRESS (the flow's public address as the server sees it), so the UA also learns when its
 * NAT mapping changed. Nothing else of STUN is served: any other message is dropped.
 */
import { isIPv4, isIPv6 } from 'node:net';
import { crc32 } from 'node:zlib';

const MAGIC_COOKIE = 0x2112a442;
const BINDING_REQUEST = 0x0001;
const BINDING_SUCCESS = 0x0101;
const XOR_MAPPED_ADDRESS = 0x0020;
const FINGERPRINT = 0x8028;
const FINGERPRINT_XOR = 0x5354554e;
const HEADER_BYTES = 20;

/** Whether a datagram is a STUN Binding request (RFC 5389 §6: top two bits zero, magic cookie, length a multiple of 4). */
export function isStunBindingRequest(buf: Buffer): boolean {
  return buf.length >= HEADER_BYTES
    && buf.readUInt16BE(0) === BINDING_REQUEST
    && buf.readUInt32BE(4) === MAGIC_COOKIE
    && buf.readUInt16BE(2) % 4 === 0
    && buf.readUInt16BE(2) === buf.length - HEADER_BYTES;
}

/** Whether the request's last attribute is FINGERPRINT (then the response carries one too, RFC 5389 §7.3.1). */
function hasFingerprint(request: Buffer): boolean {
  return request.length >= HEADER_BYTES + 8 && request.readUInt16BE(request.length - 8) === FINGERPRINT;
}

/**
 * The Binding success response to `request` from `address`:`port` (RFC 5389 §7.3.1, §15.2), or null when
 * the address is not an IP literal.
 */
export function stunBindingResponse(request: Buffer, address: string, port: number): Buffer | null {
  const transactionId = request.subarray(8, 20);
  let value: Buffer;
  if (isIPv4(address)) {
    value = Buffer.alloc(8);
    value.writeUInt16BE(0x01, 0);
    const ip = address.split('.').reduce((acc, octet) => (acc << 8) | Number(octet), 0) >>> 0;
    value.writeUInt32BE((ip ^ MAGIC_COOKIE) >>> 0, 4);
  } else if (isIPv6(address) && !address.includes('.')) {
    value = Buffer.alloc(20);
    value.writeUInt16BE(0x02, 0);
    const ip = ipv6Bytes(address);
    const mask = Buffer.concat([Buffer.from([0x21, 0x12, 0xa4, 0x42]), transactionId]);
    for (let i = 0; i < 16; i++) value[4 + i] = ip[i]! ^ mask[i]!;
  } else {
    return null;
  }
  value.writeUInt16BE(port ^ (MAGIC_COOKIE >>> 16), 2);
  const withFingerprint = hasFingerprint(request);
  const length = 4 + value.length + (withFingerprint ? 8 : 0);
  const out = Buffer.alloc(HEADER_BYTES + length);
  out.writeUInt16BE(BINDING_SUCCESS, 0);
  out.writeUInt16BE(length, 2);
  out.writeUInt32BE(MAGIC_COOKIE, 4);
  transactionId.copy(out, 8);
  out.writeUInt16BE(XOR_MAPPED_ADDRESS, HEADER_BYTES);
  out.writeUInt16BE(value.length, HEADER_BYTES + 2);
  value.copy(out, HEADER_BYTES + 4);
  if (withFingerprint) {
    const at = HEADER_BYTES + 4 + value.length;
    out.writeUInt16BE(FINGERPRINT, at);
    out.writeUInt16BE(4, at + 2);
    // CRC-32 of the message up to the attribute, with the length already counting it (RFC 5389 §15.5)
    out.writeUInt32BE((crc32(out.subarray(0, at)) ^ FINGERPRINT_XOR) >>> 0, at + 4);
  }
  return out;
}

function ipv6Bytes(address: string): Buffer {
  const [head = '', tail = ''] = address.split('::');
  const groups = (part: string): number[] => (part ? part.split(':').map((g) => Number.parseInt(g, 16)) : []);
  const left = groups(head);
  const right = address.includes('::') ? groups(tail) : [];
  const middle = new Array<number>(8 - left.length - right.length).fill(0);
  const all = [...left, ...middle, ...right];
  const out = Buffer.alloc(16);
  all.forEach((group, i) => out.writeUInt16BE(group & 0xffff, i * 2));
  return out;
}
