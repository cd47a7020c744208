/**
 * Carrier -> dialcore -> a user who is not a registered device (issue 4 item 5), on real peers:
 *
 * - a `sip-address` user: the core sends one INVITE to the configured PBX URI; the PBX (SIPp,
 *   call-pbx-auth.xml) challenges with 401 (RFC 3261 §22.2) and the core answers with the stored
 *   PBX credentials (Authorization, RFC 3261 §22.4 / RFC 2617 §3.2.2); the PBX's SIPp checks the
 *   digest (verifyauth) and answers; the carrier's call is answered and torn down.
 * - a `dial-in` user is never called (they call in): the carrier gets 480 and nothing is sent.
 *
 * After every test: no call session, media session, rtpengine call or edge dialog is left.
 */
import { describe, expect, it } from 'vitest';
import { computeDigestResponse, parseAuthParams } from '../../src/app/auth/digest.js';
import { computeHa1 } from '../../src/app/auth/ha1.js';
import { freePort, runSipp, startSippServer, type SippServer } from '../harness/index.js';
import { useCallStack, type CallStack } from './call-stack.js';
import { headerValues, receivedMessages, receivedStatuses } from './sipp-trace.js';
import type { CallSession } from '../../src/app/calls/index.js';

let cs: CallStack;
const servers: SippServer[] = [];

useCallStack((started) => (cs = started), servers);

const CALLER = '+447700900123';
const CALLER_NATIONAL = '07700900123';
const PBX_USERNAME = 'pbxuser';
const PBX_PASSWORD = 'pbxsecret';
let didCounter = 0;

function nextDid(): string {
  return `4420712377${String(++didCounter).padStart(2, '0')}`;
}

function carrierCall(scenario: string, did: string, pauseMs = 1000) {
  return runSipp({
    scenario, target: cs.target, service: did, calls: 1, traceMessages: true, timeoutMs: 20_000,
    keys: { caller: CALLER, caller_national: CALLER_NATIONAL },
    extraArgs: [...cs.carrierSippArgs(), '-d', String(pauseMs)],
  });
}

async function pbx(port: number): Promise<SippServer> {
  const server = await startSippServer({ scenario: 'call-pbx-auth.xml', localPort: port, traceMessages: true, timeoutMs: 60_000 });
  servers.push(server);
  return server;
}

/** Records the call sessions the core creates while a test runs. */
function watchSessions(): { events: string[]; sessions: CallSession[]; stop(): void } {
  const events: string[] = [];
  const sessions: CallSession[] = [];
  const onSession = (session: CallSession): void => {
    sessions.push(session);
    session.on('answered', () => events.push('answered'));
    session.on('ended', (end) => events.push(`ended:${end.reason}`));
  };
  cs.calls.on('session', onSession);
  return { events, sessions, stop: () => cs.calls.off('session', onSession) };
}

/** Messages SIPp sent, from its `-trace_msg` log. */
function sentMessages(trace: string | undefined): string[] {
  if (!trace) return [];
  return trace.split(/^-{5,}.*$/m).flatMap((block) => {
    const header = /message sent \(\d+ bytes\):/i.exec(block);
    return header ? [block.slice(header.index + header[0].length).trim()] : [];
  });
}

describe('inbound carrier call to a sip-address user', () => {
  it('INVITEs the PBX URI, answers its 401 with the stored credentials, and bridges the call', async () => {
    const pbxPort = await freePort();
    const user = await cs.createUser({
      connectionMethod: 'sip-address',
      sipAddress: { uri: `sip:2001@127.0.0.1:${pbxPort}`, username: PBX_USERNAME, password: PBX_PASSWORD },
    });
    const did = nextDid();
    cs.routeDid(did, user.id);
    const callee = await pbx(pbxPort);
    const watch = watchSessions();
    try {
      const carrier = await carrierCall('call-carrier-uac.xml', did);
      expect(carrier.stats.successful, carrier.errors + carrier.stdout.slice(-1500)).toBe(1);
      expect(receivedStatuses(carrier.messages)).toContain(200);

      const pbxResult = await callee.stop();
      expect(pbxResult.stats.successful, pbxResult.errors + pbxResult.stdout.slice(-1500)).toBe(1);
      const received = receivedMessages(pbxResult.messages);
      const invites = received.filter((m) => m.startsWith('INVITE '));
      expect(invites, 'one INVITE, then one with credentials after the 401').toHaveLength(2);
      for (const invite of invites) expect(invite).toMatch(/^INVITE sip:2001@127\.0\.0\.1:\d+ SIP\/2\.0/);
      // RFC 3261 §22.2: the first INVITE carries no credentials; the retry answers the challenge
      expect(headerValues(invites[0]!, 'Authorization')).toEqual([]);
      expect(headerValues(invites[0]!, 'Proxy-Authorization')).toEqual([]);
      const authorization = headerValues(invites[1]!, 'Authorization');
      expect(authorization).toHaveLength(1);
      expect(authorization[0]).toMatch(/^Digest /);
      expect(authorization[0]).toContain(`username="${PBX_USERNAME}"`);
      expect(authorization[0]).toContain('realm="carrier.example"');
      expect(authorization[0]).toContain('nonce="47364c23432d2e131a5fb210812c"');
      // the PBX's verifyauth accepted the digest: it answered 200, not 403
      const sentStatuses = sentMessages(pbxResult.messages).map((m) => /^SIP\/2\.0 (\d{3})/.exec(m)?.[1]).filter(Boolean).map(Number);
      expect(sentStatuses).toContain(200);
      expect(sentStatuses).not.toContain(403);
      expect(received.some((m) => m.startsWith('BYE ')), 'the carrier\'s BYE reached the PBX').toBe(true);

      // the stored password never goes on the wire, to the PBX or the carrier
      expect(pbxResult.messages).toBeDefined();
      expect(pbxResult.messages).not.toContain(PBX_PASSWORD);
      expect(carrier.messages).not.toContain(PBX_PASSWORD);

      expect(watch.events).toEqual(['answered', 'ended:caller-hangup']);
    } finally {
      watch.stop();
    }
  });
});

