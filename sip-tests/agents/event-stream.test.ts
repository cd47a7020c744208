/**
 * The control event stream (GET /v1/events) on a real Redis and a real HTTP/WebSocket server:
 * events from another instance arrive, the agent filter holds, a wrong token is refused, and a
 * client that stops reading is cut off instead of being buffered without end.
 */
import { createServer, type Server } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { createClient } from 'redis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { controlEventsUpgrade } from '../../src/app/agents/control-api.js';
import { ControlEventBus } from '../../src/app/agents/control-events.js';
import { Redis } from '../../src/app/users/redis.js';
import { startRedis, waitUntil, type RedisServer } from '../harness/index.js';

let redisServer: RedisServer;
let client: ReturnType<typeof createClient>;
let redis: Redis;
let busA: ControlEventBus;
let busB: ControlEventBus;
let server: Server;
let stream: ReturnType<typeof controlEventsUpgrade>;
let url: string;
const AGENT = '11111111-1111-4111-8111-111111111111';

beforeAll(async () => {
  redisServer = await startRedis();
  client = createClient({ url: redisServer.url });
  await client.connect();
  redis = new Redis(client);
  busA = new ControlEventBus(redis, 'instance-a');
  busB = new ControlEventBus(redis, 'instance-b');
  await busA.start();
  stream = controlEventsUpgrade(busA, { maxBacklogBytes: 64 * 1024 });
  server = createServer((_req, res) => res.end());
  server.on('upgrade', (req, socket: Socket, head) => {
    if (req.headers.authorization !== 'Bearer good') return void socket.end('HTTP/1.1 401 Unauthorized\r\n\r\n');
    stream.handle(req, socket, head);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  url = `ws://127.0.0.1:${(server.address() as AddressInfo).port}/v1/events`;
});

afterAll(async () => {
  stream.close();
  await busA.stop();
  server.close();
  await client.quit();
  await redisServer.stop();
});

function open(query = '', token = 'good'): Promise<{ ws: WebSocket; received: unknown[] }> {
  const ws = new WebSocket(url + query, { headers: { Authorization: `Bearer ${token}` } });
  const received: unknown[] = [];
  ws.on('message', (data) => received.push(JSON.parse(String(data))));
  return new Promise((resolve, reject) => {
    ws.once('open', () => resolve({ ws, received }));
    ws.once('error', reject);
  });
}

describe('control event stream', () => {
  it('delivers the events of another instance, filtered by agent', async () => {
    const all = await open();
    const one = await open(`?agent=${AGENT}`);
    busB.publish({ type: 'call.dialing', agent: '22222222-2222-4222-8222-222222222222', callId: 'c1' });
    busB.publish({ type: 'call.bridged', agent: AGENT, callId: 'c2' });
    await waitUntil(() => all.received.length === 2 && one.received.length === 1, { timeoutMs: 5_000, what: 'events' });
    expect(one.received[0]).toMatchObject({ type: 'call.bridged', agent: AGENT, instance: 'instance-b' });
    all.ws.close();
    one.ws.close();
  });

  it('refuses a wrong token and a malformed agent filter', async () => {
    await expect(open('', 'bad')).rejects.toThrow(/401/);
    await expect(open('?agent=nope')).rejects.toThrow(/400/);
  });

  it('cuts off a client that stops reading', async () => {
    const slow = await open();
    const closed = new Promise<number>((resolve) => slow.ws.once('close', (code) => resolve(code)));
    // stop reading: the server's send buffer fills once the socket buffers are full
    (slow.ws as unknown as { _socket: Socket })._socket.pause();
    const fast = await open();
    const padding = 'x'.repeat(2000);
    for (let i = 0; i < 3000; i++) busB.publish({ type: 'call.dtmf', callId: `c${i}`, padding });
    await waitUntil(() => fast.received.length === 3000, { timeoutMs: 20_000, what: 'the reading client gets everything' });
    (slow.ws as unknown as { _socket: Socket })._socket.resume();
    const code = await closed;
    expect([1013, 1006]).toContain(code);
    expect(stream.clients()).toBe(1);
    fast.ws.close();
  });
});
