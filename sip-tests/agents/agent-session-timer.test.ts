/**
 * Agent calls on a stack with short RFC 4028 session timers (4 s asked, 3 s Min-SE: below the
 * 90 s floor the product's config enforces, so refreshes happen within a test) and hold music:
 *
 * - the far end of an attended transfer by REFER with Replaces keeps being refreshed by us after
 *   the hand-over (a carrier answering `refresher=uac` counts on our re-INVITEs)
 * - hold with music configured: the customer hears the music instead of the agent
 */
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { toneWav } from '../../src/app/agents/prompts.js';
import { startSippServer, waitUntil, freePort, type SippServer } from '../harness/index.js';
import { headerValues, receivedMessages } from '../calls/sipp-trace.js';
import { DOMAIN } from '../calls/call-stack.js';
import { useAgentStack, type AgentStack } from './agent-stack.js';
import { audioIn, heardTone, rtpPeer, rtpenginePortFor, toneScenario, type RtpPeer } from './rtp-peer.js';

const SESSION_EXPIRES = 4;
const HOLD_MUSIC_HZ = 1000;
const holdMusic = join(mkdtempSync(join(tmpdir(), 'dialcore-hold-')), 'hold.wav');
writeFileSync(holdMusic, toneWav([[HOLD_MUSIC_HZ, 2000]]));

let st: AgentStack;
const servers: SippServer[] = [];
const peers: RtpPeer[] = [];
useAgentStack((started) => (st = started), servers, {
  timers: { sessionTimer: { sessionExpiresSeconds: SESSION_EXPIRES, minSessionExpiresSeconds: 3 } },
  holdMusic,
});
afterEach(() => peers.splice(0).forEach((p) => p.close()));

async function sipp(scenario: string, extraArgs: string[] = [], port?: number): Promise<{ server: SippServer; port: number }> {
  const localPort = port ?? (await freePort());
  const server = await startSippServer({ scenario, localPort, traceMessages: true, timeoutMs: 60_000, extraArgs });
  servers.push(server);
  return { server, port: localPort };
}

async function gateway(scenario: string, name: string, extraArgs: string[] = []) {
  const gw = await sipp(scenario, extraArgs);
  st.cs.carriers.outboundGateways.push(st.cs.gateway(name, gw.port));
  return gw;
}

/** A customer reached through a gateway whose audio is a test RTP peer speaking `hz`. */
async function customerEar(hz: number) {
  const ear = await rtpPeer();
  peers.push(ear);
  const gw = await gateway('agent-uas-listen.xml', 'gw-customer', ['-key', 'rtp_port', String(ear.port)]);
  return {
    ear,
    gw,
    async speak() {
      let port: number | undefined;
      await waitUntil(async () => (port = await rtpenginePortFor(st.cs.pool, st.cs.media.callIds(), ear.port)) !== undefined, { timeoutMs: 5_000, what: 'rtpengine port of the customer' });
      ear.speak(port!, hz);
    },
  };
}

async function callState(id: string, state: string): Promise<void> {
  await waitUntil(async () => (await st.api('GET', `/v1/calls/${id}`)).body?.state === state, { timeoutMs: 15_000, what: `call ${state}` });
}

/** Connects the agent's session, then calls a customer (a test RTP peer speaking 600 Hz) and bridges it. */
async function sessionWithCustomer(userId: string) {
  await st.api('POST', `/v1/agents/${userId}/session`, {});
  await waitUntil(async () => (await st.api('GET', `/v1/agents/${userId}/session`)).body?.state === 'ready', { timeoutMs: 10_000, what: 'agent ready' });
  const customer = await customerEar(600);
  const placed = await st.api('POST', '/v1/calls', { agent: userId, to: '+442071234567' });
  const callId = placed.body.id as string;
  await callState(callId, 'bridged');
  await customer.speak();
  return { customer, callId };
}

const bodyOf = (message: string): string => message.split(/\r?\n\r?\n/).slice(1).join('\n\n').trim();

