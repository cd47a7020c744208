/**
 * NAT keep-alive on real peers (issue 15 item 3): the registrar pings each UDP registration with OPTIONS
 * through the flow its REGISTER came from, and removes the binding of a phone that stops answering;
 * on connection flows the edge answers an RFC 5626 §4.4.1 double-CRLF ping with a single-CRLF pong.
 */
import { readFileSync, rmSync } from 'node:fs';
import { connect as tcpConnect, type Socket } from 'node:net';
import { connect as tlsConnect } from 'node:tls';
import { afterAll, describe, expect, it } from 'vitest';
import { createSocket } from 'node:dgram';
import { runSipp, startSippServer, waitUntil, type SippServer } from '../harness/index.js';
import { startBaresip } from '../harness/baresip.js';
import { DOMAIN, useCallStack, type CallStack } from '../calls/call-stack.js';
import { receivedMessages } from '../calls/sipp-trace.js';
import { makeSelfSignedCert } from '../fixtures/stack.js';

let cs: CallStack;
const servers: SippServer[] = [];
const cert = makeSelfSignedCert();
// pings every 400 ms, a ping unanswered after 200 ms is a miss, 3 misses remove the binding
useCallStack((started) => (cs = started), servers, undefined, {
  protocols: ['udp', 'tcp', 'tls'],
  tls: cert,
  natKeepalive: { intervalMs: 400, timeoutMs: 200, missesBeforeDrop: 3 },
});

afterAll(() => rmSync(cert.dir, { recursive: true, force: true }));

const bindingsOf = async (userId: string): Promise<number> => (await cs.services.bindings.list(userId)).length;

describe('OPTIONS keep-alive to UDP registrations', () => {
  it('pings the contact through the registered flow; a phone that stops answering loses its binding', async () => {
    const user = await cs.createUser({});
    const port = await cs.registerPhone(user); // SIPp REGISTER from `port`, then SIPp exits
    expect(await bindingsOf(user.id)).toBe(1);
    const phone = await startSippServer({ scenario: 'options-uas.xml', localPort: port, traceMessages: true });
    servers.push(phone);
    // answered pings keep the binding, however many misses it takes to drop one
    await new Promise((r) => setTimeout(r, 2500));
    expect(await bindingsOf(user.id)).toBe(1);
    const answered = await phone.stop(1000);
    servers.splice(0);
    const pings = receivedMessages(answered.messages).filter((m) => m.startsWith('OPTIONS '));
    expect(pings.length, 'pings in 2.5 s at 400 ms').toBeGreaterThanOrEqual(4);
    const binding = (await cs.services.bindings.list(user.id))[0]!;
    expect(pings[0]!.split(/\r?\n/)[0]).toBe(`OPTIONS ${binding.contact} SIP/2.0`);
    expect(pings[0]).toMatch(/^From: <sip:keepalive@dialcore\.test>;tag=/m);
    // nothing answers on the phone's port now
    await waitUntil(async () => (await bindingsOf(user.id)) === 0, { timeoutMs: 5000, what: 'binding removed after 3 missed pings' });
  });

  it('baresip (a real phone) answers the pings and keeps its binding; killed without unregistering, it is dropped', async () => {
    const user = await cs.createUser({});
    const phone = await startBaresip({ login: user.login, password: user.password, domain: DOMAIN, proxy: cs.target, transport: 'udp' });
    try {
      await phone.waitForRegistration();
      await new Promise((r) => setTimeout(r, 2500));
      expect(await bindingsOf(user.id), 'binding kept while baresip answers').toBe(1);
      await phone.service.stop({ signal: 'SIGKILL' });
      await waitUntil(async () => (await bindingsOf(user.id)) === 0, { timeoutMs: 5000, what: 'binding removed after 3 missed pings' });
    } finally {
      await phone.stop();
    }
  });

  it('does not ping bindings on connection flows (TCP): they live as long as the connection', async () => {
    const user = await cs.createUser({});
    const phone = await startBaresip({ login: user.login, password: user.password, domain: DOMAIN, proxy: cs.target, transport: 'tcp' });
    try {
      await phone.waitForRegistration();
      expect(cs.services.keepalive?.size ?? 0, 'no UDP binding tracked').toBe(0);
      await new Promise((r) => setTimeout(r, 1500));
      expect(await bindingsOf(user.id)).toBe(1);
      expect(phone.service.log()).not.toMatch(/OPTIONS/);
    } finally {
      await phone.stop();
    }
  });
});

