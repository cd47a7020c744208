import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { TransactionLayer } from './transaction-layer.js';
import { buildResponse } from './response-builder.js';
import { generateBranch } from './ids.js';
import { FakeTransport, flowFor, makeRequest, makeResponse } from './test-support.js';
import type { SendTarget } from '../transport/index.js';

const udp: SendTarget = { protocol: 'udp', address: '127.0.0.2', port: 5070 };

describe('transaction limits and cleanup', () => {
  let transport: FakeTransport;

  beforeEach(() => {
    vi.useFakeTimers({ now: 0 });
    transport = new FakeTransport();
  });
  afterEach(() => {
    vi.useRealTimers();
  });

  it('answers 503 statelessly over maxServerTransactions and does not emit the request', () => {
    const txl = new TransactionLayer(transport, { maxServerTransactions: 2 });
    const methods: string[] = [];
    const acks: string[] = [];
    txl.on('request', (req) => methods.push(req.message.method ?? ''));
    txl.on('ack', (ack) => acks.push(ack.message.method ?? ''));
    transport.deliver(makeRequest({ method: 'OPTIONS', branch: 'z9hG4bK-l1' }));
    transport.deliver(makeRequest({ method: 'OPTIONS', branch: 'z9hG4bK-l2' }));
    transport.deliver(makeRequest({ method: 'OPTIONS', branch: 'z9hG4bK-l3' }));
    transport.deliver(makeRequest({ method: 'OPTIONS', branch: 'z9hG4bK-l1' }));   // retransmission: still absorbed
    transport.deliver(makeRequest({ method: 'ACK', branch: 'z9hG4bK-l4', toTag: 'x' }));
    expect(methods).toEqual(['OPTIONS', 'OPTIONS']);
    expect(acks).toEqual(['ACK']);
    expect(transport.sent.map((s) => s.message.status)).toEqual([503]);
    expect(transport.sent[0].message.toTag).toBeDefined();
    expect(txl.serverTransactionCount).toBe(2);
    txl.stop();
  });

  it('fails sendRequest with a transport-error over maxClientTransactions, but lets a CANCEL through', async () => {
    const txl = new TransactionLayer(transport, { maxClientTransactions: 1 });
    const invite = txl.sendRequest(makeRequest({ method: 'INVITE', branch: generateBranch() }), udp);
    const refused = txl.sendRequest(makeRequest({ method: 'OPTIONS', branch: generateBranch() }), udp);
    const errors: string[] = [];
    refused.on('transport-error', (err) => errors.push(err.message));
    await expect(refused.sent).rejects.toThrow(/too many/);
    expect(errors).toEqual(['too many client transactions']);
    expect(transport.sentWhere((m) => m.method === 'OPTIONS')).toHaveLength(0);
    transport.deliver(makeResponse(invite.request, 180));
    expect(await invite.cancel()).toBeDefined();
    expect(transport.sentWhere((m) => m.method === 'CANCEL')).toHaveLength(1);
    txl.stop();
  });

  it('runs 10k server and 10k client transactions through and returns every table to empty', async () => {
    const txl = new TransactionLayer(transport);
    txl.on('request', (req, stx) => {
      const m = req.message;
      const n = Number(m.callId?.split('-')[1]);
      if (m.method === 'INVITE') {
        const status = n % 2 === 0 ? 200 : 486;
        const res = buildResponse(m, status, undefined, { toTag: `t${n}` });
        void (n % 4 === 0 ? stx.respond2xxRetransmit(res) : stx.respond(res));
      } else if (n % 3 !== 0) {
        void stx.respond(buildResponse(m, 200, undefined, { toTag: `t${n}` }));
      } // else never answered: the abandon timer must clean it up
    });
        // fake timers scan every pending timer per firing, so run in batches of 100 to keep the test fast
    let peakServer = 0;
    let peakClient = 0;
    for (let n = 0; n < 10_000; n++) {
      const method = n % 2 === 0 ? 'INVITE' : 'OPTIONS';
      const flow = n % 5 === 0 ? flowFor('tcp', 10_000 + n) : flowFor('udp', 10_000 + n);
      const req = makeRequest({ method, branch: `z9hG4bK-srv-${n}`, callId: `srv-${n}`, fromTag: `f${n}` });
      transport.deliver(req, flow);
      if (method === 'INVITE' && n % 3 === 0) {
        transport.deliver(makeRequest({ method: 'ACK', branch: n % 2 === 0 ? `z9hG4bK-ack-${n}` : `z9hG4bK-srv-${n}`, callId: `srv-${n}`, fromTag: `f${n}`, toTag: `t${n}` }), flow);
      }

      const creq = makeRequest({ method: n % 2 === 0 ? 'INVITE' : 'INFO', branch: `z9hG4bK-cli-${n}`, callId: `cli-${n}` });
      const ctx = txl.sendRequest(creq, n % 5 === 0 ? { ...udp, protocol: 'tcp' } : udp);
      if (n % 7 !== 0) transport.deliver(makeResponse(ctx.request, n % 2 === 0 ? (n % 4 === 0 ? 200 : 404) : 200));
      else if (n % 2 === 0) {
        transport.deliver(makeResponse(ctx.request, 180));
        void ctx.cancel();
      } // else: no response at all, timer F
      transport.clear();
      if (n % 100 === 99) {
        peakServer = Math.max(peakServer, txl.serverTransactionCount);
        peakClient = Math.max(peakClient, txl.clientTransactionCount);
        await vi.advanceTimersByTimeAsync(0);        // let the sends settle
        vi.advanceTimersByTime(10 * 60_000 + 1);     // past every timer, including maxProceedingMs
        await vi.advanceTimersByTimeAsync(0);
      }
    }
    expect(peakServer).toBeGreaterThan(50);
    expect(peakClient).toBeGreaterThan(50);
    expect(txl.serverTransactionCount).toBe(0);
    expect(txl.clientTransactionCount).toBe(0);
    expect(txl.pendingAckCount).toBe(0);
    expect(vi.getTimerCount()).toBe(0);
    txl.stop();
  });
});
