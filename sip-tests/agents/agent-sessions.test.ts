/**
 * Agent sessions and the dialer control API on real peers: SIPp agent phones (registered through
 * the registrar) and SIPp carrier gateways, a real rtpengine with RTP counted on every leg, the
 * admin HTTP server and its WebSocket event stream.
 */
import { createSocket } from 'node:dgram';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import WebSocket from 'ws';
import { startAdminApi } from '../../src/app/admin/server.js';
import { JanusConferenceBridge, startAgentFeature } from '../../src/app/agents/index.js';
import { afterEach, describe, expect, it } from 'vitest';
import { freePort, runSipp, startSippServer, waitUntil, type SippServer } from '../harness/index.js';
import { receivedMessages, receivedRequest, headerValues } from '../calls/sipp-trace.js';
import { DOMAIN } from '../calls/call-stack.js';
import { keys } from '../../src/app/users/keys.js';
import { ADMIN_TOKEN, useAgentStack, type AgentStack } from './agent-stack.js';
import { audioIn, heardTone, rtpPeer, rtpenginePortFor, toneScenario, type RtpPeer } from './rtp-peer.js';

let st: AgentStack;
const servers: SippServer[] = [];
const peers: RtpPeer[] = [];
useAgentStack((started) => (st = started), servers, { janus: true });
afterEach(() => peers.splice(0).forEach((p) => p.close()));

async function sipp(scenario: string, port?: number, extraArgs: string[] = []): Promise<{ server: SippServer; port: number }> {
  const localPort = port ?? (await freePort());
  const server = await startSippServer({ scenario, localPort, traceMessages: true, timeoutMs: 60_000, extraArgs });
  servers.push(server);
  return { server, port: localPort };
}

/** A sip-phone agent whose SIPp phone answers with audio; its session is up and ready. */
async function readyAgent(fields: Record<string, unknown> = {}, scenario = 'uas-answer-rtp.xml') {
  const user = await st.cs.createUser({ connectionMethod: 'sip-phone', ...fields });
  const port = await st.cs.registerPhone(user);
  const phone = await sipp(scenario, port);
  const created = await st.api('POST', `/v1/agents/${user.id}/session`, { autoAnswer: true });
  expect(created.status).toBe(201);
  await waitUntil(async () => (await st.api('GET', `/v1/agents/${user.id}/session`)).body?.state === 'ready', { timeoutMs: 10_000, what: 'agent session ready' });
  return { user, phone };
}

async function customerGateway(scenario = 'uas-answer-rtp.xml', name = 'gw-a', extraArgs: string[] = []) {
  const gw = await sipp(scenario, undefined, extraArgs);
  st.cs.carriers.outboundGateways.push(st.cs.gateway(name, gw.port));
  return gw;
}

async function callState(id: string, state: string): Promise<void> {
  await waitUntil(async () => (await st.api('GET', `/v1/calls/${id}`)).body?.state === state, { timeoutMs: 15_000, what: `call ${state}` });
}

/**
 * RTP on both monologues (the external peer and the bridge side) of every live rtpengine call,
 * or of at least `legs` of them (after a transfer the agent's own leg is parked).
 */
async function expectAudioBothWays(legs?: number): Promise<void> {
  await waitUntil(
    async () => {
      const ids = st.cs.media.callIds();
      if (ids.length < 2) return false;
      const counts = await Promise.all(ids.map((id) => st.cs.packetsByLeg(id)));
      const flowing = counts.filter((c) => c.length === 2 && c[0]! > 20 && c[1]! > 20).length;
      return flowing >= (legs ?? ids.length);
    },
    { timeoutMs: 8_000, what: 'RTP on both sides of every leg' },
  ).catch(async () => {
    const counts = await Promise.all(st.cs.media.callIds().map((id) => st.cs.packetsByLeg(id)));
    throw new Error(`RTP per leg: ${JSON.stringify(counts)}`);
  });
}

describe('agent sessions', () => {
  it('connects a sip-phone agent with auto-answer hints, shows it, lists it and ends it by DELETE', async () => {
    const { user, phone } = await readyAgent();
    const session = (await st.api('GET', `/v1/agents/${user.id}/session`)).body;
    expect(session).toMatchObject({ agent: user.id, connectionMethod: 'sip-phone', state: 'ready', callId: null });
    const listed = (await st.api('GET', `/v1/users/${user.id}/sessions`)).body;
    expect(listed.registrations).toHaveLength(1);
    expect((await st.api('POST', `/v1/agents/${user.id}/session`, {})).status).toBe(409);
    expect((await st.api('DELETE', `/v1/agents/${user.id}/session`)).status).toBe(204);
    expect((await st.api('GET', `/v1/agents/${user.id}/session`)).status).toBe(404);
    const result = await phone.server.stop(3000);
    const invite = receivedRequest(result.messages, 'INVITE')!;
    expect(headerValues(invite, 'Call-Info').join()).toMatch(/answer-after=0/);
    expect(headerValues(invite, 'Alert-Info').join()).toMatch(/auto-answer/);
    expect(receivedRequest(result.messages, 'BYE')).toBeDefined();
  });

  it('refuses what cannot be a session, naming the reason', async () => {
    const unregistered = await st.cs.createUser({ connectionMethod: 'sip-phone' });
    const r1 = await st.api('POST', `/v1/agents/${unregistered.id}/session`, {});
    expect(r1.status).toBe(409);
    expect(r1.body.error.message).toMatch(/no registered device/);
    const dialIn = await st.cs.createUser({ connectionMethod: 'dial-in', dialIn: { id: String(70000 + Math.floor(Math.random() * 9999)), pin: '246810' } });
    const r2 = await st.api('POST', `/v1/agents/${dialIn.id}/session`, {});
    expect(r2.status).toBe(409);
    expect(r2.body.error.field).toBe('connectionMethod');
    const r3 = await st.api('POST', `/v1/agents/00000000-0000-4000-8000-000000000000/session`, {});
    expect(r3.status).toBe(404);
    const r4 = await st.api('POST', `/v1/agents/${dialIn.id}/session`, { autoAnswer: 'yes' });
    expect(r4.status).toBe(400);
    expect(r4.body.error.field).toBe('autoAnswer');
  });

  it('counts the agent session against maxSessions: a device call beyond the limit is refused', async () => {
    const { user } = await readyAgent({ maxSessions: 1 });
    const login = (await st.cs.services.store.get(user.id))!.login;
    const device = await runSipp({
      scenario: 'call-device-refused.xml', target: st.cs.target, calls: 1, traceMessages: true, timeoutMs: 15_000,
      inf: { rows: [[login, user.password, 'dialcore.test', '02071234567']] }, keys: { expected_status: '403' },
    });
    expect(device.messages).toMatch(/SIP\/2\.0 403 Session Limit Reached/);
  });

  it('ends the session and its call when sessionTimeoutSeconds has passed', async () => {
    // The API takes 60 s at least (users/validation.ts). The agent service reads the user record
    // from Redis as stored, unvalidated, as for a record another writer left there: 3 s stored in
    // the record's field is what the product itself would see, with no test hook in product code.
    const events = await st.events();
    const user = await st.cs.createUser({ connectionMethod: 'sip-phone' });
    const port = await st.cs.registerPhone(user);
    await st.cs.services.redis.send(['HSET', keys.user(user.id), 'sessionTimeoutSeconds', '3']);
    await sipp('uas-answer-rtp.xml', port);
    expect((await st.api('POST', `/v1/agents/${user.id}/session`, {})).status).toBe(201);
    await customerGateway();
    await waitUntil(async () => (await st.api('GET', `/v1/agents/${user.id}/session`)).body?.state === 'ready', { timeoutMs: 10_000, what: 'agent ready' });
    const placed = await st.api('POST', '/v1/calls', { agent: user.id, to: '+442071234567' });
    expect(placed.status).toBe(201);
    const down = await events.waitFor((e) => e.type === 'agent.session.down' && e.agent === user.id, 10_000);
    expect(down.cause).toBe('session-timeout');
    const ended = await events.waitFor((e) => e.type === 'call.ended' && e.callId === placed.body.id);
    expect(ended.cause).toBe('session-ended');
    expect((await st.api('GET', `/v1/agents/${user.id}/session`)).status).toBe(404);
    events.close();
  });

  it('ends a live session within a second when the user is deactivated (kick)', async () => {
    const { user } = await readyAgent();
    expect((await st.api('POST', `/v1/users/${user.id}/deactivate`)).status).toBe(200);
    const started = Date.now();
    await waitUntil(async () => (await st.api('GET', `/v1/agents/${user.id}/session`)).status === 404, { timeoutMs: 3_000, what: 'session gone' });
    expect(Date.now() - started).toBeLessThan(1_000);
  });
});

