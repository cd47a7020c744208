/**
 * Early media and the ring timeout, carrier -> dialcore -> user's SIP phone on real peers
 * (redis, rtpengine, the edge, the product's registrar and call router; see call-stack.ts).
 *
 * - Early media (RFC 3960 gateway model): the phone answers 183 Session Progress with SDP and
 *   plays RTP before its 200 OK. The carrier must get a 183 whose SDP was rewritten by rtpengine
 *   (c=/m= on rtpengine's interface and port range, never the phone's own address), the phone's
 *   early RTP must reach rtpengine, then the call is answered and torn down cleanly.
 * - Ring timeout: a phone that rings forever; after `ringTimeoutMs` the carrier gets 480 and the
 *   phone gets CANCEL (RFC 3261 §9.1) -> 200 + 487 -> ACK.
 * After every test: no call session, media session, rtpengine call or edge dialog is left.
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { runSipp, startSippServer, type SippServer } from '../harness/index.js';
import { startCallStack, type CallStack, type CallStackOptions } from './call-stack.js';
import { receivedMessages, receivedRequest, receivedStatuses } from './sipp-trace.js';
import type { CallSession } from '../../src/app/calls/index.js';

const CALLER = '+447700900123';
const CALLER_NATIONAL = '07700900123';
const RING_TIMEOUT_MS = 2000;

/** One call stack per describe block (the ring-timeout block needs short timers). */
function useCallStack(options: CallStackOptions = {}): { cs(): CallStack; phone(scenario: string, port: number): Promise<SippServer> } {
  let cs: CallStack | undefined;
  const servers: SippServer[] = [];
  beforeAll(async () => {
    cs = await startCallStack(options);
  });
  afterEach(async () => {
    await Promise.all(servers.splice(0).map((s) => s.stop(1000)));
    await cs?.expectIdle();
  });
  afterAll(async () => {
    await cs?.stop();
  });
  return {
    cs: () => cs!,
    async phone(scenario, port) {
      const server = await startSippServer({ scenario, localPort: port, traceMessages: true, timeoutMs: 60_000 });
      servers.push(server);
      return server;
    },
  };
}

let didCounter = 0;
async function phoneUser(cs: CallStack): Promise<{ id: string; did: string; port: number }> {
  const user = await cs.createUser({});
  const did = `4420712377${String(++didCounter).padStart(2, '0')}`;
  cs.routeDid(did, user.id);
  const port = await cs.registerPhone(user);
  return { id: user.id, did, port };
}

function carrierCall(cs: CallStack, scenario: string, did: string, pauseMs = 1000) {
  return runSipp({
    scenario, target: cs.target, service: did, calls: 1, traceMessages: true, timeoutMs: 20_000,
    keys: { caller: CALLER, caller_national: CALLER_NATIONAL },
    extraArgs: [...cs.carrierSippArgs(), '-d', String(pauseMs)],
  });
}

/** Records each new session's events, with the time since the session began. */
function watchSessions(cs: CallStack): { events: string[]; sessions: CallSession[]; endedAfterMs: number[]; stop(): void } {
  const events: string[] = [];
  const sessions: CallSession[] = [];
  const endedAfterMs: number[] = [];
  const onSession = (session: CallSession): void => {
    const began = Date.now();
    sessions.push(session);
    for (const name of ['ringing', 'early-media', 'answered'] as const) session.on(name, () => events.push(name));
    session.on('ended', (end) => {
      events.push(`ended:${end.reason}`);
      endedAfterMs.push(Date.now() - began);
    });
  };
  cs.calls.on('session', onSession);
  return { events, sessions, endedAfterMs, stop: () => cs.calls.off('session', onSession) };
}

/** The connection address and audio port of an SDP body (RFC 4566 §5.7, §5.14). */
function sdpAudioEndpoint(message: string): { address?: string; port?: number } {
  const body = message.split(/\r?\n\r?\n/).slice(1).join('\n');
  const address = /^c=IN IP4 (\S+)/m.exec(body)?.[1];
  const port = /^m=audio (\d+) /m.exec(body)?.[1];
  return { ...(address ? { address } : {}), ...(port ? { port: Number(port) } : {}) };
}

function responses(trace: string | undefined, status: number): string[] {
  return receivedMessages(trace).filter((m) => m.startsWith(`SIP/2.0 ${status} `));
}

