/**
 * Dial-in with real peers: SIPp callers from the carrier trunk to the access number, their RTP
 * from a test socket (RFC 4733 events or in-band PCMU tones, with or without telephone-event
 * offered) or their digits in SIP INFO, real
 * rtpengine playing the prompts and reporting the digits (--dtmf-log-dest), real Redis.
 *
 * - a right ID and PIN makes the call the agent's session (event, API), kicks end it with a BYE;
 *   the agent's keys after the login are published as call.dtmf, whichever way they are sent;
 * - wrong three times: BYE, no session; an unknown ID is answered exactly like a wrong PIN;
 * - the lockout after the limit, listed and cleared through the admin API;
 * - key-ahead stops a prompt; timeouts end entries; a hang-up mid-entry leaves nothing behind.
 */
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import type { ControlEvent } from '../../src/app/agents/index.js';
import { DOMAIN } from '../calls/call-stack.js';
import { runSipp, waitUntil } from '../harness/index.js';
import { ACCESS_NUMBER, LOCKOUT_FAILURES, call, promptPackets, startDialInStack, type DialInStack } from './dialin-stack.js';

const TIMING = { firstDigitMs: 1500, interDigitMs: 1000 };
const PIN = '482913';

let st: DialInStack;
let counter = 0;

beforeAll(async () => {
  st = await startDialInStack(TIMING);
}, 60_000);

afterEach(async () => {
  await st.agents.service.stop();
  await st.cs.expectIdle(15_000);
  expect(await st.dialInCallKeys(), 'dial-in call keys left in Redis').toEqual([]);
});

afterAll(async () => {
  await st?.stop();
});

/** A dial-in agent with a fresh ID; a fresh caller number per call keeps lockouts apart. */
async function agent(fields: Record<string, unknown> = {}, digits = 6, pin = PIN): Promise<{ id: string; dialInId: string }> {
  counter++;
  const dialInId = String(10 ** (digits - 1) + ((counter * 7919 + Date.now()) % (9 * 10 ** (digits - 1))));
  const user = await st.cs.createUser({ connectionMethod: 'dial-in', dialIn: { id: dialInId, pin }, ...fields });
  return { id: user.id, dialInId };
}

function callerNumber(): string {
  counter++;
  return `4477009${String(counter).padStart(5, '0')}${Math.floor(Math.random() * 10)}`;
}

async function sessionUp(events: { waitFor(p: (e: ControlEvent) => boolean, t?: number): Promise<ControlEvent> }, userId: string): Promise<void> {
  await events.waitFor((e) => e.type === 'agent.session.up' && e.agent === userId, 30_000);
}

