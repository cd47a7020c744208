/**
 * srf.proxyRequest served by the embedded edge (issue 15 item 6): stateful proxying per RFC 3261 §16 between
 * two SIPp peers, as drachtio-server does it: our Via on top, Max-Forwards decremented, the destination as the
 * Request-URI, Record-Route when asked (the dialog's ACK and BYE then come through the edge), serial failover
 * to the next destination on a failure, simultaneous forking with the losing branch cancelled, the best failure when none answers, CANCEL passed downstream, and the
 * app told each final response and the end.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runSipp, startSippServer, waitUntil, type SippServer } from '../harness/index.js';
import { startStack, type TestStack } from '../fixtures/stack.js';
import type { ProxyResult, Srf } from '../../src/app/sip/srf.js';
import { headerValues, receivedMessages, receivedRequest, receivedStatuses, rejectScenario } from '../calls/sipp-trace.js';

let stack: TestStack;
let app: Srf;
/** the destinations each called number is proxied to, and whether to record-route */
const plans = new Map<string, { destinations: string[]; recordRoute: boolean; forking?: 'serial' | 'simultaneous' }>();
const results: Array<{ called: string; result?: ProxyResult; error?: unknown }> = [];

beforeAll(async () => {
  stack = await startStack();
  app = await stack.connectApp();
  app.invite((req) => {
    const called = req.calledNumber ?? '';
    const plan = plans.get(called);
    if (!plan) return;
    app.proxyRequest(req, plan.destinations, { recordRoute: plan.recordRoute, ...(plan.forking ? { forking: plan.forking } : {}) }).then(
      (result) => results.push({ called, result }),
      (error: unknown) => results.push({ called, error }),
    );
  });
});
afterAll(async () => {
  await stack?.stop();
});

const servers: SippServer[] = [];
async function uas(scenario: string): Promise<SippServer> {
  const server = await startSippServer({ scenario, traceMessages: true, timeoutMs: 30_000 });
  servers.push(server);
  return server;
}

function caller(scenario: string, called: string, pauseMs = 500) {
  return runSipp({
    scenario, target: stack.target, service: called, calls: 1, traceMessages: true, timeoutMs: 20_000,
    keys: { caller: '+447700900123', caller_national: '07700900123' }, extraArgs: ['-d', String(pauseMs)],
  });
}

async function resultOf(called: string): Promise<ProxyResult> {
  await waitUntil(() => results.some((r) => r.called === called), { timeoutMs: 5000, what: `proxy result for ${called}` });
  const entry = results.find((r) => r.called === called)!;
  if (entry.error) throw entry.error;
  return entry.result!;
}

