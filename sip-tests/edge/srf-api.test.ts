/**
 * drachtio-srf's API against the edge (issue 2 item 5): request, createUAC, createUAS,
 * createB2BUA, and how the edge completes the app's skeletal messages (drachtio wire protocol).
 */
import dgram from 'node:dgram';
import net from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runSipp, startSippServer, waitUntil } from '../harness/index.js';
import { startStack, testSdp, waitFor, type TestStack } from '../fixtures/stack.js';
import type { Dialog, Srf, SrfRequest } from '../../src/app/sip/srf.js';
import { encodeFrame, FrameDecoder } from '../../src/edge/drachtio/framing.js';

describe('drachtio-srf API on the edge', () => {
  let stack: TestStack;
  let app: Srf;
  let uasPort = 0;
  let uas: Awaited<ReturnType<typeof startSippServer>>;
  const b2bCalls: Array<{ uas: Dialog; uac: Dialog }> = [];

  beforeAll(async () => {
    stack = await startStack();
    app = await stack.connectApp();
    uas = await startSippServer({ scenario: 'uas', transport: 'u1' });
    uasPort = uas.port;
    app.invite(async (req, res) => {
      try {
        // "nobody" goes to a closed TCP port: connection refused, the edge synthesises 503
        const uri = req.calledNumber === 'nobody' ? 'sip:nobody@127.0.0.1:1;transport=tcp' : `sip:${req.calledNumber || 'b'}@127.0.0.1:${uasPort}`;
        const call = await app.createB2BUA(req, res, uri, { localSdpB: req.body });
        b2bCalls.push(call);
        call.uas.on('destroy', () => call.uac.destroy().catch(() => undefined));
        call.uac.on('destroy', () => call.uas.destroy().catch(() => undefined));
        // a BYE read together with the 2xx's echo is handled before this code runs: that side is gone already
        if (!call.uas.connected) call.uac.destroy().catch(() => undefined);
        if (!call.uac.connected) call.uas.destroy().catch(() => undefined);
      } catch {
        /* failure already answered by srf */
      }
    });
  });
  afterAll(async () => {
    await uas?.stop();
    await stack?.stop();
  });

  it('srf.request: the edge completes a skeletal OPTIONS (Via, Max-Forwards, From tag, To, Call-ID, CSeq)', async () => {
    const optionsUas = await startSippServer({ scenario: 'options-uas.xml', transport: 'u1' });
    try {
      // srf's callback form registers the response listener before the next frame is read
      let status = 0;
      const sent = await new Promise<SrfRequest>((resolve, reject) => {
        app.request(`sip:probe@127.0.0.1:${optionsUas.port}`, { method: 'OPTIONS' }, (err, req) => {
          if (err || !req) return reject(err);
          req.on('response', (res) => { status = res.status; });
          resolve(req);
        });
      });
      expect(sent.get('Via')).toMatch(/^SIP\/2\.0\/UDP 127\.0\.0\.1:\d+;rport;branch=z9hG4bK/);
      expect(sent.get('Max-Forwards')).toBe('70');
      expect(sent.get('From')).toMatch(/;tag=\S+/);
      expect(sent.get('To')).toContain(`sip:probe@127.0.0.1:${optionsUas.port}`);
      expect(sent.get('Call-ID')).toBeTruthy();
      expect(sent.get('CSeq')).toMatch(/^\d+ OPTIONS$/);
      await waitFor(() => status || undefined, 3000, 'OPTIONS response');
      expect(status).toBe(200);
    } finally {
      await optionsUas.stop();
    }
  });

  it('createUAC + in-dialog BYE use the remote Contact as Request-URI and increment CSeq', async () => {
    const dialog = await app.createUAC(`sip:callee@127.0.0.1:${uasPort}`, { localSdp: testSdp(43000) });
    const inviteCseq = Number(dialog.req.get('CSeq')?.split(' ')[0]);
    expect(dialog.req.get('Contact')).toMatch(/^<sip:127\.0\.0\.1:\d+>$/);
    const bye = await dialog.destroy();
    expect(bye.get('CSeq')).toBe(`${inviteCseq + 1} BYE`);
    expect(bye.uri).not.toBe('sip:placeholder');
  });

  it('createB2BUA bridges a SIPp caller to a SIPp callee; BYE propagates; nothing leaks', async () => {
    const before = b2bCalls.length;
    const r = await runSipp({ scenario: 'uac', target: stack.target, calls: 10, rate: 10, service: 'b2b' });
    expect(r.stats.successful).toBe(10);
    expect(b2bCalls.length - before).toBe(10);
    await waitUntil(async () => ((await stack.serverDialogs()) ?? 0) === 0, { timeoutMs: 5000, what: 'all dialogs torn down' });
  });

  it('createB2BUA passes a failure from the B side back to the A side', async () => {
    const r = await runSipp({ scenario: 'uac', target: stack.target, calls: 1, timeoutMs: 20_000, service: 'nobody', traceMessages: true });
    expect(r.stats.successful).toBe(0);
    expect(r.messages ?? '').toMatch(/SIP\/2\.0 5\d\d /);
    await waitUntil(async () => ((await stack.serverDialogs()) ?? 0) === 0, { timeoutMs: 3000, what: 'no dialog left' });
  });

  it('the echo of a sent non-INVITE final reaches srf: on its own when nothing follows, and in a burst', async () => {
    // The embedded edge holds such an echo until its next frame to the app, or a few ms (AppConnection.sendSipDeferred):
    // srf's send callback must still fire. Same test against drachtio-server, which sends echoes at once.
    const echoApp = await stack.connectApp();
    const events: string[] = [];
    echoApp.message((req, res) => {
      const n = req.get('Subject') ?? '?';
      events.push(`request ${n}`);
      res.send(200, 'OK', {}, (err) => events.push(err ? `echo ${n} error` : `echo ${n}`));
    });
    const udp = dgram.createSocket('udp4');
    await new Promise<void>((resolve) => udp.bind(0, '127.0.0.1', () => resolve()));
    const local = udp.address().port;
    const message = (n: number): string => [
      `MESSAGE sip:echo@${stack.target} SIP/2.0`,
      `Via: SIP/2.0/UDP 127.0.0.1:${local};rport;branch=z9hG4bK-echo-${n}-${local}`,
      'Max-Forwards: 70',
      `From: <sip:a@127.0.0.1>;tag=echo${n}`,
      `To: <sip:echo@${stack.target}>`,
      `Call-ID: echo-${n}-${local}`,
      `CSeq: ${n} MESSAGE`,
      `Subject: ${n}`,
      'Content-Length: 0',
      '', '',
    ].join('\r\n');
    const answered: number[] = [];
    udp.on('message', (msg) => {
      const text = msg.toString('latin1');
      if (text.startsWith('SIP/2.0 200')) answered.push(Number(/^CSeq: (\d+)/m.exec(text)?.[1]));
    });
    try {
      // one alone: its echo comes although nothing follows it
      udp.send(message(1), stack.sipPort, '127.0.0.1');
      await waitFor(() => (events.includes('echo 1') ? true : undefined), 2000, 'echo of the lone 200');
      // a burst: requests and echoes interleave as they come, but every echo arrives, after its own request
      for (let n = 2; n <= 6; n++) udp.send(message(n), stack.sipPort, '127.0.0.1');
      await waitFor(() => (events.filter((e) => e.startsWith('echo')).length === 6 ? true : undefined), 2000, 'all six echoes');
      for (let n = 1; n <= 6; n++) expect(events.indexOf(`echo ${n}`)).toBeGreaterThan(events.indexOf(`request ${n}`));
      expect(events.filter((e) => e.endsWith('error'))).toEqual([]);
      await waitFor(() => (answered.length === 6 ? true : undefined), 2000, 'six 200s');
      expect([...answered].sort((a, b) => a - b)).toEqual([1, 2, 3, 4, 5, 6]);
    } finally {
      udp.close(); // the app stays connected: stack.stop() disconnects every app
    }
  });

  it('a second app can connect; a wrong secret is refused with NO and the connection closed', async () => {
    const other = await stack.connectApp();
    expect(other).toBeTruthy();
    const reply = await new Promise<string>((resolve, reject) => {
      const sock = net.connect(stack.addresses.admin.port, '127.0.0.1');
      const dec = new FrameDecoder();
      let got = '';
      sock.on('connect', () => sock.write(encodeFrame('11111111-2222-3333-4444-555555555555|authenticate|wrong|')));
      sock.on('data', (d) => { got += dec.push(d).join('\n'); });
      sock.on('close', () => resolve(got));
      sock.on('error', reject);
    });
    expect(reply).toMatch(/\|response\|11111111-2222-3333-4444-555555555555\|NO\|incorrect secret/);
  });
});