describe('dial-in login', () => {
  it('RFC 4733: prompts arrive as RTP, a right ID and PIN is the agent session, a kick ends it with a BYE', async () => {
    const a = await agent();
    const events = await st.events();
    const { rtp, sipp } = await call(st, { caller: callerNumber(), media: 'rfc4733' });
    await rtp.waitForPrompt(10);
    await rtp.press(`${a.dialInId}#${PIN}#`, 'rfc4733');
    await sessionUp(events, a.id);
    const session = await st.api('GET', `/v1/agents/${a.id}/session`);
    expect(session.status).toBe(200);
    expect(session.body).toMatchObject({ connectionMethod: 'dial-in', state: 'ready' });
    const sessions = await st.api('GET', `/v1/users/${a.id}/sessions`);
    expect(sessions.body.calls).toEqual([expect.objectContaining({ kind: 'agent-session', connectionMethod: 'dial-in' })]);
    // the agent's keys after the login reach the event stream as call.dtmf, each once (rtpengine's
    // reports routed to the session's leg); the routing note lives as long as the call
    expect(await st.dialInCallKeys(), 'DTMF routing kept for the session').toHaveLength(1);
    await rtp.press('7*', 'rfc4733');
    await events.waitFor((e) => e.type === 'call.dtmf' && e.agent === a.id && e.digit === '*', 10_000);
    expect(events.events.filter((e) => e.type === 'call.dtmf' && e.agent === a.id)).toEqual([
      expect.objectContaining({ digit: '7', source: 'rfc4733', from: 'agent' }),
      expect.objectContaining({ digit: '*', source: 'rfc4733', from: 'agent' }),
    ]);
    // a kick (deactivation) ends the session: dialcore's BYE completes the caller's scenario
    expect((await st.api('PATCH', `/v1/users/${a.id}`, { active: false })).status).toBe(200);
    const result = await sipp;
    expect(result.stats.successful, result.errors).toBe(1);
    await events.waitFor((e) => e.type === 'agent.session.down' && e.agent === a.id);
    events.close();
  });

  it('SIP INFO (application/dtmf-relay): a right ID and PIN is the agent session', async () => {
    const short = await agent({}, 4, '2468');
    const events = await st.events();
    const keys = [...`${short.dialInId}#2468#`];
    expect(keys).toHaveLength(10);
    const { sipp } = await call(st, {
      caller: callerNumber(),
      media: 'rfc4733',
      scenario: 'dialin-caller-info.xml',
      infoKeys: keys,
    });
    await sessionUp(events, short.id).catch(async (err: unknown) => {
      const r = await Promise.race([sipp, new Promise((resolve) => setTimeout(resolve, 100, null))]);
      throw new Error(`${String(err)}; SIPp: ${r ? JSON.stringify((r as { errors: string; stderr: string }).errors + (r as { stderr: string }).stderr).slice(0, 1500) : 'still running'}`);
    });
    expect((await st.api('DELETE', `/v1/agents/${short.id}/session`)).status).toBe(204);
    expect((await sipp).stats.successful).toBe(1);
    events.close();
  });

  /** Types ID and PIN over RTP as `keys` says, waits for the session, ends it (BYE to the caller). */
  async function logInOverRtp(offer: 'rfc4733' | 'inband', keys: 'rfc4733' | 'inband', gapMs: number, pin = PIN): Promise<void> {
    const a = await agent({}, 6, pin);
    const events = await st.events();
    const { rtp, sipp } = await call(st, { caller: callerNumber(), media: offer });
    await rtp.waitForPrompt(10);
    await rtp.press(`${a.dialInId}#${pin}#`, keys, gapMs);
    await sessionUp(events, a.id);
    expect((await st.api('DELETE', `/v1/agents/${a.id}/session`)).status).toBe(204);
    expect((await sipp).stats.successful).toBe(1);
    events.close();
  }

  it('in-band PCMU tones (no telephone-event offered): rtpengine detects them, the login works', async () => {
    await logInOverRtp('inband', 'inband', 200);
  });

  it('in-band tones from a caller that offers telephone-event (old PBX, mobile gateway): detected all the same', async () => {
    await logInOverRtp('rfc4733', 'inband', 200);
  });

  it('RFC 4733 with in-band detection on: each event, reported twice by rtpengine, counts once; a key pressed twice quickly counts twice', async () => {
    // 160 ms events 60 ms apart: repeated keys end 220 ms apart, rtpengine's second report ~40 ms after each
    await logInOverRtp('rfc4733', 'rfc4733', 60, '113355');
  });
});

