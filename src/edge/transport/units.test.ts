import { describe, it, expect } from 'vitest';
import { parseListenSpec, formatListenSpec, DEFAULT_TRANSPORT_LIMITS } from './index.js';
import { resolveLimits } from './limits.js';
import { stampTopVia } from './via-stamp.js';
import { normalizeIp } from './addresses.js';
import { parseMessage } from '../message/index.js';
import { sipRequest } from './test-support.js';

describe('listen specs', () => {
  it('parses proto:host:port for IPv4 and IPv6', () => {
    expect(parseListenSpec('udp:127.0.0.1:5060')).toEqual({ protocol: 'udp', host: '127.0.0.1', port: 5060 });
    expect(parseListenSpec('TCP:[::1]:5061')).toEqual({ protocol: 'tcp', host: '::1', port: 5061 });
    expect(parseListenSpec('wss:::1:443')).toEqual({ protocol: 'wss', host: '::1', port: 443 });
    expect(parseListenSpec('udp:0.0.0.0:5060/203.0.113.7')).toEqual({ protocol: 'udp', host: '0.0.0.0', port: 5060, externalHost: '203.0.113.7' });
    expect(formatListenSpec({ protocol: 'tls', host: '::1', port: 5061 })).toBe('tls:[::1]:5061');
  });
  it('rejects bad specs', () => {
    for (const bad of ['udp:127.0.0.1', 'sctp:127.0.0.1:5060', 'udp:example.com:5060', 'udp:127.0.0.1:99999', 'udp:127.0.0.1:x']) {
      expect(() => parseListenSpec(bad), bad).toThrow(/invalid listen spec/);
    }
  });
});

describe('limits', () => {
  it('fills defaults and ignores nonsense', () => {
    const limits = resolveLimits({ maxMessageBytes: 1000, maxConnections: -1, idleConnectionTimeoutMs: Number.NaN });
    expect(limits.maxMessageBytes).toBe(1000);
    expect(limits.maxConnections).toBe(DEFAULT_TRANSPORT_LIMITS.maxConnections);
    expect(limits.idleConnectionTimeoutMs).toBe(600000);
  });
});

describe('stampTopVia (RFC 3261 18.2.1, RFC 3581)', () => {
  const parse = (buf: Buffer) => {
    const result = parseMessage(buf);
    if (!result.ok) throw new Error(result.error);
    return result.message;
  };
  it('only touches the top Via', () => {
    const text = sipRequest({ viaHost: 'client.example.com:5060', rport: true }).toString()
      .replace('Max-Forwards', 'Via: SIP/2.0/UDP proxy.example.com;rport;branch=z9hG4bKlower\r\nMax-Forwards');
    const message = parse(Buffer.from(text));
    stampTopVia(message, '::ffff:192.0.2.4', 4000, false);
    const vias = message.getAll('Via');
    expect(vias[0]).toMatch(/^SIP\/2\.0\/UDP client\.example\.com:5060;rport=4000;branch=z9hG4bK[^;]+;received=192\.0\.2\.4$/);
    expect(vias[1]).toBe('SIP/2.0/UDP proxy.example.com;rport;branch=z9hG4bKlower');
  });
  it('handles IPv6 sources (received without brackets, RFC 3261 grammar)', () => {
    const message = parse(sipRequest({ viaHost: '[2001:db8::1]:5060' }));
    stampTopVia(message, '2001:db8::1', 5060, true);
    expect(message.get('Via')).not.toContain('received');
    expect(message.get('Via')).toContain('rport=5060');
    stampTopVia(message, '2001:db8::2', 5062, true);
    expect(message.get('Via')).toContain('received=2001:db8::2');
    expect(message.get('Via')).toContain('rport=5062');
  });
  it('normalises IPv4-mapped addresses', () => {
    expect(normalizeIp('::FFFF:10.0.0.1')).toBe('10.0.0.1');
    expect(normalizeIp('[2001:DB8::1]')).toBe('2001:db8::1');
  });
});
