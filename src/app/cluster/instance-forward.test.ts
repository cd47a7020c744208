import { describe, expect, it } from 'vitest';
import { deliveryFor, FORWARD_HEADER, ForwardSigner } from './instance-forward.js';

const flow = { address: '203.0.113.7', port: 49152, transport: 'wss', userId: 'u1' };

describe('instance forward tokens', () => {
  const signer = new ForwardSigner('a-shared-nonce-secret-of-the-cluster');

  it('round-trips the flow and user of a binding', () => {
    expect(signer.verify(signer.sign(flow))).toEqual(flow);
  });

  it('refuses a token signed with another key, tampered with, expired or malformed', () => {
    const token = signer.sign(flow);
    expect(new ForwardSigner('another-secret-another-secret').verify(token)).toBeUndefined();
    const [payload, mac] = token.split('.') as [string, string];
    const forged = Buffer.from(JSON.stringify({ ...JSON.parse(Buffer.from(payload, 'base64url').toString()), a: '198.51.100.1' })).toString('base64url');
    expect(signer.verify(`${forged}.${mac}`)).toBeUndefined();
    expect(signer.verify(signer.sign(flow, Date.now() - 60_000))).toBeUndefined();
    for (const junk of [undefined, '', 'x', 'a.b.c', '.', `${payload}.`, 'x'.repeat(5000)]) expect(signer.verify(junk)).toBeUndefined();
  });

  it('delivers a binding held here through its own flow, one held elsewhere through its instance with a token', () => {
    const binding = { userId: 'u1', flow: { address: '203.0.113.7', port: 49152, transport: 'wss', receivedOn: null }, edge: '10.0.0.2:5060' };
    expect(deliveryFor(binding, { instanceAddress: '10.0.0.2:5060', signer })).toEqual({ proxy: 'sip:203.0.113.7:49152;transport=wss', headers: {} });
    expect(deliveryFor({ ...binding, edge: null }, { instanceAddress: '10.0.0.3:5060', signer }).headers).toEqual({});
    const elsewhere = deliveryFor(binding, { instanceAddress: '10.0.0.3:5060', signer });
    expect(elsewhere.proxy).toBe('sip:10.0.0.2:5060');
    expect(signer.verify(elsewhere.headers[FORWARD_HEADER])).toEqual(flow);
  });
});
