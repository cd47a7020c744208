/**
 * baresip 1.0.0 (Debian 12), a real SIP phone, against the product's registrar and B2BUA (issue 15 item 7):
 * it registers with digest over UDP, TCP and TLS, calls out through dialcore to a SIPp carrier gateway,
 * receives a call from a SIPp carrier trunk (auto-answer), and either side hangs up. Audio is checked
 * where it is heard: the phone's decoded received audio (sndfile recordings: the carrier's A-law file is
 * loud, silence is not), and rtpengine's packet counts of both legs.
 * After every test: no call session, media session, rtpengine call or edge dialog is left.
 */
import { rmSync } from 'node:fs';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { startBaresip, type BaresipPhone } from '../harness/baresip.js';
import { CARRIER_IP, DOMAIN, useCallStack, type CallStack } from '../calls/call-stack.js';
import { freePort, runSipp, startSippServer, type SippServer } from '../harness/index.js';
import { makeSelfSignedCert } from '../fixtures/stack.js';
import { headerValues, receivedRequest } from '../calls/sipp-trace.js';

let cs: CallStack;
const servers: SippServer[] = [];
const phones: BaresipPhone[] = [];
const cert = makeSelfSignedCert();

useCallStack((started) => (cs = started), servers, (stack) => void stack.carriers.outboundGateways.splice(0), {
  protocols: ['udp', 'tcp', 'tls'],
  tls: cert,
});
afterAll(() => rmSync(cert.dir, { recursive: true, force: true }));

let didCounter = 0;
const transports = ['udp', 'tcp', 'tls'] as const;
type Transport = (typeof transports)[number];

/** A new user with a DID, and a baresip phone registered for them over `transport`. */
async function registeredPhone(transport: Transport): Promise<{ userId: string; did: string; phone: BaresipPhone }> {
  const user = await cs.createUser({});
  const did = `4420712399${String(++didCounter).padStart(2, '0')}`;
  cs.routeDid(did, user.id);
  const tls = cs.stack.addresses.sip.find((listener) => listener.protocol === 'tls');
  const proxy = transport === 'tls' ? `127.0.0.1:${tls!.port}` : cs.target;
  const phone = await startBaresip({
    login: user.login, password: user.password, domain: DOMAIN, proxy, transport, autoAnswer: true, caFile: cert.certFile,
  });
  phones.push(phone);
  await phone.waitForRegistration();
  return { userId: user.id, did, phone };
}

async function gateway(scenario: string): Promise<SippServer> {
  const port = await freePort();
  const server = await startSippServer({ scenario, localPort: port, traceMessages: true, timeoutMs: 60_000 });
  servers.push(server);
  cs.carriers.outboundGateways.push(cs.gateway('uk', port));
  return server;
}

function carrierCall(scenario: string, did: string, pauseMs?: number) {
  return runSipp({
    scenario, target: cs.target, service: did, calls: 1, traceMessages: true, timeoutMs: 30_000,
    keys: { caller: '+447700900123', caller_national: '07700900123' },
    extraArgs: ['-i', CARRIER_IP, '-mi', CARRIER_IP, ...(pauseMs !== undefined ? ['-d', String(pauseMs)] : [])],
  });
}

/** rtpengine's packet counts of the live call's legs, once both passed `atLeast`. */
async function bothLegsCarryAudio(atLeast: number): Promise<number[]> {
  let last: number[] = [];
  const deadline = Date.now() + 10_000;
  while (Date.now() < deadline) {
    const call = cs.calls.list()[0];
    if (call) last = await cs.packetsByLeg(call.callId);
    if (last.length === 2 && last.every((n) => n >= atLeast)) return last;
    await new Promise((r) => setTimeout(r, 200));
  }
  throw new Error(`rtpengine packets per leg: ${JSON.stringify(last)}`);
}

/** The phone decoded real audio (the carrier's file, not silence) for at least `seconds`. */
function expectHeardAudio(phone: BaresipPhone, seconds: number): void {
  const heard = phone.receivedAudio();
  expect(heard.seconds, 'seconds of audio the phone received').toBeGreaterThanOrEqual(seconds);
  expect(heard.rms, 'level of the audio the phone received (A-law silence decodes to 8)').toBeGreaterThan(50);
}

