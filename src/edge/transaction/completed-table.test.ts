import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { CompletedTransactionTable } from './completed-table.js';
import { buildResponse } from './response-builder.js';
import { generateBranch } from './ids.js';
import { useLayerOnFakeClock, makeRequest, makeResponse } from './test-support.js';
import type { SendTarget } from '../transport/index.js';

const udp: SendTarget = { protocol: 'udp', address: '127.0.0.2', port: 5070 };

describe('CompletedTransactionTable', () => {
  beforeEach(() => {
    vi.useFakeTimers({ now: 0 });
  });
  afterEach(() => {
    vi.useRealTimers();
  });

  it('expires entries on time with one timer, per lifetime lane, calling onExpired once', () => {
    const table = new CompletedTransactionTable();
    const expired: string[] = [];
    table.add({ key: 'j', role: 'resend', onExpired: () => expired.push('j') }, 32_000);
    table.add({ key: 'k', role: 'absorb', onExpired: () => expired.push('k') }, 5_000);
    table.add({ key: 'quiet', role: 'absorb' }, 5_000);
    expect(table.size).toBe(3);
    expect(vi.getTimerCount()).toBe(1);
    vi.advanceTimersByTime(4_999);
    expect(expired).toEqual([]);
    vi.advanceTimersByTime(1);
    expect(expired).toEqual(['k']);
    expect(table.get('quiet')).toBeUndefined();
    expect(table.get('j')?.role).toBe('resend');
    vi.advanceTimersByTime(27_000);
    expect(expired).toEqual(['k', 'j']);
    expect(table.size).toBe(0);
    expect(vi.getTimerCount()).toBe(0);
  });

  it('batches expiries under load at the sweep resolution, never early', () => {
    const table = new CompletedTransactionTable({ sweepResolutionMs: 250 });
    const expiredAt = new Map<string, number>();
    for (let i = 0; i < 100; i++) {
      table.add({ key: `t${i}`, role: 'resend', onExpired: () => expiredAt.set(`t${i}`, Date.now()) }, 1_000);
      vi.advanceTimersByTime(10);
    }
    vi.advanceTimersByTime(2_000);
    expect(expiredAt.size).toBe(100);
    for (let i = 0; i < 100; i++) {
      const at = expiredAt.get(`t${i}`) ?? 0;
      expect(at).toBeGreaterThanOrEqual(i * 10 + 1_000);
      expect(at).toBeLessThanOrEqual(i * 10 + 1_000 + 250);
    }
    expect(new Set(expiredAt.values()).size).toBeLessThan(10);
  });

  it('is bounded: beyond maxEntries the entry expiring first is evicted (and told)', () => {
    const table = new CompletedTransactionTable({ maxEntries: 3 });
    const evicted: string[] = [];
    table.add({ key: 'a', role: 'resend', onExpired: () => evicted.push('a') }, 32_000);
    table.add({ key: 'b', role: 'absorb', onExpired: () => evicted.push('b') }, 5_000);
    table.add({ key: 'c', role: 'resend', onExpired: () => evicted.push('c') }, 32_000);
    table.add({ key: 'd', role: 'resend', onExpired: () => evicted.push('d') }, 32_000);
    expect(evicted).toEqual(['b']);
    table.add({ key: 'e', role: 'resend' }, 32_000);
    expect(evicted).toEqual(['b', 'a']);
    expect(table.size).toBe(3);
    expect([...'cde'].every((k) => table.get(k) !== undefined)).toBe(true);
  });

  it('forget() drops an entry without onExpired; a throwing onExpired is reported and the sweep goes on', () => {
    const errors: unknown[] = [];
    const table = new CompletedTransactionTable({ onError: (err) => errors.push(err) });
    const calls: string[] = [];
    const first = table.add({ key: 'x', role: 'resend', onExpired: () => { throw new Error('boom'); } }, 1_000);
    table.add({ key: 'y', role: 'resend', onExpired: () => calls.push('y') }, 1_000);
    const z = table.add({ key: 'z', role: 'resend', onExpired: () => calls.push('z') }, 1_000);
    table.forget(z);
    vi.advanceTimersByTime(1_000);
    expect(first.expired).toBe(true);
    expect(errors).toHaveLength(1);
    expect(calls).toEqual(['y']);
    expect(table.size).toBe(0);
  });

  // plain resend entries (nobody listens for their end) live in ResendRecords, outside the heap
  it('keeps a resend entry nobody listens to as a record, and gives its bytes and target back until it expires', () => {
    const table = new CompletedTransactionTable({ recordSlabBytes: 4096 });
    const wire = Buffer.from('SIP/2.0 200 OK\r\n\r\n');
    const added = table.add({ key: 'r1', role: 'resend', wire, target: udp }, 32_000);
    expect(table.recordSlabs).toBe(1);
    wire.fill(0);
    const found = table.get('r1');
    expect(found?.role).toBe('resend');
    expect(found?.wire?.toString()).toBe('SIP/2.0 200 OK\r\n\r\n');
    expect(found?.target).toEqual(udp);
    expect(found?.expiresAt).toBe(32_000);
    expect(added.expired).toBe(false);
    vi.advanceTimersByTime(32_000);
    expect(table.get('r1')).toBeUndefined();
    expect(added.expired).toBe(true);
    expect(found?.expired).toBe(true);
    expect(table.size).toBe(0);
  });

  it('keeps entries with a listener or an RFC 2543 To tag as objects, and mixes both in one lane in expiry order', () => {
    const table = new CompletedTransactionTable({ recordSlabBytes: 4096, maxEntries: 3 });
    const expired: string[] = [];
    table.add({ key: 'plain-1', role: 'resend', wire: Buffer.from('a'), target: udp }, 32_000);
    vi.advanceTimersByTime(10);
    table.add({ key: 'listened', role: 'resend', wire: Buffer.from('b'), target: udp, onExpired: () => expired.push('listened') }, 32_000);
    vi.advanceTimersByTime(10);
    table.add({ key: 'plain-2', role: 'resend', wire: Buffer.from('c'), target: udp }, 32_000);
    expect(table.get('listened')?.wire?.toString()).toBe('b');
    // the bound evicts the oldest, a record, without a callback
    table.add({ key: 'plain-3', role: 'resend', wire: Buffer.from('d'), target: udp }, 32_000);
    expect(table.get('plain-1')).toBeUndefined();
    expect(expired).toEqual([]);
    vi.advanceTimersByTime(31_979);
    expect(expired).toEqual([]);
    expect(table.get('plain-2')?.wire?.toString()).toBe('c');
    // due at 32,010 and 32,020: swept together at the sweep resolution (250 ms after the sweep at 32,000)
    vi.advanceTimersByTime(300);
    expect(expired).toEqual(['listened']);
    expect(table.size).toBe(0);
  });

  it('expire() and forget() act on a record only while it is the one under its key', () => {
    const table = new CompletedTransactionTable({ recordSlabBytes: 4096 });
    const first = table.add({ key: 'k', role: 'resend', wire: Buffer.from('first'), target: udp }, 32_000);
    const second = table.add({ key: 'k', role: 'resend', wire: Buffer.from('second'), target: udp }, 32_000);
    expect(first.expired).toBe(true);
    table.expire(first);
    table.forget(first);
    expect(table.get('k')?.wire?.toString()).toBe('second');
    table.forget(second);
    expect(table.get('k')).toBeUndefined();
    expect(second.expired).toBe(true);
    expect(table.size).toBe(0);
  });
});