describe('customer calls', () => {
  it('places a call, bridges it into the session with audio both ways, streams the events, hangs up idempotently', async () => {
    const events = await st.events();
    const { user } = await readyAgent();
    const gw = await customerGateway();
    const placed = await st.api('POST', '/v1/calls', { agent: user.id, to: '+44 20 7123 4567', callerId: '+442070000001' });
    expect(placed.status).toBe(201);
    const callId = placed.body.id as string;
    await callState(callId, 'bridged');
    expect((await st.api('GET', `/v1/agents/${user.id}/session`)).body).toMatchObject({ state: 'on-call', callId });
    await expectAudioBothWays();

    const hung = await st.api('POST', `/v1/calls/${callId}/hangup`);
    expect(hung.status).toBe(200);
    expect(hung.body.state).toBe('ended');
    expect((await st.api('POST', `/v1/calls/${callId}/hangup`)).status).toBe(200);
    await waitUntil(async () => (await st.api('GET', `/v1/agents/${user.id}/session`)).body?.state === 'ready', { timeoutMs: 5_000, what: 'agent ready again' });
    await events.waitFor((e) => e.type === 'call.ended' && e.callId === callId);
    const types = events.events.filter((e) => e.callId === callId).map((e) => e.type);
    expect(types).toEqual(['call.dialing', 'call.ringing', 'call.answered', 'call.bridged', 'call.ended']);
    expect(events.events.find((e) => e.type === 'call.ended' && e.callId === callId)?.cause).toBe('hangup-by-api');

    const result = await gw.server.stop(3000);
    const invite = receivedRequest(result.messages, 'INVITE')!;
    expect(invite).toMatch(/^INVITE sip:\+442071234567@/);
    expect(headerValues(invite, 'From').join()).toMatch(/442070000001/);
    expect(receivedRequest(result.messages, 'BYE')).toBeDefined();
    events.close();
  });

  it('returns the agent to ready when the customer hangs up, and refuses commands on the ended call', async () => {
    const events = await st.events();
    const { user } = await readyAgent({ hangupBeep: true });
    await customerGateway('invite-uas-bye-local.xml');
    const placed = await st.api('POST', '/v1/calls', { agent: user.id, to: '02071234567' });
    expect(placed.status).toBe(201);
    const callId = placed.body.id as string;
    await events.waitFor((e) => e.type === 'call.ended' && e.callId === callId);
    expect(events.events.find((e) => e.type === 'call.ended' && e.callId === callId)?.cause).toBe('customer-hangup');
    expect((await st.api('POST', `/v1/calls/${callId}/hold`)).status).toBe(409);
    await waitUntil(async () => (await st.api('GET', `/v1/agents/${user.id}/session`)).body?.state === 'ready', { timeoutMs: 5_000, what: 'agent ready again' });
    events.close();
  });

  it('ends the session and the customer call when the agent hangs up', async () => {
    const events = await st.events();
    const user = await st.cs.createUser({ connectionMethod: 'sip-phone' });
    const port = await st.cs.registerPhone(user);
    await sipp('invite-uas-bye-local.xml', port, ['-d', '2500']);
    await st.api('POST', `/v1/agents/${user.id}/session`, {});
    await waitUntil(async () => (await st.api('GET', `/v1/agents/${user.id}/session`)).body?.state === 'ready', { timeoutMs: 10_000, what: 'agent ready' });
    const gw = await customerGateway();
    const placed = await st.api('POST', '/v1/calls', { agent: user.id, to: '+442071234567' });
    await callState(placed.body.id, 'bridged');
    const ended = await events.waitFor((e) => e.type === 'call.ended' && e.callId === placed.body.id);
    expect(ended.cause).toBe('agent-hangup');
    const down = await events.waitFor((e) => e.type === 'agent.session.down' && e.agent === user.id);
    expect(down.cause).toBe('agent-hangup');
    expect((await st.api('GET', `/v1/agents/${user.id}/session`)).status).toBe(404);
    expect(receivedRequest((await gw.server.stop(3000)).messages, 'BYE')).toBeDefined();
    events.close();
  });

  it('validates the request and refuses unknown calls', async () => {
    const { user } = await readyAgent();
    const bad = await st.api('POST', '/v1/calls', { agent: user.id, to: 'not a number' });
    expect(bad.status).toBe(400);
    expect(bad.body.error.field).toBe('to');
    const blocked = await st.api('POST', '/v1/calls', { agent: user.id, to: '+449001234567' });
    expect(blocked.status).toBe(403);
    const noAgent = await st.api('POST', '/v1/calls', { to: '+442071234567' });
    expect(noAgent.body.error.field).toBe('agent');
    expect((await st.api('GET', '/v1/calls/00000000-0000-4000-8000-000000000000')).status).toBe(404);
    expect((await st.api('POST', '/v1/calls/00000000-0000-4000-8000-000000000000/hangup')).status).toBe(404);
  });

  it('masks the customer number in the events of a masked agent', async () => {
    const events = await st.events();
    const { user } = await readyAgent({ masking: { enabled: true, keepLastDigits: 2 } });
    await customerGateway();
    const placed = await st.api('POST', '/v1/calls', { agent: user.id, to: '+442071234567' });
    expect(placed.body.to).not.toContain('2071234567');
    const dialing = await events.waitFor((e) => e.type === 'call.dialing' && e.callId === placed.body.id);
    expect(JSON.stringify(dialing)).not.toMatch(/20\D?71\D?23\D?45/);
    expect(String(dialing.to)).toMatch(/67$/);
    await st.api('POST', `/v1/calls/${placed.body.id}/hangup`);
    events.close();
  });
});

