import { describe, expect, it, vi } from 'vitest';
import { buildResponse } from './response-builder.js';
import { useLayerOnFakeClock, flowFor, makeRequest, makeResponse } from './test-support.js';
import { isRfc3261Branch, serverTransactionKey } from './matching.js';
import { measureInGcFixture } from '../../shared/testing.js';
import type { InboundMessage, SendTarget } from '../transport/index.js';

describe('transaction matching (RFC 3261 17.1.3, 17.2.3, 9.2)', () => {
  const layer = useLayerOnFakeClock();

  it('recognises RFC 3261 branches; "z9hG4bK" alone is not one', () => {
    expect(isRfc3261Branch('z9hG4bKabc')).toBe(true);
    expect(isRfc3261Branch('z9hG4bK')).toBe(false);
    expect(isRfc3261Branch('abc')).toBe(false);
    expect(isRfc3261Branch(undefined)).toBe(false);
  });

  it('keys by branch + sent-by + method; ACK maps to INVITE', () => {
    const inv = makeRequest({ method: 'INVITE', branch: 'z9hG4bKx' });
    const ack = makeRequest({ method: 'ACK', branch: 'z9hG4bKx', toTag: 't' });
    expect(serverTransactionKey(ack)).toBe(serverTransactionKey(inv));
    const otherHost = makeRequest({ method: 'INVITE', via: 'SIP/2.0/UDP 127.0.0.3:5070;branch=z9hG4bKx' });
    expect(serverTransactionKey(otherHost)).not.toBe(serverTransactionKey(inv));
    expect(serverTransactionKey(makeRequest({ method: 'CANCEL', branch: 'z9hG4bKx' }), 'INVITE')).toBe(serverTransactionKey(inv));
  });

  it('same branch from another sent-by, or another method, is a new transaction', () => {
    layer.transport.deliver(makeRequest({ method: 'OPTIONS', branch: 'z9hG4bK-same' }));
    layer.transport.deliver(makeRequest({ method: 'OPTIONS', via: 'SIP/2.0/UDP 127.0.0.9:5070;branch=z9hG4bK-same' }));
    layer.transport.deliver(makeRequest({ method: 'INFO', branch: 'z9hG4bK-same' }));
    layer.transport.deliver(makeRequest({ method: 'OPTIONS', branch: 'z9hG4bK-same' }));
    expect(layer.requests.map((r) => r.stx.method)).toEqual(['OPTIONS', 'OPTIONS', 'INFO']);
  });

  it('matches a CANCEL to its INVITE (cancelTarget) in a transaction of its own', async () => {
    layer.transport.deliver(makeRequest({ method: 'INVITE', branch: 'z9hG4bK-c1' }));
    layer.transport.deliver(makeRequest({ method: 'CANCEL', branch: 'z9hG4bK-c1' }));
    layer.transport.deliver(makeRequest({ method: 'CANCEL', branch: 'z9hG4bK-unknown' }));
    expect(layer.requests.map((r) => r.stx.method)).toEqual(['INVITE', 'CANCEL', 'CANCEL']);
    const [invite, cancel, stray] = layer.requests.map((r) => r.stx);
    expect(cancel.cancelTarget).toBe(invite);
    expect(stray.cancelTarget).toBeUndefined();
    expect(invite.cancelTarget).toBeUndefined();
    // the TU answers: 200 to the CANCEL, 487 to the INVITE; a retransmitted CANCEL gets the 200 again
    await cancel.respond(buildResponse(layer.requests[1].req.message, 200, undefined, { toTag: 'x' }));
    await invite.respond(buildResponse(layer.requests[0].req.message, 487, undefined, { toTag: 'x' }));
    layer.transport.deliver(makeRequest({ method: 'CANCEL', branch: 'z9hG4bK-c1' }));
    expect(layer.transport.sent.map((s) => `${s.message.status} ${s.message.cseq?.method}`)).toEqual([
      '100 INVITE', '200 CANCEL', '487 INVITE', '200 CANCEL',
    ]);
    // a CANCEL arriving after the INVITE transaction ended finds nothing (TU answers 481)
    layer.transport.deliver(makeRequest({ method: 'ACK', branch: 'z9hG4bK-c1', toTag: 'x' }));
    await vi.advanceTimersByTimeAsync(5_000);
    layer.transport.deliver(makeRequest({ method: 'CANCEL', branch: 'z9hG4bK-c1', cseq: 1, fromTag: 'from-1', callId: 'call-1@test', uri: 'sip:bob@127.0.0.1:5060' }));
    expect(layer.requests).toHaveLength(3);   // still within the CANCEL's timer J: absorbed
  });

  it('RFC 2543 (no branch, inv2543.dat style): retransmissions absorbed, ACK matched by To tag, CANCEL matched', async () => {
    const inv = makeRequest({ method: 'INVITE', branch: null, fromTag: null, via: 'SIP/2.0/UDP iftgw.example.com' });
    layer.transport.deliver(inv);
    layer.transport.deliver(inv.clone());
    expect(layer.requests).toHaveLength(1);
    const { stx } = layer.requests[0];
    // the same message with different whitespace in Via is still the same transaction
    const respaced = inv.clone().set('Via', 'SIP/2.0/UDP  iftgw.example.com');
    layer.transport.deliver(respaced);
    expect(layer.requests).toHaveLength(1);

    const cancel = makeRequest({ method: 'CANCEL', branch: null, fromTag: null, via: 'SIP/2.0/UDP iftgw.example.com' });
    layer.transport.deliver(cancel);
    expect(layer.requests[1].stx.cancelTarget).toBe(stx);

    await stx.respond(buildResponse(inv, 487, undefined, { toTag: 'uas2543' }));
    // an ACK with the wrong To tag does not match (passed to the TU), the right one is absorbed
    layer.transport.deliver(makeRequest({ method: 'ACK', branch: null, fromTag: null, toTag: 'wrong', via: 'SIP/2.0/UDP iftgw.example.com' }));
    expect(layer.acks).toHaveLength(1);
    expect(stx.state).toBe('completed');
    layer.transport.deliver(makeRequest({ method: 'ACK', branch: null, fromTag: null, toTag: 'uas2543', via: 'SIP/2.0/UDP iftgw.example.com' }));
    expect(layer.acks).toHaveLength(1);
    expect(stx.state).toBe('confirmed');
    // the 100 went to the Via sent-by port 5060 (no rport, no port in Via)
    expect(layer.transport.sent[0].target).toEqual({ protocol: 'udp', address: '127.0.0.2', port: 5060 });
  });

  it('a different CSeq in RFC 2543 matching is a different transaction', () => {
    layer.transport.deliver(makeRequest({ method: 'OPTIONS', branch: null, cseq: 1 }));
    layer.transport.deliver(makeRequest({ method: 'OPTIONS', branch: null, cseq: 2 }));
    expect(layer.requests).toHaveLength(2);
  });

  it('badbranch.dat: branch=z9hG4bK falls back to RFC 2543 matching (no 400)', () => {
    const opt = makeRequest({ method: 'OPTIONS', via: 'SIP/2.0/UDP 192.0.2.1;branch=z9hG4bK' });
    layer.transport.deliver(opt);
    layer.transport.deliver(opt.clone());
    expect(layer.requests).toHaveLength(1);
    expect(layer.transport.sent).toHaveLength(0);
  });

  it('answers a request lacking what matching needs with 400, drops one without Via', () => {
    const noCseq = makeRequest({ method: 'OPTIONS', branch: null }).remove('CSeq');
    layer.transport.deliver(noCseq);
    expect(layer.transport.sent.map((s) => s.message.status)).toEqual([400]);
    expect(layer.transport.sent[0].message.toTag).toBeDefined();
    layer.transport.deliver(makeRequest({ method: 'OPTIONS' }).remove('Via'));
    expect(layer.transport.sent).toHaveLength(1);
    expect(layer.requests).toHaveLength(0);
  });

  it('answers transport-reported malformed requests statelessly, never an ACK', () => {
    layer.transport.deliverMalformed({ error: 'bad', status: 505, message: makeRequest({ method: 'OPTIONS' }), flow: flowFor() });
    layer.transport.deliverMalformed({ error: 'bad', status: 400, message: makeRequest({ method: 'ACK' }), flow: flowFor() });
    expect(layer.transport.sent.map((s) => s.message.status)).toEqual([505]);
    expect(layer.transport.sent[0].message.reason).toBe('Version Not Supported');
  });

  it('routes responses by branch + CSeq method; others are stray', () => {
    const target: SendTarget = { protocol: 'udp', address: '127.0.0.2', port: 5070 };
    const strays: InboundMessage[] = [];
    layer.txl.on('stray-response', (r) => strays.push(r));
    const opt = layer.txl.sendRequest(makeRequest({ method: 'OPTIONS', branch: 'z9hG4bK-r1' }), target);
    const got: number[] = [];
    opt.on('response', (r) => got.push(r.message.status ?? 0));
    const wrongMethod = makeResponse(makeRequest({ method: 'INFO', branch: 'z9hG4bK-r1' }), 200);
    layer.transport.deliver(wrongMethod);
    layer.transport.deliver(makeResponse(makeRequest({ method: 'OPTIONS', branch: 'z9hG4bK-r2' }), 200));
    expect(got).toEqual([]);
    expect(strays).toHaveLength(2);
    layer.transport.deliver(makeResponse(opt.request, 200));
    expect(got).toEqual([200]);
  });

  it('a throwing TU listener does not escape into the transport', () => {
    layer.txl.on('request', () => { throw new Error('TU bug'); });
    expect(() => layer.transport.deliver(makeRequest({ method: 'OPTIONS', branch: 'z9hG4bK-throw' }))).not.toThrow();
  });

  // A key is kept 32 s in the completed-transaction table: it must not keep the message text it was cut from
  // alive. Measured: ~220 bytes per key detached, ~1,700 (the whole 1.3 KB message) when not.
  it('server transaction keys hold none of the message they came from', () => {
    const bytesPerKey = measureInGcFixture(new URL('./matching.gc-fixture.ts', import.meta.url));
    expect(bytesPerKey).toBeGreaterThan(0);
    expect(bytesPerKey).toBeLessThan(600);
  }, 30_000);
});