describe('RFC 4028 on the far end of an attended transfer by REFER with Replaces', () => {
  it('keeps refreshing the handed-over leg (re-INVITEs with the unchanged SDP) and the customer keeps hearing the target', async () => {
    const user = await st.cs.createUser({ connectionMethod: 'sip-phone', transfer: true, transferCidType: 'contact' });
    const phone = await startSippServer({
      scenario: 'agent-uas-attended-refer.xml', target: st.cs.target, localPort: await st.cs.registerPhone(user), traceMessages: true, timeoutMs: 60_000,
      inf: { rows: [[user.login, user.password, DOMAIN, '+442079999999']] }, keys: { replaces_prefix: '' }, extraArgs: ['-d', '4000'],
    });
    servers.push(phone);
    const { customer, callId } = await sessionWithCustomer(user.id);
    // the phone's consultation goes out through the gateways: a carrier that leaves the refreshes to us
    st.cs.carriers.outboundGateways.splice(0);
    const target = await gateway('uas-answer-timer.xml', 'gw-target', ['-key', 'se', String(SESSION_EXPIRES)]);
    await callState(callId, 'transferred');
    // refreshes at half the interval (§10), from the consultation's answer about a second ago:
    // two by now, and a session left unrefreshed would have expired (interval - interval/3)
    await new Promise((r) => setTimeout(r, SESSION_EXPIRES * 1000 - 500));
    expect((await st.api('GET', `/v1/calls/${callId}`)).body.state).toBe('transferred');
    // the target's SIPp plays 7 s of g711a.pcap from its answer: still playing
    const heard = audioIn(customer.ear, Date.now() - 1000);
    expect(heard.packets, 'the customer still hears the target').toBeGreaterThan(30);

    await st.api('POST', `/v1/calls/${callId}/hangup`);
    const atTarget = receivedMessages((await target.server.stop(3000)).messages);
    const invites = atTarget.filter((m) => m.startsWith('INVITE '));
    expect(invites.length, 'the consultation INVITE and our refresh re-INVITEs').toBeGreaterThanOrEqual(3);
    for (const refresh of invites.slice(1)) {
      expect(headerValues(refresh, 'Session-Expires')).toEqual([`${SESSION_EXPIRES};refresher=uac`]);
      expect(bodyOf(refresh), 'a refresh repeats the SDP unchanged (RFC 3264 §8)').toBe(bodyOf(invites[0]!));
    }
    expect(atTarget.some((m) => m.startsWith('BYE '))).toBe(true);
    await customer.gw.server.stop(3000);
    await st.api('DELETE', `/v1/agents/${user.id}/session`);
    await phone.stop(5000);
  });
});

describe('hold music', () => {
  it('plays the configured music to the held customer instead of the agent, and gives the agent back on resume', async () => {
    const user = await st.cs.createUser({ connectionMethod: 'sip-phone' });
    await sipp(toneScenario(400), [], await st.cs.registerPhone(user));
    const { customer, callId } = await sessionWithCustomer(user.id);
    const hearing = (hz: number) => heardTone(customer.ear, Date.now() - 400, hz);
    await waitUntil(() => hearing(400) > 0.9, { timeoutMs: 5_000, what: 'the customer hears the agent' });
    expect((await st.api('POST', `/v1/calls/${callId}/hold`)).body.state).toBe('held');
    await waitUntil(() => hearing(HOLD_MUSIC_HZ) > 0.9, { timeoutMs: 5_000, what: 'the customer hears the hold music' }).catch(() => {
      throw new Error(`on hold the customer hears: ${JSON.stringify({ music: hearing(HOLD_MUSIC_HZ), agent: hearing(400), ...audioIn(customer.ear, Date.now() - 400) })}`);
    });
    const from = Date.now();
    await new Promise((r) => setTimeout(r, 600));
    expect(heardTone(customer.ear, from, 400), 'not the agent').toBeLessThan(0.05);
    expect((await st.api('POST', `/v1/calls/${callId}/unhold`)).body.state).toBe('bridged');
    await waitUntil(() => hearing(400) > 0.9, { timeoutMs: 5_000, what: 'the customer hears the agent again' });
    await st.api('POST', `/v1/calls/${callId}/hangup`);
    await customer.gw.server.stop(3000);
  });
});