describe('transfers', () => {
  it('refuses a transfer without the transfer privilege (403 with the reason)', async () => {
    const { user } = await readyAgent({ transfer: false });
    await customerGateway();
    const placed = await st.api('POST', '/v1/calls', { agent: user.id, to: '+442071234567' });
    await callState(placed.body.id, 'bridged');
    const refused = await st.api('POST', `/v1/calls/${placed.body.id}/transfer`, { to: '+442079999999' });
    expect(refused.status).toBe(403);
    expect(refused.body.error.message).toMatch(/transfer privilege/);
    await st.api('POST', `/v1/calls/${placed.body.id}/hangup`);
  });

  for (const cidType of ['campaign', 'contact'] as const) {
    it(`blind-transfers the customer to a number, presenting the ${cidType} number, and frees the agent`, async () => {
      const events = await st.events();
      const { user } = await readyAgent({ transferCidType: cidType });
      const customer = await customerGateway('uas-answer-rtp.xml', 'gw-customer');
      const placed = await st.api('POST', '/v1/calls', { agent: user.id, to: '+442071234567', callerId: '+442070000001' });
      const callId = placed.body.id as string;
      await callState(callId, 'bridged');
      // the transfer target is reached through the same gateway list: swap in the target's SIPp
      st.cs.carriers.outboundGateways.splice(0);
      const target = await customerGateway('uas-answer-rtp.xml', 'gw-target');
      const moved = await st.api('POST', `/v1/calls/${callId}/transfer`, { to: '+442079999999', mode: 'blind' });
      expect(moved.status).toBe(200);
      await callState(callId, 'transferred');
      expect((await st.api('GET', `/v1/agents/${user.id}/session`)).body.state).toBe('ready');
      await expectAudioBothWays(2);
      await st.api('POST', `/v1/calls/${callId}/hangup`);
      await events.waitFor((e) => e.type === 'call.ended' && e.callId === callId);
      expect(events.events.some((e) => e.type === 'call.transferred' && e.callId === callId)).toBe(true);
      const invite = receivedRequest((await target.server.stop(3000)).messages, 'INVITE')!;
      expect(invite).toMatch(/^INVITE sip:\+442079999999@/);
      expect(headerValues(invite, 'From').join()).toMatch(cidType === 'campaign' ? /442070000001/ : /442071234567/);
      await customer.server.stop(3000);
      events.close();
    });
  }

  it('attended transfer: customer held while the agent consults, then handed over on complete', async () => {
    const { user } = await readyAgent();
    await customerGateway('uas-answer-rtp.xml', 'gw-customer');
    const placed = await st.api('POST', '/v1/calls', { agent: user.id, to: '+442071234567' });
    const callId = placed.body.id as string;
    await callState(callId, 'bridged');
    st.cs.carriers.outboundGateways.splice(0);
    await customerGateway('uas-answer-rtp.xml', 'gw-target');
    expect((await st.api('POST', `/v1/calls/${callId}/transfer/complete`)).status).toBe(409);
    const consult = await st.api('POST', `/v1/calls/${callId}/transfer`, { to: '+442079999999', mode: 'attended' });
    expect(consult.status).toBe(200);
    expect(consult.body.state).toBe('held');
    await waitUntil(async () => (await st.api('GET', `/v1/calls/${callId}`)).body?.third?.connected === true, { timeoutMs: 10_000, what: 'consultation answered' });
    const done = await st.api('POST', `/v1/calls/${callId}/transfer/complete`);
    expect(done.status).toBe(200);
    expect(done.body.state).toBe('transferred');
    expect((await st.api('GET', `/v1/agents/${user.id}/session`)).body.state).toBe('ready');
    await st.api('POST', `/v1/calls/${callId}/hangup`);
  });
});

describe('call controls', () => {
  it('holds, resumes, mutes, sends DTMF and records a bridged call', async () => {
    const events = await st.events();
    const { user } = await readyAgent();
    await customerGateway();
    const placed = await st.api('POST', '/v1/calls', { agent: user.id, to: '+442071234567' });
    const callId = placed.body.id as string;
    await callState(callId, 'bridged');
    expect((await st.api('POST', `/v1/calls/${callId}/hold`)).body.state).toBe('held');
    expect((await st.api('POST', `/v1/calls/${callId}/unhold`)).body.state).toBe('bridged');
    expect((await st.api('POST', `/v1/calls/${callId}/mute`)).body.muted).toBe(true);
    expect((await st.api('POST', `/v1/calls/${callId}/unmute`)).body.muted).toBe(false);
    const badDtmf = await st.api('POST', `/v1/calls/${callId}/dtmf`, { digits: '12x' });
    expect(badDtmf.body.error.field).toBe('digits');
    expect((await st.api('POST', `/v1/calls/${callId}/dtmf`, { digits: '1#' })).status).toBe(200);
    expect((await st.api('POST', `/v1/calls/${callId}/recording/start`)).body.recording).toBe(true);
    expect((await st.api('POST', `/v1/calls/${callId}/recording/stop`)).body.recording).toBe(false);
    expect((await st.api('GET', `/v1/calls/${callId}/recordings`)).body.recordings).toHaveLength(1);
    await st.api('POST', `/v1/calls/${callId}/hangup`);
    await events.waitFor((e) => e.type === 'call.ended' && e.callId === callId);
    const types = events.events.filter((e) => e.callId === callId).map((e) => e.type);
    expect(types).toEqual(expect.arrayContaining(['call.held', 'call.resumed', 'call.muted', 'call.unmuted', 'recording.started', 'recording.stopped']));
    events.close();
  });

  it('records the calls of an agent with "records direct calls" into a stereo WAV with both sides audible', async () => {
    const { user } = await readyAgent({ recordDirectCalls: true });
    await customerGateway();
    const placed = await st.api('POST', '/v1/calls', { agent: user.id, to: '+442071234567' });
    const callId = placed.body.id as string;
    await callState(callId, 'bridged');
    expect((await st.api('GET', `/v1/calls/${callId}`)).body.recording).toBe(true);
    await new Promise((r) => setTimeout(r, 2500));
    await st.api('POST', `/v1/calls/${callId}/hangup`);
    const listed = (await st.api('GET', `/v1/calls/${callId}/recordings`)).body.recordings;
    expect(listed).toHaveLength(1);
    expect(listed[0].file).toBe(`${callId}-1.wav`);
    expect(listed[0].seconds).toBeGreaterThan(1.5);
    const response = await fetch(`http://127.0.0.1:${st.admin.port}/v1/calls/${callId}/recordings/1`, { headers: { Authorization: `Bearer ${ADMIN_TOKEN}` } });
    expect(response.headers.get('content-type')).toBe('audio/wav');
    const wav = Buffer.from(await response.arrayBuffer());
    expect(wav.subarray(0, 4).toString()).toBe('RIFF');
    expect(wav.readUInt16LE(22)).toBe(2);
    const energy = [0, 0];
    for (let offset = 44; offset + 4 <= wav.length; offset += 4) {
      energy[0] += Math.abs(wav.readInt16LE(offset));
      energy[1] += Math.abs(wav.readInt16LE(offset + 2));
    }
    expect(energy[0], 'one side audible').toBeGreaterThan(0);
    expect(energy[1], 'the other side audible').toBeGreaterThan(0);
  });
});

/** A UDP port the agent phone's SDP points at: counts the RTP (version 2) packets rtpengine sends the agent. */
async function rtpCounter(): Promise<{ port: number; count(): number; close(): void }> {
  const socket = createSocket('udp4');
  let packets = 0;
  socket.on('message', (msg) => {
    if (msg.length >= 12 && msg[0]! >> 6 === 2) packets++;
  });
  await new Promise<void>((resolve) => socket.bind(0, '127.0.0.1', () => resolve()));
  return { port: socket.address().port, count: () => packets, close: () => socket.close() };
}

/**
 * Agent and customer are both the test's own RTP peers (agent-uas-listen.xml points each SDP at a
 * socket here): each speaks a tone to rtpengine once its call exists, and every packet rtpengine
 * sends either of them is kept, so what each side hears can be checked, not only the API's status.
 */
async function listeningPeers() {
  const agentEar = await rtpPeer();
  const customerEar = await rtpPeer();
  peers.push(agentEar, customerEar);
  const user = await st.cs.createUser({ connectionMethod: 'sip-phone' });
  const phone = await startSippServer({ scenario: 'agent-uas-listen.xml', localPort: await st.cs.registerPhone(user), keys: { rtp_port: String(agentEar.port) }, timeoutMs: 60_000 });
  servers.push(phone);
  expect((await st.api('POST', `/v1/agents/${user.id}/session`, {})).status).toBe(201);
  await waitUntil(async () => (await st.api('GET', `/v1/agents/${user.id}/session`)).body?.state === 'ready', { timeoutMs: 10_000, what: 'agent ready' });
  await customerGateway('agent-uas-listen.xml', 'gw-customer', ['-key', 'rtp_port', String(customerEar.port)]);
  const placed = await st.api('POST', '/v1/calls', { agent: user.id, to: '+442071234567' });
  const callId = placed.body.id as string;
  await callState(callId, 'bridged');
  for (const [ear, hz] of [[agentEar, 400], [customerEar, 600]] as const) {
    let port: number | undefined;
    await waitUntil(async () => (port = await rtpenginePortFor(st.cs.pool, st.cs.media.callIds(), ear.port)) !== undefined, { timeoutMs: 5_000, what: 'rtpengine port of a peer' });
    ear.speak(port!, hz);
  }
  return { user, callId, agentEar, customerEar };
}

