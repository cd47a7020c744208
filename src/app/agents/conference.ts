/**
 * 3-way calls: the legs' internal sides are pointed at participants of a real audio mixer
 * (rtpengine 10.5 cannot mix). `join` puts the legs in one room and returns the function that
 * takes them out again (each leg is parked; the caller re-bridges whom it wants).
 *
 * The mixer is Janus's AudioBridge plugin (Debian package `janus`), driven over the Janus HTTP
 * API (https://janus.conf.meetecho.com/docs/rest.html): one Janus session per conference, one
 * plugin handle per leg, a private room (random PIN and secret) mixing at 8 kHz, and every leg joined as a plain-RTP
 * participant speaking G.711 (`join` with `rtp: {ip, port}` and `codec: pcmu|pcma`): the
 * AudioBridge sends the mix minus the participant's own voice to the leg's internal side, and
 * the leg's internal side is re-offered (RFC 3264 §8) towards the port the `joined` event names.
 * The AudioBridge sends to a plain-RTP participant only once it has received RTP from it.
 */
import type { Logger } from 'pino';
import { randomBytes } from 'node:crypto';
import { isIPv4 } from 'node:net';
import { mixerParticipantSdp } from '../media/index.js';
import type { SipLeg } from './sip-leg.js';

export interface ConferenceBridge {
  join(legs: readonly SipLeg[]): Promise<() => Promise<void>>;
}

/** What the Janus API answered that dialcore cannot use (the message names the request). */
export class MixerError extends Error {}

const REQUEST_TIMEOUT_MS = 5_000;
/** A long poll is answered within 30 s by Janus (a keepalive when nothing happened). */
const POLL_TIMEOUT_MS = 40_000;
const MAX_BODY_BYTES = 256 * 1024;

type Json = Record<string, unknown>;

function isObject(value: unknown): value is Json {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function janusId(value: unknown, what: string): number {
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value <= 0) throw new MixerError(`janus: ${what} has no valid id`);
  return value;
}

/** The G.711 codec a leg's internal side carries: what its peer speaks, PCMU when it speaks neither (rtpengine transcodes). */
function g711Of(leg: SipLeg): 'PCMU' | 'PCMA' {
  return leg.peerCodecs().find((name): name is 'PCMU' | 'PCMA' => name === 'PCMU' || name === 'PCMA') ?? 'PCMU';
}

/** Address and port of the audio stream in rtpengine's SDP for a leg's internal side. */
function rtpTarget(sdp: string): { ip: string; port: number } {
  const ip = /^c=IN IP4 ([0-9.]+)\s*$/m.exec(sdp)?.[1];
  const port = Number(/^m=audio (\d{1,5}) /m.exec(sdp)?.[1]);
  if (!ip || !isIPv4(ip) || !Number.isInteger(port) || port < 1 || port > 65_535) throw new MixerError('the leg has no IPv4 RTP address for the mixer');
  return { ip, port };
}

/** One Janus API session: requests, and the long poll that carries the asynchronous plugin events. */
class JanusSession {
  private readonly waiting = new Map<string, { resolve(event: Json): void; reject(err: Error): void; timer: NodeJS.Timeout }>();
  private readonly stopPolling = new AbortController();
  private closed = false;

  private constructor(
    private readonly base: string,
    readonly id: number,
    private readonly log?: Logger,
  ) {
    void this.poll();
  }

  static async create(base: string, log?: Logger): Promise<JanusSession> {
    const reply = await janusPost(base, { janus: 'create' });
    return new JanusSession(base, janusId(isObject(reply.data) ? reply.data.id : undefined, 'create'), log);
  }

  async attach(plugin: string): Promise<number> {
    const reply = await janusPost(`${this.base}/${this.id}`, { janus: 'attach', plugin });
    return janusId(isObject(reply.data) ? reply.data.id : undefined, 'attach');
  }

  /** A plugin request answered at once (`create`, `destroy`): the plugin's data. */
  async request(handle: number, body: Json): Promise<Json> {
    const reply = await janusPost(`${this.base}/${this.id}/${handle}`, { janus: 'message', body });
    return pluginData(reply, String(body.request));
  }

  /** A plugin request answered by an event (`join`, `leave`): the event's plugin data. */
  async requestAsync(handle: number, body: Json): Promise<Json> {
    const transaction = randomBytes(12).toString('hex');
    const event = new Promise<Json>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.waiting.delete(transaction);
        reject(new MixerError(`janus: no event for ${String(body.request)}`));
      }, REQUEST_TIMEOUT_MS);
      this.waiting.set(transaction, { resolve, reject, timer });
    });
    event.catch(() => undefined); // observed below; a failed POST must not leave it unhandled
    try {
      const ack = await janusPost(`${this.base}/${this.id}/${handle}`, { janus: 'message', body }, transaction);
      if (ack.janus !== 'ack') return pluginData(ack, String(body.request)); // answered synchronously after all
    } catch (err) {
      this.settle(transaction, undefined, err instanceof Error ? err : new Error(String(err)));
      throw err;
    }
    return pluginData(await event, String(body.request));
  }

  async destroy(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.stopPolling.abort();
    for (const transaction of [...this.waiting.keys()]) this.settle(transaction, undefined, new MixerError('janus: session closed'));
    await janusPost(`${this.base}/${this.id}`, { janus: 'destroy' }).catch((err: unknown) => {
      this.log?.debug({ err: err instanceof Error ? err.message : String(err) }, 'janus session not destroyed');
    });
  }

  private settle(transaction: string, event: Json | undefined, err?: Error): void {
    const waiter = this.waiting.get(transaction);
    if (!waiter) return;
    this.waiting.delete(transaction);
    clearTimeout(waiter.timer);
    if (err) waiter.reject(err);
    else waiter.resolve(event!);
  }

  /** Long poll (GET /janus/{session}); it also keeps the session alive. */
  private async poll(): Promise<void> {
    while (!this.closed) {
      try {
        const res = await fetch(`${this.base}/${this.id}?maxev=10`, {
          signal: AbortSignal.any([this.stopPolling.signal, AbortSignal.timeout(POLL_TIMEOUT_MS)]),
        });
        const body = await boundedJson(res);
        for (const event of Array.isArray(body) ? body : [body]) {
          if (!isObject(event)) continue;
          if (event.janus === 'error' && isObject(event.error) && event.error.code === 458) throw new MixerError('janus: session lost');
          if (typeof event.transaction === 'string') this.settle(event.transaction, event);
        }
      } catch (err) {
        if (this.closed) return;
        this.log?.warn({ err: err instanceof Error ? err.message : String(err) }, 'janus event poll failed');
        if (err instanceof MixerError) {
          for (const transaction of [...this.waiting.keys()]) this.settle(transaction, undefined, err);
          this.closed = true;
          return;
        }
        await new Promise((r) => setTimeout(r, 500));
      }
    }
  }
}

