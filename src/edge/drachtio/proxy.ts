/**
 * Stateful proxying for drachtio's `proxy` command (srf.proxyRequest), RFC 3261 §16, as drachtio-server's
 * sip-proxy-controller does it, for the cases dialcore needs:
 *
 * - the app's `proxy|<txnId>|remainInDialog|fullResponse|followRedirects|simultaneous|serial|<provTimeout>|<finalTimeout>|<dest>...`
 *   names a network request it was handed; the request is forwarded to the destinations one after another
 *   (serial) or to all at once (simultaneous: the first 2xx wins, the other branches are cancelled,
 *   §16.7 step 10), each copy with its Request-URI replaced by
 *   the destination, Max-Forwards decremented (483 at 0, §16.3), our Via on top (§16.6 step 8) and, with
 *   remainInDialog, our Record-Route (§16.6 step 4);
 * - responses come back with our Via removed (§16.7 step 3): 1xx other than 100 are forwarded at once, a
 *   2xx at once (retransmissions too, RFC 6026), a failure moves on to the next destination, and when
 *   none is left the best failure (§16.7 step 6: the lowest class, 6xx first) is forwarded;
 * - the app learns each final response (`OK|<meta>|||continue` CRLF response) and the end (`OK|done`);
 * - a CANCEL from upstream is answered 200 and sent downstream (§16.10); no further destination is tried;
 * - with Record-Route, the dialog's later requests reach us with our URI as top Route: it is removed and the
 *   request forwarded to the next Route or the Request-URI (§16.4, §16.12), ACK statelessly, others in a
 *   transaction of their own with the final response forwarded back.
 *
 * Not done: followRedirects (a 3xx is a failure like any other), provisional/final timeouts.
 */
import type { Logger } from 'pino';
import { parseNameAddr, type SipMessage } from '../message/index.js';
import type { Params } from '../message/grammar.js';
import type { InboundMessage, SendTarget, TransportProtocol } from '../transport/index.js';
import { buildResponse, generateBranch, type ClientTransaction, type ServerTransaction, type TransactionLayer } from '../transaction/index.js';
import type { AppConnection } from './app-server.js';
import { apiResponse, metaFieldsOf, type WireMeta } from './wire-format.js';
import { hostForUri, uriTransportParam, viaFor, type LocalAddress } from './sip-builders.js';

export interface ProxyDeps {
  transactions: TransactionLayer;
  resolve(uri: string): Promise<SendTarget[]>;
  localFor(protocol: TransportProtocol, address?: string): LocalAddress;
  isOwnAddress(target: SendTarget): boolean;
  logger?: Logger;
}

/** The parsed `proxy` command. */
export interface ProxyCommand {
  app: AppConnection;
  msgId: string;
  recordRoute: boolean;
  /** fork to every destination at once (else one after another) */
  simultaneous: boolean;
  destinations: string[];
  /** headers the app added (the frame's payload after the request line) */
  extraHeaders: Array<{ name: string; value: string }>;
}

/** Headers an app may not set on a proxied request: they are the proxy's or the request's own. */
const NOT_FROM_APP = new Set(['via', 'route', 'record-route', 'max-forwards', 'content-length', 'call-id', 'cseq', 'from', 'to', 'contact']);

