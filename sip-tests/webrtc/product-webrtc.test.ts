/**
 * A real browser webphone (Debian chromium headless, JsSIP, fake audio) against the PRODUCT:
 * the registrar (digest auth, per-user rules) and the call router (carriers, dial plan, caller ID,
 * masking, kick-off) of src/app, on the edge's WSS listener (RFC 7118), media through a real
 * rtpengine (WebRTC leg: ICE + DTLS-SRTP; plain leg: RTP/AVP G.711).
 *
 * Checked, end to end (issue 4 items 1, 4, 5, 6, 7):
 * - a `webrtc` user registers from the browser over WSS (401 -> MD5 digest -> 200; the binding is
 *   the WebSocket flow); a `sip-phone` user over WSS and a `webrtc` user over UDP are refused
 *   403 "Connection Method Not Allowed";
 * - a carrier (SIPp, source 127.0.0.2) calls a DID routed to the webrtc user: the browser answers,
 *   audio flows both ways (browser getStats, rtpengine per-leg counters); the masked user's browser
 *   reads the customer's number in no form anywhere; an excluded user sees it; hang-up from either side;
 * - the browser dials an outside number: dial plan to E.164, the user's caller ID (never the
 *   browser's own identity) at the SIPp gateway, plain RTP there, audio both ways; without manual
 *   dial the browser gets 403;
 * - deactivating the user (UserStore -> kick) ends the live call, closes the browser's WebSocket
 *   (edge close_flow) and removes the binding; a WebSocket closing by itself (edge flow-closed
 *   notice) removes its binding.
 * After every test: no call, media session, rtpengine call or edge dialog left (expectIdle).
 */
import WebSocket from 'ws';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { freePort, runSipp, startSippServer, type SippServer } from '../harness/index.js';
import { startBrowser, type CallInfo, type Webphone, type WebphoneBrowser } from '../harness/browser.js';
import { drachtioServerBinary, waitFor } from '../fixtures/stack.js';
import { DOMAIN, startCallStack, type CallStack, type TestUser } from '../calls/call-stack.js';
import { headerValues, receivedMessages, receivedRequest, receivedStatuses } from '../calls/sipp-trace.js';
import { registerOverWebSocket } from '../fixtures/ws-register.js';
import { onFlowClosed } from '../../src/app/sip/srf.js';
import { createNumberMasker } from '../../src/app/policies/index.js';
import type { CallSession } from '../../src/app/calls/index.js';

/** Packets each way before media counts as flowing (~1 s of 20 ms audio). */
const MIN_PACKETS = 50;
const CUSTOMER = '+447700900123';
const CUSTOMER_NATIONAL = '07700900123';
/** The customer of webrtc-uac-rtp.xml (its From). */
const WEBRTC_UAC_CUSTOMER = '+15551234567';

let cs: CallStack;
let browser: WebphoneBrowser;
let wsUrl: string;
const phones: Webphone[] = [];
const servers: SippServer[] = [];
const sockets: WebSocket[] = [];
/** Every call session the router started (for rtpengine per-leg counters). */
const sessions: CallSession[] = [];
let didCounter = 0;

beforeAll(async () => {
  cs = await startCallStack({ protocols: ['udp', 'tcp', 'wss'], tls: 'self-signed', closeUserFlowsOnKick: true });
  const wss = cs.stack.addresses.sip.find((listener) => listener.protocol === 'wss');
  if (!wss) throw new Error('no wss listener');
  wsUrl = `wss://127.0.0.1:${wss.port}`;
  // as src/app/core.ts: the edge's flow-closed notice removes the bindings that came over that flow
  const hooked = onFlowClosed(cs.srf, (protocol, address, port) => {
    cs.services.flows.flowClosed(protocol, address, port).catch(() => undefined);
  });
  // drachtio-server has no flow-closed notice (nor close_flow): the tests about closing WebSockets are the edge's
  if (!hooked && !drachtioServerBinary) throw new Error('onFlowClosed: srf not connected');
  cs.calls.on('session', (session: CallSession) => sessions.push(session));
  browser = await startBrowser();
}, 120_000);

