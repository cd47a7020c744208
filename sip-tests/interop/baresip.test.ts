/**
 * baresip 1.0.0 (Debian 12), a real SIP phone, against the product's registrar and B2BUA (issue 15 item 7):
 * it registers with digest over UDP, TCP and TLS, calls out through dialcore to a SIPp carrier gateway
 * (answering dialcore's 407), receives a call from a SIPp carrier trunk (auto-answer), and either side
 * hangs up. Audio is checked where it is heard: the phone's decoded received audio (sndfile recordings:
 * the carrier's A-law file is loud, silence is not) and rtpengine's packet counts of both legs.
 * After every test: no call session, media session, rtpengine call or edge dialog is left.
 */
import { describe, expect, it } from 'vitest';
import { startBaresip, type BaresipPhone } from '../harness/baresip.js';
import { DOMAIN } from '../calls/call-stack.js';
import { headerValues, receivedRequest } from '../calls/sipp-trace.js';
import { expectHeardAudio, transports, useInteropStack, type Transport } from './interop-stack.js';

const interop = useInteropStack();

/** A new user with a DID, and a baresip phone registered for them over `transport`. */
async function registeredPhone(transport: Transport): Promise<{ userId: string; did: string; phone: BaresipPhone }> {
  const user = await interop.newUser();
  const phone = interop.track(await startBaresip({
    login: user.login, password: user.password, domain: DOMAIN, proxy: interop.proxyFor(transport), transport,
    autoAnswer: true, caFile: interop.caFile,
  }));
  await phone.waitForRegistration();
  return { userId: user.id, did: user.did, phone };
}

describe.each(transports)('baresip over %s', (transport) => {
  it('registers with digest; the binding is on the flow it registered over; quitting unregisters', async () => {
    const { userId, phone } = await registeredPhone(transport);
    const bindings = await interop.cs.services.bindings.list(userId);
    expect(bindings).toHaveLength(1);
    expect(bindings[0]!.flow.transport).toBe(transport);
    expect(bindings[0]!.userAgent).toMatch(/^baresip v1\./);
    await phone.stop();
    expect(await interop.cs.services.bindings.list(userId)).toHaveLength(0);
  });

  it('calls out through dialcore to the carrier gateway, hears it, and hangs up', async () => {
    const { phone } = await registeredPhone(transport);
    const gw = await interop.gateway('uas-answer-rtp.xml');
    const from = phone.events.length;
    await phone.command('dial', `sip:02071234567@${DOMAIN}`);
    await phone.waitForEvent('CALL_ESTABLISHED', { from });
    await interop.bothLegsCarryAudio(40);
    await phone.command('hangup');
    await phone.waitForEvent('CALL_CLOSED', { from });
    const result = await gw.done;
    expect(result.stats.successful, 'the gateway got its BYE').toBe(1);
    const invite = receivedRequest(result.messages, 'INVITE')!;
    expect(invite.split(/\r?\n/)[0]).toMatch(/^INVITE sip:\+442071234567@127\.0\.0\.1:/);
    expect(headerValues(invite, 'User-Agent').join(), 'the phone\'s own headers stay on its leg').not.toContain('baresip');
    expectHeardAudio(phone.receivedAudio(), 0.8);
  });

  it('receives a carrier call (auto-answer) with audio both ways; the carrier hangs up', async () => {
    const { did, phone } = await registeredPhone(transport);
    const from = phone.events.length;
    const carrier = interop.carrierCall('call-carrier-uac.xml', did, 2500);
    await phone.waitForEvent('CALL_ESTABLISHED', { from, timeoutMs: 15_000 });
    await interop.bothLegsCarryAudio(40);
    const result = await carrier;
    expect(result.stats.successful, result.errors + result.stdout.slice(-1500)).toBe(1);
    await phone.waitForEvent('CALL_CLOSED', { from });
    expectHeardAudio(phone.receivedAudio(), 1.5);
  });
});

describe('baresip: who hangs up', () => {
  it('an incoming carrier call hung up by the phone: the carrier gets the BYE', async () => {
    const { did, phone } = await registeredPhone('udp');
    const from = phone.events.length;
    const carrier = interop.carrierCall('call-carrier-uac-wait-bye.xml', did);
    await phone.waitForEvent('CALL_ESTABLISHED', { from, timeoutMs: 15_000 });
    await interop.bothLegsCarryAudio(40);
    await phone.command('hangup');
    const result = await carrier;
    expect(result.stats.successful, result.errors + result.stdout.slice(-1500)).toBe(1);
    await phone.waitForEvent('CALL_CLOSED', { from });
    expectHeardAudio(phone.receivedAudio(), 0.8);
  });

  it('an outgoing call hung up by the gateway: the phone gets the BYE', async () => {
    const { phone } = await registeredPhone('udp');
    const gw = await interop.gateway('invite-uas-bye-local.xml');
    const from = phone.events.length;
    await phone.command('dial', `sip:02071234567@${DOMAIN}`);
    await phone.waitForEvent('CALL_ESTABLISHED', { from });
    await phone.waitForEvent('CALL_CLOSED', { from, timeoutMs: 15_000 });
    expect((await gw.done).stats.successful, 'the gateway\'s BYE was answered 200').toBe(1);
  });
});
