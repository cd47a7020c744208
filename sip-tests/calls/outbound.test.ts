/**
 * A user's SIP phone -> dialcore -> carrier gateway, on real peers (issue 4 items 4, 6, 7): the
 * SIPp "device" authenticates its INVITE with digest (407, as the registrar's credentials); the
 * product's rules decide (manual dial, dial plan, caller ID) and the call goes to a SIPp gateway,
 * with digest credentials on 401/407 and failover to the next gateway on 5xx. Plus internal calls
 * between users, and an rtpengine outage. After every test nothing is left behind.
 */
import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { computeDigestResponse, parseAuthParams } from '../../src/app/auth/digest.js';
import { computeHa1 } from '../../src/app/auth/ha1.js';
import { freePort, runSipp, startSippServer, type SippServer } from '../harness/index.js';
import { DOMAIN, useCallStack, type CallStack, type TestUser } from './call-stack.js';
import { headerValues, receivedMessages, receivedRequest, receivedStatuses, rejectScenario } from './sipp-trace.js';
import { headerOf, statusOf, UdpPeer } from '../edge-faults/raw-sip.js';

let cs: CallStack;
const servers: SippServer[] = [];

useCallStack((started) => (cs = started), servers, (stack) => void stack.carriers.outboundGateways.splice(0));

async function gatewaySipp(scenario: string, options: { keys?: Record<string, string> } = {}): Promise<{ server: SippServer; port: number }> {
  const port = await freePort();
  const server = await startSippServer({ scenario, localPort: port, traceMessages: true, timeoutMs: 60_000, ...(options.keys ? { keys: options.keys } : {}) });
  servers.push(server);
  return { server, port };
}

function deviceCall(user: TestUser, dialled: string, scenario = 'call-device-uac.xml', pauseMs = 1000) {
  return runSipp({
    scenario, target: cs.target, calls: 1, traceMessages: true, timeoutMs: 20_000,
    inf: { rows: [[user.login, user.password, DOMAIN, dialled]] },
    extraArgs: ['-d', String(pauseMs)],
  });
}

/** Status line (code and reason) of the device's final response. */
function finalStatusLine(trace: string | undefined): string | undefined {
  return receivedMessages(trace).map((m) => /^SIP\/2\.0 ([3-6]\d\d [^\r\n]*)/.exec(m)?.[1]).filter((s) => s !== undefined && !s.startsWith('407')).pop();
}

/**
 * A bare UDP device for what SIPp can't do: send an INVITE with a Proxy-Authorization of our choosing (e.g. one
 * already used) and read the final response; every final is ACKed (RFC 3261 17.1.1.3).
 */
async function rawInviteDevice(target: string) {
  const port = Number(target.slice(target.lastIndexOf(':') + 1));
  const peer = await UdpPeer.open();
  const local = `127.0.0.1:${peer.port}`;
  return {
    /** INVITE for `dialled` from `login` (a fresh Call-ID each time); resolves with the final response */
    async invite(login: string, dialled: string, proxyAuthorization?: string): Promise<string> {
      const branch = `z9hG4bK${randomBytes(6).toString('hex')}`;
      const callId = `${randomBytes(6).toString('hex')}@raw-device`;
      const sdp = ['v=0', 'o=- 1 1 IN IP4 127.0.0.1', 's=-', 'c=IN IP4 127.0.0.1', 't=0 0', 'm=audio 40000 RTP/AVP 0', 'a=rtpmap:0 PCMU/8000', ''].join('\r\n');
      const common = [`Via: SIP/2.0/UDP ${local};branch=${branch};rport`, 'Max-Forwards: 70', `From: <sip:${login}@${DOMAIN}>;tag=${randomBytes(4).toString('hex')}`];
      await peer.send([
        `INVITE sip:${dialled}@${DOMAIN} SIP/2.0`, ...common, `To: <sip:${dialled}@${DOMAIN}>`, `Call-ID: ${callId}`, 'CSeq: 1 INVITE',
        `Contact: <sip:${login}@${local}>`, ...(proxyAuthorization ? [`Proxy-Authorization: ${proxyAuthorization}`] : []),
        'Content-Type: application/sdp', `Content-Length: ${Buffer.byteLength(sdp)}`, '', sdp,
      ].join('\r\n'), port);
      const final = await peer.waitFor((m) => (statusOf(m) ?? 0) >= 200 && m.includes(`branch=${branch}`), 10_000);
      if (!final) throw new Error('no final response to the INVITE');
      await peer.send([`ACK sip:${dialled}@${DOMAIN} SIP/2.0`, ...common, `To: ${headerOf(final, 'To')}`, `Call-ID: ${callId}`, 'CSeq: 1 ACK', 'Content-Length: 0', '', ''].join('\r\n'), port);
      return final;
    },
    /** Proxy-Authorization answering a 407's MD5 challenge with nonce count `nc` */
    credentials(challenge: string, user: TestUser, dialled: string, nc: number): string {
      const params = parseAuthParams(headerOf(challenge, 'Proxy-Authenticate') ?? '')?.[0]?.params;
      const realm = params?.get('realm') ?? '';
      const nonce = params?.get('nonce') ?? '';
      const uri = `sip:${dialled}@${DOMAIN}`;
      const ncText = nc.toString(16).padStart(8, '0');
      const response = computeDigestResponse('MD5', computeHa1('MD5', user.login, realm, user.password), 'INVITE', { nonce, uri, qop: 'auth', nc: ncText, cnonce: 'feed' });
      return `Digest username="${user.login}", realm="${realm}", nonce="${nonce}", uri="${uri}", algorithm=MD5, qop=auth, nc=${ncText}, cnonce="feed", response="${response}"`;
    },
    close: () => peer.close(),
  };
}

