/**
 * Reaching a registration held by another instance (several instances on one Redis).
 *
 * A WebSocket, TCP or TLS connection exists only on the instance the REGISTER came through, and a
 * UDP phone behind NAT accepts packets only from the address its NAT binding knows. So every
 * binding records the SIP address of the instance that received it (`cluster.instanceAddress`).
 * An instance that delivers a call to a binding held elsewhere sends its B-leg INVITE to that
 * instance (`proxy`, Request-URI unchanged: the registered Contact) with an X-Dialcore-Forward
 * header naming the binding's flow. The holding instance relays the dialog, signalling only, over
 * the flow: SDP, in-dialog requests and BYEs pass through unchanged, and media stays on the
 * rtpengine of the instance that placed the call. This is an internal forward between instances,
 * not a redirect the carrier would have to follow.
 *
 * Trust: the header is an HMAC over the flow and an expiry with a key every instance derives from
 * the shared registrar.nonceSecret; an INVITE without a valid one is routed as any other.
 */
import { createHmac, timingSafeEqual } from 'node:crypto';
import type { Logger } from 'pino';
import { flowUri, type BindingFlow } from '../registrar/binding-store.js';
import type { Dialog, SipHeaders, Srf, SrfRequest, SrfResponse } from '../sip/srf.js';
import { isSipFailure } from '../sip/srf.js';
import { reportForwardedRelays } from '../observability/metrics.js';

export const FORWARD_HEADER = 'X-Dialcore-Forward';
/** A forwarded INVITE is relayed at once; a token older than this is refused (replay). */
const TOKEN_LIFETIME_MS = 30_000;
const TRANSPORTS = new Set(['udp', 'tcp', 'tls', 'ws', 'wss']);

export interface ForwardedFlow {
  address: string;
  port: number;
  transport: string;
  /** the user the binding belongs to: a kick on the holding instance ends the relay first */
  userId: string;
}

/** Signs and checks forward tokens with a key derived from the instances' shared secret. */
export class ForwardSigner {
  private readonly key: Buffer;

  constructor(sharedSecret: string) {
    this.key = createHmac('sha256', sharedSecret).update('dialcore instance forward v1').digest();
  }

  sign(flow: ForwardedFlow, now = Date.now()): string {
    const payload = Buffer.from(JSON.stringify({ a: flow.address, p: flow.port, t: flow.transport, u: flow.userId, e: now + TOKEN_LIFETIME_MS })).toString('base64url');
    return `${payload}.${this.mac(payload)}`;
  }

  /** The flow a valid, unexpired token names; undefined for anything else. */
  verify(token: string | undefined, now = Date.now()): ForwardedFlow | undefined {
    if (!token || token.length > 1024) return undefined;
    const [payload, mac] = token.trim().split('.');
    if (!payload || !mac) return undefined;
    const expected = Buffer.from(this.mac(payload), 'utf8');
    const given = Buffer.from(mac, 'utf8');
    if (expected.length !== given.length || !timingSafeEqual(expected, given)) return undefined;
    try {
      const { a, p, t, u, e } = JSON.parse(Buffer.from(payload, 'base64url').toString('utf8')) as { a?: unknown; p?: unknown; t?: unknown; u?: unknown; e?: unknown };
      if (typeof a !== 'string' || typeof p !== 'number' || typeof t !== 'string' || typeof u !== 'string' || typeof e !== 'number') return undefined;
      if (e < now || !TRANSPORTS.has(t.toLowerCase()) || !Number.isInteger(p) || p < 1 || p > 65535) return undefined;
      return { address: a, port: p, transport: t.toLowerCase(), userId: u };
    } catch {
      return undefined;
    }
  }

  private mac(payload: string): string {
    return createHmac('sha256', this.key).update(payload).digest('base64url');
  }
}

/** What an instance placing calls needs to reach registrations held elsewhere: its own address, the signer, the others' liveness. */
export interface InstanceForwarding {
  instanceAddress: string;
  signer: ForwardSigner;
  heartbeat: Pick<InstanceHeartbeat, 'alive'>;
}