describe('early media from the phone', () => {
  const { cs, phone } = useCallStack();

  it('relays the phone\'s 183 with SDP through rtpengine, carries early RTP, then answers and ends cleanly', async () => {
    const stack = cs();
    const user = await phoneUser(stack);
    const callee = await phone('call-uas-early-media.xml', user.port);
    const watch = watchSessions(stack);
    // rtpengine's packet counts [carrier leg, phone leg], sampled while the call is in early media
    const earlySamples: number[][] = [];
    const onSession = (session: CallSession): void => {
      session.on('early-media', () => {
        const poll = setInterval(() => {
          void stack.packetsByLeg(session.callId).then((p) => {
            if (session.state === 'early') earlySamples.push(p);
          }, () => undefined);
        }, 200);
        session.once('answered', () => clearInterval(poll));
        session.once('ended', () => clearInterval(poll));
      });
    };
    stack.calls.on('session', onSession);
    try {
      const carrier = await carrierCall(stack, 'call-carrier-uac.xml', user.did, 1000);
      expect(carrier.stats.successful, carrier.errors + carrier.stdout.slice(-1500)).toBe(1);
      const phoneResult = await callee.stop();
      expect(phoneResult.stats.successful, phoneResult.errors + phoneResult.stdout.slice(-1500)).toBe(1);

      // the carrier got 183 with SDP, then 200
      const statuses = receivedStatuses(carrier.messages);
      expect(statuses).toContain(183);
      expect(statuses.indexOf(183)).toBeLessThan(statuses.indexOf(200));
      const progress = responses(carrier.messages, 183)[0]!;
      expect(progress).toMatch(/^Content-Type:\s*application\/sdp/im);

      // its SDP is rtpengine's: c= on rtpengine's interface, m= in rtpengine's port range,
      // not the phone's media port (the one the phone's 183 advertised)
      const phone183 = /SIP\/2\.0 183[\s\S]*?(?=-{5,}|$)/.exec(phoneResult.messages ?? '')?.[0] ?? '';
      const phoneEndpoint = sdpAudioEndpoint(phone183);
      expect(phoneEndpoint.port, 'the phone\'s own 183 carries its media port').toBeDefined();
      const relayed = sdpAudioEndpoint(progress);
      expect(relayed.address).toBe(stack.rtpengine.host);
      expect(relayed.port).toBeGreaterThanOrEqual(stack.rtpengine.portMin);
      expect(relayed.port).toBeLessThanOrEqual(stack.rtpengine.portMax);
      expect(relayed.port).not.toBe(phoneEndpoint.port);
      // the answer is rtpengine's too, on the same port as the early media (one stream, RFC 3960 §3)
      const answer = sdpAudioEndpoint(responses(carrier.messages, 200)[0]!);
      expect(answer).toEqual(relayed);

      // the phone's early RTP reached rtpengine before the answer (~33 packets/s for ~2 s)
      const lastEarly = earlySamples[earlySamples.length - 1];
      expect(lastEarly, 'rtpengine packet counts sampled during early media').toBeDefined();
      expect(lastEarly![1]).toBeGreaterThan(20);

      expect(watch.events).toEqual(['early-media', 'answered', 'ended:caller-hangup']);
    } finally {
      stack.calls.off('session', onSession);
      watch.stop();
    }
  });
});

describe('ring timeout', () => {
  const { cs, phone } = useCallStack({ timers: { ringTimeoutMs: RING_TIMEOUT_MS } });

  it('a phone that never answers is canceled after the ring timeout; the carrier gets 480', async () => {
    const stack = cs();
    const user = await phoneUser(stack);
    const callee = await phone('uas-ring-forever.xml', user.port);
    const watch = watchSessions(stack);
    try {
      const carrier = await carrierCall(stack, 'call-carrier-refused.xml', user.did);
      expect(carrier.stats.successful, carrier.errors + carrier.stdout.slice(-1500)).toBe(1);
      const statuses = receivedStatuses(carrier.messages);
      expect(statuses).toContain(180);
      expect(statuses[statuses.length - 1]).toBe(480);

      const phoneResult = await callee.stop(5000);
      expect(phoneResult.stats.successful, 'the phone got CANCEL, answered 487 and got the ACK').toBe(1);
      expect(receivedRequest(phoneResult.messages, 'CANCEL')).toBeDefined();
      expect(receivedRequest(phoneResult.messages, 'ACK')).toBeDefined();

      expect(watch.events).toEqual(['ringing', 'ended:no-answer']);
      // the timer, not something else, ended it: not before the timeout (bound generous above)
      expect(watch.endedAfterMs[0]).toBeGreaterThanOrEqual(RING_TIMEOUT_MS - 50);
      expect(watch.endedAfterMs[0]).toBeLessThan(RING_TIMEOUT_MS + 8000);
    } finally {
      watch.stop();
    }
  });
});
