import { describe, expect, it, vi } from 'vitest';
import { buildResponse } from './response-builder.js';
import { useLayerOnFakeClock, flowFor, makeRequest } from './test-support.js';

describe('server non-INVITE transaction (RFC 3261 17.2.2)', () => {
  const layer = useLayerOnFakeClock();

  const register = makeRequest({ method: 'REGISTER', branch: 'z9hG4bK-reg-1' });
  const statuses = (): number[] => layer.transport.sent.map((s) => s.message.status ?? 0);

  it('Trying absorbs retransmissions; Proceeding and Completed repeat the last response; timer J = 64*T1', async () => {
    layer.transport.deliver(register.clone());
    const { stx } = layer.requests[0];
    const terminated = vi.fn();
    stx.on('terminated', terminated);
    expect(stx.state).toBe('trying');
    layer.transport.deliver(register.clone());
    expect(layer.transport.sent).toHaveLength(0);
    await stx.respond(buildResponse(register, 100));
    expect(stx.state).toBe('proceeding');
    layer.transport.deliver(register.clone());
    expect(statuses()).toEqual([100, 100]);
    await stx.respond(buildResponse(register, 200, undefined, { toTag: 'reg' }));
    expect(stx.state).toBe('completed');
    layer.transport.deliver(register.clone());
    expect(statuses()).toEqual([100, 100, 200, 200]);
    await expect(stx.respond(buildResponse(register, 500))).rejects.toThrow(/completed/);
    expect(layer.requests).toHaveLength(1);
    await vi.advanceTimersByTimeAsync(31_999);
    expect(terminated).not.toHaveBeenCalled();
    expect(statuses()).toHaveLength(4);  // no timer-driven retransmission of non-INVITE responses
    await vi.advanceTimersByTimeAsync(1);
    expect(terminated).toHaveBeenCalledOnce();
    expect(layer.txl.serverTransactionCount).toBe(0);
  });

  it('over a reliable transport terminates when the final is sent (J = 0)', async () => {
    layer.transport.deliver(register.clone(), flowFor('ws', 50000));
    const { stx } = layer.requests[0];
    await stx.respond(buildResponse(register, 200, undefined, { toTag: 'reg' }));
    expect(stx.state).toBe('terminated');
    expect(layer.txl.serverTransactionCount).toBe(0);
    expect(layer.transport.sent[0].target.flowId).toBe(flowFor('ws', 50000).id);
  });

  it('sends UDP responses to the Via sent-by port when there is no rport (18.2.2)', async () => {
    const req = makeRequest({ method: 'OPTIONS', via: 'SIP/2.0/UDP 127.0.0.2:5080;branch=z9hG4bK-norport' });
    layer.transport.deliver(req, flowFor('udp', 40001));
    await layer.requests[0].stx.respond(buildResponse(req, 200, undefined, { toTag: 't' }));
    expect(layer.transport.sent[0].target).toEqual({ protocol: 'udp', address: '127.0.0.2', port: 5080 });
  });

  it('gives up on a request the TU never answers after 64*T1', async () => {
    layer.transport.deliver(register.clone());
    await vi.advanceTimersByTimeAsync(32_000);
    expect(layer.requests[0].stx.state).toBe('terminated');
    expect(layer.txl.serverTransactionCount).toBe(0);
  });
});