describe('outbound calls from a user\'s device', () => {
  it('a replayed Proxy-Authorization (same nonce, nc not above the last) gets a fresh 407', async () => {
    const user = await cs.createUser({});
    const device = await rawInviteDevice(cs.target);
    try {
      const dialled = '02071234567'; // no gateway: an authenticated INVITE ends in 503
      const challenge = await device.invite(user.login, dialled);
      expect(challenge).toMatch(/^SIP\/2\.0 407 /);
      const first = device.credentials(challenge, user, dialled, 1);
      expect(await device.invite(user.login, dialled, first)).toMatch(/^SIP\/2\.0 503 /);
      // the same credentials on a new call: a replay
      expect(await device.invite(user.login, dialled, first)).toMatch(/^SIP\/2\.0 407 /);
      expect(await device.invite(user.login, dialled, device.credentials(challenge, user, dialled, 1))).toMatch(/^SIP\/2\.0 407 /);
      // the next count with the same nonce is fine (RFC 7616 3.4)
      expect(await device.invite(user.login, dialled, device.credentials(challenge, user, dialled, 2))).toMatch(/^SIP\/2\.0 503 /);
    } finally {
      device.close();
    }
  });

  it('goes to the gateway as E.164 with the user\'s caller ID, never the device\'s own identity', async () => {
    const user = await cs.createUser({ callerIdName: 'Acme Sales', callerIdNumber: '+441130000042' });
    const gw = await gatewaySipp('uas-answer-rtp.xml');
    cs.carriers.outboundGateways.push(cs.gateway('uk', gw.port, { prefixes: ['44'] }));
    const device = await deviceCall(user, '020-7123-4567');
    expect(device.stats.successful, device.errors + device.stdout.slice(-1500)).toBe(1);
    const invite = receivedRequest((await gw.server.stop()).messages, 'INVITE')!;
    expect(invite.split(/\r?\n/)[0]).toMatch(new RegExp(`^INVITE sip:\\+442071234567@127\\.0\\.0\\.1:${gw.port}`));
    expect(headerValues(invite, 'From')[0]).toMatch(/^"Acme Sales" <sip:\+441130000042@127\.0\.0\.1;user=phone>;tag=/);
    expect(headerValues(invite, 'P-Asserted-Identity')).toEqual(['"Acme Sales" <sip:+441130000042@127.0.0.1;user=phone>']);
    expect(invite).not.toContain('5550001');
    expect(invite).not.toContain('Device Own Name');
    expect(invite).not.toContain('P-Preferred-Identity');
    expect(cs.channels.active('uk')).toBe(0); // the channel was given back at hang-up
  });

  it('refuses an outside number without the manual dial privilege (403 with the reason)', async () => {
    const gw = await gatewaySipp('uas-answer-rtp.xml');
    cs.carriers.outboundGateways.push(cs.gateway('uk', gw.port));
    for (const fields of [{ manualDial: false }, { manualDial: true, restrictManualCalls: true }]) {
      const user = await cs.createUser(fields);
      const device = await deviceCall(user, '02071234567', 'call-device-refused.xml');
      expect(device.stats.successful, device.errors).toBe(1);
      expect(finalStatusLine(device.messages)).toBe('403 Manual Dial Not Allowed');
    }
    expect(receivedRequest((await gw.server.stop()).messages, 'INVITE'), 'nothing reached the carrier').toBeUndefined();
  });

  it('applies the dial plan: blocked prefix 403, too short 484', async () => {
    const user = await cs.createUser({});
    const gw = await gatewaySipp('uas-answer-rtp.xml');
    cs.carriers.outboundGateways.push(cs.gateway('uk', gw.port));
    const blocked = await deviceCall(user, '09001234567', 'call-device-refused.xml');
    expect(receivedStatuses(blocked.messages)).toContain(403);
    const short = await deviceCall(user, '0207', 'call-device-refused.xml');
    expect(receivedStatuses(short.messages)).toContain(484);
  });

  it('a user\'s inline dial-plan rule applies to the next call after an admin change', async () => {
    const user = await cs.createUser({});
    const gw = await gatewaySipp('uas-answer-rtp.xml');
    cs.carriers.outboundGateways.push(cs.gateway('uk', gw.port));
    await cs.services.store.update(user.id, { dialPlan: { rules: [{ pattern: '^0?7', action: 'deny' }] } });
    const refused = await deviceCall(user, '07700900999', 'call-device-refused.xml');
    expect(receivedStatuses(refused.messages)).toContain(403);
    await cs.services.store.update(user.id, { dialPlan: null });
    const allowed = await deviceCall(user, '07700900999');
    expect(allowed.stats.successful, allowed.errors).toBe(1);
  });

  it('answers the gateway\'s 401 with the carrier credentials', async () => {
    const user = await cs.createUser({});
    const gw = await gatewaySipp('call-uas-auth.xml');
    cs.carriers.outboundGateways.push(cs.gateway('authgw', gw.port, { username: 'acct1', password: 'trunk-pass' }));
    const device = await deviceCall(user, '02071234567');
    const gwTrace = (await gw.server.stop()).messages;
    expect(device.stats.successful, device.errors).toBe(1);
    const invites = receivedMessages(gwTrace).filter((m) => m.startsWith('INVITE '));
    expect(invites).toHaveLength(2);
    expect(headerValues(invites[1]!, 'Authorization')[0]).toMatch(/username="acct1"/);
    expect(device.messages).not.toContain('trunk-pass');
  });

  it('fails over to the next gateway on 503', async () => {
    const user = await cs.createUser({});
    const bad = await gatewaySipp(rejectScenario(503, 'Service Unavailable'));
    const good = await gatewaySipp('uas-answer-rtp.xml');
    cs.carriers.outboundGateways.push(cs.gateway('first', bad.port, { priority: 1 }), cs.gateway('second', good.port, { priority: 2 }));
    const device = await deviceCall(user, '02071234567');
    expect(device.stats.successful, device.errors).toBe(1);
    expect(receivedRequest((await bad.server.stop()).messages, 'INVITE')).toBeDefined();
    expect(receivedRequest((await good.server.stop()).messages, 'INVITE')).toBeDefined();
  });

  it('passes busy (486) back to the device; a lone failing gateway gives 503 without its Warning', async () => {
    const user = await cs.createUser({});
    const busy = await gatewaySipp('call-uas-reject.xml');
    cs.carriers.outboundGateways.push(cs.gateway('busy', busy.port));
    const first = await deviceCall(user, '02071234567', 'call-device-refused.xml');
    expect(finalStatusLine(first.messages)).toBe('486 Busy Here');
    expect(first.messages).not.toContain('internal-switch-7');
    cs.carriers.outboundGateways.splice(0);
    const broken = await gatewaySipp(rejectScenario(500, 'Database on fire'));
    cs.carriers.outboundGateways.push(cs.gateway('broken', broken.port));
    const second = await deviceCall(user, '02071234567', 'call-device-refused.xml');
    expect(finalStatusLine(second.messages)).toBe('503 Service Unavailable');
    expect(second.messages).not.toContain('Database on fire');
    expect(second.messages).not.toContain('over quota');
  });

  it('no gateway for the number -> 503; a wrong password -> 403', async () => {
    const user = await cs.createUser({});
    const noRoute = await deviceCall(user, '02071234567', 'call-device-refused.xml');
    expect(receivedStatuses(noRoute.messages)).toContain(503);
    const wrong = await deviceCall({ ...user, password: 'not-the-password' }, '02071234567', 'call-device-refused.xml');
    expect(receivedStatuses(wrong.messages)).toContain(403);
  });

  it('an internal number rings the other user\'s phone, showing the caller\'s internal number', async () => {
    const caller = await cs.createUser({ internalNumber: '2001', displayName: 'Agent One', manualDial: false });
    const callee = await cs.createUser({ internalNumber: '2002' });
    const phone = await startSippServer({ scenario: 'uas-answer-rtp.xml', localPort: await cs.registerPhone(callee), traceMessages: true });
    servers.push(phone);
    const device = await deviceCall(caller, '2002');
    expect(device.stats.successful, device.errors).toBe(1);
    const invite = receivedRequest((await phone.stop()).messages, 'INVITE')!;
    expect(headerValues(invite, 'From')[0]).toMatch(/^"Agent One" <sip:2001@dialcore\.test>/);
  });
});

describe('rtpengine outage', () => {
  it('answers 503 and leaves no call, media session or dialog', async () => {
    const user = await cs.createUser({});
    const gw = await gatewaySipp('uas-answer-rtp.xml');
    cs.carriers.outboundGateways.push(cs.gateway('uk', gw.port));
    await cs.rtpengine.stop();
    const device = await deviceCall(user, '02071234567', 'call-device-refused.xml');
    expect(receivedStatuses(device.messages)).toContain(503);
    expect(receivedRequest((await gw.server.stop()).messages, 'INVITE'), 'no B leg without media').toBeUndefined();
    expect(cs.calls.count).toBe(0);
    expect(cs.media.count).toBe(0);
    expect((await cs.stack.serverDialogs()) ?? 0).toBe(0);
    cs.expectIdle = async () => undefined; // rtpengine is gone: the afterEach `list` check cannot run
  });
});