/** Waits `ms`, then what `peer` received in that time (audio packets, and how many of them carry sound). */
async function heardDuring(peer: RtpPeer, ms: number) {
  const from = Date.now();
  await new Promise((r) => setTimeout(r, ms));
  return audioIn(peer, from);
}

describe('call controls: what each side hears', () => {
  it('hold: the customer stops hearing the agent (no music configured: nothing); resume brings the audio back', async () => {
    const { callId, customerEar } = await listeningPeers();
    await waitUntil(() => audioIn(customerEar, Date.now() - 500).loud > 10, { timeoutMs: 5_000, what: 'the customer hears the agent' });
    expect((await st.api('POST', `/v1/calls/${callId}/hold`)).body.state).toBe('held');
    await new Promise((r) => setTimeout(r, 200)); // packets already on their way
    const held = await heardDuring(customerEar, 1_000);
    expect(held.loud, JSON.stringify(held)).toBe(0);
    expect((await st.api('POST', `/v1/calls/${callId}/unhold`)).body.state).toBe('bridged');
    await waitUntil(() => audioIn(customerEar, Date.now() - 500).loud > 10, { timeoutMs: 5_000, what: 'the customer hears the agent again' });
    await st.api('POST', `/v1/calls/${callId}/hangup`);
  });

  it('mute: the customer gets silence instead of the agent while the agent still hears the customer; unmute restores it', async () => {
    const { callId, agentEar, customerEar } = await listeningPeers();
    await waitUntil(() => audioIn(customerEar, Date.now() - 500).loud > 10 && audioIn(agentEar, Date.now() - 500).loud > 10, { timeoutMs: 5_000, what: 'audio both ways' });
    expect((await st.api('POST', `/v1/calls/${callId}/mute`)).body.muted).toBe(true);
    await new Promise((r) => setTimeout(r, 200));
    const [toCustomer, toAgent] = await Promise.all([heardDuring(customerEar, 1_000), heardDuring(agentEar, 1_000)]);
    expect(toCustomer.loud, `the customer hears silence: ${JSON.stringify(toCustomer)}`).toBe(0);
    expect(toAgent.loud, `the agent still hears the customer: ${JSON.stringify(toAgent)}`).toBeGreaterThan(30);
    expect((await st.api('POST', `/v1/calls/${callId}/unmute`)).body.muted).toBe(false);
    await waitUntil(() => audioIn(customerEar, Date.now() - 500).loud > 10, { timeoutMs: 5_000, what: 'the customer hears the agent again' });
    await st.api('POST', `/v1/calls/${callId}/hangup`);
  });

  it('dtmf: the customer receives RFC 4733 telephone-events with the negotiated payload type for each digit', async () => {
    const { callId, customerEar } = await listeningPeers();
    await waitUntil(() => audioIn(customerEar, Date.now() - 500).packets > 10, { timeoutMs: 5_000, what: 'RTP to the customer' });
    const from = Date.now();
    expect((await st.api('POST', `/v1/calls/${callId}/dtmf`, { digits: '1#' })).status).toBe(200);
    // the customer's answer (agent-uas-listen.xml) maps telephone-event to 101 (RFC 4733 §2.3)
    // RFC 4733 §2.3: event, E bit, volume, duration; each digit ends with packets with E set
    const events = () => customerEar.packets.filter((p) => p.at >= from && p.payloadType === 101);
    const ended = () => new Set(events().filter((p) => (p.payload[1]! & 0x80) !== 0).map((p) => p.payload[0]));
    await waitUntil(() => ended().size >= 2, { timeoutMs: 5_000, what: 'two ended telephone-events' }).catch(() => {
      throw new Error(`telephone-events (event, E bit): ${JSON.stringify(events().map((p) => [p.payload[0], p.payload[1]! >> 7]))}`);
    });
    expect([...new Set(events().map((p) => p.payload[0]))]).toEqual([1, 11]);
    expect([...ended()]).toEqual([1, 11]);
    await st.api('POST', `/v1/calls/${callId}/hangup`);
  });
});

describe('agent prompts', () => {
  for (const enabled of [true, false]) {
    it(`${enabled ? 'plays' : 'does not play'} the call-connect announcement and the hang-up beep to the agent (user switches ${enabled ? 'on' : 'off'})`, async () => {
      const rtp = await rtpCounter();
      try {
        const user = await st.cs.createUser({ connectionMethod: 'sip-phone', callConnectAnnouncement: enabled, hangupBeep: enabled });
        const port = await st.cs.registerPhone(user);
        const phone = await startSippServer({ scenario: 'agent-uas-listen.xml', localPort: port, keys: { rtp_port: String(rtp.port) }, timeoutMs: 60_000 });
        servers.push(phone);
        expect((await st.api('POST', `/v1/agents/${user.id}/session`, {})).status).toBe(201);
        await waitUntil(async () => (await st.api('GET', `/v1/agents/${user.id}/session`)).body?.state === 'ready', { timeoutMs: 10_000, what: 'agent ready' });
        await new Promise((r) => setTimeout(r, 500));
        const idle = rtp.count();
        // the customer sends no audio and hangs up after 2 s: whatever reaches the agent is ours
        await customerGateway('invite-uas-bye-local.xml', 'gw-a', ['-d', '2000']);
        const events = await st.events();
        const placed = await st.api('POST', '/v1/calls', { agent: user.id, to: '+442071234567' });
        await events.waitFor((e) => e.type === 'call.bridged' && e.callId === placed.body.id);
        await new Promise((r) => setTimeout(r, 700));
        const afterConnect = rtp.count();
        await events.waitFor((e) => e.type === 'call.ended' && e.callId === placed.body.id);
        await new Promise((r) => setTimeout(r, 1_200));
        const afterHangup = rtp.count();
        events.close();
        expect(idle).toBe(0);
        if (enabled) {
          expect(afterConnect - idle).toBeGreaterThan(15); // ~30 packets of chime (540 ms at 20 ms)
          expect(afterHangup - afterConnect).toBeGreaterThan(15); // ~35 packets of beep (700 ms)
        } else {
          expect(afterHangup).toBe(0);
        }
      } finally {
        rtp.close();
      }
    });
  }
});

