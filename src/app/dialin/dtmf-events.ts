/**
 * DTMF digits rtpengine reports (its `--dtmf-log-dest`): one UDP JSON datagram per digit,
 *
 *   {"callid":"dc-…","source_tag":"…","tags":[…],"type":"DTMF","event":4,"duration":100,"volume":10}
 *
 * for RFC 4733 telephone-events (RFC 4733 §3.2: events 0-9, 10 = *, 11 = #, 12-15 = A-D) and for
 * in-band tones rtpengine detected. rtpengine sends every call's events to one address, so the
 * instance that receives an event for a call it does not own forwards it to the owner: each
 * instance notes the calls it listens for in Redis (`dc:dialin-call:<call-id>` -> instance) and
 * subscribes to its own channel `dc:dialin-dtmf:<instance>`.
 *
 * Datagrams are untrusted: bounded, parsed defensively, unknown calls dropped.
 */
import { createSocket, type Socket } from 'node:dgram';
import type { Logger } from 'pino';
import { keys, KEY_PREFIX } from '../users/keys.js';
import { stringReply, type Redis } from '../users/redis.js';

export interface RtpengineDtmfEvent {
  callId: string;
  sourceTag: string;
  digit: string;
  durationMs: number;
}

type Listener = (event: RtpengineDtmfEvent) => void;

const EVENT_DIGITS = '0123456789*#ABCD';
const MAX_DATAGRAM = 4096;
/** A dial-in login lasts minutes; the agent session it becomes, a working day: the ownership note outlives it, then expires. */
const OWNER_TTL_SECONDS = 24 * 3600;

export function dtmfChannel(instanceId: string): string {
  return `${KEY_PREFIX}:dialin-dtmf:${instanceId}`;
}

/** One rtpengine DTMF log datagram, or null when it is not one. */
export function parseDtmfLog(data: Buffer | string): RtpengineDtmfEvent | null {
  if (data.length > MAX_DATAGRAM) return null;
  let parsed: unknown;
  try {
    parsed = JSON.parse(typeof data === 'string' ? data : data.toString('utf8'));
  } catch {
    return null;
  }
  if (typeof parsed !== 'object' || parsed === null) return null;
  const record = parsed as Record<string, unknown>;
  const { callid, source_tag: sourceTag, event, duration } = record;
  if (record.type !== undefined && record.type !== 'DTMF') return null;
  if (typeof callid !== 'string' || callid.length === 0 || callid.length > 256) return null;
  if (typeof sourceTag !== 'string' || sourceTag.length > 256) return null;
  if (typeof event !== 'number' || !Number.isInteger(event) || event < 0 || event >= EVENT_DIGITS.length) return null;
  return {
    callId: callid,
    sourceTag,
    digit: EVENT_DIGITS[event]!,
    durationMs: typeof duration === 'number' && Number.isFinite(duration) && duration >= 0 ? Math.min(duration, 60_000) : 0,
  };
}

export class DtmfEventRouter {
  private readonly listeners = new Map<string, Listener>();
  private socket?: Socket;
  private subscription?: { close(): Promise<void> };
  private readonly log?: Logger;

  constructor(
    private readonly redis: Redis,
    private readonly instanceId: string,
    logger?: Logger,
  ) {
    this.log = logger?.child({ component: 'dtmf-events' });
  }

  /** Subscribes to this instance's channel and, when `listen` is given, receives rtpengine's datagrams there. */
  async start(listen: { host: string; port: number } | null): Promise<void> {
    this.subscription = await this.redis.subscribe(dtmfChannel(this.instanceId), (message) => {
      const event = parseDtmfLog(message);
      if (event) this.listeners.get(event.callId)?.(event);
    });
    if (!listen) return;
    const socket = createSocket({ type: listen.host.includes(':') ? 'udp6' : 'udp4', reuseAddr: true });
    socket.on('message', (data) => void this.onDatagram(data));
    await new Promise<void>((resolve, reject) => {
      socket.once('error', reject);
      socket.bind(listen.port, listen.host, () => {
        socket.off('error', reject);
        socket.on('error', (err) => this.log?.warn({ err: err.message }, 'DTMF event socket error'));
        resolve();
      });
    });
    this.socket = socket;
  }

  /** Where datagrams are received (the bound port when 0 was asked for). */
  address(): { host: string; port: number } | null {
    if (!this.socket) return null;
    const { address, port } = this.socket.address();
    return { host: address, port };
  }

  /** Digits of rtpengine call `callId` go to `listener` from now on, whichever instance receives them. */
  async listen(callId: string, listener: Listener): Promise<void> {
    this.listeners.set(callId, listener);
    await this.redis.send(['SET', keys.dialInCall(callId), this.instanceId, 'EX', String(OWNER_TTL_SECONDS)]);
  }

  async unlisten(callId: string): Promise<void> {
    if (!this.listeners.delete(callId)) return;
    await this.redis.send(['DEL', keys.dialInCall(callId)]).catch(() => undefined);
  }

  get listening(): number {
    return this.listeners.size;
  }

  async stop(): Promise<void> {
    this.socket?.close();
    this.socket = undefined;
    await this.subscription?.close().catch(() => undefined);
    await Promise.all([...this.listeners.keys()].map((callId) => this.unlisten(callId)));
  }

  private async onDatagram(data: Buffer): Promise<void> {
    const event = parseDtmfLog(data);
    if (!event) return;
    const local = this.listeners.get(event.callId);
    if (local) return local(event);
    try {
      const owner = stringReply(await this.redis.send(['GET', keys.dialInCall(event.callId)]));
      if (!owner || owner === this.instanceId) return;
      const forwarded = { callid: event.callId, source_tag: event.sourceTag, type: 'DTMF', event: EVENT_DIGITS.indexOf(event.digit), duration: event.durationMs };
      await this.redis.publish(dtmfChannel(owner), JSON.stringify(forwarded));
    } catch (err) {
      this.log?.warn({ err: err instanceof Error ? err.message : String(err) }, 'DTMF event not forwarded');
    }
  }
}
