/**
 * Bad input, issue 2 item 6: thousands of TCP connections opened and left idle (half-open: connected, never a
 * byte). The edge holds them within bounded memory and keeps serving UDP and new TCP clients; with its default
 * per-source-IP cap it refuses the excess from one address without starving other addresses.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import net from 'node:net';
import { startEdgeStack, type EdgeTestStack } from '../fixtures/stack.js';
import { servingStatuses, statusOf, tcpOptions, udpOptions, useEdgeUnderAttack } from './raw-sip.js';

const HALF_OPEN = 3000;
const RSS_GROWTH_BOUND_MIB = 150;

/** Opens `count` idle connections in batches (the listen backlog is 511); failed connects count as refused. */
async function openIdle(port: number, count: number, localAddress = '127.0.0.1'): Promise<{ sockets: net.Socket[]; refused: number }> {
  const sockets: net.Socket[] = [];
  let refused = 0;
  for (let done = 0; done < count; done += 250) {
    const batch = await Promise.all(Array.from({ length: Math.min(250, count - done) }, () => new Promise<net.Socket | undefined>((resolve) => {
      const socket = net.connect({ host: '127.0.0.1', port, localAddress });
      socket.once('connect', () => resolve(socket));
      socket.once('error', () => resolve(undefined));
    })));
    for (const socket of batch) {
      if (socket) {
        socket.on('error', () => undefined);
        sockets.push(socket);
      } else {
        refused++;
      }
    }
  }
  return { sockets, refused };
}

function closeAll(sockets: net.Socket[]): void {
  for (const socket of sockets) socket.destroy();
}

const settle = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

describe(`edge holding ${HALF_OPEN} idle TCP connections`, () => {
  // room for all of them from one address, and no stall timeout during the test: the edge must hold them
  const edge = useEdgeUnderAttack({ limits: { maxConnectionsPerIp: HALF_OPEN + 100, incompleteMessageTimeoutMs: 120_000 } });

  it('keeps serving UDP and new TCP clients with bounded memory', async () => {
    await settle(200);
    const rssBefore = process.memoryUsage().rss;
    const { sockets, refused } = await openIdle(edge.stack.sipPort, HALF_OPEN);
    try {
      expect(refused).toBe(0);
      await settle(500);
      // the edge has not dropped them (they were accepted and are being held)
      expect(sockets.filter((s) => s.destroyed || s.readableEnded)).toHaveLength(0);
      const [udp, tcp] = await Promise.all([udpOptions(edge.stack.sipPort), tcpOptions(edge.stack.sipPort)]);
      expect(udp && statusOf(udp)).toBe(200);
      expect(tcp && statusOf(tcp)).toBe(200);
      const growthMiB = (process.memoryUsage().rss - rssBefore) / (1024 * 1024);
      // both ends of every connection live in this process: a generous bound on the pair
      expect(growthMiB).toBeLessThan(RSS_GROWTH_BOUND_MIB);
    } finally {
      closeAll(sockets);
    }
    await settle(500);
  });
});

describe('edge refusing idle connections over its per-address cap (default limits)', () => {
  let stack: EdgeTestStack;

  beforeAll(async () => {
    stack = await startEdgeStack();
    const app = await stack.connectApp();
    app.options((_req, res) => res.send(200));
  });
  afterAll(async () => {
    await stack?.stop();
  });

  it('closes the connections over maxConnectionsPerIp (1000) from one address and serves another address', async () => {
    const { sockets } = await openIdle(stack.sipPort, 1200);
    try {
      await settle(1000);
      const open = sockets.filter((s) => !s.destroyed && !s.readableEnded);
      expect(open.length).toBeLessThanOrEqual(1000);
      expect(open.length).toBeGreaterThanOrEqual(990);
      // another source address is not starved by the first one's connections
      const other = await tcpOptions(stack.sipPort, 3000, '127.0.0.2');
      expect(other && statusOf(other)).toBe(200);
      const udp = await udpOptions(stack.sipPort);
      expect(udp && statusOf(udp)).toBe(200);
    } finally {
      closeAll(sockets);
    }
    await settle(500);
    expect(await servingStatuses(stack.sipPort)).toEqual({ udp: 200, tcp: 200 });
  });
});
