/**
 * Carrier wiring of the B2BUA (issue 4 item 4), over the pure functions of src/app/carriers:
 *
 * - outbound: the gateways that serve an E.164 number, best first (rankOutboundGateways), become
 *   one fork group each, so the call fails over to the next gateway on 408/5xx or silence
 *   (call-session.ts); each INVITE carries the gateway's digest credentials for 401/407
 *   (RFC 3261 §22.2) and counts against its `maxChannels` while the call is up;
 * - inbound: a call is a carrier's only when its source address is in a trunk's `sources`; the
 *   called number (Request-URI user, else To user) is the DID routed to a user.
 */
import {
  isInboundCarrierSource,
  rankOutboundGateways,
  resolveInboundDid,
  type CarrierConfig,
  type GatewayState,
  type InboundTrunk,
  type OutboundGateway,
  type RedisCommandSender,
} from '../carriers/index.js';
import { parseSipUri, type SipHeaders, type SrfRequest } from '../sip/srf.js';
import type { CallTarget } from './call-session.js';
import { uriHost } from '../sip/uri-host.js';

/** Calls in progress per gateway on this instance (the `activeChannels` of GatewayHealth). */
export class GatewayChannels {
  private readonly states = new Map<string, GatewayState>();

  /** The health map rankOutboundGateways reads. */
  get health(): ReadonlyMap<string, GatewayState> {
    return this.states;
  }

  /** Marks a gateway up or down (OPTIONS monitoring). */
  setUp(name: string, up: boolean): void {
    const state = this.states.get(name) ?? { up: true, activeChannels: 0 };
    this.states.set(name, { ...state, up });
  }

  /** Takes a channel; the returned function gives it back (idempotent). */
  acquire(name: string): () => void {
    const state = this.states.get(name) ?? { up: true, activeChannels: 0 };
    this.states.set(name, { ...state, activeChannels: state.activeChannels + 1 });
    let released = false;
    return () => {
      if (released) return;
      released = true;
      const now = this.states.get(name);
      if (now) this.states.set(name, { ...now, activeChannels: Math.max(0, now.activeChannels - 1) });
    };
  }

  active(name: string): number {
    return this.states.get(name)?.activeChannels ?? 0;
  }
}

/** `sip[s]:[user@]host:port;transport=x` at a gateway (sips for TLS, IPv6 bracketed). */
export function gatewayUri(gateway: OutboundGateway, user?: string): string {
  const scheme = gateway.transport === 'tls' ? 'sips' : 'sip';
  return `${scheme}:${user ? `${user}@` : ''}${uriHost(gateway.host)}:${gateway.port};transport=${gateway.transport}`;
}

/** Request-URI of a call to `e164` through `gateway`: `sip:+4420...@host:port;transport=x`. */
export function gatewayRequestUri(gateway: OutboundGateway, e164: string): string {
  return gatewayUri(gateway, e164.startsWith('+') ? e164 : `+${e164}`);
}

/**
 * One fork group per usable gateway, best first. `callerHeaders(gateway)` gives the From /
 * P-Asserted-Identity / Privacy for that carrier (caller ID rules).
 */
export function outboundGatewayGroups(
  e164: string,
  carriers: Pick<CarrierConfig, 'outboundGateways'>,
  channels: GatewayChannels,
  callerHeaders: (gateway: OutboundGateway) => SipHeaders,
): CallTarget[][] {
  return rankOutboundGateways(e164, carriers.outboundGateways, channels.health).map((gateway) => {
    const uri = gatewayRequestUri(gateway, e164);
    const target: CallTarget = {
      uri,
      headers: { ...callerHeaders(gateway), To: `<${uri.replace(/;transport=[a-z]+$/, '')};user=phone>` },
      label: `gateway:${gateway.name}`,
      onConnected: () => channels.acquire(gateway.name),
      ...(gateway.username && gateway.password ? { auth: { username: gateway.username, password: gateway.password } } : {}),
    };
    return [target];
  });
}

/** The trunk a request comes from (by source address only), or undefined. */
export function carrierTrunkOf(req: Pick<SrfRequest, 'source_address'>, carriers: Pick<CarrierConfig, 'inboundTrunks'>): InboundTrunk | undefined {
  return isInboundCarrierSource(req.source_address, carriers.inboundTrunks);
}

/** The called number of an inbound INVITE: Request-URI user, else To user. */
export function calledNumber(req: Pick<SrfRequest, 'uri' | 'get'>): string | undefined {
  const fromUri = parseSipUri(req.uri)?.user;
  if (fromUri) return safeDecode(fromUri);
  const to = req.get('To') ?? '';
  const match = /<?(?:sips?|tel):([^@;>]+)/i.exec(to);
  return match ? safeDecode(match[1]!) : undefined;
}

/** The user a carrier's INVITE is for, by DID; undefined when the DID is not routed. */
export async function routeInboundCall(
  req: Pick<SrfRequest, 'uri' | 'get'>,
  trunk: InboundTrunk,
  redis?: RedisCommandSender,
): Promise<{ did: string; userId: string } | undefined> {
  const did = calledNumber(req);
  if (!did) return undefined;
  const userId = await resolveInboundDid(trunk, did, redis);
  return userId ? { did, userId } : undefined;
}

function safeDecode(text: string): string {
  try {
    return decodeURIComponent(text);
  } catch {
    return text;
  }
}