/**
 * Browser phones stay registered (their WebSockets open) until afterAll: a WebSocket closing is
 * an event with consequences (edge flow-closed notice -> bindings removed), so only the tests
 * about it close one. Each test uses users of its own.
 */
afterEach(async () => {
  await Promise.all(phones.map((phone) => phone.hangup().catch(() => undefined)));
  for (const socket of sockets.splice(0)) socket.terminate();
  await Promise.all(servers.splice(0).map((server) => server.stop(1000)));
  if (cs) {
    cs.carriers.outboundGateways.splice(0);
    await cs.expectIdle(15_000);
  }
  sessions.length = 0;
}, 40_000);

afterAll(async () => {
  await Promise.all(phones.splice(0).map((phone) => phone.close()));
  await browser?.close();
  await cs?.stop();
}, 60_000);

// ------------------------------------------------------------------------------------------ helpers

async function webrtcUser(fields: Record<string, unknown> = {}): Promise<TestUser> {
  return cs.createUser({ connectionMethod: 'webrtc', ...fields });
}

async function newPhone(name: string): Promise<Webphone> {
  const phone = await browser.newWebphone(name);
  phones.push(phone);
  return phone;
}

/** A browser phone registered as `user` through the product registrar over WSS (auto-answer). */
async function registeredPhone(user: TestUser, displayName = 'Browser Own Name'): Promise<Webphone> {
  const phone = await newPhone(user.login);
  await phone.register({ wsUrl, sipUri: `sip:${user.login}@${DOMAIN}`, password: user.password, displayName, autoAnswer: true });
  return phone;
}

function routeNewDid(userId: string): string {
  const did = `4420799900${String(++didCounter).padStart(2, '0')}`;
  cs.routeDid(did, userId);
  return did;
}

function carrierCall(scenario: string, did: string, extra: { pauseMs?: number; timeoutMs?: number } = {}) {
  return runSipp({
    scenario, target: cs.target, service: did, calls: 1, traceMessages: true, timeoutMs: extra.timeoutMs ?? 30_000,
    keys: { caller: CUSTOMER, caller_national: CUSTOMER_NATIONAL },
    extraArgs: [...cs.carrierSippArgs(), ...(extra.pauseMs !== undefined ? ['-d', String(extra.pauseMs)] : [])],
  });
}

/** The call session the router started for the browser's current call. */
function liveSession(): Promise<CallSession> {
  return waitFor(() => sessions.find((s) => s.state === 'answered'), 10_000, 'an answered call session');
}

/** Polls rtpengine (ng query) until it received `min` packets from each leg of the call; returns [leg a, leg b]. */
async function enginePacketsPerLeg(callId: string, min: number, timeoutMs = 10_000): Promise<number[]> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const perLeg = await cs.packetsByLeg(callId);
    if ((perLeg.length === 2 && perLeg.every((packets) => packets >= min)) || Date.now() > deadline) return perLeg;
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
}

/** Audio both ways: in the browser (getStats) and on both rtpengine legs. */
async function expectAudioBothWays(phone: Webphone): Promise<void> {
  const stats = await phone.waitForMedia({ minPacketsSent: MIN_PACKETS, minPacketsReceived: MIN_PACKETS, timeoutMs: 15_000 });
  expect(stats.dtlsState).toBe('connected');
  expect(stats.totalAudioEnergy, 'what the browser received decodes to sound').toBeGreaterThan(0);
  const session = await liveSession();
  const perLeg = await enginePacketsPerLeg(session.callId, MIN_PACKETS);
  expect(perLeg, `rtpengine packets per leg of ${session.callId}`).toHaveLength(2);
  for (const packets of perLeg) expect(packets).toBeGreaterThanOrEqual(MIN_PACKETS);
}