/** Where a binding is delivered from: this instance (its own flow) or the instance that holds it (`self` null: a single instance). */
export function deliveryFor(
  binding: { userId: string; flow: BindingFlow; edge?: string | null },
  self: Pick<InstanceForwarding, 'instanceAddress' | 'signer'> | null,
): { proxy: string; headers: SipHeaders } {
  const own = flowUri(binding.flow);
  if (!binding.edge || !self || binding.edge === self.instanceAddress) return { proxy: own, headers: {} };
  return {
    proxy: `sip:${binding.edge}`,
    headers: { [FORWARD_HEADER]: self.signer.sign({ address: binding.flow.address, port: binding.flow.port, transport: binding.flow.transport, userId: binding.userId }) },
  };
}

/** In-dialog requests relayed from one leg to the other (RFC 3261 §12.2; RFC 3311 UPDATE, RFC 3515 REFER/NOTIFY, RFC 6086 INFO). */
const RELAYED = ['info', 'refer', 'notify', 'update', 'message', 'options'] as const;
/**
 * Headers of the forwarded INVITE the relay does not pass on (srf's createB2BUA copies every other
 * one but its own transaction and dialog headers): the forward token, and credentials meant for us.
 */
const NOT_PASSED_ON = [`-${FORWARD_HEADER}`, '-Proxy-Authorization', '-Authorization'];

/**
 * The holding instance's side: relays forwarded INVITEs to their flows, as a signalling-only B2BUA
 * (createB2BUA with the offer and answer passed through), keeping both dialogs in step. Each relay
 * counts as a session of its user here, so a kick ends it (BYE to the device while its connection
 * is still open) before the user's connections are closed.
 */
export class ForwardRelays {
  private readonly byUser = new Map<string, Set<{ uas: Dialog; uac: Dialog }>>();

  constructor(private readonly srf: Srf, private readonly log?: Logger) {
    reportForwardedRelays(() => this.count);
  }

  /** Relays up on this instance. */
  get count(): number {
    let n = 0;
    for (const relays of this.byUser.values()) n += relays.size;
    return n;
  }

  /** Kick: the user's relays end (BYE both ways); resolves with how many there were. */
  async terminateUser(userId: string): Promise<number> {
    const relays = [...(this.byUser.get(userId) ?? [])];
    await Promise.all(relays.map(({ uas, uac }) => Promise.all([uac.destroy().catch(() => undefined), uas.destroy().catch(() => undefined)])));
    return relays.length;
  }

  async relay(req: SrfRequest, res: SrfResponse, flow: ForwardedFlow): Promise<void> {
    const target = flowUri(flow);
    let call: { uas: Dialog; uac: Dialog };
    try {
      call = await this.srf.createB2BUA(req, res, req.uri, {
        proxy: target,
        headers: { From: req.get('From') ?? '', To: req.get('To') ?? '' },
        localSdpB: req.body,
        proxyRequestHeaders: ['all', ...NOT_PASSED_ON],
        proxyResponseHeaders: ['all'],
      });
    } catch (err) {
      // srf already passed the failure back to the forwarding instance
      this.log?.debug({ err: isSipFailure(err) ? err.status : String(err) }, 'forwarded INVITE not answered');
      return;
    }
    const { uas, uac } = call;
    this.log?.info({ callId: req.get('Call-ID'), flow: target }, 'relaying a forwarded call');
    const relays = this.byUser.get(flow.userId) ?? new Set();
    this.byUser.set(flow.userId, relays);
    relays.add(call);
    const ended = () => {
      relays.delete(call);
      if (relays.size === 0 && this.byUser.get(flow.userId) === relays) this.byUser.delete(flow.userId);
    };
    const hangUpOther = (other: Dialog) => () => {
      ended();
      void other.destroy().catch(() => undefined);
    };
    uas.on('destroy', hangUpOther(uac));
    uac.on('destroy', hangUpOther(uas));
    // a BYE read together with the 2xx's echo was handled before these listeners (see SipLeg)
    if (!uas.connected) hangUpOther(uac)();
    if (!uac.connected) hangUpOther(uas)();
    for (const [from, to] of [[uas, uac], [uac, uas]] as const) {
      from.on('modify', (mreq, mres) => {
        // a re-INVITE (hold, resume, refresh): offer through, answer back (RFC 3261 §14)
        to.modify(mreq.body).then(
          (answer) => mres.send(200, { body: answer, headers: { 'Content-Type': 'application/sdp' } }),
          (err: unknown) => mres.send(isSipFailure(err) ? err.status : 500),
        );
      });
      for (const method of RELAYED) {
        from.on(method, (rreq, rres) => {
          to.request({ method: rreq.method, headers: copyHeaders(rreq), ...(rreq.body ? { body: rreq.body } : {}) }).then(
            (answer) => rres.send(answer.status, answer.reason, { ...(answer.body ? { body: answer.body } : {}), headers: contentTypeOf(answer) }),
            () => rres.send(500),
          );
        });
      }
    }
  }
}

