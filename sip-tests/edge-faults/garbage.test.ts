/**
 * Bad input, issue 2 item 6: random bytes and truncated messages over UDP and TCP. Every byte from the network is
 * hostile: the edge answers 400 where it can build a response (RFC 3261 8.2.6 / 18.3), drops the rest, closes
 * streams it cannot frame, and keeps serving everyone else. After each case the edge must still answer OPTIONS
 * over UDP and TCP.
 */
import { describe, expect, it } from 'vitest';
import { TcpPeer, UdpPeer, inviteRequest, optionsRequest, seededBytes, seededInt, statusOf, useEdgeUnderAttack } from './raw-sip.js';

const SEED = 4475;
const STALL_MS = 1000;

describe('edge fed random bytes and truncated messages', () => {
  const invites: string[] = [];
  const edge = useEdgeUnderAttack({ limits: { incompleteMessageTimeoutMs: STALL_MS } }, {
    addRoutes: (app) => app.invite((req, res) => {
      invites.push(req.get('Call-ID') ?? '');
      res.send(486);
    }),
  });

  it('survives 2000 random datagrams, answering none of them with anything but 400', async () => {
    const bytes = seededBytes(SEED);
    const int = seededInt(SEED + 1);
    const peer = await UdpPeer.open();
    try {
      for (let i = 0; i < 2000; i++) {
        const junk = bytes(1 + int(1400));
        // half of them look like the start of a request, so they get past the first-byte checks into the parser
        const datagram = i % 2 === 0 ? junk : Buffer.concat([Buffer.from('INVITE sip:x@127.0.0.1 SIP/2.0\r\n'), junk]);
        await peer.send(datagram, edge.stack.sipPort);
        if (i % 100 === 99) await new Promise((resolve) => setTimeout(resolve, 10));
      }
      await new Promise((resolve) => setTimeout(resolve, 500));
      const statuses = peer.received.map(statusOf);
      expect(statuses.every((s) => s === 400), `responses: ${statuses.join(',')}`).toBe(true);
    } finally {
      peer.close();
    }
  });

  it('survives random header-shaped datagrams (valid start line, junk headers)', async () => {
    const bytes = seededBytes(SEED + 2);
    const peer = await UdpPeer.open();
    try {
      for (let i = 0; i < 300; i++) {
        const lines = [`OPTIONS sip:x@127.0.0.1:${edge.stack.sipPort} SIP/2.0`];
        for (let h = 0; h < 6; h++) lines.push(`${bytes(6).toString('base64')}: ${bytes(20).toString('latin1')}`);
        await peer.send(`${lines.join('\r\n')}\r\n\r\n`, edge.stack.sipPort);
      }
      await new Promise((resolve) => setTimeout(resolve, 500));
      // no Via / Call-ID to answer to: dropped, never a success
      expect(peer.received.map(statusOf).filter((s) => s !== 400)).toEqual([]);
    } finally {
      peer.close();
    }
  });

  it('closes TCP connections that send random bytes, without answering them', async () => {
    const bytes = seededBytes(SEED + 3);
    const peers = await Promise.all(Array.from({ length: 20 }, () => TcpPeer.connect(edge.stack.sipPort)));
    try {
      // with CRLFCRLF inside, the framer sees a header section it cannot parse; without, it waits and times out
      await Promise.all(peers.map((peer, i) => peer.send(i % 2 === 0 ? Buffer.concat([bytes(2000), Buffer.from('\r\n\r\n'), bytes(500)]) : bytes(3000))));
      const closed = await Promise.all(peers.map((peer) => peer.closedWithin(STALL_MS * 4)));
      expect(closed.every(Boolean)).toBe(true);
      expect(peers.flatMap((peer) => peer.messages.map(statusOf)).filter((s) => s !== 400)).toEqual([]);
    } finally {
      for (const peer of peers) peer.destroy();
    }
  });

  it('answers a UDP INVITE truncated inside its body with 400 (Content-Length larger than the datagram, RFC 3261 18.3)', async () => {
    const peer = await UdpPeer.open();
    try {
      const invite = inviteRequest(edge.stack.sipPort, peer.port);
      const bodyStart = invite.indexOf('\r\n\r\n') + 4;
      await peer.send(invite.slice(0, bodyStart + 20), edge.stack.sipPort);
      const response = await peer.finalResponse(2000);
      expect(response && statusOf(response)).toBe(400);
      expect(invites).not.toContain(/Call-ID: (.*)/.exec(invite)?.[1]);
    } finally {
      peer.close();
    }
  });

  it('never passes a UDP INVITE truncated at any point to the app, nor answers it with anything but 400', async () => {
    const peer = await UdpPeer.open();
    try {
      const invite = inviteRequest(edge.stack.sipPort, peer.port);
      const callId = /Call-ID: (.*)/.exec(invite)?.[1] ?? '';
      const cuts = [1, 7, 20, 45, 60, 90, 120, 150, 200, 250, 300, invite.indexOf('\r\n\r\n') + 2, invite.length - 1];
      for (const cut of cuts) await peer.send(invite.slice(0, cut), edge.stack.sipPort);
      await new Promise((resolve) => setTimeout(resolve, 1000));
      expect(peer.received.map(statusOf).filter((s) => s !== 400 && s !== 100)).toEqual([]);
      expect(invites).not.toContain(callId);
    } finally {
      peer.close();
    }
  });

  it('holds a TCP message truncated in its body until the stall timeout, then closes without answering', async () => {
    const peer = await TcpPeer.connect(edge.stack.sipPort);
    try {
      const invite = inviteRequest(edge.stack.sipPort, peer.localPort).replace('SIP/2.0/UDP', 'SIP/2.0/TCP');
      await peer.send(invite.slice(0, invite.length - 30));
      expect(await peer.closedWithin(STALL_MS * 4)).toBe(true);
      expect(peer.messages).toEqual([]);
    } finally {
      peer.destroy();
    }
  });

  it('serves a TCP message that arrives one byte at a time', async () => {
    const peer = await TcpPeer.connect(edge.stack.sipPort);
    try {
      const options = optionsRequest(edge.stack.sipPort, peer.localPort, 'TCP');
      for (const byte of Buffer.from(options)) {
        peer.socket.write(Buffer.from([byte]));
      }
      const response = await peer.finalResponse(3000);
      expect(response && statusOf(response)).toBe(200);
    } finally {
      peer.destroy();
    }
  });
});
