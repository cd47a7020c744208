/**
 * linphonec (Debian 12 linphone-cli, liblinphone 5.1), a real SIP phone, against the product's registrar and
 * B2BUA (issue 15 item 7): it registers with digest over UDP, TCP and TLS, calls out through dialcore to a
 * SIPp carrier gateway (answering dialcore's 407), receives a call from a SIPp carrier trunk (auto-answer),
 * and either side hangs up. Audio: the phone plays a tone into its calls and records what it receives
 * (file mode); the recording must hold the carrier's audio, and rtpengine must count packets on both legs.
 * After every test: no call session, media session, rtpengine call or edge dialog is left.
 */
import { describe, expect, it } from 'vitest';
import { startLinphone, type LinphonePhone } from '../harness/linphone.js';
import { DOMAIN } from '../calls/call-stack.js';
import { receivedRequest } from '../calls/sipp-trace.js';
import { expectHeardAudio, transports, useInteropStack, type Transport } from './interop-stack.js';

const interop = useInteropStack();

async function registeredPhone(transport: Transport): Promise<{ userId: string; did: string; phone: LinphonePhone }> {
  const user = await interop.newUser();
  const phone = interop.track(await startLinphone({
    transport, autoAnswer: true, caFile: interop.caFile,
    account: { login: user.login, password: user.password, domain: DOMAIN, proxy: interop.proxyFor(transport) },
  }));
  await phone.waitForRegistration();
  return { userId: user.id, did: user.did, phone };
}

describe.each(transports)('linphone over %s', (transport) => {
  it('registers with digest (with its +sip.instance); the binding is on the flow it registered over', async () => {
    const { userId } = await registeredPhone(transport);
    const bindings = await interop.cs.services.bindings.list(userId);
    expect(bindings).toHaveLength(1);
    expect(bindings[0]!.flow.transport).toBe(transport);
    expect(bindings[0]!.instanceId).toMatch(/^urn:uuid:/);
  });

  it('calls out through dialcore to the carrier gateway, hears it, and hangs up', async () => {
    const { phone } = await registeredPhone(transport);
    const gw = await interop.gateway('uas-answer-rtp.xml');
    const from = phone.output().length;
    phone.send(`call sip:02071234567@${DOMAIN}`);
    await phone.waitForOutput(/Call \d+ with .* connected\./, { from });
    await interop.bothLegsCarryAudio(40);
    phone.send('terminate');
    await phone.waitForOutput(/Call \d+ with .* ended/, { from });
    const result = await gw.done;
    expect(result.stats.successful, 'the gateway got its BYE').toBe(1);
    expect(receivedRequest(result.messages, 'INVITE')!.split(/\r?\n/)[0]).toMatch(/^INVITE sip:\+442071234567@127\.0\.0\.1:/);
    expectHeardAudio(phone.receivedAudio(), 0.8);
  });

  it('receives a carrier call (auto-answer) with audio both ways; the carrier hangs up', async () => {
    const { did, phone } = await registeredPhone(transport);
    const from = phone.output().length;
    const carrier = interop.carrierCall('call-carrier-uac.xml', did, 2500);
    await phone.waitForOutput(/Call \d+ with .* connected\./, { from, timeoutMs: 15_000 });
    await interop.bothLegsCarryAudio(40);
    const result = await carrier;
    expect(result.stats.successful, result.errors + result.stdout.slice(-1500)).toBe(1);
    await phone.waitForOutput(/Call \d+ with .* ended/, { from });
    expectHeardAudio(phone.receivedAudio(), 1.5);
  });
});

describe('linphone: who hangs up', () => {
  it('an incoming carrier call hung up by the phone: the carrier gets the BYE', async () => {
    const { did, phone } = await registeredPhone('udp');
    const from = phone.output().length;
    const carrier = interop.carrierCall('call-carrier-uac-wait-bye.xml', did);
    await phone.waitForOutput(/Call \d+ with .* connected\./, { from, timeoutMs: 15_000 });
    await interop.bothLegsCarryAudio(40);
    phone.send('terminate');
    const result = await carrier;
    expect(result.stats.successful, result.errors + result.stdout.slice(-1500)).toBe(1);
  });

  it('an outgoing call hung up by the gateway: the phone gets the BYE', async () => {
    const { phone } = await registeredPhone('udp');
    const gw = await interop.gateway('invite-uas-bye-local.xml');
    const from = phone.output().length;
    phone.send(`call sip:02071234567@${DOMAIN}`);
    await phone.waitForOutput(/Call \d+ with .* connected\./, { from });
    await phone.waitForOutput(/Call \d+ with .* ended/, { from, timeoutMs: 15_000 });
    expect((await gw.done).stats.successful, 'the gateway\'s BYE was answered 200').toBe(1);
  });
});