async function boundedJson(res: Response): Promise<unknown> {
  const text = await res.text();
  if (text.length > MAX_BODY_BYTES) throw new MixerError('janus: reply too large');
  try {
    return JSON.parse(text) as unknown;
  } catch {
    throw new MixerError(`janus: HTTP ${res.status} with a body that is not JSON`);
  }
}

async function janusPost(url: string, message: Json, transaction = randomBytes(12).toString('hex')): Promise<Json> {
  const res = await fetch(url, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({ ...message, transaction }),
    signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS),
  });
  const reply = await boundedJson(res);
  if (!isObject(reply)) throw new MixerError(`janus: ${String(message.janus)} answered with no object`);
  if (reply.janus === 'error') {
    const error = isObject(reply.error) ? reply.error : {};
    throw new MixerError(`janus: ${String(message.janus)} refused (${String(error.code)} ${String(error.reason).slice(0, 200)})`);
  }
  return reply;
}

function pluginData(reply: Json, request: string): Json {
  const data = isObject(reply.plugindata) && isObject(reply.plugindata.data) ? reply.plugindata.data : undefined;
  if (!data) throw new MixerError(`janus: ${request} answered without plugin data`);
  if (data.error_code !== undefined) throw new MixerError(`janus: audiobridge ${request} refused (${String(data.error_code)} ${String(data.error).slice(0, 200)})`);
  return data;
}

/** ConferenceBridge over the Janus AudioBridge (config `mixer.janusUrl`, e.g. http://127.0.0.1:8088/janus). */
export class JanusConferenceBridge implements ConferenceBridge {
  private readonly log?: Logger;

  constructor(
    private readonly janusUrl: string,
    logger?: Logger,
  ) {
    this.log = logger?.child({ component: 'mixer' });
  }

  /** Whether Janus answers and has the AudioBridge (checked at start, so a wrong URL shows before the first 3-way). */
  async check(): Promise<void> {
    const res = await fetch(`${this.janusUrl}/info`, { signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS) });
    const info = await boundedJson(res);
    if (!isObject(info) || info.janus !== 'server_info') throw new MixerError(`janus: ${this.janusUrl}/info is not a Janus server_info`);
    if (!isObject(info.plugins) || !('janus.plugin.audiobridge' in info.plugins)) throw new MixerError('janus: the AudioBridge plugin is not loaded');
  }

  async join(legs: readonly SipLeg[]): Promise<() => Promise<void>> {
    const session = await JanusSession.create(this.janusUrl, this.log);
    let room: number | undefined;
    let handles: number[] = [];
    const secret = randomBytes(16).toString('hex');
    const pin = randomBytes(16).toString('hex');
    const close = async (): Promise<void> => {
      if (room !== undefined && handles[0] !== undefined) {
        await session.request(handles[0], { request: 'destroy', room, secret }).catch((err: unknown) => this.log?.debug({ err: String(err) }, 'room not destroyed'));
      }
      await session.destroy();
    };
    try {
      handles = await Promise.all(legs.map(() => session.attach('janus.plugin.audiobridge')));
      const created = await session.request(handles[0]!, {
        request: 'create',
        is_private: true,
        // only this conference's handles may join or destroy the room
        secret,
        pin,
        sampling_rate: 8000,
        allow_rtp_participants: true,
        audiolevel_ext: false,
      });
      room = janusId(created.room, 'create room');
      await Promise.all(
        legs.map(async (leg, i) => {
          const codec = g711Of(leg);
          const joined = await session.requestAsync(handles[i]!, { request: 'join', room, pin, display: `leg-${i + 1}`, codec: codec.toLowerCase(), rtp: rtpTarget(leg.internalSdp) });
          const rtp = isObject(joined.rtp) ? joined.rtp : {};
          const ip = typeof rtp.ip === 'string' && isIPv4(rtp.ip) ? rtp.ip : undefined;
          const port = typeof rtp.port === 'number' && Number.isInteger(rtp.port) && rtp.port > 0 && rtp.port < 65_536 ? rtp.port : undefined;
          if (joined.audiobridge !== 'joined' || !ip || !port) throw new MixerError('janus: join answered without an RTP address');
          await leg.connect(mixerParticipantSdp(ip, port, codec));
        }),
      );
      this.log?.debug({ room, legs: legs.length }, 'conference up');
    } catch (err) {
      await Promise.all(legs.map((leg) => leg.park().catch(() => undefined)));
      await close();
      throw err;
    }
    let left = false;
    return async () => {
      if (left) return;
      left = true;
      await Promise.all(legs.map((leg) => leg.park().catch(() => undefined)));
      await close();
    };
  }
}