describe('srf.proxyRequest on the edge', () => {
  it('forwards an INVITE with our Via, Max-Forwards - 1 and the destination as Request-URI; the answer comes back', async () => {
    // (the caller is a SIPp that sends everything to the edge: a dialog without Record-Route is tested by its
    // failure here, end to end dialogs below with Record-Route)
    const callee = await uas('call-uas-reject.xml');
    plans.set('p1', { destinations: [`sip:callee@127.0.0.1:${callee.port}`], recordRoute: false });
    const call = await caller('call-carrier-refused.xml', 'p1');
    expect(call.stats.successful, call.errors + call.stdout.slice(-1500)).toBe(1);
    expect(receivedStatuses(call.messages)).toContain(486);
    const invite = receivedRequest((await callee.stop(3000)).messages, 'INVITE')!;
    expect(invite.split(/\r?\n/)[0]).toBe(`INVITE sip:callee@127.0.0.1:${callee.port} SIP/2.0`);
    const vias = headerValues(invite, 'Via');
    expect(vias).toHaveLength(2);
    expect(vias[0]).toMatch(new RegExp(`^SIP/2\\.0/UDP 127\\.0\\.0\\.1:${stack.sipPort};.*branch=z9hG4bK`));
    expect(headerValues(invite, 'Max-Forwards')).toEqual(['69']);
    expect(headerValues(invite, 'Record-Route')).toEqual([]);
    const result = await resultOf('p1');
    expect(result.connected).toBe(false);
    expect(result.finalStatus).toBe(486);
  });

  it('with recordRoute the ACK and BYE come through the edge (loose routing) and reach the callee', async () => {
    const callee = await uas('uas-answer-rtp.xml');
    plans.set('p2', { destinations: [`sip:callee@127.0.0.1:${callee.port}`], recordRoute: true });
    const call = await caller('call-carrier-uac.xml', 'p2');
    expect(call.stats.successful, call.errors + call.stdout.slice(-1500)).toBe(1);
    const received = receivedMessages((await callee.stop(3000)).messages);
    const invite = received.find((m) => m.startsWith('INVITE '))!;
    expect(headerValues(invite, 'Record-Route')[0]).toMatch(new RegExp(`^<sip:127\\.0\\.0\\.1:${stack.sipPort};lr;dcproxy>$`));
    const bye = received.find((m) => m.startsWith('BYE '))!;
    expect(bye, 'the BYE reached the callee').toBeDefined();
    expect(headerValues(bye, 'Via'), 'the BYE came through the edge').toHaveLength(2);
    expect(headerValues(bye, 'Route')).toEqual([]);
    const ack = received.find((m) => m.startsWith('ACK '))!;
    expect(headerValues(ack, 'Via')).toHaveLength(2);
    expect((await resultOf('p2')).finalStatus).toBe(200);
  });

  it('tries the next destination after a failure and reports each final to the app', async () => {
    const busy = await uas(rejectScenario(503, 'Service Unavailable'));
    const callee = await uas('uas-answer-rtp.xml');
    plans.set('p3', { destinations: [`sip:first@127.0.0.1:${busy.port}`, `sip:second@127.0.0.1:${callee.port}`], recordRoute: true });
    const call = await caller('call-carrier-uac.xml', 'p3');
    expect(call.stats.successful, call.errors + call.stdout.slice(-1500)).toBe(1);
    expect(receivedStatuses(call.messages)).not.toContain(503);
    const result = await resultOf('p3');
    expect(result.responses.flatMap((r) => r.msgs.map((m) => m.status))).toEqual([503, 200]);
    expect(result.connected).toBe(true);
    await busy.stop(2000);
    await callee.stop(3000);
  });

  it('simultaneous forking: the first answer wins, the branch still ringing is cancelled', async () => {
    const ringing = await uas('uas-ring-forever.xml');
    const callee = await uas('uas-answer-rtp.xml');
    plans.set('p6', { destinations: [`sip:ring@127.0.0.1:${ringing.port}`, `sip:answer@127.0.0.1:${callee.port}`], recordRoute: true, forking: 'simultaneous' });
    const call = await caller('call-carrier-uac.xml', 'p6');
    expect(call.stats.successful, call.errors + call.stdout.slice(-1500)).toBe(1);
    const cancelled = await ringing.stop(3000);
    expect(cancelled.stats.successful, 'the ringing branch got CANCEL, answered 487 and got its ACK').toBe(1);
    expect(receivedRequest(cancelled.messages, 'CANCEL')).toBeDefined();
    expect(receivedRequest((await callee.stop(3000)).messages, 'BYE'), 'the answering branch got the BYE').toBeDefined();
    const result = await resultOf('p6');
    expect(result.connected).toBe(true);
    expect(result.finalStatus).toBe(200);
  });

  it('a CANCEL from the caller is answered and sent on; the callee\'s 487 comes back', async () => {
    const ringing = await uas('uas-ring-forever.xml');
    plans.set('p5', { destinations: [`sip:ring@127.0.0.1:${ringing.port}`], recordRoute: false });
    const call = await caller('cancel-uac.xml', 'p5');
    expect(call.stats.successful, call.errors + call.stdout.slice(-1500)).toBe(1);
    const callee = await ringing.stop(3000);
    expect(callee.stats.successful, 'the callee got the CANCEL, answered 487 and got its ACK').toBe(1);
    expect((await resultOf('p5')).finalStatus).toBe(487);
    await waitUntil(async () => ((await stack.serverDialogs()) ?? 0) === 0, { timeoutMs: 3000, what: 'no dialog left' });
  });
});