describe('other ways in', () => {
  it('connects a sip-address agent through their PBX, answering its digest challenge', async () => {
    const pbxPort = await freePort();
    const user = await st.cs.createUser({
      connectionMethod: 'sip-address',
      sipAddress: { uri: `sip:2001@127.0.0.1:${pbxPort}`, username: 'pbxuser', password: 'pbxsecret' },
    });
    const pbx = await sipp('call-pbx-auth.xml', pbxPort);
    expect((await st.api('POST', `/v1/agents/${user.id}/session`, {})).status).toBe(201);
    await waitUntil(async () => (await st.api('GET', `/v1/agents/${user.id}/session`)).body?.state === 'ready', { timeoutMs: 10_000, what: 'agent ready' });
    expect((await st.api('GET', `/v1/agents/${user.id}/session`)).body.connectionMethod).toBe('sip-address');
    await st.api('DELETE', `/v1/agents/${user.id}/session`);
    const result = await pbx.server.stop(3000);
    expect(result.stats.successful + result.stats.failed).toBeGreaterThan(0);
    expect(receivedRequest(result.messages, 'BYE')).toBeDefined();
  });

  it('bridges an inbound DID call into the connected agent session, with audio both ways', async () => {
    const events = await st.events();
    const { user } = await readyAgent();
    const did = '442071230077';
    st.cs.routeDid(did, user.id);
    const carrier = runSipp({
      scenario: 'call-carrier-uac.xml', target: st.cs.target, service: did, calls: 1, traceMessages: true, timeoutMs: 20_000,
      keys: { caller: '+447700900123', caller_national: '07700900123' },
      extraArgs: [...st.cs.carrierSippArgs(), '-d', '3000'],
    });
    const bridged = await events.waitFor((e) => e.type === 'call.bridged' && e.agent === user.id);
    expect(bridged.direction).toBe('inbound');
    await expectAudioBothWays();
    const result = await carrier;
    expect(result.stats.successful).toBe(1);
    const ended = await events.waitFor((e) => e.type === 'call.ended' && e.callId === bridged.callId);
    expect(ended.cause).toBe('customer-hangup');
    const view = (await st.api('GET', `/v1/calls/${bridged.callId}`)).body;
    expect(view).toMatchObject({ direction: 'inbound', from: '+447700900123', state: 'ended' });
    expect((await st.api('GET', `/v1/agents/${user.id}/session`)).body.state).toBe('ready');
    events.close();
  });

  it('transfers the customer when the agent phone sends REFER, and refuses REFER without the privilege', async () => {
    for (const transfer of [true, false]) {
      const user = await st.cs.createUser({ connectionMethod: 'sip-phone', transfer });
      const port = await st.cs.registerPhone(user);
      const phone = await startSippServer({
        scenario: 'agent-uas-refer.xml', localPort: port, traceMessages: true, timeoutMs: 60_000,
        keys: { refer_to: 'sip:+442079999999@dialcore.test' }, extraArgs: ['-d', '1500'],
      });
      servers.push(phone);
      await st.api('POST', `/v1/agents/${user.id}/session`, {});
      await waitUntil(async () => (await st.api('GET', `/v1/agents/${user.id}/session`)).body?.state === 'ready', { timeoutMs: 10_000, what: 'agent ready' });
      const customer = await customerGateway('uas-answer-rtp.xml', 'gw-customer');
      const placed = await st.api('POST', '/v1/calls', { agent: user.id, to: '+442071234567' });
      await callState(placed.body.id, 'bridged');
      st.cs.carriers.outboundGateways.splice(0);
      const target = await customerGateway('uas-answer-rtp.xml', 'gw-target');
      if (transfer) {
        await callState(placed.body.id, 'transferred');
        expect((await st.api('GET', `/v1/agents/${user.id}/session`)).body.state).toBe('ready');
        await st.api('POST', `/v1/calls/${placed.body.id}/hangup`);
        expect(receivedRequest((await target.server.stop(3000)).messages, 'INVITE')).toMatch(/^INVITE sip:\+442079999999@/);
      } else {
        await new Promise((r) => setTimeout(r, 2500));
        expect((await st.api('GET', `/v1/calls/${placed.body.id}`)).body.state).toBe('bridged');
        await st.api('POST', `/v1/calls/${placed.body.id}/hangup`);
      }
      await st.api('DELETE', `/v1/agents/${user.id}/session`);
      const trace = (await phone.stop(3000)).messages;
      expect(trace).toMatch(transfer ? /SIP\/2\.0 202/ : /SIP\/2\.0 403/);
      await customer.server.stop(3000);
      st.cs.carriers.outboundGateways.splice(0);
    }
  });
});

describe('several instances on one Redis', () => {
  it('shows a session and its call from another instance, hands commands to the owner, and a kick from there ends it', async () => {
    // instance B: its own agent service and admin API on the same Redis (no SIP needed to see state)
    const b = await startAgentFeature({
      srf: st.cs.srf, media: st.cs.media, redis: st.cs.services.redis, users: { get: (id) => st.cs.services.store.get(id) },
      bindings: st.cs.services.bindings, carriers: st.cs.carriers, channels: st.cs.channels, dialPlans: st.cs.dialPlans,
      domain: 'dialcore.test', ringTimeoutMs: 5_000, promptsDir: mkdtempSync(join(tmpdir(), 'dialcore-b-')), instanceId: 'instance-b',
    });
    const adminB = await startAdminApi({ ...st.cs.services.adminApiOptions, ...b.api, token: ADMIN_TOKEN, host: '127.0.0.1', port: 0 });
    b.apiListening(`http://127.0.0.1:${adminB.port}`);
    const onB = async (method: string, path: string, body?: unknown) => {
      const r = await fetch(`http://127.0.0.1:${adminB.port}${path}`, {
        method, headers: { Authorization: `Bearer ${ADMIN_TOKEN}`, ...(body ? { 'Content-Type': 'application/json' } : {}) }, ...(body ? { body: JSON.stringify(body) } : {}),
      });
      const text = await r.text();
      return { status: r.status, body: text ? JSON.parse(text) : undefined };
    };
    try {
      const eventsOnB = await new Promise<WebSocket>((resolve, reject) => {
        const ws = new WebSocket(`ws://127.0.0.1:${adminB.port}/v1/events`, { headers: { Authorization: `Bearer ${ADMIN_TOKEN}` } });
        ws.once('open', () => resolve(ws));
        ws.once('error', reject);
      });
      const seenOnB: string[] = [];
      eventsOnB.on('message', (data) => seenOnB.push(JSON.parse(String(data)).type));
      const { user } = await readyAgent();
      await customerGateway();
      const placed = await st.api('POST', '/v1/calls', { agent: user.id, to: '+442071234567' });
      await callState(placed.body.id, 'bridged');
      const instanceA = st.agents.service.instanceId;
      expect((await onB('GET', `/v1/agents/${user.id}/session`)).body).toMatchObject({ state: 'on-call', instance: instanceA });
      expect((await onB('GET', `/v1/calls/${placed.body.id}`)).body).toMatchObject({ state: 'bridged', instance: instanceA });
      // commands sent to B are carried out by A, the owner, and A's answer comes back
      expect((await onB('POST', `/v1/calls/${placed.body.id}/hold`)).status).toBe(200);
      expect((await st.api('GET', `/v1/calls/${placed.body.id}`)).body.state).toBe('held');
      expect((await onB('POST', `/v1/calls/${placed.body.id}/unhold`)).status).toBe(200);
      expect((await st.api('GET', `/v1/calls/${placed.body.id}`)).body.state).toBe('bridged');
      const busy = await onB('POST', '/v1/calls', { agent: user.id, to: '+442071234567' });
      expect(busy.status).toBe(409);
      expect(busy.body.error.instance, 'answered by A itself (the agent is on a call), not a pointer to A').toBeUndefined();
      // a command that was already forwarded once is answered with where it lives
      const looped = await fetch(`http://127.0.0.1:${adminB.port}/v1/calls/${placed.body.id}/hold`, {
        method: 'POST', headers: { Authorization: `Bearer ${ADMIN_TOKEN}`, 'X-Dialcore-Forwarded-By': 'instance-c' },
      });
      expect(looped.status).toBe(409);
      expect(((await looped.json()) as { error: unknown }).error).toMatchObject({ instance: instanceA, apiUrl: `http://127.0.0.1:${st.admin.port}` });
      expect(seenOnB).toEqual(expect.arrayContaining(['agent.session.up', 'call.bridged']));
      // the kick is published on Redis; instance A ends the session
      expect((await onB('POST', `/v1/users/${user.id}/logout`)).status).toBe(202);
      const started = Date.now();
      await waitUntil(async () => (await onB('GET', `/v1/agents/${user.id}/session`)).status === 404, { timeoutMs: 3_000, what: 'session gone' });
      expect(Date.now() - started).toBeLessThan(1_000);
      expect((await onB('GET', `/v1/calls/${placed.body.id}`)).body.state).toBe('ended');
      eventsOnB.terminate();
    } finally {
      await b.stop();
      await adminB.close();
    }
  });
});

/**
 * Waits until both monologues of every live rtpengine call (or of at least `legs` of them) have
 * received more than `n` packets since the call of this function.
 */
async function expectFreshRtpOnEveryLeg(n = 25, legs?: number): Promise<void> {
  const ids = st.cs.media.callIds();
  const before = new Map(await Promise.all(ids.map(async (id) => [id, await st.cs.packetsByLeg(id)] as const)));
  let last: unknown;
  await waitUntil(
    async () => {
      const now = await Promise.all(ids.map(async (id) => ({ id, counts: await st.cs.packetsByLeg(id) })));
      last = now.map(({ id, counts }) => counts.map((c, i) => c - (before.get(id)?.[i] ?? 0)));
      const fresh = now.filter(({ id, counts }) => counts.length === 2 && counts.every((c, i) => c - (before.get(id)?.[i] ?? 0) > n));
      return fresh.length >= (legs ?? ids.length);
    },
    { timeoutMs: 8_000, what: 'fresh RTP on both sides of every leg' },
  ).catch(() => {
    throw new Error(`new RTP packets per leg (external/internal sides): ${JSON.stringify(last)}`);
  });
}

