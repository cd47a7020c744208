import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import dgram from 'node:dgram';
import net from 'node:net';
import tls from 'node:tls';
import { WebSocket } from 'ws';
import { TransportLayer } from './index.js';
import type { Flow, MalformedInbound, ListenSpec } from './index.js';
import { sipRequest, sipResponse, nextMessages, waitFor, selfSignedCert } from './test-support.js';

function portOf(tl: TransportLayer, protocol: ListenSpec['protocol'], host = '127.0.0.1'): number {
  const spec = tl.boundListeners().find((l) => l.protocol === protocol && l.host === host);
  if (!spec) throw new Error(`no ${protocol} listener on ${host}`);
  return spec.port;
}

function udpClient(family: 4 | 6 = 4): Promise<dgram.Socket> {
  const socket = dgram.createSocket(family === 6 ? 'udp6' : 'udp4');
  return new Promise((resolve) => socket.bind(0, family === 6 ? '::1' : '127.0.0.1', () => resolve(socket)));
}

function nextDatagram(socket: dgram.Socket): Promise<Buffer> {
  return new Promise((resolve) => socket.once('message', (buf) => resolve(buf)));
}

function connectTcp(port: number): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const socket = net.connect({ host: '127.0.0.1', port }, () => resolve(socket));
    socket.once('error', reject);
  });
}

/** collects everything a stream client receives */
function collect(socket: net.Socket): { text: () => string } {
  const chunks: Buffer[] = [];
  socket.on('data', (c: Buffer) => chunks.push(c));
  return { text: () => Buffer.concat(chunks).toString('utf8') };
}

const closed = (socket: net.Socket | tls.TLSSocket): Promise<void> =>
  new Promise((resolve) => (socket.destroyed ? resolve() : socket.once('close', () => resolve())));