describe('RFC 5626 outbound', () => {
  it.each(['udp', 'tcp'] as const)('baresip with sipnat=outbound over %s: Require: outbound in the 200, one flow per reg-id, calls reach it', async (transport) => {
    const user = await cs.createUser({});
    const did = transport === 'udp' ? '442071239901' : '442071239902';
    cs.routeDid(did, user.id);
    const phone = await startBaresip({
      login: user.login, password: user.password, domain: DOMAIN, proxy: cs.target, transport, autoAnswer: true, sipTrace: true,
      accountParams: ['sipnat=outbound'],
    });
    try {
      await phone.waitForRegistration();
      const log = phone.service.log(1 << 20);
      expect(log, 'the phone asked for outbound').toMatch(/^Supported:.*outbound/im);
      expect(log).toMatch(/^Contact: .*\+sip\.instance=.*;reg-id=1/im);
      expect(log, 'the 200 to the REGISTER').toMatch(/SIP\/2\.0 200 OK[\s\S]*^Require: outbound/m);
      const [binding] = await cs.services.bindings.list(user.id);
      expect(binding).toMatchObject({ regId: '1', flow: { transport } });
      expect(binding!.instanceId).toBeTruthy();
      const from = phone.events.length;
      const carrier = runSipp({
        scenario: 'call-carrier-uac.xml', target: cs.target, service: did, calls: 1, timeoutMs: 20_000,
        keys: { caller: '+447700900123', caller_national: '07700900123' }, extraArgs: [...cs.carrierSippArgs(), '-d', '500'],
      });
      await phone.waitForEvent('CALL_ESTABLISHED', { from, timeoutMs: 15_000 });
      expect((await carrier).stats.successful).toBe(1);
    } finally {
      await phone.stop();
    }
  });

  it('the edge answers a STUN Binding request on its UDP SIP port with the XOR-mapped source', async () => {
    const socket = createSocket('udp4');
    await new Promise<void>((resolve) => socket.bind(0, '127.0.0.1', resolve));
    try {
      const request = Buffer.alloc(20);
      request.writeUInt16BE(0x0001, 0);
      request.writeUInt32BE(0x2112a442, 4);
      request.fill(7, 8, 20);
      const response = new Promise<Buffer>((resolve) => socket.once('message', resolve));
      socket.send(request, cs.stack.sipPort, '127.0.0.1');
      const res = await Promise.race([response, new Promise<never>((_, reject) => setTimeout(() => reject(new Error('no STUN response')), 3000))]);
      expect(res.readUInt16BE(0)).toBe(0x0101);
      expect(res.subarray(8, 20)).toEqual(request.subarray(8, 20));
      expect(res.readUInt16BE(26) ^ 0x2112).toBe(socket.address().port);
    } finally {
      socket.close();
    }
  });
});

describe('RFC 5626 §4.4.1 CRLF keep-alive on connection flows', () => {
  async function pingPong(socket: Socket): Promise<string> {
    const received: Buffer[] = [];
    socket.on('data', (chunk: Buffer) => received.push(chunk));
    socket.write('\r\n\r\n');
    await waitUntil(() => Buffer.concat(received).length >= 2, { timeoutMs: 3000, what: 'pong' });
    await new Promise((r) => setTimeout(r, 200)); // nothing more should come
    socket.destroy();
    return Buffer.concat(received).toString('latin1');
  }

  it('TCP: a double-CRLF ping gets one CRLF back and the connection stays usable', async () => {
    const socket = await new Promise<Socket>((resolve, reject) => {
      const s = tcpConnect({ host: '127.0.0.1', port: cs.stack.sipPort }, () => resolve(s));
      s.once('error', reject);
    });
    expect(await pingPong(socket)).toBe('\r\n');
  });

  it('TLS: a double-CRLF ping gets one CRLF back', async () => {
    const tls = cs.stack.addresses.sip.find((l) => l.protocol === 'tls')!;
    const socket = await new Promise<Socket>((resolve, reject) => {
      const s = tlsConnect({ host: '127.0.0.1', port: tls.port, ca: [readFileSync(cert.certFile)] }, () => resolve(s));
      s.once('error', reject);
    });
    expect(await pingPong(socket)).toBe('\r\n');
  });
});
