import { describe, expect, it } from 'vitest';
import { NatKeepalive, pingAnswered } from './nat-keepalive.js';
import type { BindingStore, RegisteredContact } from './binding-store.js';
import type { Srf } from '../sip/srf.js';

function contact(id: string, transport: string): RegisteredContact {
  return {
    id, userId: 'u', contact: `sip:${id}@192.0.2.1:5060`, params: {}, firstRegisteredAt: 0, expiresAt: Date.now() + 60_000,
    flow: { address: '192.0.2.1', port: 5060, transport },
  } as RegisteredContact;
}

describe('NatKeepalive bookkeeping', () => {
  const keepalive = (maxTracked?: number) =>
    new NatKeepalive({} as Srf, {} as BindingStore, { intervalMs: 1000, fromHost: 'dialcore.test', ...(maxTracked ? { maxTracked } : {}) });

  it('tracks only UDP bindings; a REGISTER replaces what was tracked for the user', () => {
    const k = keepalive();
    k.track('u1', [contact('a', 'udp'), contact('b', 'tcp'), contact('c', 'UDP')]);
    expect(k.size).toBe(2);
    k.track('u1', [contact('a', 'udp')]);
    expect(k.size).toBe(1);
    k.track('u1', []);
    expect(k.size).toBe(0);
  });

  it('forgets the user registered longest ago when full', () => {
    const k = keepalive(2);
    k.track('u1', [contact('a', 'udp')]);
    k.track('u2', [contact('b', 'udp')]);
    k.track('u1', [contact('a', 'udp')]); // u1 is now the most recent
    k.track('u3', [contact('c', 'udp')]);
    expect(k.size).toBe(2);
  });

  it('a timed-out or unsendable ping is a miss; any other final answer is the phone', () => {
    expect([200, 404, 405, 481].every(pingAnswered)).toBe(true);
    expect([0, 100, 408, 503].some(pingAnswered)).toBe(false);
  });
});