describe('DTMF sent two ways, calls from a device', () => {
  it('a key sent both by SIP INFO and as an RFC 4733 event counts once', async () => {
    const a = await agent({}, 4, '2468');
    const keys = [...`${a.dialInId}#2468#`];
    const events = await st.events();
    const { rtp, sipp } = await call(st, { caller: callerNumber(), media: 'rfc4733', scenario: 'dialin-caller-info.xml', infoKeys: keys });
    // SIPp sends an INFO every ~300 ms from its ACK; the same keys as RFC 4733 events, one every
    // 300 ms from the first prompt packet, are reported by rtpengine ~100-200 ms from the INFO:
    // each key arrives twice, close together
    await rtp.waitForPrompt(1);
    await rtp.press(keys.join(''), 'rfc4733', 120);
    await sessionUp(events, a.id);
    expect((await st.api('DELETE', `/v1/agents/${a.id}/session`)).status).toBe(204);
    expect((await sipp).stats.successful).toBe(1);
    events.close();
  });

  it('a registered user calling the access number (an agent testing from a desk phone) is answered by the login', async () => {
    const user = await st.cs.createUser({ login: `desk${Date.now() % 100000}`, connectionMethod: 'sip-phone' });
    const sipp = runSipp({
      scenario: 'call-device-uac.xml',
      target: st.cs.target,
      calls: 1,
      inf: { rows: [[user.login, user.password, DOMAIN, ACCESS_NUMBER]] },
      extraArgs: ['-d', '2500'],
      timeoutMs: 30_000,
    });
    await waitUntil(() => st.dialIn.service.activeCount === 1, { timeoutMs: 10_000, what: 'the device call in the login IVR' });
    expect(st.cs.calls.count, 'not routed as a device call').toBe(0);
    const result = await sipp;
    expect(result.stats.successful, result.errors).toBe(1);
  });
});

