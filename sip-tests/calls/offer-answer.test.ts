/**
 * Offer/answer through the B2BUA and rtpengine beyond the plain early offer (issue 15 item 1), and
 * truthful capabilities (item 2), on real peers: SIPp carrier trunks (source 127.0.0.2) call a
 * user's registered SIPp phone; RTP is counted on both legs in rtpengine.
 *
 * - late offer: INVITE without SDP -> the phone is INVITEd without SDP -> its 2xx offer through
 *   rtpengine to the carrier's 2xx -> the carrier's answer in its ACK through rtpengine to the
 *   phone's ACK (RFC 3261 §13.2.1, RFC 3264 §5)
 * - UPDATE with and without SDP in the confirmed dialog (RFC 3311), relayed to a phone that does
 *   not allow UPDATE as re-INVITEs; an offer-less re-INVITE passed through (RFC 3261 §14.2)
 * - Require: 100rel gets 420 with Unsupported: 100rel (RFC 3261 §8.2.2.3; RFC 3262 not implemented)
 */
import { describe, expect, it } from 'vitest';
import { runSipp, startSippServer, type SippServer } from '../harness/index.js';
import { useCallStack, type CallStack } from './call-stack.js';
import { headerValues, receivedMessages, receivedStatuses } from './sipp-trace.js';
import type { CallSession } from '../../src/app/calls/index.js';
import { optionsResponder } from '../../src/app/core.js';
import { CALL_METHODS } from '../../src/app/sip/capabilities.js';

let cs: CallStack;
const servers: SippServer[] = [];

useCallStack((started) => {
  cs = started;
  started.srf.options(optionsResponder(() => CALL_METHODS)); // as the core wires it with the calls feature
}, servers);

const CALLER = '+447700900123';
const CALLER_NATIONAL = '07700900123';
let didCounter = 0;

async function phoneUser(): Promise<{ id: string; did: string; port: number }> {
  const user = await cs.createUser({});
  const did = `4420712399${String(++didCounter).padStart(2, '0')}`;
  cs.routeDid(did, user.id);
  const port = await cs.registerPhone(user);
  return { id: user.id, did, port };
}

async function phone(scenario: string, port: number): Promise<SippServer> {
  const server = await startSippServer({ scenario, localPort: port, traceMessages: true, timeoutMs: 60_000 });
  servers.push(server);
  return server;
}

function carrierCall(scenario: string, did: string, pauseMs = 1000, timeoutMs = 30_000) {
  return runSipp({
    scenario, target: cs.target, service: did, calls: 1, traceMessages: true, timeoutMs,
    keys: { caller: CALLER, caller_national: CALLER_NATIONAL },
    extraArgs: [...cs.carrierSippArgs(), '-d', String(pauseMs)],
  });
}

/** Samples rtpengine's packet counts per leg while each new call is answered; events of each session. */
function watchCalls(): { events: string[]; samples: number[][]; stop(): void } {
  const events: string[] = [];
  const samples: number[][] = [];
  const onSession = (session: CallSession): void => {
    session.on('answered', () => {
      events.push('answered');
      const poll = setInterval(() => void cs.packetsByLeg(session.callId).then((p) => samples.push(p), () => undefined), 300);
      session.once('ended', () => clearInterval(poll));
    });
    session.on('held', (by) => events.push(`held:${by}`));
    session.on('resumed', (by) => events.push(`resumed:${by}`));
    session.on('ended', (end) => events.push(`ended:${end.reason}`));
  };
  cs.calls.on('session', onSession);
  return { events, samples, stop: () => cs.calls.off('session', onSession) };
}

const bodyOf = (message: string): string => message.split(/\r?\n\r?\n/).slice(1).join('\n\n').trim();

