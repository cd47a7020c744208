/**
 * A real browser webphone (Debian chromium headless, JsSIP, fake audio device) against the
 * edge's WSS listener (RFC 7118), bridged by a drachtio-srf B2BUA to SIPp peers with plain RTP,
 * media converted by a real rtpengine (ICE + DTLS-SRTP + opus <-> RTP/AVP G.711) through the
 * product's media module (src/app/media: RtpenginePool + MediaSessionRegistry).
 *
 * The SIP app here is a TEST app, not the product's registrar or call logic: a permissive
 * registrar that remembers each binding's flow (source address, port, protocol), and a minimal
 * B2BUA: calls from the browser go to a SIPp UAS, calls from SIPp go to the registered browser
 * over its own WebSocket (proxy = the binding's flow).
 *
 * Checked: registration over WSS (binding = the WebSocket flow); audio both ways in the browser
 * (getStats: packets, decoded energy, DTLS connected, codec) and on both rtpengine legs (ng
 * query), with and without transcoding; RFC 4733 DTMF from the browser seen by rtpengine; calls
 * from SIPp delivered over the browser's own WebSocket; hangup from the browser and from SIPp;
 * Content-Type on every SDP the browser gets; after every call no rtpengine call (ng list), no
 * edge dialog and no media session left.
 */
import { createSocket, type Socket } from 'node:dgram';
import { createRequire } from 'node:module';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { freePort, runSipp, startRtpengine, startSippServer, type RtpengineServer, type SippServer, waitUntil } from '../harness/index.js';
import { startBrowser, type CallInfo, type Webphone, type WebphoneBrowser } from '../harness/browser.js';
import { startStack, waitFor, type TestStack } from '../fixtures/stack.js';
import { isSipFailure, type Srf, type SrfRequest, type SrfResponse } from '../../src/app/sip/srf.js';
import { requestTransport } from '../../src/app/sip/request-transport.js';
import { DEFAULT_LEG_CODECS, MediaSessionRegistry, RtpenginePool, type LegKind, type MediaSession } from '../../src/app/media/index.js';

const AGENT = 'agent';
const PASSWORD = 'not-checked-by-the-test-registrar';
/** Packets each way before media counts as flowing (~1 s of 20 ms audio). */
const MIN_PACKETS = 50;

interface Binding {
  contact: string;
  sourceAddress: string;
  sourcePort: number;
  protocol: string;
}

interface BridgedCall {
  callId: string;
  media: MediaSession;
  ended: Promise<void>;
}

// ------------------------------------------------------------------------------------------ rtpengine probes

interface NgListClient {
  list(destination: { port: number; host: string }, options?: Record<string, unknown>): Promise<unknown>;
  on(event: 'error', listener: (err: unknown) => void): unknown;
  close(): void;
}

/** Call-ids rtpengine still holds (ng `list`), through rtpengine-client's UDP Client. */
async function rtpengineCallIds(engine: RtpengineServer): Promise<string[]> {
  const require = createRequire(import.meta.url);
  const exported = require('rtpengine-client') as { Client: new (opts: { localAddress: string; localPort: number; timeout: number }) => NgListClient };
  const client = new exported.Client({ localAddress: '127.0.0.1', localPort: 0, timeout: 2000 });
  client.on('error', () => undefined);
  try {
    const reply = await client.list({ port: engine.ngPort, host: engine.host }, { limit: 100 });
    if (typeof reply !== 'object' || reply === null || !('calls' in reply) || !Array.isArray(reply.calls)) {
      throw new Error(`unexpected ng list reply: ${JSON.stringify(reply)}`);
    }
    return reply.calls.map(String);
  } finally {
    client.close();
  }
}

/** RTP packets rtpengine received from each leg of a call (ng `query`: per-tag stream stats). */
function packetsReceivedPerLeg(tags: Readonly<Record<string, unknown>>): number[] {
  const perLeg: number[] = [];
  for (const monologue of Object.values(tags)) {
    let packets = 0;
    const medias = (monologue as { medias?: unknown }).medias;
    if (Array.isArray(medias)) {
      for (const media of medias) {
        const streams = (media as { streams?: unknown }).streams;
        if (!Array.isArray(streams)) continue;
        for (const stream of streams) {
          const count = (stream as { stats?: { packets?: unknown } }).stats?.packets;
          if (typeof count === 'number') packets += count;
        }
      }
    }
    perLeg.push(packets);
  }
  return perLeg;
}