/**
 * Share of a WAV channel's energy at `hz` (0..1), averaged over the 20 ms blocks that carry sound
 * (a WAV built from RTP by capture time is only phase-coherent within a packet or so): a lone
 * tone's share is near 1, one of two equal tones near 0.5, an absent tone near 0.
 */
function toneShare(wav: Buffer, channel: number, channels: number, hz: number): number {
  const block = 160;
  const frames = Math.floor((wav.length - 44) / (channels * 2));
  let sum = 0;
  let blocks = 0;
  for (let start = 0; start + block <= frames; start += block) {
    let re = 0;
    let im = 0;
    let energy = 0;
    for (let n = 0; n < block; n++) {
      const x = wav.readInt16LE(44 + ((start + n) * channels + channel) * 2);
      re += x * Math.cos((2 * Math.PI * hz * n) / 8000);
      im -= x * Math.sin((2 * Math.PI * hz * n) / 8000);
      energy += x * x;
    }
    if (energy / block < 100 * 100) continue; // silence or a gap
    sum += (2 * (re * re + im * im)) / block / energy;
    blocks++;
  }
  return blocks === 0 ? 0 : sum / blocks;
}

describe('3-way calls in the Janus AudioBridge', () => {
  it('joins agent, customer and a third party in the mixer, each receiving the mix, and bridges agent and customer again when the third leaves', async () => {
    const events = await st.events();
    const user = await st.cs.createUser({ connectionMethod: 'sip-phone', threeWay: true });
    await sipp(toneScenario(400), await st.cs.registerPhone(user));
    expect((await st.api('POST', `/v1/agents/${user.id}/session`, { autoAnswer: true })).status).toBe(201);
    await waitUntil(async () => (await st.api('GET', `/v1/agents/${user.id}/session`)).body?.state === 'ready', { timeoutMs: 10_000, what: 'agent ready' });
    const customer = await customerGateway(toneScenario(600), 'gw-customer');
    const placed = await st.api('POST', '/v1/calls', { agent: user.id, to: '+442071234567' });
    const callId = placed.body.id as string;
    await callState(callId, 'bridged');
    st.cs.carriers.outboundGateways.splice(0);
    const third = await customerGateway(toneScenario(800), 'gw-third');

    await expect(new JanusConferenceBridge(st.janus!.url).check()).resolves.toBeUndefined();
    await expect(new JanusConferenceBridge(`http://127.0.0.1:${await freePort()}/janus`).check()).rejects.toThrow();
    const joined = await st.api('POST', `/v1/calls/${callId}/three-way`, { to: '+442079999999' });
    expect(joined.status).toBe(200);
    await events.waitFor((e) => e.type === 'call.three-way' && e.callId === callId && e.phase === 'connected');
    expect(st.cs.media.callIds()).toHaveLength(3);
    // each party's leg: RTP from the party (external side) and from its mixer participant (internal side)
    expect((await st.api('POST', `/v1/calls/${callId}/recording/start`)).status).toBe(200);
    await expectFreshRtpOnEveryLeg();
    expect((await st.api('GET', `/v1/calls/${callId}`)).body.third).toMatchObject({ mode: 'three-way', connected: true });
    expect((await st.api('POST', `/v1/calls/${callId}/hold`)).status).toBe(409);
    await new Promise((r) => setTimeout(r, 1000));
    expect((await st.api('POST', `/v1/calls/${callId}/recording/stop`)).status).toBe(200);

    // the third party leaves: its leg ends, agent and customer are bridged again, the room is gone
    expect((await st.api('POST', `/v1/calls/${callId}/transfer/cancel`)).status).toBe(200);
    await events.waitFor((e) => e.type === 'call.resumed' && e.callId === callId);
    expect(events.events.find((e) => e.type === 'call.three-way' && e.callId === callId && e.phase === 'canceled')).toBeDefined();
    await waitUntil(() => st.cs.media.callIds().length === 2, { timeoutMs: 5_000, what: 'third leg gone' });
    await expectFreshRtpOnEveryLeg();
    expect(receivedRequest((await third.server.stop(3000)).messages, 'BYE')).toBeDefined();
    expect((await st.api('GET', `/v1/calls/${callId}`)).body.state).toBe('bridged');

    await st.api('POST', `/v1/calls/${callId}/hangup`);
    await events.waitFor((e) => e.type === 'call.ended' && e.callId === callId);
    const phases = events.events.filter((e) => e.type === 'call.three-way' && e.callId === callId).map((e) => e.phase);
    expect(phases).toEqual(['dialing', 'connected', 'canceled']);
    // what the customer's leg carried during the 3-way: the customer's own 600 Hz one way, and the
    // mix from the AudioBridge the other way, with the third party's 800 Hz in it (only the mixer
    // brings the third party's voice to the customer)
    const response = await fetch(`http://127.0.0.1:${st.admin.port}/v1/calls/${callId}/recordings/1`, { headers: { Authorization: `Bearer ${ADMIN_TOKEN}` } });
    expect(response.status).toBe(200);
    const wav = Buffer.from(await response.arrayBuffer());
    const shares = [0, 1].map((ch) => ({ customer: toneShare(wav, ch, 2, 600), third: toneShare(wav, ch, 2, 800), agent: toneShare(wav, ch, 2, 400) }));
    const fromMixer = shares.find((c) => c.third > 0.1);
    expect(fromMixer, JSON.stringify(shares)).toBeDefined();
    expect(fromMixer!.agent, JSON.stringify(shares)).toBeGreaterThan(0.1);
    expect(fromMixer!.customer, 'the mix sent to a party leaves its own voice out').toBeLessThan(0.1);
    expect(shares.some((c) => c.customer > 0.3), JSON.stringify(shares)).toBe(true);
    expect(receivedRequest((await customer.server.stop(3000)).messages, 'BYE')).toBeDefined();
    expect((await st.api('GET', `/v1/agents/${user.id}/session`)).body.state).toBe('ready');
    events.close();
  });

  it('takes the third party out when it hangs up: the room is left and agent and customer are bridged again', async () => {
    const events = await st.events();
    const user = await st.cs.createUser({ connectionMethod: 'sip-phone', threeWay: true });
    await sipp(toneScenario(400), await st.cs.registerPhone(user));
    await st.api('POST', `/v1/agents/${user.id}/session`, {});
    await waitUntil(async () => (await st.api('GET', `/v1/agents/${user.id}/session`)).body?.state === 'ready', { timeoutMs: 10_000, what: 'agent ready' });
    await customerGateway(toneScenario(600), 'gw-customer');
    const placed = await st.api('POST', '/v1/calls', { agent: user.id, to: '+442071234567' });
    const callId = placed.body.id as string;
    await callState(callId, 'bridged');
    st.cs.carriers.outboundGateways.splice(0);
    const third = await customerGateway('invite-uas-bye-local.xml', 'gw-third', ['-d', '1500']);
    expect((await st.api('POST', `/v1/calls/${callId}/three-way`, { to: '+442079999999' })).status).toBe(200);
    await events.waitFor((e) => e.type === 'call.three-way' && e.callId === callId && e.phase === 'connected');
    await events.waitFor((e) => e.type === 'call.resumed' && e.callId === callId);
    expect(events.events.find((e) => e.type === 'call.three-way' && e.callId === callId && e.phase === 'canceled')).toBeDefined();
    expect((await st.api('GET', `/v1/calls/${callId}`)).body).toMatchObject({ state: 'bridged' });
    expect((await st.api('GET', `/v1/calls/${callId}`)).body.third).toBeUndefined();
    await waitUntil(() => st.cs.media.callIds().length === 2, { timeoutMs: 5_000, what: 'third leg gone' });
    await expectFreshRtpOnEveryLeg();
    expect(receivedRequest((await third.server.stop(3000)).messages, 'BYE')).toBeUndefined(); // it hung up itself
    await st.api('POST', `/v1/calls/${callId}/hangup`);
    events.close();
  });

  it('refuses a 3-way without the threeWay privilege (403 with the reason)', async () => {
    const { user } = await readyAgent({ threeWay: false });
    await customerGateway();
    const placed = await st.api('POST', '/v1/calls', { agent: user.id, to: '+442071234567' });
    await callState(placed.body.id, 'bridged');
    const refused = await st.api('POST', `/v1/calls/${placed.body.id}/three-way`, { to: '+442079999999' });
    expect(refused.status).toBe(403);
    expect(refused.body.error.message).toMatch(/3-way privilege/);
    await st.api('POST', `/v1/calls/${placed.body.id}/hangup`);
  });
});

