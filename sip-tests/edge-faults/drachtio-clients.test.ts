/**
 * Bad input, issue 2 item 6, on the drachtio admin port: a client with the wrong secret gets
 * `NO|incorrect secret` and is disconnected; clients that break the `<length>#<payload>` framing, or talk before
 * authenticating, are disconnected; a malformed `sip` command from an authenticated app gets a NOK. Throughout, the
 * real app keeps serving SIP traffic.
 */
import { beforeAll, describe, expect, it } from 'vitest';
import net from 'node:net';
import { randomUUID } from 'node:crypto';
import { connectSrf, createSrf } from '../../src/app/sip/srf.js';
import { useEdgeUnderAttack } from './raw-sip.js';

/** A raw drachtio protocol client: frames out, frames in. */
class AdminClient {
  readonly frames: string[] = [];
  readonly closed: Promise<void>;
  private buffer = Buffer.alloc(0);

  private constructor(readonly socket: net.Socket) {
    socket.on('data', (chunk: Buffer) => {
      this.buffer = Buffer.concat([this.buffer, chunk]);
      for (;;) {
        const hash = this.buffer.indexOf('#');
        if (hash <= 0) return;
        const length = Number(this.buffer.subarray(0, hash).toString('latin1'));
        if (this.buffer.length < hash + 1 + length) return;
        this.frames.push(this.buffer.toString('utf8', hash + 1, hash + 1 + length));
        this.buffer = this.buffer.subarray(hash + 1 + length);
      }
    });
    socket.on('error', () => undefined);
    this.closed = new Promise((resolve) => socket.once('close', () => resolve()));
  }

  static connect(port: number): Promise<AdminClient> {
    return new Promise((resolve, reject) => {
      const socket = net.connect({ host: '127.0.0.1', port });
      socket.once('connect', () => resolve(new AdminClient(socket)));
      socket.once('error', reject);
    });
  }

  /** sends one framed command, returns its message id */
  command(text: string): string {
    const id = randomUUID();
    this.raw(frame(`${id}|${text}`));
    return id;
  }

  raw(bytes: string | Buffer): void {
    this.socket.write(bytes);
  }

  async closedWithin(ms: number): Promise<boolean> {
    let timer: NodeJS.Timeout | undefined;
    const result = await Promise.race([this.closed.then(() => true), new Promise<false>((resolve) => { timer = setTimeout(() => resolve(false), ms); })]);
    clearTimeout(timer);
    return result;
  }

  /** the `response|<id>|...` part of the server's reply to command `id` (the frame starts with the server's own msg id) */
  async reply(id: string, ms = 2000): Promise<string | undefined> {
    const deadline = Date.now() + ms;
    while (Date.now() < deadline) {
      const found = this.frames.find((f) => f.includes(`|response|${id}|`));
      if (found) return found.slice(found.indexOf('|response|') + 1);
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    return undefined;
  }

  destroy(): void {
    this.socket.destroy();
  }
}

function frame(payload: string): Buffer {
  const body = Buffer.from(payload, 'utf8');
  return Buffer.concat([Buffer.from(`${body.length}#`), body]);
}

describe('drachtio admin port with misbehaving clients', () => {
  // after each test the real app is still connected and serving
  const edge = useEdgeUnderAttack({}, { alsoCheckAfterEach: (stack) => expect(stack.edge.stats().apps).toBe(1) });
  let adminPort: number;

  beforeAll(() => {
    adminPort = edge.stack.addresses.admin.port;
  });

  it('answers a wrong secret with NO|incorrect secret and disconnects the client', async () => {
    const client = await AdminClient.connect(adminPort);
    try {
      const id = client.command('authenticate|not-the-secret|');
      expect(await client.reply(id)).toBe(`response|${id}|NO|incorrect secret`);
      expect(await client.closedWithin(2000)).toBe(true);
    } finally {
      client.destroy();
    }
  });

  it('fails a drachtio-srf connect with the wrong secret', async () => {
    const intruder = createSrf();
    try {
      await expect(connectSrf(intruder, { host: '127.0.0.1', port: adminPort, secret: 'wrong', reconnect: { maxAttempts: 1 } }, 5000))
        .rejects.toThrow(/authenticate/);
    } finally {
      intruder.disconnect();
    }
  });

  it('disconnects a client whose first bytes are not a frame', async () => {
    const client = await AdminClient.connect(adminPort);
    try {
      client.raw('GET / HTTP/1.1\r\nHost: edge\r\n\r\n');
      expect(await client.closedWithin(2000)).toBe(true);
      expect(client.frames).toEqual([]);
    } finally {
      client.destroy();
    }
  });

  it('disconnects a client announcing a frame longer than the 5-digit limit', async () => {
    const client = await AdminClient.connect(adminPort);
    try {
      client.raw('123456789#authenticate');
      expect(await client.closedWithin(2000)).toBe(true);
    } finally {
      client.destroy();
    }
  });

  it('disconnects a client that sends commands before authenticating', async () => {
    const client = await AdminClient.connect(adminPort);
    try {
      const id = client.command('route|invite');
      expect(await client.closedWithin(2000)).toBe(true);
      expect(client.frames.filter((f) => f.includes(id) && f.includes('|OK'))).toEqual([]);
    } finally {
      client.destroy();
    }
  });

  it('disconnects an authenticated client that then breaks the framing', async () => {
    const client = await AdminClient.connect(adminPort);
    try {
      const id = client.command(`authenticate|${edge.stack.secret}|`);
      expect(await client.reply(id)).toMatch(new RegExp(`^response\\|${id}\\|OK\\|`));
      client.raw('not-a-length#garbage');
      expect(await client.closedWithin(2000)).toBe(true);
    } finally {
      client.destroy();
    }
  });

  it('answers a sip command that is not SIP with NOK and keeps the client', async () => {
    const client = await AdminClient.connect(adminPort);
    try {
      const auth = client.command(`authenticate|${edge.stack.secret}|`);
      expect(await client.reply(auth)).toMatch(/\|OK\|/);
      const id = client.command('sip|||\r\n\u0000\u0001 this is not a SIP message \r\n\r\n');
      expect(await client.reply(id)).toMatch(new RegExp(`^response\\|${id}\\|NOK`));
      const ping = client.command('ping');
      expect(await client.reply(ping)).toBe(`response|${ping}|OK|pong`);
    } finally {
      client.destroy();
    }
    await new Promise((resolve) => setTimeout(resolve, 100));
  });
});