describe('inbound carrier call to a sip-address user whose PBX answers 407', () => {
  it('answers the 407 with Proxy-Authorization computed from the stored credentials', async () => {
    const pbxPort = await freePort();
    const user = await cs.createUser({
      connectionMethod: 'sip-address',
      sipAddress: { uri: `sip:2003@127.0.0.1:${pbxPort}`, username: PBX_USERNAME, password: PBX_PASSWORD },
    });
    const did = nextDid();
    cs.routeDid(did, user.id);
    const callee = await startSippServer({ scenario: 'call-pbx-auth-407.xml', localPort: pbxPort, traceMessages: true, timeoutMs: 60_000 });
    servers.push(callee);
    const carrier = await carrierCall('call-carrier-uac.xml', did);
    expect(carrier.stats.successful, carrier.errors + carrier.stdout.slice(-1500)).toBe(1);
    const pbxResult = await callee.stop();
    expect(pbxResult.stats.successful, pbxResult.errors + pbxResult.stdout.slice(-1500)).toBe(1);
    const invites = receivedMessages(pbxResult.messages).filter((m) => m.startsWith('INVITE '));
    expect(invites).toHaveLength(2);
    expect(headerValues(invites[0]!, 'Proxy-Authorization')).toEqual([]);
    // RFC 3261 §22.3: the retry carries Proxy-Authorization (not Authorization) for the 407's realm
    expect(headerValues(invites[1]!, 'Authorization')).toEqual([]);
    const [credentials] = headerValues(invites[1]!, 'Proxy-Authorization');
    const params = parseAuthParams(credentials!)?.[0]?.params;
    expect(params?.get('username')).toBe(PBX_USERNAME);
    expect(params?.get('realm')).toBe('pbx.example');
    expect(params?.get('nonce')).toBe('5f1e2d3c4b5a69788796a5b4c3d2e1f0');
    expect(params?.get('qop')).toBe('auth');
    const expected = computeDigestResponse('MD5', computeHa1('MD5', PBX_USERNAME, 'pbx.example', PBX_PASSWORD), 'INVITE', {
      nonce: params!.get('nonce')!, uri: params!.get('uri')!, qop: 'auth', nc: params!.get('nc')!, cnonce: params!.get('cnonce')!,
    });
    expect(params?.get('response'), 'the digest is right for the stored password').toBe(expected);
    expect(pbxResult.messages).not.toContain(PBX_PASSWORD);
  });
});

describe('inbound carrier call to a dial-in user', () => {
  it('is refused with 480 and nothing is sent anywhere', async () => {
    // a trap on the address the user would have been called at, were it a sip-address user
    const trapPort = await freePort();
    const user = await cs.createUser({
      connectionMethod: 'dial-in',
      dialIn: { id: `77${didCounter + 1}`, pin: '482913' },
      sipAddress: { uri: `sip:2002@127.0.0.1:${trapPort}`, username: PBX_USERNAME, password: PBX_PASSWORD },
    });
    const did = nextDid();
    cs.routeDid(did, user.id);
    const trap = await pbx(trapPort);
    const watch = watchSessions();
    try {
      const carrier = await carrierCall('call-carrier-refused.xml', did);
      expect(carrier.stats.successful, carrier.errors + carrier.stdout.slice(-1500)).toBe(1);
      const statuses = receivedStatuses(carrier.messages);
      expect(statuses.filter((s) => s >= 200)).toEqual([480]);
      expect(statuses.every((s) => s === 100 || s === 480), `statuses ${statuses.join(',')}`).toBe(true);
      expect(watch.sessions, 'no call session (no B leg) was created').toHaveLength(0);
      expect(await cs.rtpengineCalls(), 'no media session was offered to rtpengine').toEqual([]);
      const trapResult = await trap.stop(1000);
      expect(receivedMessages(trapResult.messages), 'the dial-in user\'s stored address was not called').toEqual([]);
    } finally {
      watch.stop();
    }
  });
});
