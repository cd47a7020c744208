/**
 * RFC 4028 session timers on both legs of a call (issue 15 item 1), on real peers: SIPp carrier
 * trunks (source 127.0.0.2) call a user's registered SIPp phone. The stack runs with a 4 s interval
 * and a 3 s Min-SE (below RFC 4028's 90 s floor, which the product's config enforces) so that
 * refreshes and expiry happen within a test.
 *
 * - 422 below our Min-SE, the retry accepted with Session-Expires/Require: timer in the 2xx
 * - we refresh both legs at half the interval: UPDATE toward a carrier that allows it, re-INVITE
 *   with the unchanged SDP toward a phone that does not; each refresh restarts the timer
 * - a carrier that was to refresh and does not: BYE to both legs at the expiry and the media gone
 */
import { describe, expect, it } from 'vitest';
import { runSipp, startSippServer, type SippServer } from '../harness/index.js';
import { useCallStack, type CallStack } from './call-stack.js';
import { headerValues, receivedMessages } from './sipp-trace.js';
import type { CallSession } from '../../src/app/calls/index.js';

let cs: CallStack;
const servers: SippServer[] = [];
const SESSION_EXPIRES = 4;

useCallStack((started) => (cs = started), servers, undefined, {
  timers: { sessionTimer: { sessionExpiresSeconds: SESSION_EXPIRES, minSessionExpiresSeconds: 3 } },
});

const CALLER = '+447700900123';
const CALLER_NATIONAL = '07700900123';
let didCounter = 0;

async function phoneUser(): Promise<{ id: string; did: string; port: number }> {
  const user = await cs.createUser({});
  const did = `4420712388${String(++didCounter).padStart(2, '0')}`;
  cs.routeDid(did, user.id);
  const port = await cs.registerPhone(user);
  return { id: user.id, did, port };
}

async function phone(scenario: string, port: number): Promise<SippServer> {
  const server = await startSippServer({ scenario, localPort: port, traceMessages: true, timeoutMs: 60_000, keys: { se: String(SESSION_EXPIRES) } });
  servers.push(server);
  return server;
}

function carrierCall(scenario: string, did: string) {
  return runSipp({
    scenario, target: cs.target, service: did, calls: 1, traceMessages: true, timeoutMs: 40_000,
    keys: { caller: CALLER, caller_national: CALLER_NATIONAL, se: String(SESSION_EXPIRES) },
    extraArgs: cs.carrierSippArgs(),
  });
}

function watchCalls(): { events: string[]; samples: number[][]; sessions: CallSession[]; stop(): void } {
  const events: string[] = [];
  const samples: number[][] = [];
  const sessions: CallSession[] = [];
  const onSession = (session: CallSession): void => {
    sessions.push(session);
    session.on('answered', () => {
      events.push('answered');
      const poll = setInterval(() => void cs.packetsByLeg(session.callId).then((p) => samples.push(p), () => undefined), 300);
      session.once('ended', () => clearInterval(poll));
    });
    session.on('ended', (end) => events.push(`ended:${end.reason}`));
  };
  cs.calls.on('session', onSession);
  return { events, samples, sessions, stop: () => cs.calls.off('session', onSession) };
}

const bodyOf = (message: string): string => message.split(/\r?\n\r?\n/).slice(1).join('\n\n').trim();

