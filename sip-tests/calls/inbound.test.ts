/**
 * Carrier -> dialcore -> user's SIP phone, on real peers (issue 4 items 3, 5, 6, 7): a SIPp
 * carrier trunk (source 127.0.0.2) calls a DID; the product's call router routes it to the user
 * owning the DID; the user's SIPp phone, registered through the product's registrar (REGISTER with
 * digest, register-auth-uac.xml), rings and answers; RTP flows both ways through a real rtpengine.
 * After every test: no call session, media session, rtpengine call or edge dialog is left.
 */
import { describe, expect, it } from 'vitest';
import { runSipp, startSippServer, type SippServer } from '../harness/index.js';
import { useCallStack, type CallStack } from './call-stack.js';
import { headerValues, receivedMessages, receivedRequest, receivedStatuses, rejectScenario } from './sipp-trace.js';
import { createNumberMasker } from '../../src/app/policies/index.js';
import type { CallSession } from '../../src/app/calls/index.js';

let cs: CallStack;
const servers: SippServer[] = [];

useCallStack((started) => (cs = started), servers);

const CALLER = '+447700900123';
const CALLER_NATIONAL = '07700900123';
let didCounter = 0;

async function phoneUser(fields: Record<string, unknown> = {}): Promise<{ id: string; did: string; port: number }> {
  const user = await cs.createUser(fields);
  const did = `4420712300${String(++didCounter).padStart(2, '0')}`;
  cs.routeDid(did, user.id);
  const port = await cs.registerPhone(user);
  return { id: user.id, did, port };
}

async function phone(scenario: string, port: number): Promise<SippServer> {
  const server = await startSippServer({ scenario, localPort: port, traceMessages: true, timeoutMs: 60_000 });
  servers.push(server);
  return server;
}

function carrierCall(scenario: string, did: string, pauseMs = 1000, timeoutMs = 20_000) {
  return runSipp({
    scenario, target: cs.target, service: did, calls: 1, traceMessages: true, timeoutMs,
    keys: { caller: CALLER, caller_national: CALLER_NATIONAL },
    extraArgs: [...cs.carrierSippArgs(), '-d', String(pauseMs)],
  });
}

/** Records each new session's events. */
function watchSessions(): { events: string[]; sessions: CallSession[]; stop(): void } {
  const events: string[] = [];
  const sessions: CallSession[] = [];
  const onSession = (session: CallSession): void => {
    sessions.push(session);
    for (const name of ['ringing', 'early-media', 'answered'] as const) session.on(name, () => events.push(name));
    session.on('held', (by) => events.push(`held:${by}`));
    session.on('resumed', (by) => events.push(`resumed:${by}`));
    session.on('ended', (end) => events.push(`ended:${end.reason}`));
  };
  cs.calls.on('session', onSession);
  return { events, sessions, stop: () => cs.calls.off('session', onSession) };
}