function copyHeaders(req: SrfRequest): SipHeaders {
  const out: SipHeaders = {};
  for (const name of ['Content-Type', 'Event', 'Subscription-State', 'Refer-To', 'Referred-By', 'Replaces', 'Info-Package', 'Reason']) {
    const value = req.get(name);
    if (value) out[name] = value;
  }
  return out;
}

function contentTypeOf(res: SrfResponse): SipHeaders {
  const type = res.get('Content-Type');
  return type ? { 'Content-Type': type } : {};
}

/** Redis key of an instance's heartbeat (one key per instance; GETs only, so no hash tag needed). */
const heartbeatKey = (instanceAddress: string): string => `dc:instance:${instanceAddress}`;
const HEARTBEAT_INTERVAL_MS = 2_000;
/** An instance silent this long is taken for dead: its registrations are skipped, not forwarded to. */
const HEARTBEAT_TTL_MS = 3 * HEARTBEAT_INTERVAL_MS;

interface HeartbeatRedis {
  send(args: string[]): Promise<unknown>;
}

/**
 * Instance liveness: each instance refreshes a short-lived key with its SIP address; a call for a
 * binding held by an instance whose key has lapsed (crashed, stopped, cut off) skips that binding
 * instead of forwarding into the void, so the call rings the user's other registrations or gets
 * 480 at once. The binding itself expires with its registration; the device re-registers on a
 * live instance.
 */
export class InstanceHeartbeat {
  private timer?: NodeJS.Timeout;

  constructor(private readonly redis: HeartbeatRedis, private readonly instanceAddress: string, private readonly log?: Logger) {}

  async start(): Promise<void> {
    await this.beat();
    this.timer = setInterval(() => void this.beat(), HEARTBEAT_INTERVAL_MS);
    this.timer.unref();
  }

  /** Which of these instances are alive (their heartbeat key is present). */
  async alive(instances: readonly string[]): Promise<Set<string>> {
    const others = [...new Set(instances)].filter((i) => i !== this.instanceAddress);
    const live = new Set([this.instanceAddress]);
    if (others.length === 0) return live;
    // one GET per instance in the same tick (pipelined): the keys lie in different Redis Cluster slots, which one MGET may not span
    const replies = await Promise.all(others.map((instance) => this.redis.send(['GET', heartbeatKey(instance)])));
    others.forEach((instance, i) => {
      if (replies[i] !== null && replies[i] !== undefined) live.add(instance);
    });
    return live;
  }

  async stop(): Promise<void> {
    clearInterval(this.timer);
    // a stopped instance takes no more forwarded calls
    await this.redis.send(['DEL', heartbeatKey(this.instanceAddress)]).catch(() => undefined);
  }

  private async beat(): Promise<void> {
    try {
      await this.redis.send(['SET', heartbeatKey(this.instanceAddress), String(Date.now()), 'PX', String(HEARTBEAT_TTL_MS)]);
    } catch (err) {
      this.log?.warn({ err: err instanceof Error ? err.message : String(err) }, 'instance heartbeat not written');
    }
  }
}