export function parseProxyCommand(app: AppConnection, msgId: string, tokens: readonly string[], payload: string): (ProxyCommand & { txnId: string }) | null {
  const txnId = tokens[2] ?? '';
  const destinations = tokens.slice(9).filter((d) => d.length > 0);
  if (!txnId || destinations.length === 0) return null;
  const extraHeaders: Array<{ name: string; value: string }> = [];
  for (const line of payload.split(/\r?\n/).slice(1)) {
    const colon = line.indexOf(':');
    if (colon <= 0) continue;
    const name = line.slice(0, colon).trim();
    if (!/^[A-Za-z0-9!%'*+.^_`|~-]+$/.test(name) || NOT_FROM_APP.has(name.toLowerCase())) continue;
    extraHeaders.push({ name, value: line.slice(colon + 1).trim() });
  }
  return { app, msgId, txnId, recordRoute: tokens[3] === 'remainInDialog', simultaneous: tokens[6] === 'simultaneous', destinations, extraHeaders };
}

/**
 * A response going back upstream (§16.7 step 3): our Via removed, which leaves the Vias of the request we
 * received. They are set from that request: some UAs build a 487 from the CANCEL's Via (only ours, the CANCEL
 * being hop by hop), which would otherwise leave the response with no Via at all.
 */
function forUpstream(res: SipMessage, received: SipMessage): SipMessage {
  const copy = res.clone();
  const first = copy.headers.findIndex((h) => isVia(h.name));
  copy.headers = copy.headers.filter((h) => !isVia(h.name));
  const vias = received.headers.filter((h) => isVia(h.name)).map((h) => ({ ...h }));
  copy.headers.splice(first < 0 ? 0 : Math.min(first, copy.headers.length), 0, ...vias);
  return copy;
}

function isVia(name: string): boolean {
  const lower = name.toLowerCase();
  return lower === 'via' || lower === 'v';
}

/** §16.7 step 6: 6xx first, then the lowest class, 4xx before 5xx before 3xx... (simplified: 6xx, then lowest status). */
function better(candidate: number, best: number): boolean {
  if (best === 0) return true;
  if (candidate >= 600 !== best >= 600) return candidate >= 600;
  return candidate < best;
}

/** A request being proxied: its server transaction upstream and the client transactions (branches) downstream. */
interface ProxiedRequest {
  stx: ServerTransaction;
  branches: Set<ClientTransaction>;
  canceled: boolean;
  /** a 2xx came back (and went up) */
  answered: boolean;
  /** simultaneous: branches not finished yet */
  open: number;
  /** the best failure so far (§16.7 step 6), ready to go upstream */
  best?: SipMessage;
  /** the final response went up */
  finished: boolean;
}

export class StatefulProxy {
  /** INVITE server transactions being proxied, by id: a CANCEL for one is ours to forward */
  private readonly invites = new Map<string, ProxiedRequest>();

  constructor(private readonly deps: ProxyDeps) {}

  /** Starts proxying the network request of `stx` as the app asked. */
  start(cmd: ProxyCommand, inbound: InboundMessage, stx: ServerTransaction): void {
    const req = inbound.message;
    const maxForwards = Number(req.get('Max-Forwards') ?? '70');
    if (Number.isFinite(maxForwards) && maxForwards <= 0) {
      // §16.3 step 3
      stx.respond(buildResponse(req, 483, 'Too Many Hops')).catch(() => undefined);
      cmd.app.send(apiResponse(cmd.msgId, 'OK', 'done'));
      return;
    }
    const state: ProxiedRequest = { stx, branches: new Set(), canceled: false, answered: false, open: 0, finished: false };
    if (req.method === 'INVITE') this.invites.set(stx.id, state);
    stx.once('terminated', () => this.invites.delete(stx.id));
    const failed = (res: SipMessage): void => {
      if (!state.best || better(res.status ?? 500, state.best.status ?? 0)) state.best = res;
    };
    /** One client transaction toward `destination`; calls `ended` once when it failed (not after a 2xx). */
    const branch = async (destination: string, ended: () => void): Promise<void> => {
      const forwarded = this.forwardedRequest(req, destination, maxForwards, cmd);
      const target = (await this.deps.resolve(forwarded.routeTo).catch(() => []))[0];
      if (!target || this.deps.isOwnAddress(target)) {
        failed(buildResponse(req, target ? 482 : 503, target ? 'Loop Detected' : 'Service Unavailable'));
        return ended();
      }
      const local = this.deps.localFor(target.protocol, target.address);
      forwarded.message.prepend('Via', viaFor(local, generateBranch()));
      if (cmd.recordRoute && req.method === 'INVITE') forwarded.message.prepend('Record-Route', recordRouteFor(local));
      const ctx = this.deps.transactions.sendRequest(forwarded.message, target);
      state.branches.add(ctx);
      let final = false;
      const onFinal = (res: SipMessage, meta: WireMeta): void => {
        const status = res.status ?? 500;
        const first = !final;
        final = true;
        if (first) this.report(cmd, meta, res);
        if (status >= 200 && status < 300) {
          // every 2xx goes up, retransmissions and other branches' too (§16.7 step 5, RFC 6026 §8.4)
          stx.respond(forUpstream(res, req)).catch(() => undefined);
          if (!state.answered) {
            state.answered = true;
            cmd.app.send(apiResponse(cmd.msgId, 'OK', 'done'));
            // §16.7 step 10: the other branches still ringing are cancelled
            for (const other of state.branches) if (other !== ctx) void other.cancel();
          }
          return;
        }
        if (!first) return;
        failed(forUpstream(res, req));
        state.branches.delete(ctx);
        ctx.removeAllListeners('response').removeAllListeners('timeout').removeAllListeners('transport-error');
        ended();
      };
      ctx.on('response', (inb: InboundMessage) => {
        const status = inb.message.status ?? 0;
        if (status >= 200) return onFinal(inb.message, networkMeta(inb));
        if (status > 100 && !final && !state.answered) stx.respond(forUpstream(inb.message, req)).catch(() => undefined);
      });
      const synthesized = (status: number, reason: string): void => {
        if (final) return;
        const res = buildResponse(forwarded.message, status, reason);
        onFinal(res, { source: 'network', bytes: res.serialise().length, protocol: target.protocol, address: target.address, port: target.port });
      };
      ctx.on('timeout', () => synthesized(408, 'Request Timeout'));
      ctx.on('transport-error', () => synthesized(503, 'Service Unavailable'));
      if (state.canceled || state.answered) void ctx.cancel();
    };
    const fail = (err: unknown): void => {
      this.deps.logger?.warn({ err }, 'proxy failed');
      if (!state.finished) {
        state.finished = true;
        stx.respond(buildResponse(req, 500, 'Server Internal Error')).catch(() => undefined);
        cmd.app.send(apiResponse(cmd.msgId, 'OK', 'done'));
      }
    };
    if (cmd.simultaneous) {
      // parallel forking (§16.6 step 1 for each target): the best failure goes up once every branch failed
      state.open = cmd.destinations.length;
      const ended = (): void => {
        if (--state.open === 0 && !state.answered) this.finish(cmd, state);
      };
      for (const destination of cmd.destinations) branch(destination, ended).catch(fail);
      return;
    }
    // serial: the next destination after each failure, none once cancelled
    const next = (index: number): void => {
      const destination = cmd.destinations[index];
      if (destination === undefined || state.canceled) return this.finish(cmd, state);
      branch(destination, () => next(index + 1)).catch(fail);
    };
    next(0);
  }

  /** A CANCEL for an INVITE we proxy (§16.10): true when handled (answered 200 and sent downstream). */
  cancel(invite: ServerTransaction, cancel: InboundMessage, cancelStx: ServerTransaction): boolean {
    const state = this.invites.get(invite.id);
    if (!state) return false;
    cancelStx.respond(buildResponse(cancel.message, 200, 'OK')).catch(() => undefined);
    state.canceled = true;
    for (const ctx of state.branches) void ctx.cancel();
    return true;
  }

  /**
   * An in-dialog request whose top Route is us (we record-routed its dialog): forwarded per §16.4 / §16.6.
   * Returns false when it is not for us to route.
   */
  routeInDialog(inbound: InboundMessage, stx: ServerTransaction | undefined): boolean {
    const req = inbound.message;
    const routes = req.getAll('Route');
    const top = routes[0] ? parseNameAddr(routes[0]) : null;
    if (!top || !isOwnRecordRoute(top.uri.params)) return false;
    void (async () => {
      const forwarded = req.clone();
      removeTopRoute(forwarded); // §16.4: our URI as the top Route is removed
      const maxForwards = Number(req.get('Max-Forwards') ?? '70');
      if (maxForwards <= 0) {
        stx?.respond(buildResponse(req, 483, 'Too Many Hops')).catch(() => undefined);
        return;
      }
      forwarded.set('Max-Forwards', String(maxForwards - 1));
      const nextRoute = forwarded.get('Route');
      const nextHop = nextRoute ? parseNameAddr(nextRoute)?.rawUri : req.requestUri;
      const target = nextHop ? (await this.deps.resolve(nextHop).catch(() => []))[0] : undefined;
      if (!target || this.deps.isOwnAddress(target)) {
        stx?.respond(buildResponse(req, 404, 'Not Found')).catch(() => undefined);
        return;
      }
      const local = this.deps.localFor(target.protocol, target.address);
      forwarded.prepend('Via', viaFor(local, generateBranch()));
      if (!stx) {
        // ACK for a 2xx: stateless (§16.11)
        await this.deps.transactions.sendStateless(forwarded, target);
        return;
      }
      const ctx = this.deps.transactions.sendRequest(forwarded, target);
      ctx.on('response', (inb: InboundMessage) => {
        if ((inb.message.status ?? 0) > 100) stx.respond(forUpstream(inb.message, req)).catch(() => undefined);
      });
      ctx.on('timeout', () => stx.respond(buildResponse(req, 408, 'Request Timeout')).catch(() => undefined));
      ctx.on('transport-error', () => stx.respond(buildResponse(req, 503, 'Service Unavailable')).catch(() => undefined));
    })().catch((err: unknown) => this.deps.logger?.debug({ err }, 'in-dialog proxying failed'));
    return true;
  }

  private forwardedRequest(req: SipMessage, destination: string, maxForwards: number, cmd: ProxyCommand): { message: SipMessage; routeTo: string } {
    const message = req.clone();
    // §16.6 step 2: the target becomes the Request-URI; step 3: Max-Forwards
    message.requestUri = destination;
    message.set('Max-Forwards', String(Number.isFinite(maxForwards) ? maxForwards - 1 : 69));
    for (const h of cmd.extraHeaders) message.set(h.name, h.value);
    // §16.4: a top Route naming us (a request sent to us with our Record-Route of an earlier hop) is removed
    const top = message.get('Route');
    const parsedTop = top ? parseNameAddr(top) : null;
    if (parsedTop && isOwnRecordRoute(parsedTop.uri.params)) removeTopRoute(message);
    // §16.6 step 6-7: a remaining Route set decides the next hop, otherwise the Request-URI
    const route = message.get('Route');
    const routeTo = route ? (parseNameAddr(route)?.rawUri ?? destination) : destination;
    return { message, routeTo };
  }

  private report(cmd: ProxyCommand, meta: WireMeta, res: SipMessage): void {
    const head = apiResponse(cmd.msgId, 'OK', metaFieldsOf(meta), '', '', 'continue');
    cmd.app.sendSip(head, res.serialise());
  }

  /** No destination left: the best failure goes upstream (§16.7 step 6), then the app hears `done`. */
  private finish(cmd: ProxyCommand, state: ProxiedRequest): void {
    if (state.finished || state.answered) return;
    state.finished = true;
    const req = state.stx.request.message;
    const res = state.best ?? buildResponse(req, 408, 'Request Timeout');
    if (state.canceled && (res.status ?? 0) !== 487) {
      state.stx.respond(buildResponse(req, 487, 'Request Terminated')).catch(() => undefined);
    } else {
      state.stx.respond(res).catch(() => undefined);
    }
    cmd.app.send(apiResponse(cmd.msgId, 'OK', 'done'));
  }
}

const RR_PARAM = 'dcproxy';

/** Our Record-Route URI (§16.6 step 4): loose routing (lr), marked so the dialog's later requests are known as ours. */
function recordRouteFor(local: LocalAddress): string {
  return `<sip:${hostForUri(local.host)}:${local.port}${uriTransportParam(local.protocol)};lr;${RR_PARAM}>`;
}

/** Drops the first Route header line: the top Route, ours, in the requests this proxy routes. */
function removeTopRoute(message: SipMessage): void {
  const i = message.headers.findIndex((h) => h.name.toLowerCase() === 'route');
  if (i >= 0) message.headers.splice(i, 1);
}

function isOwnRecordRoute(params: Params): boolean {
  return params.some(([name]) => name === RR_PARAM);
}

function networkMeta(inb: InboundMessage): WireMeta {
  return { source: 'network', bytes: inb.raw.length, protocol: inb.flow.protocol, address: inb.flow.remoteAddress, port: inb.flow.remotePort };
}