describe('TransportLayer: UDP', () => {
  const tl = new TransportLayer({ listen: [{ protocol: 'udp', host: '127.0.0.1', port: 0 }, { protocol: 'udp', host: '::1', port: 0 }], limits: { maxMessageBytes: 2000 } });
  beforeAll(() => tl.start());
  afterAll(() => tl.stop());

  it('reports the ports bound', () => {
    const bound = tl.boundListeners();
    expect(bound).toHaveLength(2);
    for (const l of bound) expect(l.port).toBeGreaterThan(0);
  });

  it('receives a request, stamps received/rport (RFC 3581) and sends the response back', async () => {
    const client = await udpClient();
    const clientPort = client.address().port;
    const request = sipRequest({ viaHost: '192.0.2.1:5060', rport: true });
    const got = nextMessages(tl, 1);
    client.send(request, portOf(tl, 'udp'), '127.0.0.1');
    const [inbound] = await got;
    expect(inbound.message.method).toBe('OPTIONS');
    expect(inbound.raw.equals(request)).toBe(true);
    expect(inbound.message.get('Via')).toMatch(new RegExp(`;received=127\\.0\\.0\\.1`));
    expect(inbound.message.get('Via')).toMatch(new RegExp(`;rport=${clientPort}(;|$)`));
    expect(inbound.flow).toMatchObject({ protocol: 'udp', remoteAddress: '127.0.0.1', remotePort: clientPort, localPort: portOf(tl, 'udp') });
    expect(inbound.flow.id).toBe(`udp:127.0.0.1:${portOf(tl, 'udp')}:127.0.0.1:${clientPort}`);

    const reply = nextDatagram(client);
    const sent = await tl.send(sipResponse(), { protocol: 'udp', address: '127.0.0.1', port: clientPort, flowId: inbound.flow.id });
    expect((await reply).toString()).toContain('SIP/2.0 200 OK');
    expect(sent.flow.localPort).toBe(portOf(tl, 'udp'));
    expect(tl.getFlow(inbound.flow.id)).toMatchObject({ remotePort: clientPort });
    client.close();
  });

  it('does not add received when the Via host is the source, nor rport when not asked', async () => {
    const client = await udpClient();
    const got = nextMessages(tl, 1);
    client.send(sipRequest({ viaHost: '127.0.0.1:5099' }), portOf(tl, 'udp'), '127.0.0.1');
    const [inbound] = await got;
    expect(inbound.message.get('Via')).not.toContain('received=');
    expect(inbound.message.get('Via')).not.toContain('rport');
    client.close();
  });

  it('sends from the IPv6 listener to an IPv6 peer', async () => {
    const client = await udpClient(6);
    const reply = nextDatagram(client);
    const sent = await tl.send(sipRequest(), { protocol: 'udp', address: '::1', port: client.address().port });
    expect((await reply).toString()).toContain('OPTIONS sip:service@127.0.0.1');
    expect(sent.flow.localAddress).toBe('::1');
    expect(sent.flow.localPort).toBe(portOf(tl, 'udp', '::1'));
    client.close();
  });

  it('drops oversize datagrams and keep-alives, reports malformed requests', async () => {
    const client = await udpClient();
    const malformed: MalformedInbound[] = [];
    tl.on('malformed', (m) => malformed.push(m));
    const got = nextMessages(tl, 1);
    client.send(sipRequest({ body: 'x'.repeat(3000), callId: 'too-big' }), portOf(tl, 'udp'), '127.0.0.1');
    client.send(Buffer.from('\r\n\r\n'), portOf(tl, 'udp'), '127.0.0.1');
    const bad = sipRequest({ callId: 'bad-cseq' }).toString().replace('CSeq: 1 OPTIONS', 'CSeq: one OPTIONS');
    client.send(Buffer.from(bad), portOf(tl, 'udp'), '127.0.0.1');
    await waitFor(() => malformed.length === 1, 3000, 'malformed event');
    client.send(sipRequest({ callId: 'small' }), portOf(tl, 'udp'), '127.0.0.1');
    const [inbound] = await got;
    expect(inbound.message.callId).toBe('small');
    expect(malformed[0].status).toBe(400);
    expect(malformed[0].message.callId).toBe('bad-cseq');
    client.close();
  });

  it('rejects sends it cannot route', async () => {
    await expect(tl.send(sipRequest(), { protocol: 'udp', address: 'example.com', port: 5060 })).rejects.toThrow(/not an IP/);
    await expect(tl.send(sipRequest(), { protocol: 'ws', address: '127.0.0.1', port: 5060 })).rejects.toThrow(/no open ws flow/);
  });
});

describe('TransportLayer: dual-stack UDP', () => {
  it('a "::" listener talks to IPv4 peers with normalised addresses', async () => {
    const tl = new TransportLayer({ listen: [{ protocol: 'udp', host: '::', port: 0 }] });
    await tl.start();
    try {
      const client = await udpClient(4);
      const got = nextMessages(tl, 1);
      client.send(sipRequest({ viaHost: '127.0.0.1:5099', rport: true }), tl.boundListeners()[0].port, '127.0.0.1');
      const [inbound] = await got;
      expect(inbound.flow.remoteAddress).toBe('127.0.0.1');
      const reply = nextDatagram(client);
      await tl.send(sipResponse(), { protocol: 'udp', address: '127.0.0.1', port: client.address().port, flowId: inbound.flow.id });
      expect((await reply).toString()).toContain('200 OK');
      client.close();
    } finally {
      await tl.stop();
    }
  });
});