// ------------------------------------------------------------------------------------------ the test app

function userOf(uri: string): string {
  return /^sips?:([^@;>]+)@/i.exec(uri)?.[1] ?? '';
}

/** Permissive registrar (RFC 3261 §10.3 without authentication): 200 with the bindings, flow remembered. */
function installTestRegistrar(app: Srf, bindings: Map<string, Binding>): void {
  app.register((req, res) => {
    const contact = req.getParsedHeader('Contact')[0];
    const aorUser = userOf(req.getParsedHeader('To').uri);
    if (!contact || !aorUser) {
      res.send(400);
      return;
    }
    const expiresParam = contact.params.expires;
    const expires = Number(expiresParam ?? req.get('Expires') ?? 3600);
    if (expires === 0) {
      bindings.delete(aorUser);
      res.send(200);
      return;
    }
    bindings.set(aorUser, {
      contact: contact.uri,
      sourceAddress: req.source_address,
      sourcePort: Number(req.source_port),
      protocol: requestTransport(req),
    });
    res.send(200, { headers: { Contact: `<${contact.uri}>;expires=${expires}` } });
  });
}

interface B2buaContext {
  app: Srf;
  media: MediaSessionRegistry;
  bindings: Map<string, Binding>;
  /** SIP URI of the SIPp UAS that stands in for the PSTN */
  echoTarget: () => string;
  /** transport param of the proxy URI that reaches the browser's flow; default the binding's protocol */
  wsProxyTransport?: string;
  /** codecs the WebRTC leg is given (src/app/media LegCodecPreferences.webrtc); default the module's */
  webrtcCodecs?: string[];
  calls: BridgedCall[];
  failures: string[];
}

/** Minimal B2BUA: WebRTC caller -> SIPp UAS; SIPp caller -> registered browser over its WebSocket. */
function installTestB2bua(ctx: B2buaContext): void {
  ctx.app.invite(async (req: SrfRequest, res: SrfResponse) => {
    const transport = requestTransport(req);
    const fromWebSocket = transport === 'ws' || transport === 'wss';
    let target: string;
    let proxy: string | undefined;
    let aKind: LegKind;
    let bKind: LegKind;
    if (fromWebSocket) {
      target = ctx.echoTarget();
      aKind = 'webrtc';
      bKind = 'plain';
    } else {
      const binding = ctx.bindings.get(userOf(req.uri));
      if (!binding) {
        res.send(480);
        return;
      }
      target = binding.contact;
      proxy = `sip:${binding.sourceAddress}:${binding.sourcePort};transport=${ctx.wsProxyTransport ?? binding.protocol}`;
      aKind = 'plain';
      bKind = 'webrtc';
    }
    const callId = req.get('Call-ID') ?? '';
    const media = ctx.media.create({
      callId,
      ...(ctx.webrtcCodecs ? { codecs: { ...DEFAULT_LEG_CODECS, webrtc: ctx.webrtcCodecs } } : {}),
    });
    let resolveEnded!: () => void;
    const call: BridgedCall = { callId, media, ended: new Promise<void>((resolve) => { resolveEnded = resolve; }) };
    ctx.calls.push(call);
    const endCall = (): void => {
      void media.delete().then(resolveEnded);
    };
    req.on('cancel', endCall);
    try {
      const bOffer = await media.offer(req.body, aKind, bKind);
      const { uas, uac } = await ctx.app.createB2BUA(req, res, target, {
        proxy,
        localSdpB: bOffer,
        localSdpA: (bAnswer: string) => media.answer(bAnswer),
      });
      uas.on('destroy', () => {
        endCall();
        if (uac.connected) void uac.destroy().catch(() => undefined);
      });
      uac.on('destroy', () => {
        endCall();
        if (uas.connected) void uas.destroy().catch(() => undefined);
      });
    } catch (err) {
      ctx.failures.push(isSipFailure(err) ? `${err.status} ${err.reason ?? ''}` : err instanceof Error ? err.message : String(err));
      endCall();
      if (!res.finalResponseSent) res.send(isSipFailure(err) ? err.status : 500);
    }
  });
}

// ------------------------------------------------------------------------------------------ suite

