/**
 * Bad input, issue 2 item 6: slowloris. A TCP client that sends part of a message (a start line and a header, or
 * a header section whose body never comes) and then stalls is disconnected after incompleteMessageTimeoutMs,
 * while other clients are served throughout; a connection that never sends anything is closed too.
 */
import { describe, expect, it } from 'vitest';
import { TcpPeer, optionsRequest, statusOf, tcpOptions, useEdgeUnderAttack } from './raw-sip.js';

const STALL_MS = 1000;

describe('edge with TCP clients that stall', () => {
  const edge = useEdgeUnderAttack({ limits: { incompleteMessageTimeoutMs: STALL_MS } });

  it('closes a client that sent a start line and one header, and serves others meanwhile', async () => {
    const staller = await TcpPeer.connect(edge.stack.sipPort);
    try {
      const started = Date.now();
      await staller.send(`OPTIONS sip:probe@127.0.0.1:${edge.stack.sipPort} SIP/2.0\r\nVia: SIP/2.0/TCP 127.0.0.1:${staller.localPort};branch=z9hG4bK-stall\r\n`);
      // served while the staller holds its half message
      const during = await tcpOptions(edge.stack.sipPort);
      expect(during && statusOf(during)).toBe(200);
      expect(staller.isClosed).toBe(false);
      expect(await staller.closedWithin(STALL_MS * 4)).toBe(true);
      expect(Date.now() - started).toBeGreaterThanOrEqual(STALL_MS - 50);
      expect(staller.messages).toEqual([]);
    } finally {
      staller.destroy();
    }
  });

  it('closes a client whose body never arrives', async () => {
    const staller = await TcpPeer.connect(edge.stack.sipPort);
    try {
      const request = optionsRequest(edge.stack.sipPort, staller.localPort, 'TCP').replace('Content-Length: 0', 'Content-Length: 200');
      await staller.send(`${request}only part of the body`);
      expect(await staller.closedWithin(STALL_MS * 4)).toBe(true);
      expect(staller.messages).toEqual([]);
    } finally {
      staller.destroy();
    }
  });

  it('closes a client that dribbles a header byte by byte slower than the timeout allows', async () => {
    const staller = await TcpPeer.connect(edge.stack.sipPort);
    try {
      const header = `OPTIONS sip:probe@127.0.0.1:${edge.stack.sipPort} SIP/2.0\r\nVia: SIP/2.0/TCP 127.0.0.1:${staller.localPort};branch=z9hG4bK-drip\r\n`;
      const started = Date.now();
      for (const byte of Buffer.from(header)) {
        if (staller.isClosed) break;
        await staller.send(Buffer.from([byte])).catch(() => undefined);
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
      expect(await staller.closedWithin(STALL_MS * 4)).toBe(true);
      // the timer runs from the first byte of the message, not from the last one received
      expect(Date.now() - started).toBeLessThan(STALL_MS * 4);
    } finally {
      staller.destroy();
    }
  });

  it('closes a connection that never sends a byte', async () => {
    const silent = await TcpPeer.connect(edge.stack.sipPort);
    try {
      expect(await silent.closedWithin(STALL_MS * 4)).toBe(true);
    } finally {
      silent.destroy();
    }
  });

  it('keeps a connection that completed a message and then idles (only partial messages are timed out)', async () => {
    const peer = await TcpPeer.connect(edge.stack.sipPort);
    try {
      await peer.send(optionsRequest(edge.stack.sipPort, peer.localPort, 'TCP'));
      const first = await peer.finalResponse(3000);
      expect(first && statusOf(first)).toBe(200);
      expect(await peer.closedWithin(STALL_MS * 2)).toBe(false);
      await peer.send(optionsRequest(edge.stack.sipPort, peer.localPort, 'TCP'));
      expect(await peer.waitFor((m) => m !== first && statusOf(m) === 200, 3000)).toBeDefined();
    } finally {
      peer.destroy();
    }
  });
});
