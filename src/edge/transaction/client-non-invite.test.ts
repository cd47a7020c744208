import { describe, expect, it, vi } from 'vitest';
import { useLayerOnFakeClock, makeRequest, makeResponse } from './test-support.js';
import type { ClientTransaction } from './index.js';
import type { SendTarget } from '../transport/index.js';

const udp: SendTarget = { protocol: 'udp', address: '127.0.0.2', port: 5070 };
const tls: SendTarget = { protocol: 'tls', address: '127.0.0.2', port: 5071 };

describe('client non-INVITE transaction (RFC 3261 17.1.2)', () => {
  const layer = useLayerOnFakeClock();

  function start(target = udp): { ctx: ClientTransaction; statuses: number[]; events: string[] } {
    const ctx = layer.txl.sendRequest(makeRequest({ method: 'OPTIONS', branch: 'z9hG4bK-opt-1' }), target);
    const statuses: number[] = [];
    const events: string[] = [];
    ctx.on('response', (r) => statuses.push(r.message.status ?? 0));
    ctx.on('timeout', () => events.push('timeout'));
    ctx.on('transport-error', () => events.push('transport-error'));
    ctx.on('terminated', () => events.push('terminated'));
    return { ctx, statuses, events };
  }

  it('retransmits with timer E = min(2^n*T1, T2) and times out with timer F = 64*T1', async () => {
    const { ctx, events } = start();
    expect(ctx.state).toBe('trying');
    await vi.advanceTimersByTimeAsync(31_999);
    expect(layer.transport.sent.map((s) => s.at)).toEqual([0, 500, 1500, 3500, 7500, 11500, 15500, 19500, 23500, 27500, 31500]);
    expect(events).toEqual([]);
    await vi.advanceTimersByTimeAsync(1);
    expect(events).toEqual(['timeout', 'terminated']);
    expect(layer.txl.clientTransactionCount).toBe(0);
  });

  it('caps at a configured T2', async () => {
    layer.restart({ T1: 100, T2: 300 });
    const { events } = start();
    await vi.advanceTimersByTimeAsync(1_500);
    expect(layer.transport.sent.map((s) => s.at)).toEqual([0, 100, 300, 600, 900, 1200, 1500]);
    await vi.advanceTimersByTimeAsync(6_400 - 1_500);
    expect(events).toEqual(['timeout', 'terminated']);
  });

  it('retransmits every T2 in Proceeding', async () => {
    const { ctx, statuses } = start();
    await vi.advanceTimersByTimeAsync(600);
    layer.transport.deliver(makeResponse(ctx.request, 100));
    expect(ctx.state).toBe('proceeding');
    await vi.advanceTimersByTimeAsync(13_500 - 600);
    // E was pending at 1500 (interval 1000), then T2 each time
    expect(layer.transport.sent.map((s) => s.at)).toEqual([0, 500, 1500, 5500, 9500, 13500]);
    expect(statuses).toEqual([100]);
  });

  it('passes the final up once, absorbs retransmissions, then waits timer K = T4', async () => {
    const { ctx, statuses, events } = start();
    await vi.advanceTimersByTimeAsync(200);
    layer.transport.deliver(makeResponse(ctx.request, 200));
    layer.transport.deliver(makeResponse(ctx.request, 200));
    expect(ctx.state).toBe('completed');
    expect(statuses).toEqual([200]);
    await vi.advanceTimersByTimeAsync(4_999);
    expect(events).toEqual([]);
    expect(layer.transport.sent).toHaveLength(1);
    await vi.advanceTimersByTimeAsync(1);
    expect(events).toEqual(['terminated']);
    expect(layer.txl.clientTransactionCount).toBe(0);
  });

  it('over a reliable transport: no retransmission, timer K = 0, F still applies', async () => {
    const first = start(tls);
    await vi.advanceTimersByTimeAsync(10_000);
    expect(layer.transport.sent).toHaveLength(1);
    layer.transport.deliver(makeResponse(first.ctx.request, 404));
    expect(first.events).toEqual(['terminated']);

    const ctx2 = layer.txl.sendRequest(makeRequest({ method: 'INFO', branch: 'z9hG4bK-info-2' }), tls);
    const events2: string[] = [];
    ctx2.on('timeout', () => events2.push('timeout'));
    await vi.advanceTimersByTimeAsync(32_000);
    expect(events2).toEqual(['timeout']);
    expect(layer.transport.sentWhere((m) => m.method === 'INFO')).toHaveLength(1);
  });

  it('refuses to build a transaction for ACK or a request without an RFC 3261 branch', () => {
    expect(() => layer.txl.sendRequest(makeRequest({ method: 'ACK' }), udp)).toThrow(/sendStateless/);
    expect(() => layer.txl.sendRequest(makeRequest({ method: 'OPTIONS', branch: null }), udp)).toThrow(/branch/);
    expect(() => layer.txl.sendRequest(makeRequest({ method: 'OPTIONS', branch: 'z9hG4bK' }), udp)).toThrow(/branch/);
    layer.txl.sendRequest(makeRequest({ method: 'OPTIONS', branch: 'z9hG4bK-dup' }), udp);
    expect(() => layer.txl.sendRequest(makeRequest({ method: 'OPTIONS', branch: 'z9hG4bK-dup' }), udp)).toThrow(/already/);
  });

  it('keeps its own copy of the request', () => {
    const req = makeRequest({ method: 'OPTIONS', branch: 'z9hG4bK-copy' });
    const ctx = layer.txl.sendRequest(req, udp);
    req.set('Call-ID', 'changed');
    expect(ctx.request.get('Call-ID')).toBe('call-1@test');
  });
});