describe('offer/answer through the B2BUA', () => {
  it('late offer: INVITE without SDP, the offer in the 2xx and the answer in the ACK, RTP both ways', async () => {
    const user = await phoneUser();
    const callee = await phone('uas-answer-rtp.xml', user.port);
    const watch = watchCalls();
    try {
      const carrier = await carrierCall('call-carrier-uac-late-offer.xml', user.did, 3000);
      expect(carrier.stats.successful, carrier.errors + carrier.stdout.slice(-1500)).toBe(1);
      const phoneResult = await callee.stop();
      expect(phoneResult.stats.successful, phoneResult.errors + phoneResult.stdout.slice(-1500)).toBe(1);
      const atPhone = receivedMessages(phoneResult.messages);
      const invite = atPhone.find((m) => m.startsWith('INVITE '))!;
      expect(bodyOf(invite), 'the phone is INVITEd without SDP too').toBe('');
      const ack = atPhone.find((m) => m.startsWith('ACK '))!;
      expect(bodyOf(ack), 'the carrier\'s answer reaches the phone in the ACK, through rtpengine').toMatch(/^v=0[\s\S]*m=audio \d+ RTP\/AVP 8/m);
      const ok = receivedMessages(carrier.messages).find((m) => m.startsWith('SIP/2.0 200') && /CSeq:\s*1 INVITE/i.test(m))!;
      expect(bodyOf(ok)).toMatch(/m=audio \d+ RTP\/AVP 8/);
      expect(watch.events).toEqual(expect.arrayContaining(['answered', 'ended:caller-hangup']));
      const last = watch.samples[watch.samples.length - 1];
      expect(last, 'rtpengine packet counts sampled during the call').toBeDefined();
      expect(last![0], 'RTP from the carrier').toBeGreaterThan(20);
      expect(last![1], 'RTP from the phone').toBeGreaterThan(20);
    } finally {
      watch.stop();
    }
  });

  it('UPDATE with SDP (hold, resume) and without, and an offer-less re-INVITE, relayed to a phone without UPDATE', async () => {
    const user = await phoneUser();
    const callee = await phone('uas-answer-rtp.xml', user.port);
    const watch = watchCalls();
    try {
      const carrier = await carrierCall('call-carrier-uac-update.xml', user.did, 1500);
      expect(carrier.stats.successful, carrier.errors + carrier.stdout.slice(-1500)).toBe(1);
      const phoneResult = await callee.stop();
      expect(phoneResult.stats.successful, phoneResult.errors + phoneResult.stdout.slice(-1500)).toBe(1);
      const atPhone = receivedMessages(phoneResult.messages);
      expect(atPhone.filter((m) => m.startsWith('UPDATE '))).toHaveLength(0); // its Allow has no UPDATE (RFC 3311 §5.1)
      const invites = atPhone.filter((m) => m.startsWith('INVITE '));
      // initial, hold, resume, offer-less; the SDP-less UPDATE is a refresh answered by the B2BUA
      expect(invites).toHaveLength(4);
      expect(bodyOf(invites[1]!)).toMatch(/a=sendonly/);
      expect(bodyOf(invites[2]!)).toMatch(/a=sendrecv/);
      expect(bodyOf(invites[3]!)).toBe('');
      const acks = atPhone.filter((m) => m.startsWith('ACK '));
      expect(bodyOf(acks[acks.length - 1]!), 'the carrier\'s answer from its ACK').toMatch(/m=audio \d+ RTP\/AVP 8/);

      const atCarrier = receivedMessages(carrier.messages).filter((m) => m.startsWith('SIP/2.0 200'));
      const okFor = (cseq: string): string => atCarrier.find((m) => new RegExp(`CSeq:\\s*${cseq}`, 'i').test(m))!;
      expect(bodyOf(okFor('2 UPDATE')), 'the phone\'s answer to the hold').toMatch(/m=audio \d+ RTP\/AVP 8/);
      expect(bodyOf(okFor('3 UPDATE')), 'no offer, no answer').toBe('');
      expect(bodyOf(okFor('4 UPDATE'))).toMatch(/a=sendrecv/);
      expect(bodyOf(okFor('5 INVITE')), 'the offer in the 2xx to the offer-less re-INVITE').toMatch(/m=audio \d+ RTP\/AVP/);
      for (const ok of atCarrier.filter((m) => /CSeq:\s*\d+ (INVITE|UPDATE)/i.test(m))) {
        expect(headerValues(ok, 'Allow').join(', ')).toBe('OPTIONS, REGISTER, INVITE, ACK, CANCEL, BYE, UPDATE');
      }
      expect(watch.events).toEqual(expect.arrayContaining(['held:a', 'resumed:a', 'ended:caller-hangup']));
    } finally {
      watch.stop();
    }
  });

  it('Require: 100rel gets 420 with Unsupported: 100rel; nothing rings', async () => {
    const user = await phoneUser();
    const callee = await phone('uas-answer-rtp.xml', user.port);
    const carrier = await carrierCall('call-carrier-uac-100rel.xml', user.did);
    expect(carrier.stats.successful, carrier.errors + carrier.stdout.slice(-1500)).toBe(1);
    const final = receivedMessages(carrier.messages).find((m) => m.startsWith('SIP/2.0 420'))!;
    expect(headerValues(final, 'Unsupported')).toEqual(['100rel']);
    expect(receivedStatuses(carrier.messages)).not.toContain(180);
    expect(receivedMessages((await callee.stop()).messages)).toHaveLength(0);
  });

  it('the phone\'s INVITE names only what is implemented: Allow, Supported: timer, Session-Expires, Min-SE', async () => {
    const user = await phoneUser();
    const callee = await phone('uas-answer-rtp.xml', user.port);
    const carrier = await carrierCall('call-carrier-uac.xml', user.did, 500);
    expect(carrier.stats.successful, carrier.errors + carrier.stdout.slice(-1500)).toBe(1);
    const invite = receivedMessages((await callee.stop()).messages).find((m) => m.startsWith('INVITE '))!;
    expect(headerValues(invite, 'Allow').join(', ')).toBe('OPTIONS, REGISTER, INVITE, ACK, CANCEL, BYE, UPDATE');
    expect(headerValues(invite, 'Supported')).toEqual(['timer']);
    expect(headerValues(invite, 'Session-Expires')).toEqual(['1800']);
    expect(headerValues(invite, 'Min-SE')).toEqual(['90']);
    expect(invite).not.toMatch(/100rel|PRACK|REFER|INFO/);
    // the carrier's INVITE named no timer support: we refresh that leg (RFC 4028 §9), no Require
    const ok = receivedMessages(carrier.messages).find((m) => m.startsWith('SIP/2.0 200'))!;
    expect(headerValues(ok, 'Session-Expires')).toEqual(['1800;refresher=uas']);
    expect(headerValues(ok, 'Require')).toEqual([]);
    expect(headerValues(ok, 'Supported')).toEqual(['timer']);
  });

  it('OPTIONS answers with the same truthful Allow and Supported (RFC 3261 §11.2)', async () => {
    const r = await runSipp({ scenario: 'options-uac.xml', target: cs.target, service: 'dialcore', calls: 1, traceMessages: true, timeoutMs: 10_000 });
    expect(r.stats.successful, r.errors).toBe(1);
    const ok = receivedMessages(r.messages).find((m) => m.startsWith('SIP/2.0 200'))!;
    expect(headerValues(ok, 'Allow').join(', ')).toBe('OPTIONS, REGISTER, INVITE, ACK, CANCEL, BYE, UPDATE');
    expect(headerValues(ok, 'Supported')).toEqual(['timer']);
  });

  it('UPDATEs from a phone: in the early dialog 200 without SDP and 491 with an offer; confirmed, relayed as UPDATE to a carrier allowing it', async () => {
    const user = await phoneUser();
    const callee = await phone('uas-answer-update.xml', user.port);
    const watch = watchCalls();
    try {
      const carrier = await carrierCall('call-carrier-uac-accept-update.xml', user.did);
      expect(carrier.stats.successful, carrier.errors + carrier.stdout.slice(-1500)).toBe(1);
      const phoneResult = await callee.stop();
      expect(phoneResult.stats.successful, phoneResult.errors + phoneResult.stdout.slice(-1500)).toBe(1);
      const atCarrier = receivedMessages(carrier.messages);
      const updates = atCarrier.filter((m) => m.startsWith('UPDATE '));
      expect(updates, 'hold and resume as UPDATE; the SDP-less UPDATE answered by the B2BUA; nothing of the early ones').toHaveLength(2);
      expect(bodyOf(updates[0]!)).toMatch(/a=sendonly/);
      expect(bodyOf(updates[1]!)).toMatch(/a=sendrecv/);
      expect(atCarrier.filter((m) => m.startsWith('INVITE ')), 'no re-INVITE').toHaveLength(0);
      const atPhone = receivedMessages(phoneResult.messages).filter((m) => m.startsWith('SIP/2.0'));
      expect(atPhone.map((m) => /^SIP\/2\.0 (\d+)[^]*?CSeq:\s*(\d+ \w+)/i.exec(m)?.slice(1).join(' '))).toEqual([
        '200 1 UPDATE', '491 2 UPDATE', '200 3 UPDATE', '200 4 UPDATE', '200 5 UPDATE',
      ]);
      expect(watch.events).toEqual(expect.arrayContaining(['held:b', 'resumed:b', 'ended:caller-hangup']));
    } finally {
      watch.stop();
    }
  });

  it('UPDATEs from the carrier in the early dialog: 200 without SDP, 500 with Retry-After for an offer; then CANCEL', async () => {
    const user = await phoneUser();
    const callee = await phone('uas-ring-forever.xml', user.port);
    const carrier = await carrierCall('call-carrier-uac-early-update.xml', user.did);
    expect(carrier.stats.successful, carrier.errors + carrier.stdout.slice(-1500)).toBe(1);
    const phoneResult = await callee.stop();
    expect(phoneResult.stats.successful, 'the phone\'s INVITE was canceled').toBe(1);
    expect(receivedMessages(phoneResult.messages).filter((m) => m.startsWith('UPDATE ')), 'nothing of them reaches the phone').toHaveLength(0);
    const statuses = receivedMessages(carrier.messages).map((m) => /^SIP\/2\.0 (\d+)[^]*?CSeq:\s*(\d+ \w+)/i.exec(m)?.slice(1).join(' ')).filter(Boolean);
    expect(statuses).toEqual(expect.arrayContaining(['200 2 UPDATE', '500 3 UPDATE', '487 1 INVITE']));
  });

  it('an offer-less re-INVITE from the phone: the carrier\'s offer in the 2xx, the phone\'s answer in the ACK to the carrier', async () => {
    const user = await phoneUser();
    const callee = await phone('uas-answer-offerless-reinvite.xml', user.port);
    const carrier = await carrierCall('call-carrier-uac-reinvite.xml', user.did);
    expect(carrier.stats.successful, carrier.errors + carrier.stdout.slice(-1500)).toBe(1);
    const phoneResult = await callee.stop();
    expect(phoneResult.stats.successful, phoneResult.errors + phoneResult.stdout.slice(-1500)).toBe(1);
    const atCarrier = receivedMessages(carrier.messages);
    const reinvite = atCarrier.filter((m) => m.startsWith('INVITE '));
    expect(reinvite).toHaveLength(1);
    expect(bodyOf(reinvite[0]!), 'passed on without SDP').toBe('');
    const acks = atCarrier.filter((m) => m.startsWith('ACK '));
    expect(bodyOf(acks[acks.length - 1]!), 'the phone\'s answer through rtpengine').toMatch(/m=audio \d+ RTP\/AVP 8/);
  });
});
