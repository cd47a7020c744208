import { describe, expect, it, vi } from 'vitest';
import { useLayerOnFakeClock, flowFor, makeRequest, makeResponse } from './test-support.js';
import type { ClientTransaction } from './index.js';
import type { InboundMessage, SendTarget } from '../transport/index.js';

const udp: SendTarget = { protocol: 'udp', address: '127.0.0.2', port: 5070 };
const tcp: SendTarget = { protocol: 'tcp', address: '127.0.0.2', port: 5070 };

describe('client INVITE transaction (RFC 3261 17.1.1, RFC 6026)', () => {
  const layer = useLayerOnFakeClock();

  function start(target = udp, routes: string[] = []): { ctx: ClientTransaction; responses: InboundMessage[]; events: string[] } {
    const invite = makeRequest({ method: 'INVITE', branch: 'z9hG4bK-inv-1', routes });
    const ctx = layer.txl.sendRequest(invite, target);
    const responses: InboundMessage[] = [];
    const events: string[] = [];
    ctx.on('response', (r) => responses.push(r));
    ctx.on('timeout', () => events.push('timeout'));
    ctx.on('transport-error', () => events.push('transport-error'));
    ctx.on('terminated', () => events.push('terminated'));
    return { ctx, responses, events };
  }

  it('retransmits over UDP with timer A doubling and times out with timer B = 64*T1', async () => {
    const { ctx, events } = start();
    await vi.advanceTimersByTimeAsync(31_999);
    expect(layer.transport.sent.map((s) => s.at)).toEqual([0, 500, 1500, 3500, 7500, 15500, 31500]);
    expect(events).toEqual([]);
    await vi.advanceTimersByTimeAsync(1);
    expect(events).toEqual(['timeout', 'terminated']);
    expect(ctx.state).toBe('terminated');
    expect(layer.txl.clientTransactionCount).toBe(0);
  });

  it('does not retransmit over a reliable transport, still times out at 64*T1', async () => {
    const { events } = start(tcp);
    await vi.advanceTimersByTimeAsync(32_000);
    expect(layer.transport.sent).toHaveLength(1);
    expect(events).toEqual(['timeout', 'terminated']);
  });

  it('honours configured T1 for timer A and B', async () => {
    layer.restart({ T1: 100 });
    const { events } = start();
    await vi.advanceTimersByTimeAsync(6_400);
    expect(layer.transport.sent.map((s) => s.at)).toEqual([0, 100, 300, 700, 1500, 3100, 6300]);
    expect(events).toEqual(['timeout', 'terminated']);
  });

  it('a provisional stops retransmissions and timer B; it is passed up', async () => {
    const { ctx, responses, events } = start();
    await vi.advanceTimersByTimeAsync(600);
    layer.transport.deliver(makeResponse(ctx.request, 180));
    expect(ctx.state).toBe('proceeding');
    await vi.advanceTimersByTimeAsync(60_000);
    expect(layer.transport.sent).toHaveLength(2);
    expect(responses.map((r) => r.message.status)).toEqual([180]);
    expect(events).toEqual([]);
  });

  it('ACKs a non-2xx final per 17.1.1.3, re-ACKs retransmissions without passing them up, waits timer D', async () => {
    const routes = ['<sip:proxy1.example.com;lr>', '<sip:proxy2.example.com;lr>'];
    const { ctx, responses, events } = start(udp, routes);
    await vi.advanceTimersByTimeAsync(10);
    layer.transport.deliver(makeResponse(ctx.request, 100));
    layer.transport.deliver(makeResponse(ctx.request, 486, 'busy-tag'));
    expect(ctx.state).toBe('completed');
    const acks = layer.transport.sentWhere((m) => m.method === 'ACK');
    expect(acks).toHaveLength(1);
    const ack = acks[0].message;
    expect(ack.requestUri).toBe(ctx.request.requestUri);
    expect(ack.getAll('Via')).toEqual([ctx.request.get('Via')]);
    expect(ack.topViaBranch).toBe('z9hG4bK-inv-1');
    expect(ack.get('From')).toBe(ctx.request.get('From'));
    expect(ack.toTag).toBe('busy-tag');
    expect(ack.get('Call-ID')).toBe(ctx.request.get('Call-ID'));
    expect(ack.get('CSeq')).toBe('1 ACK');
    expect(ack.getAll('Route')).toEqual(routes);
    expect(ack.get('Content-Length')).toBe('0');
    expect(acks[0].target).toEqual(udp);

    layer.transport.deliver(makeResponse(ctx.request, 486, 'busy-tag'));
    layer.transport.deliver(makeResponse(ctx.request, 486, 'busy-tag'));
    expect(layer.transport.sentWhere((m) => m.method === 'ACK')).toHaveLength(3);
    expect(responses.map((r) => r.message.status)).toEqual([100, 486]);
    // no more INVITE retransmissions in Completed
    expect(layer.transport.sentWhere((m) => m.method === 'INVITE')).toHaveLength(1);

    await vi.advanceTimersByTimeAsync(31_999);
    expect(events).toEqual([]);
    await vi.advanceTimersByTimeAsync(1);
    expect(events).toEqual(['terminated']);
    expect(layer.txl.clientTransactionCount).toBe(0);
  });

  it('over a reliable transport sends the ACK on the same connection and terminates at once (timer D = 0)', async () => {
    const { ctx, events } = start(tcp);
    await vi.advanceTimersByTimeAsync(1);
    layer.transport.deliver(makeResponse(ctx.request, 503), flowFor('tcp'));
    const ack = layer.transport.sentWhere((m) => m.method === 'ACK')[0];
    expect(ack.target.flowId).toBe(flowFor('tcp', 5070, '127.0.0.2').id);
    expect(events).toEqual(['terminated']);
  });

  it('passes every 2xx up in Accepted (RFC 6026 timer M), generates no ACK, then treats 2xx as stray', async () => {
    const { ctx, responses, events } = start();
    const strays: InboundMessage[] = [];
    layer.txl.on('stray-response', (r) => strays.push(r));
    await vi.advanceTimersByTimeAsync(100);
    layer.transport.deliver(makeResponse(ctx.request, 200, 'a'));
    expect(ctx.state).toBe('accepted');
    layer.transport.deliver(makeResponse(ctx.request, 200, 'a'));
    layer.transport.deliver(makeResponse(ctx.request, 200, 'b'));   // forked
    layer.transport.deliver(makeResponse(ctx.request, 180));        // ignored in Accepted
    expect(responses.map((r) => `${r.message.status}/${r.message.toTag}`)).toEqual(['200/a', '200/a', '200/b']);
    expect(layer.transport.sentWhere((m) => m.method === 'ACK')).toHaveLength(0);
    await vi.advanceTimersByTimeAsync(32_000);
    expect(layer.transport.sentWhere((m) => m.method === 'INVITE')).toHaveLength(1);
    expect(events).toEqual(['terminated']);
    layer.transport.deliver(makeResponse(ctx.request, 200, 'a'));
    expect(strays).toHaveLength(1);
  });

  it('reports a transport failure and terminates', async () => {
    layer.transport.failWith = new Error('ECONNREFUSED');
    const { ctx, events } = start(tcp);
    await expect(ctx.sent).rejects.toThrow('ECONNREFUSED');
    await vi.advanceTimersByTimeAsync(0);
    expect(events).toEqual(['transport-error', 'terminated']);
    expect(layer.txl.clientTransactionCount).toBe(0);
  });

  it('reports a failed retransmission as a transport error', async () => {
    const { events } = start();
    await vi.advanceTimersByTimeAsync(1);
    layer.transport.failWith = new Error('EHOSTUNREACH');
    await vi.advanceTimersByTimeAsync(500);
    expect(events).toEqual(['transport-error', 'terminated']);
  });

  it('resolves sent with the first transmission', async () => {
    const { ctx } = start();
    const info = await ctx.sent;
    expect(info.flow.remotePort).toBe(5070);
    expect(info.bytes).toBeGreaterThan(100);
  });

  describe('cancel() (RFC 3261 9.1)', () => {
    it('waits for a provisional, then sends a CANCEL built per 9.1 in its own transaction', async () => {
      const routes = ['<sip:proxy1.example.com;lr>'];
      const { ctx, responses } = start(udp, routes);
      await vi.advanceTimersByTimeAsync(100);
      const cancelled = ctx.cancel();
      expect(layer.transport.sentWhere((m) => m.method === 'CANCEL')).toHaveLength(0);
      layer.transport.deliver(makeResponse(ctx.request, 180, 'ring'));
      const cancelCtx = await cancelled;
      expect(cancelCtx?.method).toBe('CANCEL');
      const cancels = layer.transport.sentWhere((m) => m.method === 'CANCEL');
      expect(cancels).toHaveLength(1);
      const cancel = cancels[0].message;
      expect(cancel.requestUri).toBe(ctx.request.requestUri);
      expect(cancel.getAll('Via')).toEqual([ctx.request.get('Via')]);
      expect(cancel.get('From')).toBe(ctx.request.get('From'));
      expect(cancel.get('To')).toBe(ctx.request.get('To'));
      expect(cancel.toTag).toBeUndefined();
      expect(cancel.get('Call-ID')).toBe(ctx.request.get('Call-ID'));
      expect(cancel.get('CSeq')).toBe('1 CANCEL');
      expect(cancel.getAll('Route')).toEqual(routes);
      expect(await ctx.cancel()).toBe(cancelCtx);   // idempotent

      // 200 to the CANCEL goes to the CANCEL transaction, 487 to the INVITE one
      const cancelResponses: number[] = [];
      cancelCtx?.on('response', (r) => cancelResponses.push(r.message.status ?? 0));
      layer.transport.deliver(makeResponse(cancel, 200, 'ring'));
      layer.transport.deliver(makeResponse(ctx.request, 487, 'ring'));
      expect(cancelResponses).toEqual([200]);
      expect(responses.map((r) => r.message.status)).toEqual([180, 487]);
      expect(layer.transport.sentWhere((m) => m.method === 'ACK')).toHaveLength(1);
    });

    it('retransmits the CANCEL with timer E like any non-INVITE request', async () => {
      const { ctx } = start();
      layer.transport.deliver(makeResponse(ctx.request, 183));
      await ctx.cancel();
      await vi.advanceTimersByTimeAsync(1500);
      expect(layer.transport.sentWhere((m) => m.method === 'CANCEL').map((s) => s.at)).toEqual([0, 500, 1500]);
    });

    it('takes extra headers (Reason) from a TU-supplied CANCEL but the 9.1 fields from the INVITE', async () => {
      const { ctx } = start();
      layer.transport.deliver(makeResponse(ctx.request, 180));
      const skeletal = makeRequest({ method: 'CANCEL', branch: 'z9hG4bK-wrong', callId: 'wrong' }).append('Reason', 'SIP;cause=200;text="Call completed elsewhere"');
      await ctx.cancel(skeletal);
      const cancel = layer.transport.sentWhere((m) => m.method === 'CANCEL')[0].message;
      expect(cancel.topViaBranch).toBe('z9hG4bK-inv-1');
      expect(cancel.callId).toBe('call-1@test');
      expect(cancel.getAll('Via')).toHaveLength(1);
      expect(cancel.get('Reason')).toBe('SIP;cause=200;text="Call completed elsewhere"');
    });

    it('never sends the CANCEL when a final arrives first', async () => {
      const { ctx } = start();
      const cancelled = ctx.cancel();
      layer.transport.deliver(makeResponse(ctx.request, 200));
      expect(await cancelled).toBeUndefined();
      expect(await ctx.cancel()).toBeUndefined();
      expect(layer.transport.sentWhere((m) => m.method === 'CANCEL')).toHaveLength(0);
    });

    it('times the INVITE out 64*T1 after the CANCEL when no final arrives', async () => {
      const { ctx, events } = start();
      layer.transport.deliver(makeResponse(ctx.request, 180));
      await vi.advanceTimersByTimeAsync(10_000);
      await ctx.cancel();
      await vi.advanceTimersByTimeAsync(31_999);
      expect(events).toEqual([]);
      await vi.advanceTimersByTimeAsync(1);
      expect(events).toEqual(['timeout', 'terminated']);
    });

    it('resolves undefined if timer B fires while waiting for a provisional', async () => {
      const { ctx, events } = start();
      const cancelled = ctx.cancel();
      await vi.advanceTimersByTimeAsync(32_000);
      expect(await cancelled).toBeUndefined();
      expect(events).toEqual(['timeout', 'terminated']);
      expect(layer.transport.sentWhere((m) => m.method === 'CANCEL')).toHaveLength(0);
    });
  });
});
