/**
 * The transaction layer over the real TransportLayer and parser on 127.0.0.1 (UDP and TCP): a UAC side and a UAS
 * side, each a TransportLayer + TransactionLayer, plus a raw UDP socket playing a peer that misbehaves on purpose.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import dgram from 'node:dgram';
import { readFileSync } from 'node:fs';
import { TransportLayer } from '../transport/index.js';
import type { InboundMessage, SendTarget } from '../transport/index.js';
import { SipMessage, parseMessage } from '../message/index.js';
import { TransactionLayer, buildResponse, generateBranch, type ServerTransaction } from './index.js';
import { RFC4475_DIR } from '../../../sip-tests/fixtures/shared.js';

const T1 = 20;   // short timers keep the retransmission scenarios quick; the schedule itself is unit-tested

interface Side {
  transport: TransportLayer;
  txl: TransactionLayer;
  udpPort: number;
  tcpPort: number;
}

async function startSide(): Promise<Side> {
  const transport = new TransportLayer({ listen: [{ protocol: 'udp', host: '127.0.0.1', port: 0 }, { protocol: 'tcp', host: '127.0.0.1', port: 0 }] });
  await transport.start();
  const bound = transport.boundListeners();
  const txl = new TransactionLayer(transport, { T1, T2: 80, T4: 100, timerD: 100 });
  return {
    transport, txl,
    udpPort: bound.find((l) => l.protocol === 'udp')?.port ?? 0,
    tcpPort: bound.find((l) => l.protocol === 'tcp')?.port ?? 0,
  };
}

function request(method: string, from: Side, protocol: 'UDP' | 'TCP', callId: string): SipMessage {
  const port = protocol === 'UDP' ? from.udpPort : from.tcpPort;
  const msg = SipMessage.request(method, 'sip:uas@127.0.0.1');
  msg.append('Via', `SIP/2.0/${protocol} 127.0.0.1:${port};branch=${generateBranch()};rport`);
  msg.append('Max-Forwards', '70');
  msg.append('From', '<sip:uac@127.0.0.1>;tag=uac-tag');
  msg.append('To', '<sip:uas@127.0.0.1>');
  msg.append('Call-ID', callId);
  msg.append('CSeq', `1 ${method}`);
  return msg;
}

function waitFor(predicate: () => boolean, what: string, timeoutMs = 3000): Promise<void> {
  return new Promise((resolve, reject) => {
    const until = Date.now() + timeoutMs;
    const poll = (): void => {
      if (predicate()) resolve();
      else if (Date.now() > until) reject(new Error(`timed out waiting for ${what}`));
      else setTimeout(poll, 5);
    };
    poll();
  });
}

describe('transaction layer over real UDP/TCP on 127.0.0.1', () => {
  let uac: Side;
  let uas: Side;
  const serverRequests = new Map<string, { req: InboundMessage; stx: ServerTransaction }>();
  const uasAcks: InboundMessage[] = [];
  /** what the UAS TU does with an INVITE, by Call-ID */
  const behaviour = new Map<string, (req: InboundMessage, stx: ServerTransaction) => void>();

  beforeAll(async () => {
    uac = await startSide();
    uas = await startSide();
    uas.txl.on('request', (req, stx) => {
      const callId = req.message.callId ?? '';
      serverRequests.set(`${callId} ${req.message.method}`, { req, stx });
      behaviour.get(callId)?.(req, stx);
    });
    uas.txl.on('ack', (ack) => uasAcks.push(ack));
  });
  afterAll(async () => {
    uac.txl.stop();
    uas.txl.stop();
    await uac.transport.stop();
    await uas.transport.stop();
  });

  const uasTarget = (protocol: 'udp' | 'tcp'): SendTarget => ({ protocol, address: '127.0.0.1', port: protocol === 'udp' ? uas.udpPort : uas.tcpPort });

  it('OPTIONS over UDP: 200 reaches the client transaction once', async () => {
    behaviour.set('opt-1', (req, stx) => void stx.respond(buildResponse(req.message, 200, undefined, { toTag: 'o' })));
    const ctx = uac.txl.sendRequest(request('OPTIONS', uac, 'UDP', 'opt-1'), uasTarget('udp'));
    const statuses: number[] = [];
    ctx.on('response', (r) => statuses.push(r.message.status ?? 0));
    await waitFor(() => ctx.state === 'terminated', 'timer K');
    expect(statuses).toEqual([200]);
    expect((await ctx.sent).flow.protocol).toBe('udp');
  });

  it('INVITE over UDP rejected 486: 100/180/486 passed up, the generated ACK confirms the server transaction', async () => {
    behaviour.set('inv-486', (req, stx) => {
      void stx.respond(buildResponse(req.message, 180, undefined, { toTag: 'busy' }));
      setTimeout(() => void stx.respond(buildResponse(req.message, 486, undefined, { toTag: 'busy' })), 30);
    });
    const ctx = uac.txl.sendRequest(request('INVITE', uac, 'UDP', 'inv-486'), uasTarget('udp'));
    const statuses: number[] = [];
    ctx.on('response', (r) => statuses.push(r.message.status ?? 0));
    await waitFor(() => serverRequests.get('inv-486 INVITE')?.stx.state === 'confirmed', 'ACK at the server');
    expect(statuses).toEqual([100, 180, 486]);
    expect(uasAcks.filter((a) => a.message.callId === 'inv-486')).toHaveLength(0);   // absorbed
    await waitFor(() => ctx.state === 'terminated' && serverRequests.get('inv-486 INVITE')?.stx.state === 'terminated', 'timers D and I');
  });

  it('INVITE over UDP cancelled after 180: CANCEL matched to the INVITE, 200/487 and ACK', async () => {
    behaviour.set('inv-cancel', (req, stx) => {
      if (req.message.method === 'INVITE') void stx.respond(buildResponse(req.message, 180, undefined, { toTag: 'c' }));
      if (req.message.method === 'CANCEL') {
        const target = stx.cancelTarget;
        void stx.respond(buildResponse(req.message, 200, undefined, { toTag: 'c' }));
        if (target !== undefined) void target.respond(buildResponse(target.request.message, 487, undefined, { toTag: 'c' }));
      }
    });
    const ctx = uac.txl.sendRequest(request('INVITE', uac, 'UDP', 'inv-cancel'), uasTarget('udp'));
    const statuses: number[] = [];
    ctx.on('response', (r) => statuses.push(r.message.status ?? 0));
    const cancelCtx = await ctx.cancel();
    expect(cancelCtx?.method).toBe('CANCEL');
    const cancelStatuses: number[] = [];
    cancelCtx?.on('response', (r) => cancelStatuses.push(r.message.status ?? 0));
    await waitFor(() => statuses.includes(487) && cancelStatuses.includes(200), '487 and 200');
    expect(statuses.filter((s) => s >= 180)).toEqual([180, 487]);
    const cancel = serverRequests.get('inv-cancel CANCEL');
    expect(cancel?.stx.cancelTarget).toBe(serverRequests.get('inv-cancel INVITE')?.stx);
    await waitFor(() => serverRequests.get('inv-cancel INVITE')?.stx.state !== 'completed', 'ACK for 487');
  });

  it('INVITE over TCP answered 200 with respond2xxRetransmit: the 2xx ACK (new branch) reaches the server transaction', async () => {
    behaviour.set('inv-200-tcp', (req, stx) => {
      const ok = buildResponse(req.message, 200, undefined, { toTag: 'ok' });
      ok.append('Contact', `<sip:uas@127.0.0.1:${uas.tcpPort};transport=tcp>`);
      void stx.respond2xxRetransmit(ok);
    });
    const invite = request('INVITE', uac, 'TCP', 'inv-200-tcp');
    const ctx = uac.txl.sendRequest(invite, uasTarget('tcp'));
    const oks: InboundMessage[] = [];
    ctx.on('response', (r) => { if (r.message.status === 200) oks.push(r); });
    await waitFor(() => oks.length === 1, '200 OK');
    expect(ctx.state).toBe('accepted');
    const stx = serverRequests.get('inv-200-tcp INVITE')?.stx;
    const acked = new Promise<InboundMessage>((resolve) => stx?.once('ack', resolve));
    // the TU's ACK for the 2xx: new branch, To with the tag, sent on the same connection
    const ack = request('ACK', uac, 'TCP', 'inv-200-tcp');
    ack.set('To', oks[0].message.get('To') ?? '');
    await uac.txl.sendStateless(ack, { ...uasTarget('tcp'), flowId: (await ctx.sent).flow.id });
    const got = await acked;
    expect(got.message.method).toBe('ACK');
    expect(got.flow.protocol).toBe('tcp');
    expect(uasAcks.some((a) => a.message.callId === 'inv-200-tcp')).toBe(true);
  });

  describe('against a raw UDP peer', () => {
    let raw: dgram.Socket;
    const received: SipMessage[] = [];

    beforeAll(async () => {
      raw = dgram.createSocket('udp4');
      raw.on('message', (buf) => {
        const parsed = parseMessage(buf);
        if (parsed.ok) received.push(parsed.message);
      });
      await new Promise<void>((resolve) => raw.bind(0, '127.0.0.1', resolve));
    });
    afterAll(() => new Promise<void>((resolve) => raw.close(() => resolve())));

    const sendRaw = (text: string | Buffer): void => {
      raw.send(typeof text === 'string' ? Buffer.from(text) : text, uas.udpPort, '127.0.0.1');
    };

    it('inv2543.dat (no branch, no From tag): one request, retransmission answered, 486 retransmitted until the ACK', async () => {
      const rawPort = raw.address().port;
      // rport so that responses come back to this socket rather than the Via's port 5060
      const text = readFileSync(`${RFC4475_DIR}inv2543.dat`, 'latin1')
        .replace('Via: SIP/2.0/UDP iftgw.example.com', `Via: SIP/2.0/UDP 127.0.0.1:${rawPort};rport`);
      let uasStx: ServerTransaction | undefined;
      behaviour.set('inv2543.1717@ift.client.example.com', (req, stx) => {
        uasStx = stx;
        void stx.respond(buildResponse(req.message, 486, undefined, { toTag: 'r2543' }));
      });
      sendRaw(text);
      await waitFor(() => received.filter((m) => m.status === 486).length >= 3, 'timer G retransmissions');
      sendRaw(text);   // a retransmitted INVITE in Completed gets the final again, and is not a new request
      expect([...serverRequests.keys()].filter((k) => k.startsWith('inv2543'))).toHaveLength(1);
      expect(received[0].status).toBe(100);
      const final = received.find((m) => m.status === 486);
      expect(final?.toTag).toBe('r2543');
      // RFC 2543 ACK: same Via, To with our tag
      const ack = [
        'ACK sip:UserB@example.com SIP/2.0',
        `Via: SIP/2.0/UDP 127.0.0.1:${rawPort};rport`,
        'From: <sip:+13035551111@ift.client.example.net;user=phone>',
        'To: sip:+16505552222@ss1.example.net;user=phone;tag=r2543',
        'Call-ID: inv2543.1717@ift.client.example.com',
        'CSeq: 56 ACK',
        'Content-Length: 0', '', '',
      ].join('\r\n');
      sendRaw(ack);
      await waitFor(() => uasStx?.state === 'confirmed', 'Confirmed');
      expect(uasAcks.some((a) => a.message.callId === 'inv2543.1717@ift.client.example.com')).toBe(false);
    });

    it('badbranch.dat (branch=z9hG4bK) is handled by RFC 2543 matching', async () => {
      const rawPort = raw.address().port;
      const text = readFileSync(`${RFC4475_DIR}badbranch.dat`, 'latin1')
        .replace('Via: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bK', `Via: SIP/2.0/UDP 127.0.0.1:${rawPort};branch=z9hG4bK;rport`);
      let requestsSeen = 0;
      behaviour.set('badbranch.sadonfo23i420jv0as0derf3j3n', (req, stx) => {
        requestsSeen++;
        void stx.respond(buildResponse(req.message, 200, undefined, { toTag: 'bb' }));
      });
      received.length = 0;
      sendRaw(text);
      sendRaw(text);
      await waitFor(() => received.filter((m) => m.status === 200).length === 2, 'two 200s');
      expect(received.every((m) => m.cseq?.method === 'OPTIONS' && m.toTag === 'bb')).toBe(true);
      expect(requestsSeen).toBe(1);
    });
  });
});