/**
 * A customer or transfer target reached through a gateway: SIPp answering (agent-uas-listen.xml)
 * with its SDP on a test RTP peer, which speaks a `hz` tone once rtpengine has a port for it.
 */
async function earGateway(name: string, hz: number) {
  const ear = await rtpPeer();
  peers.push(ear);
  const gw = await customerGateway('agent-uas-listen.xml', name, ['-key', 'rtp_port', String(ear.port)]);
  return {
    ear,
    gw,
    async speak() {
      let port: number | undefined;
      await waitUntil(async () => (port = await rtpenginePortFor(st.cs.pool, st.cs.media.callIds(), ear.port)) !== undefined, { timeoutMs: 5_000, what: `rtpengine port of ${name}` });
      ear.speak(port!, hz);
    },
  };
}

/** Customer (600 Hz) and target (800 Hz) hear each other, and only each other (not the agent's 400 Hz). */
async function expectCustomerAndTargetTalking(customer: RtpPeer, target: RtpPeer): Promise<void> {
  const heard = (from: number) => ({
    customer: { target: heardTone(customer, from, 800), agent: heardTone(customer, from, 400), ...audioIn(customer, from) },
    target: { customer: heardTone(target, from, 600), agent: heardTone(target, from, 400), ...audioIn(target, from) },
  });
  await waitUntil(() => heard(Date.now() - 400).customer.target > 0.9 && heard(Date.now() - 400).target.customer > 0.9, { timeoutMs: 8_000, what: 'customer and target hear each other' }).catch(() => {
    throw new Error(`what each hears (tone shares, audio packets): ${JSON.stringify(heard(Date.now() - 400))}`);
  });
  // from now on, only each other: the agent's leg is parked
  const from = Date.now();
  await new Promise((r) => setTimeout(r, 1000));
  const after = heard(from);
  expect(after.customer.packets, JSON.stringify(after)).toBeGreaterThan(20);
  expect(after.customer.target, JSON.stringify(after)).toBeGreaterThan(0.9);
  expect(after.customer.agent, JSON.stringify(after)).toBeLessThan(0.05);
  expect(after.target.packets, JSON.stringify(after)).toBeGreaterThan(20);
  expect(after.target.customer, JSON.stringify(after)).toBeGreaterThan(0.9);
  expect(after.target.agent, JSON.stringify(after)).toBeLessThan(0.05);
}

const CUSTOMER_DIGITS = /20\D?71\D?23\D?45/;

describe('transfer caller ID and audio', () => {
  /** An agent (SIPp, 400 Hz) bridged to a customer (test RTP peer, 600 Hz); the gateways then lead only to the target (800 Hz). */
  async function bridgedCall(fields: Record<string, unknown>) {
    const { user, phone } = await readyAgent({ transfer: true, ...fields }, toneScenario(400));
    const customer = await earGateway('gw-customer', 600);
    const placed = await st.api('POST', '/v1/calls', { agent: user.id, to: '+442071234567', callerId: '+442070000001' });
    const callId = placed.body.id as string;
    await callState(callId, 'bridged');
    await customer.speak();
    st.cs.carriers.outboundGateways.splice(0);
    const target = await earGateway('gw-target', 800);
    return { user, phone, customer, target, callId };
  }

  async function attendedByApi(callId: string, target: Awaited<ReturnType<typeof earGateway>>) {
    const consult = await st.api('POST', `/v1/calls/${callId}/transfer`, { to: '+442079999999', mode: 'attended' });
    expect(consult.status).toBe(200);
    // completed as soon as it is accepted (409 until the target answered): while the agent is still
    // being bridged to the target, which the hand-over must wait for
    let done: { status: number; body: any } | undefined;
    await waitUntil(async () => (done = await st.api('POST', `/v1/calls/${callId}/transfer/complete`)).status !== 409, { timeoutMs: 10_000, intervalMs: 10, what: 'consultation answered' });
    expect(done!.status).toBe(200);
    expect(done!.body.state).toBe('transferred');
    await target.speak();
  }

  for (const cidType of ['campaign', 'contact'] as const) {
    it(`attended transfer by the API: customer and target hear each other, the target is presented the ${cidType} number`, async () => {
      const { user, customer, target, callId } = await bridgedCall({ transferCidType: cidType });
      await attendedByApi(callId, target);
      expect((await st.api('GET', `/v1/agents/${user.id}/session`)).body.state).toBe('ready');
      await expectCustomerAndTargetTalking(customer.ear, target.ear);
      await st.api('POST', `/v1/calls/${callId}/hangup`);
      const invite = receivedRequest((await target.gw.server.stop(3000)).messages, 'INVITE')!;
      expect(invite).toMatch(/^INVITE sip:\+442079999999@/);
      expect(headerValues(invite, 'From').join()).toMatch(cidType === 'campaign' ? /442070000001/ : /442071234567/);
      expect(headerValues(invite, 'From').join()).not.toMatch(cidType === 'campaign' ? /442071234567/ : /442070000001/);
      await customer.gw.server.stop(3000);
    });

    it(`blind transfer by REFER from the agent phone: customer and target hear each other, the target is presented the ${cidType} number`, async () => {
      const user = await st.cs.createUser({ connectionMethod: 'sip-phone', transfer: true, transferCidType: cidType });
      const phone = await startSippServer({
        scenario: 'agent-uas-refer.xml', localPort: await st.cs.registerPhone(user), traceMessages: true, timeoutMs: 60_000,
        keys: { refer_to: 'sip:+442079999999@dialcore.test' }, extraArgs: ['-d', '2000'],
      });
      servers.push(phone);
      await st.api('POST', `/v1/agents/${user.id}/session`, {});
      await waitUntil(async () => (await st.api('GET', `/v1/agents/${user.id}/session`)).body?.state === 'ready', { timeoutMs: 10_000, what: 'agent ready' });
      const customer = await earGateway('gw-customer', 600);
      const placed = await st.api('POST', '/v1/calls', { agent: user.id, to: '+442071234567', callerId: '+442070000001' });
      const callId = placed.body.id as string;
      await callState(callId, 'bridged');
      st.cs.carriers.outboundGateways.splice(0);
      const target = await earGateway('gw-target', 800);
      await customer.speak();
      await callState(callId, 'transferred');
      await target.speak();
      await expectCustomerAndTargetTalking(customer.ear, target.ear);
      await st.api('POST', `/v1/calls/${callId}/hangup`);
      const invite = receivedRequest((await target.gw.server.stop(3000)).messages, 'INVITE')!;
      expect(invite).toMatch(/^INVITE sip:\+442079999999@/);
      expect(headerValues(invite, 'From').join()).toMatch(cidType === 'campaign' ? /442070000001/ : /442071234567/);
      await st.api('DELETE', `/v1/agents/${user.id}/session`);
      expect((await phone.stop(3000)).messages).toMatch(/SIP\/2\.0 202/);
      await customer.gw.server.stop(3000);
    });
  }

  it('masked agent, contact number presented: the target sees the customer, the agent never does (events, its phone)', async () => {
    const events = await st.events();
    const { user, phone, customer, target, callId } = await bridgedCall({ transferCidType: 'contact', masking: { enabled: true, keepLastDigits: 2 } });
    await attendedByApi(callId, target);
    await expectCustomerAndTargetTalking(customer.ear, target.ear);
    expect(JSON.stringify((await st.api('GET', `/v1/calls/${callId}`)).body)).not.toMatch(CUSTOMER_DIGITS);
    await st.api('POST', `/v1/calls/${callId}/hangup`);
    await events.waitFor((e) => e.type === 'call.ended' && e.callId === callId);
    const ofCall = events.events.filter((e) => e.callId === callId);
    expect(ofCall.map((e) => e.type)).toEqual(expect.arrayContaining(['call.transferring', 'call.transferred']));
    expect(JSON.stringify(ofCall)).not.toMatch(CUSTOMER_DIGITS);
    // the rules mask what reaches the masked user, not the transfer target: it is presented the contact
    const invite = receivedRequest((await target.gw.server.stop(3000)).messages, 'INVITE')!;
    expect(headerValues(invite, 'From').join()).toMatch(/442071234567/);
    await st.api('DELETE', `/v1/agents/${user.id}/session`);
    expect((await phone.server.stop(3000)).messages).not.toMatch(CUSTOMER_DIGITS);
    await customer.gw.server.stop(3000);
    events.close();
  });
});