/** The next incoming call of `phone`; on timeout, says what the carrier got instead. */
async function incomingCall(phone: Webphone, carrier: Promise<{ messages?: string }>): Promise<CallInfo> {
  let carrierDone: { messages?: string } | undefined;
  void carrier.then((r) => { carrierDone = r; }, () => undefined);
  try {
    return await phone.waitForIncoming(15_000);
  } catch (err) {
    throw new Error(`no call reached the browser (${(err as Error).message}); the carrier got: ${JSON.stringify(receivedStatuses(carrierDone?.messages))}`);
  }
}

/** A raw WebSocket SIP client registered for `user` (see fixtures/ws-register.ts), closed after each test. */
async function registerOverRawWebSocket(user: TestUser): Promise<WebSocket> {
  return registerOverWebSocket({ url: wsUrl, login: user.login, password: user.password, realm: DOMAIN, domain: DOMAIN, track: (socket) => sockets.push(socket) });
}

// ------------------------------------------------------------------------------------------ registration

describe('registration over WSS through the product registrar', () => {
  it('a webrtc user registers from the browser (401 -> MD5 digest -> 200); the binding is its WebSocket flow', async () => {
    const user = await webrtcUser();
    const phone = await registeredPhone(user);
    const bindings = await cs.services.bindings.list(user.id);
    expect(bindings).toHaveLength(1);
    expect(bindings[0]!.flow).toMatchObject({ transport: 'wss', address: '127.0.0.1' });
    expect(bindings[0]!.contact).toMatch(/;transport=ws/i);
    const trace = await phone.lastSipMessages();
    const registers = trace.filter((m) => m.direction === 'sent' && m.text.startsWith('REGISTER '));
    const responses = trace.filter((m) => m.direction === 'received' && /^CSeq:\s*\d+ REGISTER/im.test(m.text)).map((m) => m.text.split('\r\n')[0]);
    expect(responses[0]).toMatch(/^SIP\/2\.0 401 /);
    expect(responses.at(-1)).toMatch(/^SIP\/2\.0 200 /);
    const authorization = headerValues(registers.at(-1)!.text, 'Authorization')[0];
    expect(authorization).toMatch(/^Digest /);
    expect(authorization).toContain(`username="${user.login}"`);
    expect(authorization).toMatch(/algorithm=MD5\b/);
    expect(await cs.services.flows.flowsOf(user.id)).toEqual([expect.objectContaining({ transport: 'wss', address: '127.0.0.1' })]);
  });

  it('a sip-phone user over WSS is refused: 403 Connection Method Not Allowed', async () => {
    const user = await cs.createUser({ connectionMethod: 'sip-phone' });
    const phone = await newPhone(user.login);
    await expect(phone.register({ wsUrl, sipUri: `sip:${user.login}@${DOMAIN}`, password: user.password })).rejects.toThrow(/403 Connection Method Not Allowed/);
    expect(await cs.services.bindings.list(user.id)).toEqual([]);
  });

  it('a webrtc user over UDP (SIPp) is refused: 403 Connection Method Not Allowed', async () => {
    const user = await webrtcUser();
    const result = await runSipp({
      scenario: 'register-auth-uac.xml', target: cs.target, localPort: await freePort(), calls: 1, traceMessages: true, timeoutMs: 10_000,
      inf: { rows: [[user.login, user.password, DOMAIN]] },
    });
    expect(result.stats.successful).toBe(0);
    const finals = receivedMessages(result.messages).map((m) => m.split(/\r?\n/)[0]).filter((line) => !/^SIP\/2\.0 (1\d\d|401) /.test(line ?? ''));
    expect(finals).toContain('SIP/2.0 403 Connection Method Not Allowed');
    expect(await cs.services.bindings.list(user.id)).toEqual([]);
  });
});

// ------------------------------------------------------------------------------------------ inbound