describe('browser webphone over WSS, bridged to SIP through rtpengine', () => {
  let rtpengine: RtpengineServer;
  let stack: TestStack;
  let app: Srf;
  let pool: RtpenginePool;
  let media: MediaSessionRegistry;
  let browser: WebphoneBrowser;
  let phone: Webphone;
  let uas: SippServer;
  let wsUrl: string;
  const bindings = new Map<string, Binding>();
  const calls: BridgedCall[] = [];
  const failures: string[] = [];
  let b2bua: B2buaContext;
  /** rtpengine's DTMF log (--dtmf-log-dest): one JSON datagram per RFC 4733 event it saw */
  let dtmfLog: Socket;
  const dtmfEvents: { callid: string; event: number }[] = [];

  beforeAll(async () => {
    const dtmfLogPort = await freePort();
    dtmfLog = createSocket('udp4');
    dtmfLog.on('message', (datagram) => {
      try {
        const event: unknown = JSON.parse(datagram.toString('utf8'));
        if (typeof event === 'object' && event !== null && 'event' in event && typeof event.event === 'number' && 'callid' in event) {
          dtmfEvents.push({ callid: String(event.callid), event: event.event });
        }
      } catch {
        // not JSON: ignore
      }
    });
    await new Promise<void>((resolve) => dtmfLog.bind(dtmfLogPort, '127.0.0.1', resolve));
    rtpengine = await startRtpengine({ dtmfLogPort });
    stack = await startStack({ protocols: ['udp', 'wss'], tls: 'self-signed' });
    const wss = stack.addresses.sip.find((l) => l.protocol === 'wss');
    if (!wss) throw new Error('no wss listener');
    wsUrl = `wss://127.0.0.1:${wss.port}`;
    app = await stack.connectApp();
    pool = new RtpenginePool({ engines: [`${rtpengine.host}:${rtpengine.ngPort}`], pingIntervalMs: 0 });
    media = new MediaSessionRegistry(pool);
    uas = await startSippServer({ scenario: 'webrtc-uas-rtp.xml', service: 'echo' });
    installTestRegistrar(app, bindings);
    b2bua = {
      app,
      media,
      bindings,
      echoTarget: () => `sip:echo@127.0.0.1:${uas.port}`,
      calls,
      failures,
    };
    installTestB2bua(b2bua);
    browser = await startBrowser();
    phone = await browser.newWebphone(AGENT);
  }, 90_000);

  afterAll(async () => {
    await browser?.close();
    await uas?.stop();
    await pool?.close();
    await stack?.stop();
    await rtpengine?.stop();
    dtmfLog?.close();
  }, 60_000);

  /** Polls ng `query` until rtpengine received `min` packets from each leg (bounded); returns the counts. */
  async function enginePacketsPerLeg(callId: string, min: number, timeoutMs = 10_000): Promise<number[]> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const perLeg = packetsReceivedPerLeg((await pool.query({ 'call-id': callId })).tags);
      if ((perLeg.length >= 2 && perLeg.every((packets) => packets >= min)) || Date.now() > deadline) return perLeg;
      await new Promise((resolve) => setTimeout(resolve, 200));
    }
  }

  /** The next call ringing the browser; on timeout, says what the B2BUA got instead. */
  async function incomingCall(): Promise<CallInfo> {
    const ringing = phone.waitForIncoming(15_000);
    ringing.catch(() => undefined); // a B2BUA failure may decide first
    const failed = waitFor(() => (failures.length > 0 ? failures : undefined), 15_000, 'B2BUA failure');
    failed.catch(() => undefined);
    const first = await Promise.race([ringing.then((call) => ({ call })), failed.then((f) => ({ failures: f }))]).catch((err: unknown) => ({ error: err }));
    if ('call' in first) return first.call;
    if ('failures' in first) throw new Error(`no call reached the browser; the B2BUA got: ${JSON.stringify(first.failures)}`);
    throw first.error;
  }

  /** After every call: no media session, no rtpengine call, no edge dialog. */
  afterEach(async () => {
    if (!b2bua || !phone) return; // beforeAll failed
    b2bua.webrtcCodecs = undefined;
    b2bua.wsProxyTransport = undefined;
    failures.length = 0;
    await phone.hangup().catch(() => undefined); // a failed test may leave its call up
    let allEnded = false;
    void Promise.all(calls.map((c) => c.ended)).then(() => { allEnded = true; });
    await waitFor(() => allEnded || undefined, 10_000, 'every bridged call ended');
    await waitFor(() => media.count === 0 || undefined, 5000, 'media sessions deleted');
    const left = await rtpengineCallIds(rtpengine);
    expect(left, 'rtpengine calls left').toEqual([]);
    await waitUntil(async () => ((await stack.serverDialogs()) ?? 0) === 0, { timeoutMs: 5000, what: 'edge dialogs gone' });
    calls.length = 0;
  }, 20_000);

  it('registers over WSS; the binding is the WebSocket flow', async () => {
    await phone.register({ wsUrl, sipUri: `sip:${AGENT}@127.0.0.1`, password: PASSWORD, displayName: 'Agent', autoAnswer: true });
    const binding = bindings.get(AGENT);
    expect(binding).toBeDefined();
    expect(binding!.protocol).toBe('wss');
    expect(binding!.sourceAddress).toBe('127.0.0.1');
    expect(binding!.sourcePort).toBeGreaterThan(0);
    expect(binding!.contact).toMatch(/;transport=ws/i);
    const received = await phone.receivedSipMessages();
    const ok = received.find((m) => m.startsWith('SIP/2.0 200') && /CSeq:\s*\d+ REGISTER/i.test(m));
    expect(ok, 'the 200 OK to REGISTER reached the browser').toBeDefined();
    // RFC 7118 §5: Via transport WSS, and the edge stamps where the request came from (RFC 3261 §18.2.1)
    expect(ok).toMatch(/^Via:\s*SIP\/2\.0\/WSS [^\r\n]*;received=127\.0\.0\.1/im);
  });

  it('browser (opus only) calls sip:echo -> SIPp UAS (G.711): transcoded audio flows both ways, browser hangs up', async () => {
    const call = await phone.call('sip:echo@127.0.0.1', { codecs: ['opus', 'telephone-event'], timeoutMs: 15_000 });
    expect(call.status).toBe('confirmed');
    const stats = await phone.waitForMedia({ minPacketsSent: MIN_PACKETS, minPacketsReceived: MIN_PACKETS });
    expect(stats.codec).toMatch(/opus/i);
    expect(stats.dtlsState).toBe('connected');
    expect(stats.totalAudioEnergy).toBeGreaterThan(0);

    // rtpengine saw RTP from both legs: the browser (SRTP) and SIPp (plain G.711)
    expect(calls).toHaveLength(1);
    const perLeg = await enginePacketsPerLeg(calls[0]!.callId, MIN_PACKETS);
    expect(perLeg).toHaveLength(2);
    for (const packets of perLeg) expect(packets).toBeGreaterThanOrEqual(MIN_PACKETS);

    const ended = await phone.hangup();
    expect(ended?.status).toBe('ended');
    expect(ended?.endedBy).toBe('local');
    expect(failures).toEqual([]);
  });

  it('every SIP message with a body the browser receives names its Content-Type (drachtio-server adds application/sdp)', async () => {
    const call = await phone.call('sip:echo@127.0.0.1', { timeoutMs: 15_000 });
    await phone.hangup();
    const withBody = (await phone.lastSipMessages())
      .filter((m) => m.direction === 'received' && call.callId !== null && m.text.includes(`Call-ID: ${call.callId}`))
      .filter((m) => /^Content-Length:\s*[1-9]/im.test(m.text));
    expect(withBody.length).toBeGreaterThan(0); // the 200 OK with the SDP answer
    for (const message of withBody) expect(message.text, message.text.split('\r\n')[0]).toMatch(/^Content-Type:\s*application\/sdp/im);
  });

  it.each<[string, string[] | undefined]>([
    ['G.711 shared, no transcoding', undefined],
    ['opus only, transcoded', ['opus', 'telephone-event']],
  ])('browser DTMF (RFC 4733, RTCDTMFSender) is carried to the SIP side (%s): rtpengine sees the digits', async (_name, codecs) => {
    const call = await phone.call('sip:echo@127.0.0.1', { codecs, timeoutMs: 15_000 });
    expect(call.status).toBe('confirmed');
    await phone.waitForMedia({ minPacketsSent: 10, minPacketsReceived: 10 });
    // the browser can only send RFC 4733 events when the answer it got keeps telephone-event
    const answer = (await phone.receivedSipMessages()).filter((m) => m.startsWith('SIP/2.0 200') && m.includes('m=audio')).at(-1) ?? '';
    expect(answer, 'telephone-event in the SDP answer to the browser').toMatch(/^a=rtpmap:\d+ telephone-event\//im);
    await phone.sendDtmf('159#');
    const callId = calls[0]!.callId;
    const digits = await waitFor(() => {
      const seen = [...new Set(dtmfEvents.filter((e) => e.callid === callId).map((e) => e.event))];
      return seen.length >= 4 ? seen : undefined;
    }, 10_000, `rtpengine DTMF events (got ${JSON.stringify(dtmfEvents)})`);
    expect(digits).toEqual([1, 5, 9, 11]); // '#' = 11
    await phone.hangup();
  });

  it('SIPp (G.711) calls the registered browser over its WebSocket, transcoded to opus: audio both ways, SIPp hangs up', async () => {
    b2bua.webrtcCodecs = ['opus'];
    const sipp = runSipp({ scenario: 'webrtc-uac-rtp.xml', target: stack.target, service: AGENT, calls: 1, timeoutMs: 30_000 });
    const incoming = await incomingCall();
    expect(incoming.remoteUri).toContain('+15551234567');
    await phone.waitForConfirmed(incoming.id, 10_000);
    const stats = await phone.waitForMedia({ minPacketsSent: MIN_PACKETS, minPacketsReceived: MIN_PACKETS });
    expect(stats.codec).toMatch(/opus/i);
    expect(stats.dtlsState).toBe('connected');
    expect(stats.totalAudioEnergy).toBeGreaterThan(0);
    const perLeg = await enginePacketsPerLeg(calls[0]!.callId, MIN_PACKETS);
    expect(perLeg).toHaveLength(2);
    for (const packets of perLeg) expect(packets).toBeGreaterThanOrEqual(MIN_PACKETS);

    const result = await sipp; // SIPp sends BYE at 8 s
    expect(result.stats.successful, result.errors + result.stderr).toBe(1);
    const ended = await phone.waitForEnd(incoming.id, 10_000);
    expect(ended.status).toBe('ended');
    expect(ended.endedBy).toBe('remote');

    // the INVITE the browser read came over its WebSocket; every header is readable in the trace
    const invite = (await phone.receivedSipMessages()).find((m) => m.startsWith('INVITE '));
    expect(invite).toBeDefined();
    expect(invite).toMatch(/^From:.*\+15551234567/im);
    expect(invite).toMatch(/^Via:\s*SIP\/2\.0\/WSS /im);
    expect(failures).toEqual([]);
  });

  it('SIPp calls the browser with a shared codec (G.711 end to end), the browser hangs up', async () => {
    const sipp = runSipp({ scenario: 'webrtc-uac-rtp.xml', target: stack.target, service: AGENT, calls: 1, timeoutMs: 30_000 });
    const incoming = await incomingCall();
    await phone.waitForConfirmed(incoming.id, 10_000);
    const stats = await phone.waitForMedia({ minPacketsSent: MIN_PACKETS, minPacketsReceived: MIN_PACKETS });
    expect(stats.codec).toMatch(/PCMA|PCMU/);
    expect(stats.dtlsState).toBe('connected');
    const ended = await phone.hangup();
    expect(ended?.endedBy).toBe('local');
    const result = await sipp; // receives the BYE before its own 8 s timer
    expect(result.stats.successful, result.errors + result.stderr).toBe(1);
    expect(result.errors).not.toMatch(/receive timeout/);
    expect(failures).toEqual([]);
  });

  it('RFC 7118 §5.2: a proxy URI `sip:ip:port;transport=ws` reaches the browser over its WSS connection', async () => {
    // transport=ws is the only WebSocket value of the URI transport parameter; WSS is `sips:` + transport=ws
    b2bua.wsProxyTransport = 'ws';
    const sipp = runSipp({ scenario: 'webrtc-uac-rtp.xml', target: stack.target, service: AGENT, calls: 1, timeoutMs: 30_000 });
    const incoming = await incomingCall();
    await phone.waitForConfirmed(incoming.id, 10_000);
    await phone.hangup();
    const result = await sipp;
    expect(result.stats.successful, result.errors + result.stderr).toBe(1);
  });

  it('unregisters: the binding is removed', async () => {
    await phone.unregister();
    expect(bindings.has(AGENT)).toBe(false);
  });
});
