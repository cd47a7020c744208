import { describe, it, expect, afterEach } from 'vitest';
import net from 'node:net';
import { WebSocket } from 'ws';
import { TransportLayer, type TransportLimits, type TransportProtocol } from './index.js';
import { sipRequest, nextMessages, waitFor, selfSignedCert } from './test-support.js';

let running: TransportLayer[] = [];
afterEach(async () => {
  await Promise.all(running.map((tl) => tl.stop()));
  running = [];
});

async function start(limits: Partial<TransportLimits>, protocol: TransportProtocol = 'tcp', tlsOptions?: { cert: string; key: string }): Promise<{ tl: TransportLayer; port: number }> {
  const tl = new TransportLayer({ listen: [{ protocol, host: '127.0.0.1', port: 0 }], limits, tls: tlsOptions });
  await tl.start();
  running.push(tl);
  return { tl, port: tl.boundListeners()[0].port };
}

/** a client socket whose closing we can observe; never throws */
function open(port: number): { socket: net.Socket; closed: Promise<void>; isClosed: () => boolean; connected: () => boolean } {
  const socket = net.connect({ host: '127.0.0.1', port });
  socket.on('error', () => undefined);
  let done = false;
  let connected = false;
  socket.once('connect', () => { connected = true; });
  const closed = new Promise<void>((resolve) => socket.once('close', () => { done = true; resolve(); }));
  return { socket, closed, isClosed: () => done, connected: () => connected };
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('TransportLayer limits', () => {
  it('caps connections per source IP', async () => {
    const { tl, port } = await start({ maxConnectionsPerIp: 5 });
    const clients = Array.from({ length: 8 }, () => open(port));
    await waitFor(() => clients.filter((c) => c.isClosed()).length === 3, 3000, 'refused connections');
    await sleep(100);
    expect(clients.filter((c) => c.isClosed())).toHaveLength(3);
    expect(tl.flowCount()).toBe(5);
    for (const c of clients) c.socket.destroy();
    await waitFor(() => tl.flowCount() === 0, 3000, 'all flows gone');
    // capacity is given back
    const again = open(port);
    await waitFor(() => tl.flowCount() === 1, 3000, 'new connection accepted');
    again.socket.destroy();
  });

  it('caps the total number of connections', async () => {
    const { tl, port } = await start({ maxConnections: 4 });
    const clients = Array.from({ length: 6 }, () => open(port));
    await waitFor(() => clients.filter((c) => c.isClosed()).length === 2, 3000, 'refused connections');
    expect(tl.flowCount()).toBe(4);
    for (const c of clients) c.socket.destroy();
  });

  it('disconnects a client that sends part of a header and stalls (slowloris), not one that completed its message', async () => {
    const { tl, port } = await start({ incompleteMessageTimeoutMs: 300 });
    const stalled = open(port);
    stalled.socket.write('OPTIONS sip:x@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/TCP 127.0.0.1;branch=z9hG4bK1\r\n');
    const polite = open(port);
    const got = nextMessages(tl, 1);
    polite.socket.write(sipRequest({ transport: 'TCP' }));
    await got;
    const started = Date.now();
    await stalled.closed;
    expect(Date.now() - started).toBeLessThan(3000);
    await sleep(500);
    expect(polite.isClosed()).toBe(false);
    polite.socket.destroy();
  });

  it('closes idle connections', async () => {
    const { tl, port } = await start({ idleConnectionTimeoutMs: 300 });
    const client = open(port);
    const got = nextMessages(tl, 1);
    client.socket.write(sipRequest({ transport: 'TCP' }));
    await got;
    await client.closed;
    await waitFor(() => tl.flowCount() === 0, 3000, 'server side closed');
  });

  it('closes a TLS connection that never completes its handshake', async () => {
    const { cert, key } = selfSignedCert();
    const { port } = await start({ incompleteMessageTimeoutMs: 300 }, 'tls', { cert, key });
    const silent = open(port);
    const started = Date.now();
    await silent.closed;
    expect(Date.now() - started).toBeLessThan(3000);
  });

  it('applies the caps and handshake timeouts to TLS and WebSocket listeners too', async () => {
    const { cert, key } = selfSignedCert();
    for (const protocol of ['tls', 'ws', 'wss'] as const) {
      const { port } = await start({ maxConnectionsPerIp: 2, incompleteMessageTimeoutMs: 300 }, protocol, { cert, key });
      const clients = Array.from({ length: 4 }, () => open(port));
      await waitFor(() => clients.filter((c) => c.isClosed()).length >= 2, 3000, `${protocol} refusals`);
      // the two admitted ones never handshake and are dropped by the timeout
      const started = Date.now();
      await Promise.all(clients.map((c) => c.closed));
      expect(Date.now() - started).toBeLessThan(3000);
    }
  });

  it('closes a WebSocket that never sends a SIP message within the idle timeout, even though it answers pings', async () => {
    const { tl, port } = await start({ idleConnectionTimeoutMs: 400, wsPingIntervalMs: 100 }, 'ws');
    const ws = new WebSocket(`ws://127.0.0.1:${port}`, ['sip']);
    await new Promise<void>((resolve, reject) => { ws.once('open', () => resolve()); ws.once('error', reject); });
    await waitFor(() => tl.flowCount('ws') === 1, 3000, 'ws flow');
    await new Promise<void>((resolve) => ws.once('close', () => resolve()));
    await waitFor(() => tl.flowCount('ws') === 0, 3000, 'ws flow removed');
  });

  it('survives 2000 half-open connections, cleans them up, and keeps serving', async () => {
    const { tl, port } = await start({ incompleteMessageTimeoutMs: 1000, maxConnectionsPerIp: 5000 });
    let closedFlows = 0;
    tl.on('flow-closed', () => closedFlows++);
    const clients: Array<ReturnType<typeof open>> = [];
    for (let i = 0; i < 2000; i++) {
      const client = open(port);
      // half of them start a message and never finish it, the other half say nothing at all
      if (i % 2 === 0) client.socket.write('INVITE sip:x@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/TCP 127.0.0.1');
      clients.push(client);
      if (i % 200 === 199) await sleep(10);
    }
    await Promise.all(clients.map((c) => c.closed));
    // every connection was accepted (no cap hit) and then closed by the server's timeout
    const connected = clients.filter((c) => c.connected()).length;
    expect(connected).toBeGreaterThan(1900);
    await waitFor(() => closedFlows === connected && tl.flowCount() === 0, 10000, 'server side cleaned up');
    const client = open(port);
    const got = nextMessages(tl, 1);
    client.socket.write(sipRequest({ transport: 'TCP', callId: 'after-flood' }));
    expect((await got)[0].message.callId).toBe('after-flood');
    client.socket.destroy();
  }, 60000);

  it('destroys a slow reader whose write queue overflows', async () => {
    const { tl, port } = await start({ maxWriteQueueBytes: 256 * 1024 });
    const reader = open(port);
    reader.socket.pause();   // never reads: kernel buffers fill, then our queue
    const got = nextMessages(tl, 1);
    reader.socket.write(sipRequest({ transport: 'TCP' }));
    const [inbound] = await got;
    const chunk = Buffer.alloc(64 * 1024, 0x41);
    const outcomes: Array<Promise<unknown>> = [];
    for (let i = 0; i < 1000 && tl.getFlow(inbound.flow.id); i++) {
      outcomes.push(tl.send(chunk, { protocol: 'tcp', address: '127.0.0.1', port: 1, flowId: inbound.flow.id }).then(() => 'sent', (e: Error) => e.message));
      if (i % 20 === 19) await sleep(1);
    }
    const settled = await Promise.all(outcomes);
    expect(settled.some((r) => typeof r === 'string' && /write queue/.test(r))).toBe(true);
    // the paused client never reads up to the FIN; the server side must be gone
    await waitFor(() => tl.getFlow(inbound.flow.id) === undefined && tl.flowCount() === 0, 3000, 'slow reader dropped');
    reader.socket.destroy();
  });

  it('pings WebSocket peers and closes those that stop answering', async () => {
    const { tl, port } = await start({ wsPingIntervalMs: 150 }, 'ws');
    const connect = (autoPong: boolean): Promise<WebSocket> => new Promise((resolve, reject) => {
      const ws = new WebSocket(`ws://127.0.0.1:${port}`, ['sip'], { autoPong });
      ws.once('open', () => resolve(ws));
      ws.once('error', reject);
    });
    const live = await connect(true);
    const dead = await connect(false);
    let pings = 0;
    dead.on('ping', () => pings++);
    await new Promise<void>((resolve) => dead.once('close', () => resolve()));
    expect(pings).toBeGreaterThan(0);
    await sleep(400);
    expect(live.readyState).toBe(WebSocket.OPEN);
    expect(tl.flowCount('ws')).toBe(1);
    live.close();
  });
});
