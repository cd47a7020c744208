/**
 * The edge on its own thread (src/edge-thread.ts), as `dialcore start` runs it: a drachtio-srf app on the main
 * thread reaches it only through the drachtio protocol port, and SIP over UDP and TCP goes through it end to end.
 * Also: a listener that can't bind fails the start with the edge's own error, and stop() frees the ports.
 */
import dgram from 'node:dgram';
import net from 'node:net';
import { threadId } from 'node:worker_threads';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freePort } from '../harness/index.js';
import { waitFor } from '../fixtures/stack.js';
import { startEdgeThread, isEdgeThread, runEdgeThread, type EdgeThread } from '../../src/edge-thread.js';
import { connectSrf, createSrf, sendFinalResponse, type Srf } from '../../src/app/sip/srf.js';

const HOST = '127.0.0.1';
const SECRET = 'edge-thread-secret';

function options(sipPort: number): string {
  return [
    `OPTIONS sip:probe@${HOST}:${sipPort} SIP/2.0`,
    `Via: SIP/2.0/UDP ${HOST}:9;branch=z9hG4bK-thread-${Math.random().toString(36).slice(2)};rport`,
    'Max-Forwards: 70',
    `From: <sip:tester@${HOST}>;tag=t1`,
    `To: <sip:probe@${HOST}>`,
    `Call-ID: thread-${Math.random().toString(36).slice(2)}`,
    'CSeq: 1 OPTIONS',
    'Content-Length: 0',
    '', '',
  ].join('\r\n');
}

/** Sends one datagram from a fresh socket and resolves with the first answer (or '' after timeoutMs). */
async function udpExchange(port: number, text: string, timeoutMs = 3000): Promise<string> {
  const socket = dgram.createSocket('udp4');
  await new Promise<void>((resolve) => socket.bind(0, HOST, () => resolve()));
  try {
    return await new Promise<string>((resolve) => {
      const timer = setTimeout(() => resolve(''), timeoutMs);
      socket.once('message', (msg) => {
        clearTimeout(timer);
        resolve(msg.toString('latin1'));
      });
      socket.send(text.replace(`${HOST}:9;`, `${HOST}:${(socket.address()).port};`), port, HOST);
    });
  } finally {
    socket.close();
  }
}

async function tcpExchange(port: number, text: string): Promise<string> {
  return new Promise<string>((resolve, reject) => {
    const socket = net.connect(port, HOST);
    let got = '';
    const timer = setTimeout(() => {
      socket.destroy();
      resolve(got);
    }, 3000);
    socket.on('connect', () => socket.write(text.replace('SIP/2.0/UDP', 'SIP/2.0/TCP')));
    socket.on('data', (chunk) => {
      got += chunk.toString('latin1');
      if (/\r\n\r\n/.test(got)) {
        clearTimeout(timer);
        socket.destroy();
        resolve(got);
      }
    });
    socket.on('error', reject);
  });
}