describe('carrier -> DID -> the webrtc user\'s browser', () => {
  it('the browser answers, audio flows both ways, the masked user reads the customer\'s number nowhere; the carrier hangs up', async () => {
    const user = await webrtcUser({ masking: { enabled: true, keepLastDigits: 2 } });
    const phone = await registeredPhone(user);
    const did = routeNewDid(user.id);
    const carrier = carrierCall('call-carrier-uac.xml', did, { pauseMs: 7000 });
    const incoming = await incomingCall(phone, carrier);
    await phone.waitForConfirmed(incoming.id, 10_000);
    await expectAudioBothWays(phone);

    const result = await carrier; // BYE from the carrier after the pause
    expect(result.stats.successful, result.errors + result.stdout.slice(-1500)).toBe(1);
    const ended = await phone.waitForEnd(incoming.id, 10_000);
    expect(ended.status).toBe('ended');
    expect(ended.endedBy).toBe('remote');

    // masking: every message the agent's side could read (INVITE, ACK, BYE, ...) hides the customer
    const received = (await phone.receivedSipMessages()).filter((m) => !/^CSeq:\s*\d+ REGISTER/im.test(m));
    expect(received.some((m) => m.startsWith('INVITE '))).toBe(true);
    expect(received.some((m) => m.startsWith('BYE '))).toBe(true);
    const reveal = createNumberMasker([CUSTOMER], 2);
    const forms = ['+447700900123', '447700900123', '07700900123', '7700900123', '%2B447700900123', '7700 900123', '900123'];
    for (const message of received) {
      expect(reveal.reveals(message), message).toBe(false);
      for (const form of forms) expect(message, `form ${form} in:\n${message}`).not.toContain(form);
    }
    const invite = received.find((m) => m.startsWith('INVITE '))!;
    expect(headerValues(invite, 'From')[0]).toContain('XXXXXXXXXX23');
    expect(incoming.remoteUri).not.toContain('900123');
    expect(incoming.remoteDisplayName ?? '').not.toContain('900123');
    // the WebRTC leg: the offer the browser got is DTLS-SRTP with ICE (rtpengine's WebRTC flags)
    expect(invite).toMatch(/^m=audio \d+ UDP\/TLS\/RTP\/SAVPF /m);
    expect(invite).toMatch(/^a=fingerprint:/m);
    expect(invite).toMatch(/^a=ice-ufrag:/m);
    expect(invite).toMatch(/^Via:\s*SIP\/2\.0\/WSS /im);
  });

  it('an excluded user sees the customer\'s number; the browser hangs up and the carrier gets the BYE', async () => {
    const user = await webrtcUser({ masking: { enabled: true, keepLastDigits: 2 }, maskingExcluded: true });
    const phone = await registeredPhone(user);
    const did = routeNewDid(user.id);
    const carrier = carrierCall('webrtc-uac-rtp.xml', did);
    const incoming = await incomingCall(phone, carrier);
    await phone.waitForConfirmed(incoming.id, 10_000);
    expect(incoming.remoteUri).toContain(WEBRTC_UAC_CUSTOMER);
    await expectAudioBothWays(phone);

    const ended = await phone.hangup();
    expect(ended?.endedBy).toBe('local');
    const result = await carrier; // gets our BYE before its own at 8 s
    expect(result.stats.successful, result.errors + result.stdout.slice(-1500)).toBe(1);
    expect(receivedRequest(result.messages, 'BYE'), 'the carrier got a BYE').toBeDefined();
    const invite = (await phone.receivedSipMessages()).find((m) => m.startsWith('INVITE '))!;
    expect(headerValues(invite, 'From')[0]).toContain(WEBRTC_UAC_CUSTOMER);
  });
});

// ------------------------------------------------------------------------------------------ outbound

