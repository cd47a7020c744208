/**
 * The rtpengine adapter against real rtpengines (userspace, 127.0.0.1, own ports per engine).
 */
import { createSocket, type Socket } from 'node:dgram';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse as parseSdp } from 'sdp-transform';
import { Registry } from 'prom-client';
import { startRtpengine, type RtpengineServer } from '../../../sip-tests/harness/rtpengine.js';
import { MediaError, MediaSessionRegistry, RtpengineError, RtpenginePool, detectLegKind } from './index.js';

const CHROME_OFFER = [
  'v=0',
  'o=- 4611731400430051336 2 IN IP4 127.0.0.1',
  's=-',
  't=0 0',
  'a=group:BUNDLE 0',
  'a=msid-semantic: WMS',
  'm=audio 9 UDP/TLS/RTP/SAVPF 111 0 8 110 126',
  'c=IN IP4 0.0.0.0',
  'a=rtcp:9 IN IP4 0.0.0.0',
  'a=candidate:1 1 udp 2122260223 127.0.0.1 50000 typ host generation 0',
  'a=ice-ufrag:abcd',
  'a=ice-pwd:abcdefghijklmnopqrstuvwx',
  'a=ice-options:trickle',
  'a=fingerprint:sha-256 7B:8B:F0:65:5F:78:E2:51:3B:AC:6F:F3:3F:46:1B:35:DC:B8:5F:64:1A:24:C2:43:F0:A1:58:D0:A1:2C:19:08',
  'a=setup:actpass',
  'a=mid:0',
  'a=sendrecv',
  'a=rtcp-mux',
  'a=rtpmap:111 opus/48000/2',
  'a=fmtp:111 minptime=10;useinbandfec=1',
  'a=rtpmap:0 PCMU/8000',
  'a=rtpmap:8 PCMA/8000',
  'a=rtpmap:110 telephone-event/48000',
  'a=rtpmap:126 telephone-event/8000',
  '',
].join('\r\n');

/** A WebRTC offer with opus only (and telephone-event at opus's clock). */
const OPUS_ONLY_OFFER = CHROME_OFFER.replace('m=audio 9 UDP/TLS/RTP/SAVPF 111 0 8 110 126', 'm=audio 9 UDP/TLS/RTP/SAVPF 111 110')
  .replace('a=rtpmap:0 PCMU/8000\r\n', '')
  .replace('a=rtpmap:8 PCMA/8000\r\n', '')
  .replace('a=rtpmap:126 telephone-event/8000\r\n', '');

function plainSdp(port: number, payloads: number[], extra: string[] = [], sessionVersion = 1): string {
  const rtpmaps: Record<number, string> = { 0: 'PCMU/8000', 8: 'PCMA/8000', 101: 'telephone-event/8000' };
  const lines = [
    'v=0',
    `o=- 1000 ${sessionVersion} IN IP4 127.0.0.1`,
    's=-',
    'c=IN IP4 127.0.0.1',
    't=0 0',
    `m=audio ${port} RTP/AVP ${payloads.join(' ')}`,
    ...payloads.map((pt) => `a=rtpmap:${pt} ${rtpmaps[pt] ?? 'PCMU/8000'}`),
    ...(payloads.includes(101) ? ['a=fmtp:101 0-16'] : []),
    ...extra,
    '',
  ];
  return lines.join('\r\n');
}

function audioOf(sdp: string) {
  const parsed = parseSdp(sdp);
  const audio = parsed.media.find((m) => m.type === 'audio');
  if (!audio) throw new Error('no audio m-line');
  return { parsed, audio, codecs: (audio.rtp ?? []).map((r) => `${r.codec}/${r.rate ?? ''}`) };
}