describe('wrong entries, lockout', () => {
  /**
   * Three attempts with the same ID and PIN, each typed once its prompt has ended (no key-ahead,
   * so what is heard does not depend on typing speed); resolves with the RTP packets heard.
   */
  async function threeWrongAttempts(dialInId: string, pin: string, caller = callerNumber()): Promise<number> {
    const { rtp, sipp } = await call(st, { caller, media: 'rfc4733' });
    await rtp.waitForNextPrompt(0); // welcome, "enter your ID" (back to back)
    for (let attempt = 0; attempt < 3; attempt++) {
      await rtp.press(`${dialInId}#`, 'rfc4733', 60);
      await rtp.waitForNextPrompt(); // "enter your PIN"
      await rtp.press(`${pin}#`, 'rfc4733', 60);
      if (attempt < 2) await rtp.waitForNextPrompt(); // "invalid", "enter your ID"
    }
    const result = await sipp;
    expect(result.stats.successful, 'dialcore ended the call with a BYE').toBe(1);
    return rtp.packetsReceived;
  }

  it('a wrong PIN three times gives goodbye and BYE, no session; an unknown ID gets exactly the same answer', async () => {
    const a = await agent();
    const events = await st.events();
    const played: string[] = [];
    const file = st.dialIn.prompts.file.bind(st.dialIn.prompts);
    const spy = vi.spyOn(st.dialIn.prompts, 'file').mockImplementation((prompt, language) => {
      played.push(prompt);
      return file(prompt, language);
    });
    try {
      const wrongPin = await threeWrongAttempts(a.dialInId, '000000');
      const wrongPinPrompts = played.splice(0);
      const unknownId = await threeWrongAttempts('99887766', PIN);
      expect(events.events.filter((e) => e.type.startsWith('agent.session'))).toEqual([]);
      expect((await st.api('GET', `/v1/agents/${a.id}/session`)).status).toBe(404);
      // the same prompts in the same order, all heard in full
      expect(played, `wrong PIN: ${wrongPinPrompts.join(' ')}`).toEqual(wrongPinPrompts);
      expect(wrongPinPrompts).toEqual(['welcome', ...Array(3).fill(['enter-id', 'enter-pin', 'invalid']).flat().slice(0, 8), 'invalid', 'goodbye']);
      const full = promptPackets(st);
      const expected = wrongPinPrompts.reduce((n, p) => n + full[p as keyof typeof full], 0);
      for (const heard of [wrongPin, unknownId]) expect(heard, `packets heard (${wrongPin}, ${unknownId}) against ${expected}`).toBeGreaterThan(expected * 0.9);
    } finally {
      spy.mockRestore();
    }
    events.close();
  }, 150_000);

  it(`an ID is locked out after ${LOCKOUT_FAILURES} failures (even with the right PIN), listed and cleared by the admin API`, async () => {
    const a = await agent();
    await threeWrongAttempts(a.dialInId, '111111');
    // the fourth failure, from another number
    const { rtp, sipp } = await call(st, { caller: callerNumber(), media: 'rfc4733' });
    await rtp.press(`${a.dialInId}#222222#`, 'rfc4733', 100);
    await rtp.press(`${a.dialInId}#${PIN}#`, 'rfc4733', 100); // right PIN, but the ID is locked now
    const events = await st.events();
    expect((await sipp).stats.successful, 'BYE after the lockout prompt').toBe(1);
    expect(events.events.filter((e) => e.type === 'agent.session.up')).toEqual([]);
    const listed = await st.api('GET', '/v1/dialin/lockouts');
    expect(listed.status).toBe(200);
    expect(listed.body.policy).toEqual({ failures: LOCKOUT_FAILURES, windowSeconds: 600 });
    expect(listed.body.lockouts).toEqual(expect.arrayContaining([expect.objectContaining({ kind: 'id', value: a.dialInId, failures: LOCKOUT_FAILURES })]));
    expect((await st.api('DELETE', `/v1/dialin/lockouts/id/${a.dialInId}`)).status).toBe(204);
    expect((await st.api('DELETE', `/v1/dialin/lockouts/id/${a.dialInId}`)).status).toBe(404);
    expect((await st.api('DELETE', '/v1/dialin/lockouts/phone/123')).status).toBe(400);
    // cleared: the right PIN logs in again
    const again = await call(st, { caller: callerNumber(), media: 'rfc4733' });
    await again.rtp.press(`${a.dialInId}#${PIN}#`, 'rfc4733', 100);
    await sessionUp(events, a.id);
    expect((await st.api('DELETE', `/v1/agents/${a.id}/session`)).status).toBe(204);
    expect((await again.sipp).stats.successful).toBe(1);
    events.close();
  }, 150_000);

  it('a caller number is locked out after the limit: told so at once, then BYE', async () => {
    const caller = callerNumber();
    await threeWrongAttempts('31313131', '0000', caller);
    const second = await call(st, { caller, media: 'rfc4733' });
    await second.rtp.press('4040404#0000#', 'rfc4733', 100); // the fourth failure
    await second.rtp.press('4040404#0000#', 'rfc4733', 100);
    expect((await second.sipp).stats.successful).toBe(1);
    const listed = await st.api('GET', '/v1/dialin/lockouts');
    expect(listed.body.lockouts).toEqual(expect.arrayContaining([expect.objectContaining({ kind: 'caller', value: caller })]));
    // the next call from that number is refused without a prompt for an ID
    const third = await call(st, { caller, media: 'rfc4733' });
    expect((await third.sipp).stats.successful).toBe(1);
    expect((await st.api('DELETE', `/v1/dialin/lockouts/caller/${encodeURIComponent(caller)}`)).status).toBe(204);
  }, 150_000);

  it('inactive users and users of another connection method are refused with the right PIN', async () => {
    const inactive = await agent({ active: false });
    const phoneUser = await agent({ connectionMethod: 'sip-phone' });
    const events = await st.events();
    for (const user of [inactive, phoneUser]) {
      const { rtp, sipp } = await call(st, { caller: callerNumber(), media: 'rfc4733' });
      await rtp.press(`${user.dialInId}#${PIN}#`, 'rfc4733', 100);
      expect((await sipp).stats.successful).toBe(1);
    }
    expect(events.events.filter((e) => e.type === 'agent.session.up')).toEqual([]);
    const listed = await st.api('GET', '/v1/dialin/lockouts');
    expect(listed.body.lockouts.map((l: { value: string }) => l.value)).not.toContain(inactive.dialInId);
    events.close();
  });
});

