/**
 * Dial-in with real peers: SIPp callers from the carrier trunk to the access number, their RTP
 * from a test socket (RFC 4733 events or in-band PCMU tones) or their digits in SIP INFO, real
 * rtpengine playing the prompts and reporting the digits (--dtmf-log-dest), real Redis.
 *
 * - a right ID and PIN makes the call the agent's session (event, API), kicks end it with a BYE;
 * - wrong three times: BYE, no session; an unknown ID is answered exactly like a wrong PIN;
 * - the lockout after the limit, listed and cleared through the admin API;
 * - key-ahead stops a prompt; timeouts end entries; a hang-up mid-entry leaves nothing behind.
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { ControlEvent } from '../../src/app/agents/index.js';
import { waitUntil } from '../harness/index.js';
import { ACCESS_NUMBER, LOCKOUT_FAILURES, call, startDialInStack, type DialInStack } from './dialin-stack.js';

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
    expect(await st.dialInCallKeys(), 'the IVR is over: no DTMF routing left').toEqual([]);
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
      keys: { ...Object.fromEntries(keys.map((k, i) => [`d${i}`, k])) },
    });
    await sessionUp(events, short.id).catch(async (err: unknown) => {
      const r = await Promise.race([sipp, new Promise((resolve) => setTimeout(resolve, 100, null))]);
      throw new Error(`${String(err)}; SIPp: ${r ? JSON.stringify((r as { errors: string; stderr: string }).errors + (r as { stderr: string }).stderr).slice(0, 1500) : 'still running'}`);
    });
    expect((await st.api('DELETE', `/v1/agents/${short.id}/session`)).status).toBe(204);
    expect((await sipp).stats.successful).toBe(1);
    events.close();
  });
});