describe('TransportLayer: TCP', () => {
  const tl = new TransportLayer({ listen: [{ protocol: 'tcp', host: '127.0.0.1', port: 0 }] });
  const closedFlows: Flow[] = [];
  beforeAll(async () => {
    await tl.start();
    tl.on('flow-closed', (f) => closedFlows.push(f));
  });
  afterAll(() => tl.stop());

  it('frames a message sent one byte at a time and several messages in one chunk', async () => {
    const client = await connectTcp(portOf(tl, 'tcp'));
    const one = sipRequest({ transport: 'TCP', callId: 'byte-by-byte', body: 'hello' });
    let got = nextMessages(tl, 1);
    for (const byte of one) {
      client.write(Buffer.from([byte]));
      await new Promise((r) => setImmediate(r));
    }
    const [first] = await got;
    expect(first.message.callId).toBe('byte-by-byte');
    expect(first.message.body.toString()).toBe('hello');

    got = nextMessages(tl, 3);
    client.write(Buffer.concat([sipRequest({ transport: 'TCP', callId: 'm1' }), sipRequest({ transport: 'TCP', callId: 'm2', body: 'b' }), sipRequest({ transport: 'TCP', callId: 'm3' })]));
    const three = await got;
    expect(three.map((m) => m.message.callId)).toEqual(['m1', 'm2', 'm3']);
    expect(new Set(three.map((m) => m.flow.id)).size).toBe(1);
    client.destroy();
  });

  it('always stamps rport on stream transports and answers over the same connection', async () => {
    const client = await connectTcp(portOf(tl, 'tcp'));
    const received = collect(client);
    const got = nextMessages(tl, 1);
    client.write(sipRequest({ transport: 'TCP', viaHost: '127.0.0.1' }));
    const [inbound] = await got;
    expect(inbound.message.get('Via')).toMatch(new RegExp(`;rport=${client.localPort}$`));
    expect(inbound.message.get('Via')).not.toContain('received=');
    expect(inbound.flow.protocol).toBe('tcp');

    await tl.send(sipResponse('by-flow'), { protocol: 'tcp', address: '127.0.0.1', port: 1, flowId: inbound.flow.id });
    // RFC 3261 18.2.2: without a flow id, the connection from that ip:port is reused too
    const sent = await tl.send(sipResponse('by-address'), { protocol: 'tcp', address: '127.0.0.1', port: client.localPort! });
    expect(sent.flow.id).toBe(inbound.flow.id);
    await waitFor(() => received.text().includes('by-address'), 3000, 'responses');
    expect(received.text()).toContain('Call-ID: by-flow');
    expect(tl.flowCount('tcp')).toBe(1);
    client.destroy();
    await waitFor(() => closedFlows.some((f) => f.id === inbound.flow.id), 3000, 'flow-closed');
    expect(tl.getFlow(inbound.flow.id)).toBeUndefined();
  });

  it('answers a CRLFCRLF keep-alive with CRLF (RFC 5626 4.4.1)', async () => {
    const client = await connectTcp(portOf(tl, 'tcp'));
    const pong = new Promise<Buffer>((resolve, reject) => {
      client.once('data', resolve);
      setTimeout(() => reject(new Error('no pong')), 3000);
    });
    client.write('\r\n\r\n');
    expect((await pong).toString()).toBe('\r\n');
    client.destroy();
  });

  it('closes a connection that sends garbage and keeps serving others', async () => {
    const good = await connectTcp(portOf(tl, 'tcp'));
    const bad = await connectTcp(portOf(tl, 'tcp'));
    bad.on('error', () => undefined);
    const random = Buffer.alloc(200000);
    for (let i = 0; i < random.length; i++) random[i] = (i * 7919 + 13) % 251;
    bad.write(random);
    await closed(bad);
    const got = nextMessages(tl, 1);
    good.write(sipRequest({ transport: 'TCP', callId: 'still-served' }));
    expect((await got)[0].message.callId).toBe('still-served');
    good.destroy();
  });

  it('dials out, reuses the connection, and closeFlow closes it', async () => {
    const peerReceived: Buffer[] = [];
    let peerConnections = 0;
    const peer = net.createServer((socket) => { peerConnections++; socket.on('data', (c) => peerReceived.push(c)); });
    await new Promise<void>((r) => peer.listen(0, '127.0.0.1', r));
    const port = (peer.address() as net.AddressInfo).port;
    const [a, b] = await Promise.all([
      tl.send(sipRequest({ callId: 'out-1' }), { protocol: 'tcp', address: '127.0.0.1', port }),
      tl.send(sipRequest({ callId: 'out-2' }), { protocol: 'tcp', address: '127.0.0.1', port }),
    ]);
    expect(a.flow.id).toBe(b.flow.id);
    expect(a.flow.outbound).toBe(true);
    expect(a.flow.listener?.protocol).toBe('tcp');
    await waitFor(() => Buffer.concat(peerReceived).toString().includes('out-2'), 3000, 'peer data');
    expect(peerConnections).toBe(1);
    expect(tl.closeFlow(a.flow.id)).toBe(true);
    await waitFor(() => tl.getFlow(a.flow.id) === undefined, 3000, 'flow gone');
    peer.close();
  });

  it('rejects when the peer refuses the connection', async () => {
    const probe = net.createServer();
    await new Promise<void>((r) => probe.listen(0, '127.0.0.1', r));
    const port = (probe.address() as net.AddressInfo).port;
    await new Promise<void>((r) => probe.close(() => r()));
    await expect(tl.send(sipRequest(), { protocol: 'tcp', address: '127.0.0.1', port })).rejects.toThrow(/connect/);
  });
});