describe('inbound carrier call to a registered SIP phone', () => {
  it('bridges the call with RTP flowing both ways through rtpengine', async () => {
    const user = await phoneUser();
    const callee = await phone('uas-answer-rtp.xml', user.port);
    const samples: number[][] = [];
    const watch = watchSessions();
    const onSession = (session: CallSession): void => {
      session.on('answered', () => {
        const poll = setInterval(() => void cs.packetsByLeg(session.callId).then((p) => samples.push(p), () => undefined), 400);
        session.once('ended', () => clearInterval(poll));
      });
    };
    cs.calls.on('session', onSession);
    try {
      const carrier = await carrierCall('call-carrier-uac.xml', user.did, 3000);
      expect(carrier.stats.successful, carrier.errors + carrier.stdout.slice(-1500)).toBe(1);
      expect((await callee.stop()).stats.successful).toBe(1);
      expect(watch.events).toEqual(expect.arrayContaining(['ringing', 'answered', 'ended:caller-hangup']));
      const last = samples[samples.length - 1];
      expect(last, 'rtpengine packet counts sampled during the call').toBeDefined();
      // ~33 packets/s each way for ~3 s: both legs' media reached rtpengine (leg a = carrier, leg b = phone)
      expect(last![0]).toBeGreaterThan(40);
      expect(last![1]).toBeGreaterThan(40);
    } finally {
      cs.calls.off('session', onSession);
      watch.stop();
    }
  });

  it('an unmasked user sees the caller; nothing else of the carrier INVITE reaches the phone', async () => {
    const user = await phoneUser({ masking: { enabled: false, keepLastDigits: 2 } });
    const callee = await phone('uas-answer-rtp.xml', user.port);
    const carrier = await carrierCall('call-carrier-uac.xml', user.did);
    expect(carrier.stats.successful).toBe(1);
    const invite = receivedRequest((await callee.stop()).messages, 'INVITE')!;
    expect(invite).toBeDefined();
    expect(headerValues(invite, 'From')[0]).toContain(`sip:${CALLER}@`);
    expect(headerValues(invite, 'To')[0]).toMatch(/^<sip:u\d+@dialcore\.test>/);
    // built from scratch: the carrier's PAI / RPID are not copied
    expect(headerValues(invite, 'P-Asserted-Identity')).toEqual([]);
    expect(headerValues(invite, 'Remote-Party-ID')).toEqual([]);
  });

  it('masks the customer number in every header and body the masked user\'s phone receives', async () => {
    const user = await phoneUser({ masking: { enabled: true, keepLastDigits: 2 } });
    const callee = await phone('uas-answer-rtp.xml', user.port);
    const carrier = await carrierCall('call-carrier-uac.xml', user.did);
    expect(carrier.stats.successful).toBe(1);
    const trace = (await callee.stop()).messages;
    const received = receivedMessages(trace);
    expect(received.length).toBeGreaterThanOrEqual(3); // INVITE, ACK, BYE
    const reveal = createNumberMasker([CALLER], 2);
    const forms = ['447700900123', '7700900123', '07700900123', '7700 900123', '7700-900123', '%2B447700900123', '900123'];
    for (const message of received) {
      expect(reveal.reveals(message), message).toBe(false);
      for (const form of forms) expect(message, `form ${form}`).not.toContain(form);
    }
    const invite = receivedRequest(trace, 'INVITE')!;
    expect(headerValues(invite, 'From')[0]).toMatch(/^"XXXXXXXXXX23" <sip:XXXXXXXXXX23@dialcore\.test>/);
  });

  it('an excluded user sees the real number; an admin change applies to the next call', async () => {
    const user = await phoneUser({ masking: { enabled: true, keepLastDigits: 2 }, maskingExcluded: true });
    let callee = await phone('uas-answer-rtp.xml', user.port);
    expect((await carrierCall('call-carrier-uac.xml', user.did)).stats.successful).toBe(1);
    let invite = receivedRequest((await callee.stop()).messages, 'INVITE')!;
    expect(headerValues(invite, 'From')[0]).toContain(CALLER);

    await cs.services.store.update(user.id, { maskingExcluded: false });
    callee = await phone('uas-answer-rtp.xml', user.port);
    expect((await carrierCall('call-carrier-uac.xml', user.did)).stats.successful).toBe(1);
    invite = receivedRequest((await callee.stop()).messages, 'INVITE')!;
    expect(headerValues(invite, 'From')[0]).not.toContain('900123');
    expect(headerValues(invite, 'From')[0]).toContain('XXXXXXXXXX23');
  });

  it('CANCEL from the carrier while the phone rings cancels the phone\'s INVITE', async () => {
    const user = await phoneUser();
    const callee = await phone('uas-ring-forever.xml', user.port);
    const watch = watchSessions();
    try {
      const carrier = await carrierCall('cancel-uac.xml', user.did);
      expect(carrier.stats.successful, carrier.errors).toBe(1);
      const result = await callee.stop(5000);
      expect(result.stats.successful, 'the phone got CANCEL, answered 487 and got the ACK').toBe(1);
      expect(receivedRequest(result.messages, 'CANCEL')).toBeDefined();
      expect(watch.events).toContain('ended:caller-cancel');
    } finally {
      watch.stop();
    }
  });

  it('rings every registration at once: the first answer wins, the other is canceled', async () => {
    const user = await cs.createUser({});
    const did = `4420712399${String(++didCounter).padStart(2, '0')}`;
    cs.routeDid(did, user.id);
    const ringing = await phone('uas-ring-forever.xml', await cs.registerPhone(user));
    const answering = await phone('uas-answer-rtp.xml', await cs.registerPhone(user));
    expect(await cs.services.bindings.list(user.id)).toHaveLength(2);
    const carrier = await carrierCall('call-carrier-uac.xml', did, 1000);
    expect(carrier.stats.successful, carrier.errors).toBe(1);
    expect((await answering.stop()).stats.successful).toBe(1);
    const canceled = await ringing.stop(5000);
    expect(canceled.stats.successful, 'the losing fork got CANCEL -> 487 -> ACK').toBe(1);
  });

  it('the phone answering busy gives the carrier 486', async () => {
    const user = await phoneUser();
    servers.push(await startSippServer({ scenario: 'call-uas-reject.xml', localPort: user.port }));
    const carrier = await carrierCall('call-carrier-refused.xml', user.did);
    expect(carrier.stats.successful, carrier.errors).toBe(1);
    expect(receivedStatuses(carrier.messages)).toContain(486);
  });

  it('a phone error (500) becomes 480 for the carrier, without the phone\'s Warning', async () => {
    const user = await phoneUser();
    servers.push(await startSippServer({ scenario: rejectScenario(500, 'Kaputt'), localPort: user.port }));
    const carrier = await carrierCall('call-carrier-refused.xml', user.did);
    expect(receivedStatuses(carrier.messages)).toContain(480);
    expect(carrier.messages).not.toContain('internal-switch-7');
    expect(carrier.messages).not.toContain('Kaputt');
  });

  it('an unrouted DID gets 404, an unregistered user 480', async () => {
    const unrouted = await carrierCall('call-carrier-refused.xml', '442079999999');
    expect(receivedStatuses(unrouted.messages)).toContain(404);
    const user = await cs.createUser({});
    cs.routeDid('442071239876', user.id);
    const unregistered = await carrierCall('call-carrier-refused.xml', '442071239876');
    expect(receivedStatuses(unregistered.messages)).toContain(480);
  });

  it('a call from a source that is not a carrier trunk is challenged, not routed by DID', async () => {
    const user = await phoneUser();
    const r = await runSipp({
      scenario: 'call-carrier-refused.xml', target: cs.target, service: user.did, calls: 1, traceMessages: true,
      keys: { caller: CALLER, caller_national: CALLER_NATIONAL }, timeoutMs: 10_000,
    });
    // 127.0.0.1 is no trunk: the core asks for credentials (407), which this caller has not
    expect(r.stats.successful).toBe(0);
    expect(receivedStatuses(r.messages)).toContain(407);
  });

  it('hold and resume from the caller go through rtpengine to the phone', async () => {
    const user = await phoneUser();
    const callee = await phone('uas-answer-rtp.xml', user.port);
    const watch = watchSessions();
    try {
      const carrier = await carrierCall('call-carrier-uac-hold.xml', user.did, 500);
      expect(carrier.stats.successful, carrier.errors + carrier.stdout.slice(-1000)).toBe(1);
      const invites = receivedMessages((await callee.stop()).messages).filter((m) => m.startsWith('INVITE '));
      expect(invites).toHaveLength(3);
      expect(invites[1]).toMatch(/a=sendonly/);
      expect(invites[2]).toMatch(/a=sendrecv/);
      expect(watch.events).toEqual(expect.arrayContaining(['held:a', 'resumed:a']));
    } finally {
      watch.stop();
    }
  });

  it('hold and resume from the phone go through rtpengine to the carrier', async () => {
    const user = await phoneUser();
    const callee = await phone('call-phone-uas-hold.xml', user.port);
    const watch = watchSessions();
    try {
      const carrier = await carrierCall('call-carrier-uac-reinvite.xml', user.did);
      expect(carrier.stats.successful, carrier.errors + carrier.stdout.slice(-1000)).toBe(1);
      const phoneResult = await callee.stop();
      expect(phoneResult.stats.successful, phoneResult.errors + phoneResult.stdout.slice(-1500)).toBe(1);
      const invites = receivedMessages(carrier.messages).filter((m) => m.startsWith('INVITE '));
      expect(invites).toHaveLength(2);
      expect(invites[0]).toMatch(/a=sendonly/);
      expect(invites[1]).toMatch(/a=sendrecv/);
      expect(watch.events).toEqual(expect.arrayContaining(['held:b', 'resumed:b']));
    } finally {
      watch.stop();
    }
  });

  it('kicking the user (logout) ends the live call on both legs', async () => {
    const user = await phoneUser();
    const callee = await phone('uas-answer-rtp.xml', user.port);
    const watch = watchSessions();
    try {
      const carrierRun = runSipp({
        scenario: 'invite-uac-wait-bye.xml', target: cs.target, service: user.did, calls: 1, timeoutMs: 20_000,
        extraArgs: cs.carrierSippArgs(),
      });
      await expect.poll(() => watch.events.includes('answered'), { timeout: 10_000 }).toBe(true);
      expect(await cs.calls.listUserSessions(user.id)).toEqual([expect.objectContaining({ kind: 'call', state: 'answered', direction: 'inbound' })]);
      const outcome = await cs.services.kicks.kick(user.id, 'logout');
      expect(outcome.sessionsEnded).toBe(1);
      expect((await carrierRun).stats.successful, 'the carrier got a BYE').toBe(1);
      expect((await callee.stop()).stats.successful, 'the phone got a BYE').toBe(1);
      expect(watch.events).toContain('ended:terminated');
    } finally {
      watch.stop();
    }
  });
});