describe('edge on its own thread', () => {
  let edge: EdgeThread;
  let app: Srf;
  let sipPort = 0;
  const answeredOnThread: number[] = [];

  beforeAll(async () => {
    sipPort = await freePort();
    edge = await startEdgeThread({
      sip: [{ protocol: 'udp', host: HOST, port: sipPort }, { protocol: 'tcp', host: HOST, port: sipPort }],
      admin: { host: HOST, port: 0 },
      secret: SECRET,
      logLevel: 'silent',
    }, { onFailure: (err) => { throw err; } });
    app = createSrf();
    app.options((req, res) => {
      answeredOnThread.push(threadId);
      sendFinalResponse(res, 200, 'OK', { 'X-Answered-By': 'srf-app' });
    });
    await connectSrf(app, { host: HOST, port: edge.addresses.admin.port, secret: SECRET });
  });
  afterAll(async () => {
    app?.disconnect();
    await edge?.stop();
  });

  it('reports where it listens: the SIP listeners as bound and the drachtio port chosen', () => {
    expect(edge.addresses.sip).toEqual(expect.arrayContaining([
      expect.objectContaining({ protocol: 'udp', host: HOST, port: sipPort }),
      expect.objectContaining({ protocol: 'tcp', host: HOST, port: sipPort }),
    ]));
    expect(edge.addresses.admin.port).toBeGreaterThan(0);
    expect(isEdgeThread()).toBe(false);
    expect(() => runEdgeThread()).toThrow(/not an edge thread/);
  });

  it('an OPTIONS over UDP and over TCP reaches the srf app on the main thread and its answer comes back', async () => {
    const overUdp = await udpExchange(sipPort, options(sipPort));
    expect(overUdp).toMatch(/^SIP\/2\.0 200 OK\r\n/);
    expect(overUdp).toMatch(/^X-Answered-By: srf-app\r$/m);
    const overTcp = await tcpExchange(sipPort, options(sipPort));
    expect(overTcp).toMatch(/^SIP\/2\.0 200 OK\r\n/);
    expect(overTcp).toMatch(/^Via: SIP\/2\.0\/TCP /m);
    expect(answeredOnThread).toEqual([threadId, threadId]);
  });

  it('stats() come from the thread: the connected app and the UDP transaction waiting out timer J', async () => {
    const stats = await edge.stats();
    expect(stats.apps).toBe(1);
    expect(stats.serverTransactions).toBeGreaterThanOrEqual(1);
    expect(await edge.collectGarbage()).toBeGreaterThan(1_000_000);
  });

  it('a listener that cannot bind fails the start with the edge\'s own error', async () => {
    const started = Date.now();
    await expect(startEdgeThread({
      sip: [{ protocol: 'tcp', host: HOST, port: sipPort }],
      admin: { host: HOST, port: 0 },
      secret: SECRET,
      logLevel: 'silent',
    }, { onFailure: () => undefined })).rejects.toThrow(/EADDRINUSE/);
    expect(Date.now() - started).toBeLessThan(10_000);
  });

  it('an uncaught exception in the edge thread reaches onFailure: the process must not run on without its edge', async () => {
    const failures: Error[] = [];
    const crashing = await startEdgeThread({
      sip: [{ protocol: 'udp', host: HOST, port: await freePort() }],
      admin: { host: HOST, port: 0 },
      secret: SECRET,
      logLevel: 'silent',
    }, { entry: new URL('../fixtures/crashing-edge-thread.ts', import.meta.url), onFailure: (err) => failures.push(err) });
    expect(crashing.addresses.admin.port).toBeGreaterThan(0);
    await waitFor(() => failures.length > 0 || undefined, 5000, 'onFailure');
    expect(failures.map((err) => err.message)).toEqual(['edge defect (test)']);
    await expect(crashing.stats()).rejects.toThrow(/has exited/);
    await crashing.stop();
  });

  it('stop() closes the SIP listeners and the drachtio port', async () => {
    const other = await startEdgeThread({
      sip: [{ protocol: 'udp', host: HOST, port: await freePort() }, { protocol: 'tcp', host: HOST, port: 0 }],
      admin: { host: HOST, port: 0 },
      secret: SECRET,
      logLevel: 'silent',
    }, { onFailure: (err) => { throw err; } });
    const { admin, sip } = other.addresses;
    await other.stop();
    const udp = sip.find((l) => l.protocol === 'udp')!;
    const rebound = dgram.createSocket('udp4');
    await new Promise<void>((resolve, reject) => {
      rebound.once('error', reject);
      rebound.bind(udp.port, HOST, () => resolve());
    });
    rebound.close();
    await expect(new Promise((resolve, reject) => {
      const socket = net.connect(admin.port, HOST, () => resolve(socket.destroy()));
      socket.once('error', reject);
    })).rejects.toThrow(/ECONNREFUSED/);
  });
});