describe('TransportLayer: TLS', () => {
  const { cert, key } = selfSignedCert();
  const server = new TransportLayer({ listen: [{ protocol: 'tls', host: '127.0.0.1', port: 0 }], tls: { cert, key } });
  const dialer = new TransportLayer({ listen: [{ protocol: 'tls', host: '127.0.0.1', port: 0 }], tls: { cert, key, ca: cert } });
  beforeAll(async () => { await server.start(); await dialer.start(); });
  afterAll(async () => { await server.stop(); await dialer.stop(); });

  it('accepts TLS clients and answers over the same connection', async () => {
    const client = tls.connect({ host: '127.0.0.1', port: portOf(server, 'tls'), ca: cert });
    await new Promise<void>((r) => client.once('secureConnect', () => r()));
    const data = new Promise<Buffer>((resolve) => client.once('data', resolve));
    const got = nextMessages(server, 1);
    client.write(sipRequest({ transport: 'TLS', callId: 'over-tls' }));
    const [inbound] = await got;
    expect(inbound.flow.protocol).toBe('tls');
    expect(inbound.message.get('Via')).toContain(`rport=${client.localPort}`);
    await server.send(sipResponse('tls-reply'), { protocol: 'tls', address: '127.0.0.1', port: 0, flowId: inbound.flow.id });
    expect((await data).toString()).toContain('Call-ID: tls-reply');
    client.destroy();
  });

  it('dials TLS with certificate verification', async () => {
    const got = nextMessages(server, 1);
    const sent = await dialer.send(sipRequest({ transport: 'TLS', callId: 'tls-out' }), { protocol: 'tls', address: '127.0.0.1', port: portOf(server, 'tls') });
    expect(sent.flow.protocol).toBe('tls');
    expect((await got)[0].message.callId).toBe('tls-out');
    // the server does not trust an unknown CA: the dialer without `ca` fails verification
    const untrusting = new TransportLayer({ listen: [], tls: { cert, key } });
    await untrusting.start();
    await expect(untrusting.send(sipRequest(), { protocol: 'tls', address: '127.0.0.1', port: portOf(server, 'tls') })).rejects.toThrow(/certificate/i);
    await untrusting.stop();
  });
});