describe('transaction layer: finished transactions kept compact', () => {
  const layer = useLayerOnFakeClock({ maxServerTransactions: 1 });

  it('non-INVITE Completed: the layer lets go of the transaction and resends the exact final bytes until timer J', async () => {
    const options = makeRequest({ method: 'OPTIONS', branch: 'z9hG4bK-compact-1' });
    layer.transport.deliver(options.clone());
    const { stx } = layer.requests[0];
    await stx.respond(buildResponse(options, 200, undefined, { toTag: 'ok' }));
    expect(layer.txl.activeServerTransactionCount).toBe(0);
    expect(layer.txl.completedTransactionCount).toBe(1);
    expect(layer.txl.serverTransactionCount).toBe(1);
    // the active cap (1) no longer counts it: a new request is served, not answered 503
    layer.transport.deliver(makeRequest({ method: 'OPTIONS', branch: 'z9hG4bK-compact-2' }));
    expect(layer.requests).toHaveLength(2);
    layer.transport.clear();
    layer.transport.deliver(options.clone());
    layer.transport.deliver(options.clone());
    expect(layer.transport.sent).toHaveLength(2);
    expect(layer.transport.sent[0].text).toBe(stx.lastResponseWire?.toString('utf8'));
    expect(layer.transport.sent[1].text).toBe(layer.transport.sent[0].text);
    expect(layer.transport.sent[0].target).toEqual(stx.responseTarget);
    expect(layer.requests).toHaveLength(2);
    await vi.advanceTimersByTimeAsync(32_000);
    expect(layer.txl.completedTransactionCount).toBe(0);
    // after J the same branch is a new request again (the unanswered second OPTIONS was abandoned at 64*T1 too)
    layer.transport.deliver(options.clone());
    expect(layer.requests).toHaveLength(3);
  });

  it('drops the transaction object when nobody listens for its end, still reporting terminated through state', async () => {
    const options = makeRequest({ method: 'OPTIONS', branch: 'z9hG4bK-compact-3' });
    layer.transport.deliver(options.clone());
    const { stx } = layer.requests[0];
    await stx.respond(buildResponse(options, 200, undefined, { toTag: 'ok' }));
    expect(stx.state).toBe('completed');
    await vi.advanceTimersByTimeAsync(32_000);
    expect(stx.state).toBe('terminated');
  });

  it('INVITE: after the ACK for the 2xx (RFC 6026 Accepted) INVITE retransmissions are absorbed and ACKs passed up until timer L', async () => {
    const invite = makeRequest({ method: 'INVITE', branch: 'z9hG4bK-compact-inv' });
    layer.transport.deliver(invite.clone());
    const { stx } = layer.requests[0];
    await stx.respond2xxRetransmit(buildResponse(invite, 200, undefined, { toTag: 'uas' }));
    await vi.advanceTimersByTimeAsync(1_000);
    layer.transport.deliver(makeRequest({ method: 'ACK', branch: 'z9hG4bK-ack-2xx', toTag: 'uas' }));
    expect(layer.txl.completedTransactionCount).toBe(1);
    expect(layer.txl.pendingAckCount).toBe(0);
    layer.transport.clear();
    layer.transport.deliver(invite.clone());
    expect(layer.transport.sent).toHaveLength(0);
    expect(layer.requests).toHaveLength(1);
    layer.transport.deliver(makeRequest({ method: 'ACK', branch: 'z9hG4bK-compact-inv', toTag: 'uas' }));
    expect(layer.acks).toHaveLength(2);
    // a CANCEL now matches a transaction that has its final: 9.2 says 200, not 481
    layer.transport.deliver(makeRequest({ method: 'CANCEL', branch: 'z9hG4bK-compact-inv' }));
    expect(layer.requests[1].stx.cancelMatched).toBe(true);
    expect(layer.requests[1].stx.cancelTarget).toBeUndefined();
    // timer L runs from the 2xx (t = 0), not from the compaction
    await vi.advanceTimersByTimeAsync(30_999);
    expect(layer.txl.completedTransactionCount).toBe(1);
    await vi.advanceTimersByTimeAsync(1);
    expect(layer.txl.completedTransactionCount).toBe(0);
  });

  it('INVITE non-2xx: Confirmed absorbs INVITE and ACK retransmissions until timer I; client INVITE resends the same ACK', async () => {
    const invite = makeRequest({ method: 'INVITE', branch: 'z9hG4bK-compact-486' });
    layer.transport.deliver(invite.clone());
    await layer.requests[0].stx.respond(buildResponse(invite, 486, undefined, { toTag: 'busy' }));
    const ack = makeRequest({ method: 'ACK', branch: 'z9hG4bK-compact-486', toTag: 'busy' });
    layer.transport.deliver(ack.clone());
    expect(layer.txl.completedTransactionCount).toBe(1);
    layer.transport.clear();
    layer.transport.deliver(invite.clone());
    layer.transport.deliver(ack.clone());
    expect(layer.transport.sent).toHaveLength(0);
    expect(layer.acks).toHaveLength(0);
    await vi.advanceTimersByTimeAsync(5_000);
    expect(layer.txl.completedTransactionCount).toBe(0);

    // client side: a retransmitted 486 after compaction gets the identical ACK
    const ctx = layer.txl.sendRequest(makeRequest({ method: 'INVITE', branch: generateBranch() }), udp);
    const busy = makeResponse(ctx.request, 486);
    layer.transport.deliver(busy.clone());
    const firstAck = layer.transport.sentWhere((m) => m.method === 'ACK');
    expect(firstAck).toHaveLength(1);
    expect(layer.txl.activeClientTransactionCount).toBe(0);
    layer.transport.deliver(busy.clone());
    const acksSent = layer.transport.sentWhere((m) => m.method === 'ACK');
    expect(acksSent).toHaveLength(2);
    expect(acksSent[1].text).toBe(acksSent[0].text);
    await vi.advanceTimersByTimeAsync(32_000);
    expect(layer.txl.clientTransactionCount).toBe(0);
  });
});