describe('attended transfer by REFER with Replaces from the agent phone', () => {
  /** An agent whose SIPp phone consults +442079999999 by a device call, then REFERs the session's dialog with Replaces. */
  async function attendedTransfer(replacesPrefix: string) {
    const user = await st.cs.createUser({ connectionMethod: 'sip-phone', transfer: true, transferCidType: 'contact', callerIdNumber: '+442070000009' });
    const port = await st.cs.registerPhone(user);
    const phone = await startSippServer({
      scenario: 'agent-uas-attended-refer.xml', target: st.cs.target, localPort: port, traceMessages: true, timeoutMs: 60_000,
      inf: { rows: [[user.login, user.password, DOMAIN, '+442079999999']] },
      keys: { replaces_prefix: replacesPrefix }, extraArgs: ['-d', '4000'],
    });
    servers.push(phone);
    await st.api('POST', `/v1/agents/${user.id}/session`, {});
    await waitUntil(async () => (await st.api('GET', `/v1/agents/${user.id}/session`)).body?.state === 'ready', { timeoutMs: 10_000, what: 'agent ready' });
    const customer = await customerGateway(toneScenario(600), 'gw-customer');
    const placed = await st.api('POST', '/v1/calls', { agent: user.id, to: '+442071234567', callerId: '+442070000001' });
    const callId = placed.body.id as string;
    await callState(callId, 'bridged');
    // the phone's consultation call goes out through the gateways: the target's SIPp is the only one now
    st.cs.carriers.outboundGateways.splice(0);
    const target = await customerGateway(toneScenario(800), 'gw-target');
    return { user, phone, customer, target, callId };
  }

  it('connects the customer to the far end of the consultation call, ends the consultation, NOTIFYs 100 then 200 and returns the agent to ready', async () => {
    const events = await st.events();
    const { user, phone, customer, target, callId } = await attendedTransfer('');
    await callState(callId, 'transferred');
    expect((await st.api('GET', `/v1/agents/${user.id}/session`)).body).toMatchObject({ state: 'ready', callId: null });
    // customer <-> target through rtpengine both ways: the customer's leg and the consultation's far leg
    await expectFreshRtpOnEveryLeg(25, 2);
    expect(st.cs.calls.count).toBe(0); // the consultation call is replaced, its far end lives on in the customer call
    const transferring = await events.waitFor((e) => e.type === 'call.transferring' && e.callId === callId);
    expect(transferring).toMatchObject({ mode: 'attended', via: 'refer', to: '+442079999999' });
    await events.waitFor((e) => e.type === 'call.transferred' && e.callId === callId);

    await st.api('POST', `/v1/calls/${callId}/hangup`);
    await events.waitFor((e) => e.type === 'call.ended' && e.callId === callId);
    const targetTrace = (await target.server.stop(3000)).messages;
    expect(receivedRequest(targetTrace, 'BYE')).toBeDefined();
    // the consultation presented the customer's number (transferCidType contact), not the agent's own
    const consultation = receivedRequest(targetTrace, 'INVITE')!;
    expect(consultation).toMatch(/^INVITE sip:\+442079999999@/);
    expect(headerValues(consultation, 'From').join()).toMatch(/442071234567/);
    expect(receivedRequest((await customer.server.stop(3000)).messages, 'BYE')).toBeDefined();
    await st.api('DELETE', `/v1/agents/${user.id}/session`);
    const result = await phone.stop(5000);
    const trace = result.messages ?? '';
    expect(trace).toMatch(/SIP\/2\.0 202/);
    const notifies = receivedMessages(trace).filter((m) => m.startsWith('NOTIFY '));
    expect([...new Set(notifies.map((m) => /^SIP\/2\.0 (\d{3})/m.exec(m)?.[1]))]).toEqual(['100', '200']);
    expect(notifies[1]).toMatch(/Subscription-State: terminated/i);
    expect(notifies[0]).toMatch(/Content-Type: message\/sipfrag/i);
    // the consultation dialog (the phone's From tag consult<pid>) was ended by the core
    const byes = receivedMessages(trace).filter((m) => m.startsWith('BYE '));
    expect(byes.some((m) => /^To:[^\n]*tag=consult/m.test(m))).toBe(true);
    events.close();
  });

  it('answers a Replaces naming no dialog of the agent with a 481 NOTIFY and leaves the call with the agent', async () => {
    const { user, phone, customer, target, callId } = await attendedTransfer('unknown-');
    await waitUntil(() => st.cs.calls.list().some((c) => c.state === 'answered'), { timeoutMs: 15_000, what: 'consultation up' });
    await new Promise((r) => setTimeout(r, 2500)); // the phone's 1 s consultation, the REFER and its NOTIFYs
    expect((await st.api('GET', `/v1/calls/${callId}`)).body.state).toBe('bridged');
    expect((await st.api('GET', `/v1/agents/${user.id}/session`)).body.state).toBe('on-call');
    await st.api('POST', `/v1/calls/${callId}/hangup`);
    await st.cs.calls.hangupAll(); // the consultation the phone left up
    await st.api('DELETE', `/v1/agents/${user.id}/session`);
    const trace = (await phone.stop(5000)).messages ?? '';
    const notifies = receivedMessages(trace).filter((m) => m.startsWith('NOTIFY '));
    expect([...new Set(notifies.map((m) => /^SIP\/2\.0 (\d{3})/m.exec(m)?.[1]))]).toEqual(['100', '481']);
    await target.server.stop(3000);
    await customer.server.stop(3000);
  });
});

describe('transfer to another agent', () => {
  it('moves the customer into another agent\'s ready session, with audio both ways, and frees the first agent', async () => {
    const first = await readyAgent({ transfer: true });
    const second = await readyAgent();
    await customerGateway();
    const placed = await st.api('POST', '/v1/calls', { agent: first.user.id, to: '+442071234567' });
    const callId = placed.body.id as string;
    await callState(callId, 'bridged');
    expect((await st.api('POST', `/v1/calls/${callId}/transfer`, { agent: second.user.id, mode: 'attended' })).status).toBe(400);
    const moved = await st.api('POST', `/v1/calls/${callId}/transfer`, { agent: second.user.id });
    expect(moved.status).toBe(200);
    expect(moved.body).toMatchObject({ state: 'bridged', agent: second.user.id });
    expect((await st.api('GET', `/v1/agents/${first.user.id}/session`)).body.state).toBe('ready');
    expect((await st.api('GET', `/v1/agents/${second.user.id}/session`)).body).toMatchObject({ state: 'on-call', callId });
    await expectFreshRtpOnEveryLeg(25, 2); // the customer's leg and the second agent's leg
    await st.api('POST', `/v1/calls/${callId}/hangup`);
    await waitUntil(async () => (await st.api('GET', `/v1/agents/${second.user.id}/session`)).body?.state === 'ready', { timeoutMs: 5_000, what: 'second agent ready again' });
  });
});
