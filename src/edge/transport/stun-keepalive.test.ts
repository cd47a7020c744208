import { crc32 } from 'node:zlib';
import { describe, expect, it } from 'vitest';
import { isStunBindingRequest, stunBindingResponse } from './stun-keepalive.js';

/** A Binding request (RFC 5389 §6) with transaction id 0x01..0x0c, optionally with FINGERPRINT. */
function bindingRequest(fingerprint: boolean): Buffer {
  const req = Buffer.alloc(20 + (fingerprint ? 8 : 0));
  req.writeUInt16BE(0x0001, 0);
  req.writeUInt16BE(fingerprint ? 8 : 0, 2);
  req.writeUInt32BE(0x2112a442, 4);
  for (let i = 0; i < 12; i++) req[8 + i] = i + 1;
  if (fingerprint) {
    req.writeUInt16BE(0x8028, 20);
    req.writeUInt16BE(4, 22);
    req.writeUInt32BE((crc32(req.subarray(0, 20)) ^ 0x5354554e) >>> 0, 24);
  }
  return req;
}

describe('STUN keep-alive (RFC 5626 §4.4.2, RFC 5389)', () => {
  it('recognises Binding requests only', () => {
    expect(isStunBindingRequest(bindingRequest(false))).toBe(true);
    expect(isStunBindingRequest(bindingRequest(true))).toBe(true);
    const indication = bindingRequest(false);
    indication.writeUInt16BE(0x0011, 0);
    expect(isStunBindingRequest(indication)).toBe(false);
    expect(isStunBindingRequest(bindingRequest(false).subarray(0, 19))).toBe(false);
    const badLength = bindingRequest(false);
    badLength.writeUInt16BE(4, 2);
    expect(isStunBindingRequest(badLength)).toBe(false);
  });

  it('answers with the XOR-mapped IPv4 address and port and the same transaction id', () => {
    const res = stunBindingResponse(bindingRequest(false), '192.0.2.1', 32853)!;
    expect(res.readUInt16BE(0)).toBe(0x0101);
    expect(res.readUInt16BE(2)).toBe(12);
    expect(res.subarray(8, 20)).toEqual(bindingRequest(false).subarray(8, 20));
    expect(res.readUInt16BE(20)).toBe(0x0020);
    expect(res.readUInt16BE(26) ^ 0x2112).toBe(32853);
    const ip = (res.readUInt32BE(28) ^ 0x2112a442) >>> 0;
    expect([ip >>> 24, (ip >>> 16) & 255, (ip >>> 8) & 255, ip & 255].join('.')).toBe('192.0.2.1');
  });

  it('answers IPv6 sources XORed with the cookie and transaction id', () => {
    const res = stunBindingResponse(bindingRequest(false), '2001:db8::1', 5060)!;
    expect(res.readUInt16BE(24)).toBe(0x0002);
    const mask = Buffer.concat([Buffer.from([0x21, 0x12, 0xa4, 0x42]), bindingRequest(false).subarray(8, 20)]);
    const ip = Buffer.from(res.subarray(28, 44).map((b, i) => b ^ mask[i]!));
    expect(ip.toString('hex')).toBe('20010db8000000000000000000000001');
  });

  it('adds a FINGERPRINT when the request had one', () => {
    const res = stunBindingResponse(bindingRequest(true), '127.0.0.1', 5060)!;
    expect(res.readUInt16BE(2)).toBe(20);
    expect(res.readUInt16BE(32)).toBe(0x8028);
    expect(res.readUInt32BE(36)).toBe((crc32(res.subarray(0, 32)) ^ 0x5354554e) >>> 0);
  });
});