afterEach(async () => {
  await Promise.all(phones.splice(0).map((p) => p.stop()));
});

describe.each(transports)('baresip over %s', (transport) => {
  it('registers with digest; the binding is on the flow it registered over', async () => {
    const { userId, phone } = await registeredPhone(transport);
    const bindings = await cs.services.bindings.list(userId);
    expect(bindings).toHaveLength(1);
    expect(bindings[0]!.flow.transport).toBe(transport);
    expect(bindings[0]!.userAgent).toMatch(/^baresip v1\./);
    await phone.stop();
    phones.splice(phones.indexOf(phone), 1);
    // baresip unregisters (Expires: 0) when it quits
    expect(await cs.services.bindings.list(userId)).toHaveLength(0);
  });

  it('calls out through dialcore to the carrier gateway (407 answered), hears it, and hangs up', async () => {
    const { phone } = await registeredPhone(transport);
    const gw = await gateway('uas-answer-rtp.xml');
    const from = phone.events.length;
    await phone.command('dial', `sip:02071234567@${DOMAIN}`);
    await phone.waitForEvent('CALL_ESTABLISHED', { from });
    const packets = await bothLegsCarryAudio(40);
    expect(packets[0], 'packets from the phone').toBeGreaterThanOrEqual(40);
    await phone.command('hangup');
    await phone.waitForEvent('CALL_CLOSED', { from });
    const result = await gw.stop(5000);
    expect(result.stats.successful, 'the gateway got its BYE').toBe(1);
    const invite = receivedRequest(result.messages, 'INVITE')!;
    expect(invite.split(/\r?\n/)[0]).toMatch(/^INVITE sip:\+442071234567@127\.0\.0\.1:/);
    expect(headerValues(invite, 'User-Agent').join(), 'the phone\'s own headers stay on its leg').not.toContain('baresip');
    expectHeardAudio(phone, 0.8);
  });

  it('receives a carrier call (auto-answer) with audio both ways; the carrier hangs up', async () => {
    const { did, phone } = await registeredPhone(transport);
    const from = phone.events.length;
    const carrier = carrierCall('call-carrier-uac.xml', did, 2500);
    await phone.waitForEvent('CALL_ESTABLISHED', { from, timeoutMs: 15_000 });
    await bothLegsCarryAudio(40);
    const result = await carrier;
    expect(result.stats.successful, result.errors + result.stdout.slice(-1500)).toBe(1);
    await phone.waitForEvent('CALL_CLOSED', { from });
    expectHeardAudio(phone, 1.5);
  });
});

describe('baresip hangs up, the far end hangs up', () => {
  it('an incoming carrier call hung up by the phone: the carrier gets the BYE', async () => {
    const { did, phone } = await registeredPhone('udp');
    const from = phone.events.length;
    const carrier = carrierCall('call-carrier-uac-wait-bye.xml', did);
    await phone.waitForEvent('CALL_ESTABLISHED', { from, timeoutMs: 15_000 });
    await bothLegsCarryAudio(40);
    await phone.command('hangup');
    const result = await carrier;
    expect(result.stats.successful, result.errors + result.stdout.slice(-1500)).toBe(1);
    await phone.waitForEvent('CALL_CLOSED', { from });
    expectHeardAudio(phone, 0.8);
  });

  it('an outgoing call hung up by the gateway: the phone gets the BYE', async () => {
    const { phone } = await registeredPhone('udp');
    const gw = await gateway('invite-uas-bye-local.xml');
    const from = phone.events.length;
    await phone.command('dial', `sip:02071234567@${DOMAIN}`);
    await phone.waitForEvent('CALL_ESTABLISHED', { from });
    const closed = await phone.waitForEvent('CALL_CLOSED', { from, timeoutMs: 15_000 });
    expect(String(closed.param ?? '')).not.toMatch(/error|failed/i);
    expect((await gw.stop(5000)).stats.successful).toBe(1);
  });
});
