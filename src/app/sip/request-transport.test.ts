import { describe, expect, it } from 'vitest';
import { requestTransport } from './request-transport.js';

const req = (protocol: string, via?: string) => ({ protocol, get: (name: string) => (name === 'via' ? via : undefined) });

describe('requestTransport', () => {
  it('takes the server\'s word for udp, ws and wss (the dialcore edge names WebSocket flows itself)', () => {
    expect(requestTransport(req('udp', 'SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bK1'))).toBe('udp');
    expect(requestTransport(req('UDP', 'SIP/2.0/WS x.invalid;branch=z9hG4bK1')), 'a Via never makes udp a WebSocket').toBe('udp');
    expect(requestTransport(req('ws', 'SIP/2.0/WS x.invalid;branch=z9hG4bK1'))).toBe('ws');
    expect(requestTransport(req('wss', 'SIP/2.0/WSS x.invalid;branch=z9hG4bK1'))).toBe('wss');
  });

  it('tells a WebSocket flow that drachtio-server reports as tcp by the top Via (RFC 7118 5.2)', () => {
    expect(requestTransport(req('tcp', 'SIP/2.0/WS 72d0526a.invalid;branch=z9hG4bKba54'))).toBe('ws');
    expect(requestTransport(req('tcp', 'SIP/2.0/WSS 72d0526a.invalid;branch=z9hG4bKba54'))).toBe('wss');
    expect(requestTransport(req('tls', 'SIP/2.0/WS 72d0526a.invalid;branch=z9hG4bKba54'))).toBe('wss');
    expect(requestTransport(req('tls', 'SIP/2.0/WSS 72d0526a.invalid;branch=z9hG4bKba54'))).toBe('wss');
    expect(requestTransport(req('tls', 'sip / 2.0 / wss h.invalid'))).toBe('wss');
  });

  it('keeps tcp and tls for plain SIP over them, and when the Via is missing or odd', () => {
    expect(requestTransport(req('tcp', 'SIP/2.0/TCP 10.0.0.1:5060;branch=z9hG4bK1'))).toBe('tcp');
    expect(requestTransport(req('tls', 'SIP/2.0/TLS 10.0.0.1:5061;branch=z9hG4bK1'))).toBe('tls');
    expect(requestTransport(req('tcp', 'SIP/2.0/WSX h;branch=z9hG4bK1'))).toBe('tcp');
    expect(requestTransport(req('tcp', undefined))).toBe('tcp');
    expect(requestTransport(req('tcp', 'SIP/2.0/TCP a, SIP/2.0/WS b'))).toBe('tcp');
  });
});