describe('TransportLayer: WebSocket (RFC 7118)', () => {
  const { cert, key } = selfSignedCert();
  const tl = new TransportLayer({ listen: [{ protocol: 'ws', host: '127.0.0.1', port: 0 }, { protocol: 'wss', host: '127.0.0.1', port: 0 }], tls: { cert, key }, limits: { wsMaxPayloadBytes: 4096 } });
  beforeAll(() => tl.start());
  afterAll(() => tl.stop());

  function openWs(url: string, protocols: string[] | undefined): Promise<WebSocket> {
    const ws = new WebSocket(url, protocols, { ca: cert });
    return new Promise((resolve, reject) => {
      ws.once('open', () => resolve(ws));
      ws.once('unexpected-response', (_req, res) => reject(new Error(`HTTP ${res.statusCode}`)));
      ws.once('error', reject);
    });
  }

  it('refuses handshakes without the sip subprotocol', async () => {
    await expect(openWs(`ws://127.0.0.1:${portOf(tl, 'ws')}`, undefined)).rejects.toThrow(/400/);
    await expect(openWs(`ws://127.0.0.1:${portOf(tl, 'ws')}`, ['chat'])).rejects.toThrow(/400/);
  });

  it('carries one SIP message per WS message and routes the reply back over the flow', async () => {
    const ws = await openWs(`ws://127.0.0.1:${portOf(tl, 'ws')}`, ['sip']);
    expect(ws.protocol).toBe('sip');
    const got = nextMessages(tl, 2);
    ws.send(sipRequest({ transport: 'WS', viaHost: 'df7jal23ls0d.invalid', callId: 'ws-text' }).toString());
    ws.send(sipRequest({ transport: 'WS', viaHost: 'df7jal23ls0d.invalid', callId: 'ws-binary' }), { binary: true });
    const [text, binary] = await got;
    expect([text.message.callId, binary.message.callId]).toEqual(['ws-text', 'ws-binary']);
    expect(text.flow.protocol).toBe('ws');
    expect(text.flow.id).toBe(binary.flow.id);
    expect(text.message.get('Via')).toMatch(/;received=127\.0\.0\.1;rport=\d+$/);

    const reply = new Promise<string>((resolve) => ws.once('message', (d) => resolve(d.toString())));
    await tl.send(sipRequest({ method: 'MESSAGE', callId: 'to-ws-client' }), { protocol: 'ws', address: '192.0.2.1', port: 1, flowId: text.flow.id });
    expect(await reply).toContain('Call-ID: to-ws-client');

    const gone = new Promise<number>((resolve) => ws.once('close', (code) => resolve(code)));
    expect(tl.closeFlow(text.flow.id)).toBe(true);
    await gone;
    await waitFor(() => tl.flowCount('ws') === 0, 3000, 'ws flow removal');
    await expect(tl.send(sipRequest(), { protocol: 'ws', address: '127.0.0.1', port: 1, flowId: text.flow.id })).rejects.toThrow();
  });

  it('closes a peer that exceeds the maximum payload', async () => {
    const ws = await openWs(`ws://127.0.0.1:${portOf(tl, 'ws')}`, ['sip']);
    const gone = new Promise<number>((resolve) => ws.once('close', (code) => resolve(code)));
    ws.send(sipRequest({ body: 'x'.repeat(10000) }));
    expect(await gone).toBe(1009);
  });

  it('WSS works with the TLS certificate', async () => {
    const ws = await openWs(`wss://127.0.0.1:${portOf(tl, 'wss')}`, ['sip']);
    const got = nextMessages(tl, 1);
    ws.send(sipRequest({ transport: 'WSS', callId: 'over-wss' }).toString());
    const [inbound] = await got;
    expect(inbound.flow.protocol).toBe('wss');
    ws.close();
  });
});

describe('TransportLayer: start', () => {
  it('names the listen spec that failed', async () => {
    const first = new TransportLayer({ listen: [{ protocol: 'tcp', host: '127.0.0.1', port: 0 }] });
    await first.start();
    const port = first.boundListeners()[0].port;
    const second = new TransportLayer({ listen: [{ protocol: 'udp', host: '127.0.0.1', port: 0 }, { protocol: 'tcp', host: '127.0.0.1', port }] });
    await expect(second.start()).rejects.toThrow(`cannot listen on tcp:127.0.0.1:${port}`);
    await first.stop();
    const noCert = new TransportLayer({ listen: [{ protocol: 'tls', host: '127.0.0.1', port: 0 }] });
    await expect(noCert.start()).rejects.toThrow(/tls cert/);
  });
});
