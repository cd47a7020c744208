import { describe, expect, it, vi } from 'vitest';
import { buildResponse } from './response-builder.js';
import { useLayerOnFakeClock, flowFor, makeRequest } from './test-support.js';
import type { ServerTransaction } from './index.js';
import type { Flow } from '../transport/index.js';

describe('server INVITE transaction (RFC 3261 17.2.1, RFC 6026)', () => {
  const layer = useLayerOnFakeClock();

  const invite = makeRequest({ method: 'INVITE', branch: 'z9hG4bK-uas-1' });

  function receive(flow: Flow = flowFor()): { stx: ServerTransaction; events: string[] } {
    layer.transport.deliver(invite.clone(), flow);
    const stx = layer.requests[layer.requests.length - 1].stx;
    const events: string[] = [];
    stx.on('timeout', () => events.push('timeout'));
    stx.on('terminated', () => events.push('terminated'));
    stx.on('ack', () => events.push('ack'));
    stx.on('ack-timeout', () => events.push('ack-timeout'));
    return { stx, events };
  }

  const statuses = (): number[] => layer.transport.sent.map((s) => s.message.status ?? 0);

  it('sends 100 Trying at once (no To tag, Via/From/To/Call-ID/CSeq copied) and emits the request once', () => {
    const { stx } = receive();
    expect(layer.requests).toHaveLength(1);
    expect(stx.method).toBe('INVITE');
    expect(stx.state).toBe('proceeding');
    expect(layer.transport.sent).toHaveLength(1);
    const trying = layer.transport.sent[0].message;
    expect(trying.status).toBe(100);
    expect(trying.toTag).toBeUndefined();
    expect(trying.get('Via')).toBe(invite.get('Via'));
    expect(trying.get('CSeq')).toBe('1 INVITE');
    // rport present: answer to the source address and port, on the request's flow
    expect(layer.transport.sent[0].target).toEqual({ protocol: 'udp', address: '127.0.0.2', port: 5070, flowId: flowFor().id });
  });

  it('can delay the 100 Trying and skip it when the TU answers first', async () => {
    layer.restart({ trying100DelayMs: 200 });
    const { stx } = receive();
    expect(layer.transport.sent).toHaveLength(0);
    await vi.advanceTimersByTimeAsync(200);
    expect(statuses()).toEqual([100]);
    layer.transport.deliver(makeRequest({ method: 'INVITE', branch: 'z9hG4bK-uas-2' }));
    await layer.requests[1].stx.respond(buildResponse(layer.requests[1].req.message, 180, undefined, { toTag: 'r' }));
    await vi.advanceTimersByTimeAsync(500);
    expect(statuses()).toEqual([100, 180]);
    expect(stx.state).toBe('proceeding');
  });

  it('answers a retransmitted INVITE in Proceeding with the last provisional, without emitting it', async () => {
    const { stx } = receive();
    layer.transport.deliver(invite.clone());
    expect(statuses()).toEqual([100, 100]);
    await stx.respond(buildResponse(invite, 180, undefined, { toTag: 'uas' }));
    layer.transport.deliver(invite.clone());
    expect(statuses()).toEqual([100, 100, 180, 180]);
    expect(layer.requests).toHaveLength(1);
  });

  it('retransmits a non-2xx final with timer G (capped at T2) until timer H fires', async () => {
    const { stx, events } = receive();
    layer.transport.clear();
    await stx.respond(buildResponse(invite, 486, undefined, { toTag: 'uas' }));
    expect(stx.state).toBe('completed');
    await vi.advanceTimersByTimeAsync(31_999);
    expect(layer.transport.sent.map((s) => s.at)).toEqual([0, 500, 1500, 3500, 7500, 11500, 15500, 19500, 23500, 27500, 31500]);
    expect(new Set(statuses())).toEqual(new Set([486]));
    expect(events).toEqual([]);
    await vi.advanceTimersByTimeAsync(1);
    expect(events).toEqual(['timeout', 'terminated']);
    expect(layer.txl.serverTransactionCount).toBe(0);
  });

  it('absorbs the ACK for a non-2xx (Confirmed), stops G, waits timer I = T4', async () => {
    const { stx, events } = receive();
    const res = buildResponse(invite, 404, undefined, { toTag: 'uas' });
    await stx.respond(res);
    layer.transport.deliver(invite.clone());      // retransmitted INVITE in Completed: the final again
    expect(statuses()).toEqual([100, 404, 404]);
    await vi.advanceTimersByTimeAsync(600);  // one G retransmission
    expect(statuses()).toEqual([100, 404, 404, 404]);
    const ack = makeRequest({ method: 'ACK', branch: 'z9hG4bK-uas-1', toTag: 'uas' });
    layer.transport.deliver(ack);
    layer.transport.deliver(ack.clone());
    expect(stx.state).toBe('confirmed');
    expect(layer.acks).toHaveLength(0);
    await vi.advanceTimersByTimeAsync(4_999);
    expect(statuses()).toHaveLength(4);
    expect(events).toEqual([]);
    await vi.advanceTimersByTimeAsync(1);
    expect(events).toEqual(['terminated']);
  });

  it('over TCP: no G retransmissions, H still applies, I = 0', async () => {
    const tcpFlow = flowFor('tcp', 40000);
    const first = receive(tcpFlow);
    expect(layer.transport.sent[0].target).toEqual({ protocol: 'tcp', address: '127.0.0.2', port: 5070, flowId: tcpFlow.id });
    await first.stx.respond(buildResponse(invite, 480, undefined, { toTag: 'uas' }));
    await vi.advanceTimersByTimeAsync(10_000);
    expect(statuses()).toEqual([100, 480]);
    layer.transport.deliver(makeRequest({ method: 'ACK', branch: 'z9hG4bK-uas-1', toTag: 'uas' }), tcpFlow);
    expect(first.events).toEqual(['terminated']);
  });

  it('2xx: Accepted absorbs INVITE retransmissions, passes the ACK up, ends with timer L', async () => {
    const { stx, events } = receive();
    const ok = buildResponse(invite, 200, undefined, { toTag: 'uas' });
    await stx.respond(ok);
    expect(stx.state).toBe('accepted');
    layer.transport.deliver(invite.clone());
    expect(statuses()).toEqual([100, 200]);
    await stx.respond(ok);                  // the TU's own retransmission goes out
    expect(statuses()).toEqual([100, 200, 200]);
    await expect(stx.respond(buildResponse(invite, 500))).rejects.toThrow(/accepted/);
    // ACK for a 2xx carries a new branch
    layer.transport.deliver(makeRequest({ method: 'ACK', branch: 'z9hG4bK-ack-new', toTag: 'uas' }));
    expect(layer.acks).toHaveLength(1);
    expect(events).toEqual(['ack']);
    await vi.advanceTimersByTimeAsync(32_000);
    expect(events).toEqual(['ack', 'terminated']);
    expect(layer.txl.pendingAckCount).toBe(0);
    expect(layer.requests).toHaveLength(1);
  });

  it('respond2xxRetransmit: retransmits the 2xx (13.3.1.4) until the ACK arrives', async () => {
    const { stx, events } = receive();
    layer.transport.clear();
    await stx.respond2xxRetransmit(buildResponse(invite, 200, undefined, { toTag: 'uas' }));
    await vi.advanceTimersByTimeAsync(8_000);
    expect(layer.transport.sent.map((s) => s.at)).toEqual([0, 500, 1500, 3500, 7500]);
    layer.transport.deliver(makeRequest({ method: 'ACK', branch: 'z9hG4bK-ack-new', toTag: 'uas' }));
    expect(events).toEqual(['ack']);
    await vi.advanceTimersByTimeAsync(24_000);
    expect(layer.transport.sent).toHaveLength(5);
    expect(events).toEqual(['ack', 'terminated']);
  });

  it('respond2xxRetransmit: T2 cap, ack-timeout after 64*T1 without ACK', async () => {
    const { stx, events } = receive();
    layer.transport.clear();
    await stx.respond2xxRetransmit(buildResponse(invite, 200, undefined, { toTag: 'uas' }));
    await vi.advanceTimersByTimeAsync(32_000);
    expect(layer.transport.sent.map((s) => s.at)).toEqual([0, 500, 1500, 3500, 7500, 11500, 15500, 19500, 23500, 27500, 31500]);
    expect(events).toEqual(['ack-timeout', 'terminated']);
  });

  it('an ACK for a different To tag is not taken for ours', async () => {
    const { stx, events } = receive();
    await stx.respond2xxRetransmit(buildResponse(invite, 200, undefined, { toTag: 'uas' }));
    layer.transport.deliver(makeRequest({ method: 'ACK', branch: 'z9hG4bK-ack-x', toTag: 'other' }));
    expect(layer.acks).toHaveLength(1);     // still passed to the TU
    expect(events).toEqual([]);
    expect(stx.state).toBe('accepted');
  });

  it('rejects a second final and malformed responses', async () => {
    const { stx } = receive();
    await stx.respond(buildResponse(invite, 603, undefined, { toTag: 'uas' }));
    await expect(stx.respond(buildResponse(invite, 200))).rejects.toThrow(/completed/);
    await expect(stx.respond(makeRequest({ method: 'INVITE' }))).rejects.toThrow(/status/);
  });

  it('terminates and rejects when the response cannot be sent', async () => {
    const { stx, events } = receive();
    layer.transport.failWith = new Error('EPIPE');
    await expect(stx.respond(buildResponse(invite, 180, undefined, { toTag: 'x' }))).rejects.toThrow('EPIPE');
    expect(events).toEqual(['terminated']);
    expect(layer.txl.serverTransactionCount).toBe(0);
  });

  it('drops an INVITE the TU never answers after maxProceedingMs', async () => {
    layer.restart({ maxProceedingMs: 60_000 });
    const { events } = receive();
    await vi.advanceTimersByTimeAsync(60_000);
    expect(events).toEqual(['terminated']);
    expect(layer.txl.serverTransactionCount).toBe(0);
  });
});