describe('the browser dials an outside number', () => {
  async function gateway(): Promise<{ server: SippServer; port: number }> {
    const port = await freePort();
    const server = await startSippServer({ scenario: 'uas-answer-rtp.xml', localPort: port, traceMessages: true, timeoutMs: 60_000 });
    servers.push(server);
    cs.carriers.outboundGateways.push(cs.gateway('uk', port, { prefixes: ['44'] }));
    return { server, port };
  }

  it('dial plan + the user\'s caller ID at the gateway (never the browser\'s identity), plain RTP there, audio both ways', async () => {
    const user = await webrtcUser({ manualDial: true, callerIdName: 'Acme Sales', callerIdNumber: '+441130000042' });
    const gw = await gateway();
    const phone = await registeredPhone(user, 'Browser Own Name');
    const call = await phone.call(`sip:020-7123-4567@${DOMAIN}`, { timeoutMs: 20_000 });
    expect(call.status).toBe('confirmed');
    await expectAudioBothWays(phone);
    const ended = await phone.hangup();
    expect(ended?.endedBy).toBe('local');

    const gwResult = await gw.server.stop(5000);
    const invite = receivedRequest(gwResult.messages, 'INVITE')!;
    expect(invite, 'the gateway got the INVITE').toBeDefined();
    expect(invite.split(/\r?\n/)[0]).toMatch(new RegExp(`^INVITE sip:\\+442071234567@127\\.0\\.0\\.1:${gw.port}`));
    expect(headerValues(invite, 'From')[0]).toMatch(/^"Acme Sales" <sip:\+441130000042@127\.0\.0\.1;user=phone>;tag=/);
    expect(headerValues(invite, 'P-Asserted-Identity')).toEqual(['"Acme Sales" <sip:+441130000042@127.0.0.1;user=phone>']);
    expect(invite).not.toContain(user.login);
    expect(invite).not.toContain('Browser Own Name');
    expect(invite).not.toContain('.invalid'); // JsSIP's Via/Contact host
    // the plain leg: RTP/AVP without ICE or DTLS
    expect(invite).toMatch(/^m=audio \d+ RTP\/AVP /m);
    expect(invite).not.toMatch(/^a=(fingerprint|ice-ufrag|setup):/m);
    expect(receivedRequest(gwResult.messages, 'BYE'), 'the browser\'s hang-up reached the gateway').toBeDefined();
    // the answer the browser got is WebRTC (DTLS-SRTP, ICE)
    const answer = (await phone.receivedSipMessages()).find((m) => m.startsWith('SIP/2.0 200') && /^CSeq:\s*\d+ INVITE/im.test(m))!;
    expect(answer).toMatch(/^m=audio \d+ UDP\/TLS\/RTP\/SAVPF /m);
    expect(cs.channels.active('uk')).toBe(0);
  });

  it('a webrtc user without manual dial gets 403 in the browser; nothing reaches the gateway', async () => {
    const user = await webrtcUser({ manualDial: false });
    const gw = await gateway();
    const phone = await registeredPhone(user);
    const failure = await phone.call(`sip:02071234567@${DOMAIN}`, { timeoutMs: 15_000 }).then(
      () => undefined,
      (err: unknown) => (err as { call?: CallInfo }).call,
    );
    expect(failure?.status).toBe('failed');
    expect(failure?.failureStatus).toBe(403);
    const statusLines = (await phone.receivedSipMessages()).filter((m) => /^CSeq:\s*\d+ INVITE/im.test(m)).map((m) => m.split('\r\n')[0]);
    expect(statusLines).toContain('SIP/2.0 403 Manual Dial Not Allowed');
    expect(receivedRequest((await gw.server.stop(1000)).messages, 'INVITE'), 'nothing reached the carrier').toBeUndefined();
  });
});

// ------------------------------------------------------------------------------------------ kick

