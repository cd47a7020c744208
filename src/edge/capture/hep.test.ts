import { describe, expect, it } from 'vitest';
import { callIdOf } from './hep-agent.js';
import { encodeHep3, HepChunk, ipBytes, HEP_PROTOCOL_SIP, type HepPacket } from './hep.js';
import { decodeHep3 } from './test-support.js';

const sip = Buffer.from('OPTIONS sip:a@127.0.0.1 SIP/2.0\r\nCall-ID: abc@host\r\nContent-Length: 0\r\n\r\n');
const packet: HepPacket = {
  sourceAddress: '192.0.2.10', sourcePort: 5060, destinationAddress: '198.51.100.7', destinationPort: 5080,
  transport: 'udp', timeMs: 1_700_000_000_123.456, captureAgentId: 2001, correlationId: 'abc@host', payload: sip,
};

describe('HEP3 encoder (sipcapture HEP3 spec)', () => {
  it('writes the fixed header and the generic chunks, each with its 6-byte header, in network byte order', () => {
    const bytes = encodeHep3(packet)!;
    // "HEP3", total length
    expect(bytes.subarray(0, 4).toString('latin1')).toBe('HEP3');
    expect(bytes.readUInt16BE(4)).toBe(bytes.length);
    // first chunk: vendor 0, type 1 (IP family), length 7, AF_INET = 2
    expect([...bytes.subarray(6, 13)]).toEqual([0, 0, 0, 1, 0, 7, 2]);
    // second: type 2 (IP protocol), UDP = 17
    expect([...bytes.subarray(13, 20)]).toEqual([0, 0, 0, 2, 0, 7, 17]);
    // third: type 3 (IPv4 source), length 10, 192.0.2.10
    expect([...bytes.subarray(20, 30)]).toEqual([0, 0, 0, 3, 0, 10, 192, 0, 2, 10]);
    const hep = decodeHep3(bytes);
    expect(hep.order).toEqual([
      HepChunk.ipFamily, HepChunk.ipProtocol, HepChunk.ipv4Source, HepChunk.ipv4Destination, HepChunk.sourcePort,
      HepChunk.destinationPort, HepChunk.timestampSeconds, HepChunk.timestampMicroseconds, HepChunk.protocolType,
      HepChunk.captureAgentId, HepChunk.correlationId, HepChunk.payload,
    ]);
    expect([...hep.chunks.get(HepChunk.ipv4Destination)!]).toEqual([198, 51, 100, 7]);
    expect(hep.chunks.get(HepChunk.sourcePort)!.readUInt16BE(0)).toBe(5060);
    expect(hep.chunks.get(HepChunk.destinationPort)!.readUInt16BE(0)).toBe(5080);
    expect(hep.chunks.get(HepChunk.timestampSeconds)!.readUInt32BE(0)).toBe(1_700_000_000);
    expect(hep.chunks.get(HepChunk.timestampMicroseconds)!.readUInt32BE(0)).toBe(123_456);
    expect(hep.chunks.get(HepChunk.protocolType)!.readUInt8(0)).toBe(HEP_PROTOCOL_SIP);
    expect(hep.chunks.get(HepChunk.captureAgentId)!.readUInt32BE(0)).toBe(2001);
    expect(hep.chunks.get(HepChunk.correlationId)!.toString()).toBe('abc@host');
    expect(hep.chunks.get(HepChunk.payload)!.equals(sip)).toBe(true);
  });

  it('carries IPv6 addresses in their own chunk types, TCP-based transports as TCP, and the auth key', () => {
    const hep = decodeHep3(encodeHep3({ ...packet, sourceAddress: '2001:db8::1', destinationAddress: '::ffff:192.0.2.1', transport: 'wss', password: 'k3y' })!);
    expect(hep.chunks.get(HepChunk.ipFamily)!.readUInt8(0)).toBe(10);
    expect(hep.chunks.get(HepChunk.ipProtocol)!.readUInt8(0)).toBe(6);
    expect(hep.chunks.get(HepChunk.ipv6Source)!.toString('hex')).toBe('20010db8000000000000000000000001');
    expect(hep.chunks.get(HepChunk.ipv6Destination)!.toString('hex')).toBe('00000000000000000000ffffc0000201');
    expect(hep.chunks.get(HepChunk.authKey)!.toString()).toBe('k3y');
    expect(hep.chunks.has(HepChunk.ipv4Source)).toBe(false);
  });

  it('refuses what the format cannot carry: mixed address families, non-IP hosts, more than 65535 bytes', () => {
    expect(encodeHep3({ ...packet, destinationAddress: '2001:db8::2' })).toBeUndefined();
    expect(encodeHep3({ ...packet, sourceAddress: 'host.example' })).toBeUndefined();
    expect(encodeHep3({ ...packet, payload: Buffer.alloc(65_500) })).toBeUndefined();
  });

  it('writes IPv6 text forms as 16 bytes', () => {
    expect(ipBytes('::').toString('hex')).toBe('0'.repeat(32));
    expect(ipBytes('fe80::1%eth0').toString('hex')).toBe('fe800000000000000000000000000001');
    expect(ipBytes('1:2:3:4:5:6:7:8').toString('hex')).toBe('00010002000300040005000600070008');
  });

  it('reads the Call-ID (or its compact form) from the header section only', () => {
    expect(callIdOf(sip)).toBe('abc@host');
    expect(callIdOf(Buffer.from('SIP/2.0 200 OK\r\ni: short-form \r\n\r\n'))).toBe('short-form');
    expect(callIdOf(Buffer.from('MESSAGE sip:a SIP/2.0\r\nTo: <sip:a>\r\n\r\nCall-ID: in-body'))).toBeUndefined();
  });
});
