/**
 * AppConnection's deferred frames, over a real loopback TCP connection: a deferred frame goes out before any
 * frame written after it, and on its own once DEFERRED_FRAME_DELAY_MS has passed.
 */
import net from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { AppConnection, DEFERRED_FRAME_DELAY_MS } from './app-server.js';
import { FrameDecoder } from './framing.js';

interface Pair {
  connection: AppConnection;
  /** frames the far end has read so far, in order */
  received: string[];
  close(): void;
}

async function connectedPair(): Promise<Pair> {
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
  const port = (server.address() as net.AddressInfo).port;
  const accepted = new Promise<net.Socket>((resolve) => server.once('connection', resolve));
  const client = net.connect(port, '127.0.0.1');
  const decoder = new FrameDecoder();
  const received: string[] = [];
  client.on('data', (chunk) => received.push(...decoder.push(chunk)));
  const socket = await accepted;
  return {
    connection: new AppConnection(socket),
    received,
    close() {
      client.destroy();
      socket.destroy();
      server.close();
    },
  };
}

async function until(condition: () => boolean, what: string): Promise<void> {
  const deadline = Date.now() + 2000;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 2));
  }
}

describe('AppConnection deferred frames', () => {
  let pair: Pair | undefined;
  afterEach(() => pair?.close());

  it('a deferred frame goes out before the next frame, whichever way that one is written', async () => {
    pair = await connectedPair();
    const { connection, received } = pair;
    connection.sendSipDeferred('1|echo-a', Buffer.from('SIP/2.0 200 OK\r\n\r\n'));
    connection.sendSip('2|sip|request-b', Buffer.from('OPTIONS sip:b@x SIP/2.0\r\n\r\n'));
    connection.sendSipDeferred('3|echo-c', Buffer.from('SIP/2.0 202 Accepted\r\n\r\n'));
    connection.send('4|response|ping|OK');
    await until(() => received.length === 4, 'four frames');
    expect(received.map((frame) => frame.split('\r\n')[0])).toEqual(['1|echo-a', '2|sip|request-b', '3|echo-c', '4|response|ping|OK']);
    expect(received[0]).toBe('1|echo-a\r\nSIP/2.0 200 OK\r\n\r\n');
  });

  it('a deferred frame with nothing after it goes out on its own after the delay', async () => {
    pair = await connectedPair();
    const { connection, received } = pair;
    const started = Date.now();
    connection.sendSipDeferred('1|echo-alone', Buffer.from('SIP/2.0 200 OK\r\n\r\n'));
    await new Promise((resolve) => setImmediate(resolve));
    expect(received).toEqual([]);
    await until(() => received.length === 1, 'the deferred frame');
    expect(Date.now() - started).toBeGreaterThanOrEqual(DEFERRED_FRAME_DELAY_MS - 1);
    expect(received[0]).toBe('1|echo-alone\r\nSIP/2.0 200 OK\r\n\r\n');
  });

  it('deferred frames are dropped, not thrown, once the socket is gone', async () => {
    pair = await connectedPair();
    const { connection } = pair;
    connection.socket.destroy();
    expect(() => connection.sendSipDeferred('1|late', Buffer.from('x'))).not.toThrow();
    connection.sendSipDeferred('2|late', Buffer.from('y'));
    await new Promise((resolve) => setTimeout(resolve, DEFERRED_FRAME_DELAY_MS * 3));
  });
});