/** A plain answer to an rtpengine offer, reusing the offered payload numbers (RFC 3264 §6.1). */
function plainAnswerTo(offerSdp: string, port: number, wanted: string[]): string {
  const { audio } = audioOf(offerSdp);
  const chosen = (audio.rtp ?? []).filter((r) => wanted.includes(r.codec));
  const lines = [
    'v=0',
    'o=- 2000 1 IN IP4 127.0.0.1',
    's=-',
    'c=IN IP4 127.0.0.1',
    't=0 0',
    `m=audio ${port} RTP/AVP ${chosen.map((r) => r.payload).join(' ')}`,
    ...chosen.map((r) => `a=rtpmap:${r.payload} ${r.codec}/${r.rate}`),
    '',
  ];
  return lines.join('\r\n');
}

let callSeq = 0;
const newCallId = (): string => `test-${process.pid}-${Date.now()}-${++callSeq}`;

describe('rtpengine adapter (real rtpengine)', () => {
  let engine: RtpengineServer;
  let pool: RtpenginePool;
  let sessions: MediaSessionRegistry;
  const registry = new Registry();

  beforeAll(async () => {
    engine = await startRtpengine({ mediaPorts: 200 });
    pool = new RtpenginePool({
      engines: [`${engine.host}:${engine.ngPort}`],
      pingIntervalMs: 0,
      requestTimeoutMs: 1000,
      registry,
    });
    pool.start();
    sessions = new MediaSessionRegistry(pool, { registry });
  });

  afterAll(async () => {
    await sessions?.deleteAll();
    await pool?.close();
    await engine?.stop();
  });

  it('pings the engine and reports it healthy', async () => {
    const id = `${engine.host}:${engine.ngPort}`;
    const reply = await pool.ping(id);
    expect(reply.result).toBe('pong');
    expect(pool.status()).toEqual([expect.objectContaining({ id, healthy: true, consecutiveFailures: 0 })]);
    const metrics = await registry.metrics();
    expect(metrics).toContain(`dialcore_rtpengine_engine_healthy{engine="${id}"} 1`);
    expect(metrics).toMatch(/dialcore_rtpengine_ng_request_duration_seconds_count\{engine="[^"]+",command="ping",outcome="ok"\} [1-9]/);
  });

  it('turns a plain G.711 offer into a WebRTC offer (ICE, DTLS fingerprint, SAVPF, rtcp-mux, mid)', async () => {
    const media = sessions.create({ callId: newCallId() });
    const webrtcSdp = await media.offer(plainSdp(40_000, [0, 8, 101]), 'plain', 'webrtc');
    const { parsed, audio, codecs } = audioOf(webrtcSdp);
    expect(audio.protocol).toBe('UDP/TLS/RTP/SAVPF');
    expect(audio.candidates?.length ?? 0).toBeGreaterThan(0);
    expect(audio.fingerprint ?? parsed.fingerprint).toBeDefined();
    expect(audio.iceUfrag).toBeDefined();
    expect(audio.rtcpMux).toBe('rtcp-mux');
    expect(audio.mid).toBeDefined();
    expect(audio.crypto).toBeUndefined(); // no SDES toward a browser
    expect(codecs).toEqual(expect.arrayContaining(['PCMU/8000', 'PCMA/8000', 'telephone-event/8000']));
    expect(detectLegKind(webrtcSdp)).toBe('webrtc');
    await media.delete();
  });

  it('turns a Chrome offer into a plain RTP/AVP offer with G.711 and the offered telephone-event', async () => {
    const media = sessions.create({ callId: newCallId() });
    const plain = await media.offer(CHROME_OFFER, 'webrtc', 'plain');
    const { parsed, audio, codecs } = audioOf(plain);
    expect(audio.protocol).toBe('RTP/AVP');
    expect(audio.candidates).toBeUndefined();
    expect(audio.iceUfrag).toBeUndefined();
    expect(audio.fingerprint ?? parsed.fingerprint).toBeUndefined();
    expect(audio.rtcpMux).toBeUndefined();
    expect(codecs).toEqual(expect.arrayContaining(['PCMU/8000', 'PCMA/8000']));
    expect(codecs.some((c) => c.startsWith('opus'))).toBe(false);
    // RFC 4733 events keep the payload number the caller offered
    expect(audio.rtp?.find((r) => r.codec === 'telephone-event')?.payload).toBe(126);
    expect(parsed.connection?.ip ?? audio.connection?.ip).toBe('127.0.0.1');
    expect(detectLegKind(plain)).toBe('plain');

    const webrtcAnswer = await media.answer(plainAnswerTo(plain, 40_010, ['PCMU', 'telephone-event']));
    const answered = audioOf(webrtcAnswer);
    expect(answered.audio.protocol).toBe('UDP/TLS/RTP/SAVPF');
    expect(answered.audio.fingerprint ?? answered.parsed.fingerprint).toBeDefined();
    expect(answered.audio.candidates?.length ?? 0).toBeGreaterThan(0);
    expect(answered.audio.rtcpMux).toBe('rtcp-mux');
    expect(answered.audio.setup).toBe('active'); // rtpengine's default DTLS role
    expect(answered.codecs).toContain('PCMU/8000');
    expect(answered.audio.rtp?.find((r) => r.codec === 'telephone-event')?.payload).toBe(126);
    expect(media.state).toBe('answered');
    await media.delete();
  });

  it('transcodes when the legs share no codec (WebRTC opus only, plain PCMA only)', async () => {
    const callId = newCallId();
    const media = sessions.create({ callId });
    const plain = await media.offer(OPUS_ONLY_OFFER, 'webrtc', 'plain');
    const offered = audioOf(plain);
    expect(offered.audio.protocol).toBe('RTP/AVP');
    expect(offered.codecs).toEqual(expect.arrayContaining(['PCMU/8000', 'PCMA/8000', 'telephone-event/8000']));
    expect(offered.codecs.some((c) => c.startsWith('opus'))).toBe(false);

    const webrtcAnswer = await media.answer(plainAnswerTo(plain, 40_020, ['PCMA', 'telephone-event']));
    const answered = audioOf(webrtcAnswer);
    expect(answered.audio.protocol).toBe('UDP/TLS/RTP/SAVPF');
    expect(answered.codecs[0]).toMatch(/^opus\//);
    expect(answered.codecs.some((c) => c.startsWith('PCMA'))).toBe(false);

    const query = await pool.query({ 'call-id': callId });
    expect(Object.keys(query.tags)).toEqual(expect.arrayContaining([media.aTag, media.bTag]));
    await media.delete();
  });

  it('carries hold (sendonly) in a re-offer from either side, and resume', async () => {
    const media = sessions.create({ callId: newCallId() });
    const plain = await media.offer(CHROME_OFFER, 'webrtc', 'plain');
    await media.answer(plainAnswerTo(plain, 40_030, ['PCMU', 'telephone-event']));

    // B (plain) holds: its re-INVITE is sendonly; A (browser) is offered sendonly.
    const toA = await media.reoffer(plainSdp(40_030, [0, 101], ['a=sendonly'], 2), 'b');
    const heldOffer = audioOf(toA);
    expect(heldOffer.audio.direction).toBe('sendonly');
    expect(heldOffer.audio.protocol).toBe('UDP/TLS/RTP/SAVPF');
    expect(media.holding.has('b')).toBe(true);
    const browserAnswer = CHROME_OFFER.replace('a=sendrecv', 'a=recvonly').replace('a=setup:actpass', 'a=setup:active');
    const toB = await media.answer(browserAnswer);
    expect(audioOf(toB).audio.direction).toBe('recvonly');
    expect(audioOf(toB).audio.protocol).toBe('RTP/AVP');

    // B resumes
    const resumed = await media.reoffer(plainSdp(40_030, [0, 101], ['a=sendrecv'], 3), 'b');
    expect(audioOf(resumed).audio.direction ?? 'sendrecv').toBe('sendrecv');
    expect(media.holding.size).toBe(0);
    await media.answer(CHROME_OFFER.replace('a=setup:actpass', 'a=setup:active'));

    // A holds with inactive
    const toB2 = await media.reoffer(CHROME_OFFER.replace('a=sendrecv', 'a=inactive'), 'a');
    expect(audioOf(toB2).audio.direction).toBe('inactive');
    expect(media.holding.has('a')).toBe(true);
    await media.delete();
  });

  it('delete is idempotent, and a deleted call is unknown to rtpengine', async () => {
    const callId = newCallId();
    const media = sessions.create({ callId });
    await media.offer(plainSdp(40_040, [0, 8]), 'plain', 'plain');
    expect((await pool.query({ 'call-id': callId })).tags).toHaveProperty(media.aTag);
    await Promise.all([media.delete(), media.delete()]);
    await media.delete();
    expect(media.state).toBe('deleted');
    expect(sessions.get(callId)).toBeUndefined();
    const error = await pool.query({ 'call-id': callId }).then(
      () => undefined,
      (err: unknown) => err,
    );
    expect(error).toBeInstanceOf(RtpengineError);
    expect((error as RtpengineError).isUnknownCall).toBe(true);
    await expect(media.answer(plainSdp(40_041, [0]))).rejects.toBeInstanceOf(MediaError);
  });

  it('refuses a hostile or unusable SDP with a 488-mapped error, leaving nothing behind', async () => {
    const media = sessions.create({ callId: newCallId() });
    const error = await media.offer('v=0\r\nm=video 1 RTP/AVP 96\r\n', 'plain', 'webrtc').catch((err: unknown) => err);
    expect(error).toBeInstanceOf(MediaError);
    expect((error as MediaError).sipStatus).toBe(488);
    const huge = await sessions
      .create({ callId: newCallId() })
      .offer(`v=0\r\n${'a=x\r\n'.repeat(20_000)}`, 'plain', 'plain')
      .catch((err: unknown) => err);
    expect((huge as MediaError).kind).toBe('bad-sdp');
    await sessions.deleteAll();
  });

  it('relays RTP both ways between two plain endpoints (50 packets each way)', async () => {
    const sockA = await udpSocket();
    const sockB = await udpSocket();
    try {
      const media = sessions.create({ callId: newCallId() });
      const toB = await media.offer(plainSdp(sockA.port, [0, 101]), 'plain', 'plain');
      const engineForB = audioOf(toB).audio.port; // B sends here
      const toA = await media.answer(plainAnswerTo(toB, sockB.port, ['PCMU', 'telephone-event']));
      const engineForA = audioOf(toA).audio.port; // A sends here
      expect(engineForA).not.toBe(sockA.port);

      for (let i = 0; i < 50; i++) {
        sockA.socket.send(rtpPacket(i, 0x1111), engineForA, '127.0.0.1');
        sockB.socket.send(rtpPacket(i, 0x2222), engineForB, '127.0.0.1');
        await sleep(4);
      }
      await waitFor(() => sockA.received.length >= 50 && sockB.received.length >= 50, 3000);
      expect(sockB.received.length).toBe(50);
      expect(sockA.received.length).toBe(50);
      // what B got is A's stream (SSRC carried) and vice versa
      expect(sockB.received.every((p) => p.readUInt32BE(8) === 0x1111)).toBe(true);
      expect(sockA.received.every((p) => p.readUInt32BE(8) === 0x2222)).toBe(true);
      await media.delete();
    } finally {
      sockA.socket.close();
      sockB.socket.close();
    }
  });

  it('has deleted every media session (leak check)', () => {
    expect(sessions.count).toBe(0);
    expect(pool.trackedCalls).toBe(0);
  });
});

describe('rtpengine pool failover', () => {
  let first: RtpengineServer;
  let second: RtpengineServer;

  beforeAll(async () => {
    [first, second] = await Promise.all([startRtpengine({ mediaPorts: 100 }), startRtpengine({ mediaPorts: 100 })]);
  });

  afterAll(async () => {
    await Promise.all([first?.stop(), second?.stop()]);
  });

  it('spreads new calls, keeps a call on its engine, fails over when one dies, and errors clearly when all are dead', async () => {
    const firstId = `${first.host}:${first.ngPort}`;
    const secondId = `${second.host}:${second.ngPort}`;
    const pool = new RtpenginePool({
      engines: [firstId, secondId],
      pingIntervalMs: 100,
      failuresBeforeUnhealthy: 2,
      requestTimeoutMs: 300,
    });
    const sessions = new MediaSessionRegistry(pool);
    pool.start();
    try {
      const a = sessions.create({ callId: newCallId() });
      const b = sessions.create({ callId: newCallId() });
      await a.offer(plainSdp(41_000, [0]), 'plain', 'plain');
      await b.offer(plainSdp(41_002, [0]), 'plain', 'plain');
      const usedBefore = new Set([pool.engineOf(a.callId), pool.engineOf(b.callId)]);
      expect(usedBefore).toEqual(new Set([firstId, secondId]));

      // the answer goes to the engine that took the offer
      const onFirst = pool.engineOf(a.callId) === firstId ? a : b;
      await onFirst.answer(plainSdp(41_004, [0]));
      expect(pool.engineOf(onFirst.callId)).toBe(firstId);

      await first.stop();
      // right away (not yet marked unhealthy): new calls still succeed, on the live engine
      for (let i = 0; i < 3; i++) {
        const c = sessions.create({ callId: newCallId() });
        await c.offer(plainSdp(41_010 + 2 * i, [0]), 'plain', 'plain');
        expect(pool.engineOf(c.callId)).toBe(secondId);
      }
      await waitFor(() => pool.status().find((s) => s.id === firstId)?.healthy === false, 3000);
      expect(pool.status().find((s) => s.id === secondId)?.healthy).toBe(true);

      // the call on the dead engine still ends cleanly (delete never rejects)
      await onFirst.delete();

      await second.stop();
      await waitFor(() => pool.status().every((s) => !s.healthy), 3000);
      const dead = sessions.create({ callId: newCallId() });
      const error = await dead.offer(plainSdp(41_030, [0]), 'plain', 'plain').catch((err: unknown) => err);
      expect(error).toBeInstanceOf(MediaError);
      expect((error as MediaError).sipStatus).toBe(503);
      expect((error as MediaError).message).toMatch(/no healthy rtpengine/);

      await sessions.deleteAll();
      expect(sessions.count).toBe(0);
      expect(pool.trackedCalls).toBe(0);
    } finally {
      await pool.close();
    }
  });
});

// ---------------------------------------------------------------------------------------------

function rtpPacket(seq: number, ssrc: number): Buffer {
  const packet = Buffer.alloc(12 + 160, 0xff);
  packet[0] = 0x80; // V=2
  packet[1] = 0; // PT 0 (PCMU)
  packet.writeUInt16BE(seq & 0xffff, 2);
  packet.writeUInt32BE(seq * 160, 4);
  packet.writeUInt32BE(ssrc, 8);
  return packet;
}

async function udpSocket(): Promise<{ socket: Socket; port: number; received: Buffer[] }> {
  const socket = createSocket('udp4');
  const received: Buffer[] = [];
  socket.on('message', (msg) => {
    if (msg.length >= 12 && (msg[1]! & 0x7f) < 72) received.push(msg); // RTP, not RTCP (RFC 5761 §4)
  });
  await new Promise<void>((resolve) => socket.bind(0, '127.0.0.1', resolve));
  return { socket, port: socket.address().port, received };
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

async function waitFor(condition: () => boolean, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition() && Date.now() < deadline) await sleep(20);
}