describe('RFC 4028 session timers', () => {
  it('422 below Min-SE; then both legs refreshed by us at half the interval, RTP both ways', async () => {
    const user = await phoneUser();
    const callee = await phone('uas-answer-timer.xml', user.port);
    const watch = watchCalls();
    try {
      const carrier = await carrierCall('call-carrier-uac-timer.xml', user.did);
      expect(carrier.stats.successful, carrier.errors + carrier.stdout.slice(-1500)).toBe(1);
      const phoneResult = await callee.stop();
      expect(phoneResult.stats.successful, phoneResult.errors + phoneResult.stdout.slice(-1500)).toBe(1);

      const atCarrier = receivedMessages(carrier.messages);
      expect(headerValues(atCarrier.find((m) => m.startsWith('SIP/2.0 422'))!, 'Min-SE')).toEqual(['3']);
      const ok = atCarrier.find((m) => m.startsWith('SIP/2.0 200') && /CSeq:\s*2 INVITE/i.test(m))!;
      expect(headerValues(ok, 'Session-Expires')).toEqual([`${SESSION_EXPIRES};refresher=uas`]);
      expect(headerValues(ok, 'Require')).toEqual(['timer']);
      const updates = atCarrier.filter((m) => m.startsWith('UPDATE '));
      expect(updates).toHaveLength(2);
      for (const update of updates) {
        expect(headerValues(update, 'Session-Expires')).toEqual([`${SESSION_EXPIRES};refresher=uac`]);
        expect(bodyOf(update), 'a refresh UPDATE carries no offer').toBe('');
      }

      const atPhone = receivedMessages(phoneResult.messages);
      const invites = atPhone.filter((m) => m.startsWith('INVITE '));
      expect(headerValues(invites[0]!, 'Session-Expires')).toEqual([String(SESSION_EXPIRES)]);
      expect(headerValues(invites[0]!, 'Min-SE')).toEqual(['3']);
      expect(invites.length, 'refresh re-INVITEs toward the phone (its Allow has no UPDATE)').toBeGreaterThanOrEqual(2);
      for (const refresh of invites.slice(1)) {
        expect(bodyOf(refresh), 'a refresh repeats the SDP unchanged').toBe(bodyOf(invites[0]!));
        expect(headerValues(refresh, 'Session-Expires')).toEqual([`${SESSION_EXPIRES};refresher=uac`]);
      }
      expect(watch.events).toEqual(expect.arrayContaining(['answered', 'ended:caller-hangup']));
      const last = watch.samples[watch.samples.length - 1];
      expect(last![0], 'RTP from the carrier').toBeGreaterThan(20);
      expect(last![1], 'RTP from the phone').toBeGreaterThan(20);
    } finally {
      watch.stop();
    }
  });

  it('no refresh from the refresher: BYE to both legs at the expiry, and the rtpengine session is deleted', async () => {
    const user = await phoneUser();
    const callee = await phone('uas-answer-rtp.xml', user.port);
    const watch = watchCalls();
    try {
      const carrier = await carrierCall('call-carrier-uac-timer-expiry.xml', user.did);
      expect(carrier.stats.successful, carrier.errors + carrier.stdout.slice(-1500)).toBe(1);
      const phoneResult = await callee.stop();
      expect(phoneResult.stats.successful, 'the phone got a BYE').toBe(1);
      expect(receivedMessages(carrier.messages).filter((m) => m.startsWith('UPDATE ') || m.startsWith('INVITE ')), 'we are not the refresher').toHaveLength(0);
      expect(watch.events).toEqual(['answered', 'ended:session-expired']);
      expect(watch.sessions[0]!.sessionTimerOf('a')).toEqual({ seconds: SESSION_EXPIRES, weRefresh: false });
      await cs.expectIdle(); // no call, media session, rtpengine call or edge dialog left
    } finally {
      watch.stop();
    }
  });

  it('a carrier that refreshes (UPDATE with Session-Expires) keeps its call past the interval', async () => {
    const user = await phoneUser();
    const callee = await phone('uas-answer-rtp.xml', user.port);
    const watch = watchCalls();
    try {
      const carrier = await carrierCall('call-carrier-uac-timer-refresher.xml', user.did);
      expect(carrier.stats.successful, carrier.errors + carrier.stdout.slice(-1500)).toBe(1);
      expect((await callee.stop()).stats.successful).toBe(1);
      expect(watch.events, 'ended by the carrier\'s BYE, 5 s into a 4 s session').toEqual(['answered', 'ended:caller-hangup']);
    } finally {
      watch.stop();
    }
  });
});