describe('kick-off and closed connections', () => {
  it('deactivating the user ends the live call, closes the browser\'s WebSocket and removes the binding', async () => {
    const user = await webrtcUser();
    const phone = await registeredPhone(user);
    const flow = (await cs.services.bindings.list(user.id))[0]!.flow;
    const did = routeNewDid(user.id);
    const carrier = carrierCall('invite-uac-wait-bye.xml', did, { timeoutMs: 30_000 });
    const incoming = await incomingCall(phone, carrier);
    await phone.waitForConfirmed(incoming.id, 10_000);
    // the browser is confirmed once the core ACKs its 200; the core's session turns answered once rtpengine has
    // answered and the carrier has its 200, a moment later on a busy machine
    await expect.poll(async () => cs.calls.listUserSessions(user.id), { timeout: 5000 })
      .toEqual([expect.objectContaining({ state: 'answered', direction: 'inbound' })]);

    const kicked = new Promise<{ sessionsEnded: number; bindingsRemoved: number }>((resolve) => {
      const off = cs.services.kicks.onKick((outcome) => {
        if (outcome.userId !== user.id) return;
        off();
        resolve(outcome);
      });
    });
    await cs.services.store.setActive(user.id, false);
    const outcome = await Promise.race([kicked, new Promise<never>((_r, reject) => setTimeout(() => reject(new Error('no kick handled')), 10_000))]);
    expect(outcome).toMatchObject({ sessionsEnded: 1, bindingsRemoved: 1 });

    const result = await carrier;
    expect(result.stats.successful, 'the carrier got a BYE').toBe(1);
    const ended = await phone.waitForEnd(incoming.id, 10_000);
    expect(ended.status).toBe('ended');
    expect(await cs.services.bindings.list(user.id), 'the kick removed the binding').toEqual([]);
    if (drachtioServerBinary) return; // drachtio-server cannot be asked to close the WebSocket
    // the edge closed the WebSocket (close_flow): JsSIP reconnects on a new one and REGISTERs again
    const sentRegisters = async (): Promise<number> =>
      (await phone.lastSipMessages()).filter((m) => m.direction === 'sent' && m.text.startsWith('REGISTER ')).length;
    await expect.poll(sentRegisters, { timeout: 15_000, interval: 200 }).toBeGreaterThan(2); // 2 = the first registration (401, 200)
    // the edge's flow-closed notice reached the core: the closed flow is forgotten
    await expect.poll(() => cs.services.flows.flowsOf(user.id).some((f) => f.port === flow.port), {
      timeout: 5000, interval: 100, message: 'the core processed the edge\'s flow-closed notice of the kicked WebSocket',
    }).toBe(false);
    // and the deactivated user's new REGISTER is refused
    await expect.poll(async () => String((await phone.state()).registrationError), { timeout: 10_000, interval: 200 }).toMatch(/403 User Inactive/);
    expect(await cs.services.bindings.list(user.id)).toEqual([]);
  });

  it.skipIf(drachtioServerBinary !== null)('a WebSocket that closes by itself (no un-REGISTER) loses its binding', async () => {
    const user = await webrtcUser();
    const socket = await registerOverRawWebSocket(user);
    const bindings = await cs.services.bindings.list(user.id);
    expect(bindings).toHaveLength(1);
    expect(bindings[0]!.flow.transport).toBe('wss');
    const closed = new Promise<void>((resolve) => socket.once('close', () => resolve()));
    socket.terminate(); // TCP reset, no close frame, no un-REGISTER
    await closed;
    await expect.poll(async () => (await cs.services.bindings.list(user.id)).length, { timeout: 10_000, interval: 100 }).toBe(0);
    expect(cs.services.flows.flowsOf(user.id)).toEqual([]);
  });

  it.skipIf(drachtioServerBinary !== null)('a WebSocket closed cleanly (close frame) also loses its binding; other users\' bindings stay', async () => {
    const stays = await webrtcUser();
    const stayingPhone = await registeredPhone(stays);
    const leaves = await webrtcUser();
    const socket = await registerOverRawWebSocket(leaves);
    expect(await cs.services.bindings.list(leaves.id)).toHaveLength(1);
    socket.close(1000);
    await expect.poll(async () => (await cs.services.bindings.list(leaves.id)).length, { timeout: 10_000, interval: 100 }).toBe(0);
    expect(await cs.services.bindings.list(stays.id)).toHaveLength(1);
    expect((await stayingPhone.state()).registration).toBe('registered');
  });
});