describe('one session per agent', () => {
  it('a second call with the right PIN while the agent is logged in is refused (maxSessions), the first stays up', async () => {
    const a = await agent({ maxSessions: 1 });
    const events = await st.events();
    const first = await call(st, { caller: callerNumber(), media: 'rfc4733' });
    await first.rtp.press(`${a.dialInId}#${PIN}#`, 'rfc4733', 60);
    await sessionUp(events, a.id);
    const second = await call(st, { caller: callerNumber(), media: 'rfc4733' });
    await second.rtp.press(`${a.dialInId}#${PIN}#`, 'rfc4733', 60);
    expect((await second.sipp).stats.successful, 'the second call ended by dialcore').toBe(1);
    expect((await st.api('GET', `/v1/agents/${a.id}/session`)).body).toMatchObject({ state: 'ready' });
    expect(events.events.filter((e) => e.type === 'agent.session.up' && e.agent === a.id)).toHaveLength(1);
    expect((await st.api('DELETE', `/v1/agents/${a.id}/session`)).status).toBe(204);
    expect((await first.sipp).stats.successful).toBe(1);
    events.close();
  });
});

describe('key-ahead, timeouts, hang-up', () => {
  it('key-ahead: digits typed during the welcome stop it and skip the ID and PIN prompts', async () => {
    const a = await agent();
    const events = await st.events();
    const { rtp, sipp } = await call(st, { caller: callerNumber(), media: 'rfc4733' });
    await rtp.waitForPrompt(2);
    await rtp.press(`${a.dialInId}#${PIN}#`, 'rfc4733', 60);
    await sessionUp(events, a.id);
    const heard = rtp.packetsReceived;
    const prompts = promptPackets(st);
    // without key-ahead the caller hears welcome + enter-id + enter-pin + connected in full
    expect(heard, `packets heard ${heard}`).toBeLessThan(prompts.welcome + prompts['enter-id'] + prompts['enter-pin'] + prompts.connected);
    expect((await st.api('DELETE', `/v1/agents/${a.id}/session`)).status).toBe(204);
    await sipp;
    events.close();
  });

  it('timeouts: a caller who types nothing is asked three times, then goodbye and BYE', async () => {
    const { rtp, sipp } = await call(st, { caller: callerNumber(), media: 'rfc4733' });
    const result = await sipp;
    expect(result.stats.successful).toBe(1);
    const prompts = promptPackets(st);
    // welcome, 3 x (enter-id, enter-pin, invalid), goodbye: all heard in full (give or take jitter)
    const expected = prompts.welcome + 3 * (prompts['enter-id'] + prompts['enter-pin'] + prompts.invalid) + prompts.goodbye;
    expect(rtp.packetsReceived).toBeGreaterThan(expected * 0.9);
  }, 150_000);

  it('an inter-digit timeout ends an entry: ID and PIN typed without #', async () => {
    const a = await agent();
    const events = await st.events();
    const { rtp, sipp } = await call(st, { caller: callerNumber(), media: 'rfc4733' });
    await rtp.waitForPrompt(2);
    await rtp.press(a.dialInId, 'rfc4733', 100);
    await rtp.waitForNextPrompt(); // the ID ended by the inter-digit timeout, then "enter your PIN" played
    await rtp.press(PIN, 'rfc4733', 100);
    await sessionUp(events, a.id);
    expect((await st.api('DELETE', `/v1/agents/${a.id}/session`)).status).toBe(204);
    await sipp;
    events.close();
  });

  it('a caller hanging up mid-entry leaves no rtpengine call, dialog or Redis state', async () => {
    const a = await agent();
    const { rtp, sipp } = await call(st, { caller: callerNumber(), media: 'rfc4733', scenario: 'dialin-caller-hangup.xml', holdMs: 2500 });
    await rtp.waitForPrompt(2);
    await rtp.press(a.dialInId.slice(0, 3), 'rfc4733', 100);
    expect((await sipp).stats.successful).toBe(1);
    await st.cs.expectIdle(10_000);
    expect(await st.cs.rtpengineCalls()).toEqual([]);
    expect(await st.dialInCallKeys()).toEqual([]);
    expect(st.dialIn.service.activeCount).toBe(0);
  });
});
