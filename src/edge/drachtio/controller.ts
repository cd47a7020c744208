/**
 * The SIP controller of the edge: what drachtio-server's DrachtioController,
 * SipDialogController and PendingRequestController do, on top of our transaction layer.
 *
 *  network request  -> (transaction layer) -> route to an app by method, or answer it ourselves
 *  app `sip` command -> complete the skeletal message, send it in a transaction or a dialog,
 *                       echo `Msg sent` with the wire form
 *  network response -> the app that sent the request, with the dialog id once one exists
 *
 * Dialogs (RFC 3261 section 12) are kept here because drachtio apps address in-dialog requests by
 * dialog id only and expect the server to fill in Request-URI, Route, tags and CSeq.
 */
import type { Logger } from 'pino';
import { SipMessage, parseNameAddr, parseUri, verbatimBytes } from '../message/index.js';
import type { TransportLayer, InboundMessage, SendTarget, SentInfo, TransportProtocol, Flow } from '../transport/index.js';
import { buildResponse as buildTxnResponse, generateBranch, generateTag, type TransactionLayer, type ServerTransaction, type ClientTransaction } from '../transaction/index.js';
import { DialogStore, dialogIdFor, type Dialog } from '../dialog/dialog.js';
import type { AppConnection, AppServer, AppSipCommand } from './app-server.js';
import { readAppMessage } from './app-message.js';
import { StatefulProxy, parseProxyCommand } from './proxy.js';
import { TransientMap } from '../../shared/transient-map.js';
import { apiResponse, newMsgId, sentRequestEchoHead, sentResponseEchoHead, sipEventHead, type WireMeta } from './wire-format.js';
import {
  contactFor, ensureContentType, generateCallId, generateCSeq, localizeContact, localUri, replaceLocalhost, viaFor, type LocalAddress,
} from './sip-builders.js';

/** Resolves a SIP URI to ordered transport targets (RFC 3263). */
export interface TargetResolver {
  resolveUri(uri: string): Promise<SendTarget[]>;
}

export interface ControllerOptions {
  transport: TransportLayer;
  transactions: TransactionLayer;
  apps: AppServer;
  resolver: TargetResolver;
  /** advertised addresses per listener */
  locals: LocalAddress[];
  T1?: number;
  T2?: number;
  /** how long an app may take to answer a request before we give up (drachtio: 64 s) */
  appResponseTimeoutMs?: number;
  maxDialogs?: number;
  logger?: Logger;
}

/** Requests drachtio-server hands to apps outside a dialog. */
const ROUTABLE_OUT_OF_DIALOG = new Set(['INVITE', 'REGISTER', 'MESSAGE', 'OPTIONS', 'INFO', 'NOTIFY', 'SUBSCRIBE', 'PUBLISH', 'REFER']);
/** RFC 3261 and extensions we know: an unknown method with no app gets 501 instead of 503. */
const KNOWN_METHODS = new Set([...ROUTABLE_OUT_OF_DIALOG, 'ACK', 'BYE', 'CANCEL', 'PRACK', 'UPDATE']);
/** Option tags (RFC 3261 8.2.2.3) the edge + srf can honour when a peer Requires them. */
const SUPPORTED_OPTION_TAGS = new Set(['100rel', 'timer', 'replaces', 'path', 'outbound', 'gruu', 'norefersub', 'tdialog', 'histinfo', 'from-change']);
/** Headers that are the server's own: app-supplied values are dropped (wire protocol doc). */
const SERVER_OWNED = new Set(['Via', 'Route', 'Record-Route', 'Content-Length', 'RSeq']);
/** Dialog identity the server fills in from the request / dialog; app values are dropped. */
const IDENTITY_HEADERS = new Set(['From', 'To', 'Call-ID', 'CSeq']);
/** App headers copied into a response we complete (8.2.6). */
function appMayAddToResponse(name: string): boolean {
  return !SERVER_OWNED.has(name) && !IDENTITY_HEADERS.has(name);
}
/** App headers copied into a request we complete (8.1.1; Max-Forwards is ours in-dialog, taken from the app only out of dialog). */
function appMayAddToRequest(name: string): boolean {
  return appMayAddToResponse(name) && name !== 'Max-Forwards';
}
const DIALOG_CREATING = new Set(['INVITE', 'SUBSCRIBE']);
const TARGET_REFRESH = new Set(['INVITE', 'UPDATE', 'SUBSCRIBE', 'NOTIFY', 'REFER']);
const ALLOW = 'INVITE, ACK, BYE, CANCEL, OPTIONS, INFO, UPDATE, PRACK, REGISTER, MESSAGE, SUBSCRIBE, NOTIFY, REFER';

/** A network request handed to an app and waiting for its response. */
interface PendingServerRequest {
  txnId: string;
  stx: ServerTransaction;
  inbound: InboundMessage;
  app: AppConnection;
  /** To tag for every response we send to this request (dialog-creating requests) */
  toTag?: string;
  finalSent: boolean;
  canceled: boolean;
  dialog?: Dialog;
  timer: NodeJS.Timeout;
  /** our 'terminated' listener on stx, removed once we are done so the finished transaction can be dropped */
  onTerminated: () => void;
}

/** A request an app asked us to send, waiting for responses. */
interface PendingClientRequest {
  txnId: string;
  ctx: ClientTransaction;
  request: SipMessage;
  target: SendTarget;
  app: AppConnection;
  dialogId: string;
}

export class SipController {
  readonly dialogs: DialogStore;
  // TransientMap: an answered request is let go of at once, not kept by V8's replaced hash tables (see there)
  private readonly serverRequests = new TransientMap<string, PendingServerRequest>();
  /** INVITE server transaction id -> its pending request, until the app's final (what a CANCEL looks up, 9.2) */
  private readonly pendingInvites = new TransientMap<string, PendingServerRequest>();
  /**
   * Call-ID and our To tag of each pending INVITE -> its pending request: the early dialog a 1xx
   * of ours creates (RFC 3261 §12.1.1) has no dialog record, so an UPDATE in it (RFC 3311 §5.1)
   * is found here and handed to the INVITE's app (as drachtio-server does; srf emits it on the INVITE).
   */
  private readonly earlyUasDialogs = new TransientMap<string, PendingServerRequest>();
  private readonly clientRequests = new TransientMap<string, PendingClientRequest>();
  private readonly log?: Logger;
  private readonly T1: number;
  private readonly T2: number;
  private readonly proxy: StatefulProxy;

  constructor(private readonly opts: ControllerOptions) {
    this.dialogs = new DialogStore(opts.maxDialogs);
    this.proxy = new StatefulProxy({
      transactions: opts.transactions,
      resolve: (uri) => opts.resolver.resolveUri(uri),
      localFor: (protocol, address) => this.localFor(protocol, address),
      isOwnAddress: (target) => this.isOwnAddress(target),
      ...(opts.logger ? { logger: opts.logger } : {}),
    });
    this.log = opts.logger;
    this.T1 = opts.T1 ?? 500;
    this.T2 = opts.T2 ?? 4000;
    opts.transactions.on('request', (inb: InboundMessage, stx: ServerTransaction) => this.guard(() => this.onNetworkRequest(inb, stx)));
    opts.transactions.on('ack', (inb: InboundMessage) => this.guard(() => this.onNetworkAck(inb)));
    opts.transactions.on('stray-response', (inb: InboundMessage) => this.guard(() => this.onStrayResponse(inb)));
    opts.apps.on('sip', (cmd) => this.guard(() => this.onAppSip(cmd)));
    opts.apps.on('proxy', (app, msgId, tokens, payload) => this.guard(() => this.onAppProxy(app, msgId, tokens, payload)));
    opts.apps.on('app-gone', (app) => this.guard(() => this.onAppGone(app)));
    // dialcore extension: tell apps that asked (`route|flow-closed`) when a connection goes away, so
    // bindings that came over it can be removed (RFC 7118 section 5)
    opts.transport.on('flow-closed', (flow: Flow) => {
      if (flow.protocol === 'udp') return;
      opts.apps.notify('flow-closed', `${newMsgId()}|flow-closed|${flow.protocol}|${flow.remoteAddress}|${flow.remotePort}`);
    });
    opts.apps.on('close-flow', (app, msgId, tokens) => this.guard(() => {
      const [, , protocol, address, port] = tokens;
      const closed = isProtocol(protocol) && opts.transport.closeFlowTo(protocol, address ?? '', Number(port));
      app.send(apiResponse(msgId, closed ? 'OK' : 'NOK', closed ? 'closed' : 'no such flow'));
    }));
  }

  stats(): { dialogs: number; serverRequests: number; clientRequests: number } {
    return { dialogs: this.dialogs.size, serverRequests: this.serverRequests.size, clientRequests: this.clientRequests.size };
  }

  /** Never let one bad message take the process down. */
  private guard(fn: () => unknown): void {
    try {
      const r = fn();
      if (r instanceof Promise) r.catch((err: unknown) => this.log?.error({ err }, 'controller error'));
    } catch (err) {
      this.log?.error({ err }, 'controller error');
    }
  }

  // ---------------------------------------------------------------------------------------------
  // local addresses

  private localFor(protocol: TransportProtocol, address?: string): LocalAddress {
    const v6 = !!address && address.includes(':');
    const same = this.opts.locals.filter((l) => l.protocol === protocol);
    const pick = same.find((l) => l.host.includes(':') === v6) ?? same[0] ?? this.opts.locals[0];
    return pick;
  }

  private isOwnAddress(target: SendTarget): boolean {
    return this.opts.locals.some((l) => l.port === target.port && (l.host === target.address || l.host === '0.0.0.0'));
  }

  // ---------------------------------------------------------------------------------------------
  // network -> apps

  private metaOf(inb: InboundMessage): WireMeta {
    return {
      source: 'network', bytes: inb.raw.length, protocol: inb.flow.protocol, address: inb.flow.remoteAddress, port: inb.flow.remotePort,
    };
  }

  private replyTo(inb: InboundMessage): SendTarget {
    return flowTarget(inb.flow);
  }

  private respondStateless(stx: ServerTransaction, status: number, reason?: string, extra?: Record<string, string>, toTag = generateTag()): void {
    const res = buildResponse(stx.request.message, status, reason, toTag);
    for (const [k, v] of Object.entries(extra ?? {})) res.set(k, v);
    stx.respond(res).catch((err: unknown) => this.log?.debug({ err }, 'failed to send response'));
  }


  private onNetworkRequest(inb: InboundMessage, stx: ServerTransaction): void {
    const msg = inb.message;
    const method = msg.method ?? '';
    if (method === 'CANCEL') return this.onNetworkCancel(inb, stx);

    // RFC 3261 8.2.2.1: we only serve sip/sips Request-URIs (RFC 4475 unkscm, novelsc)
    const ruri = parseUri(msg.requestUri ?? '');
    if (!ruri || (ruri.scheme !== 'sip' && ruri.scheme !== 'sips')) return this.respondStateless(stx, 416, 'Unsupported URI Scheme');

    const toTag = msg.toTag;
    if (toTag) return this.onInDialogRequest(inb, stx, toTag);

    if (method === 'BYE' || method === 'UPDATE' || method === 'PRACK') {
      return this.respondStateless(stx, 481, 'Call/Transaction Does Not Exist');
    }
    // RFC 3261 8.2.2.3: Require / Proxy-Require with option tags we don't support
    const unsupported = [...msg.getAll('Require'), ...msg.getAll('Proxy-Require')].filter((t) => !SUPPORTED_OPTION_TAGS.has(t.toLowerCase()));
    if (unsupported.length > 0) return this.respondStateless(stx, 420, 'Bad Extension', { Unsupported: unsupported.join(', ') });
    if (method === 'INVITE' && !this.acceptsSdp(msg)) return this.respondStateless(stx, 406, 'Not Acceptable', { Accept: 'application/sdp' });
    if (method === 'INVITE' && msg.body.length > 0 && !this.isKnownInviteBody(msg)) {
      return this.respondStateless(stx, 415, 'Unsupported Media Type', { Accept: 'application/sdp, multipart/mixed' });
    }

    const app = this.opts.apps.selectApp(method);
    if (!app) {
      if (!KNOWN_METHODS.has(method)) return this.respondStateless(stx, 501, 'Not Implemented', { Allow: ALLOW });
      return this.respondStateless(stx, ROUTABLE_OUT_OF_DIALOG.has(method) ? 503 : 405, undefined, { Allow: ALLOW });
    }
    if (method === 'INVITE' && this.dialogs.full) return this.respondStateless(stx, 503, 'Service Unavailable', { 'Retry-After': '5' });
    this.handToApp(inb, stx, app, undefined);
  }

  /** RFC 3261 8.2.3: an INVITE whose Accept excludes SDP can't be answered (RFC 4475 sdp01). */
  private acceptsSdp(msg: SipMessage): boolean {
    const accept = msg.getAll('Accept');
    if (accept.length === 0) return true;
    return accept.some((a) => /^\s*(application\/sdp|application\/\*|\*\/\*)\s*(;|$)/i.test(a));
  }

  private isKnownInviteBody(msg: SipMessage): boolean {
    const type = (msg.get('Content-Type') ?? 'application/sdp').toLowerCase();
    return /^(application\/sdp|multipart\/(mixed|alternative|related))\b/.test(type.trim());
  }

  private handToApp(inb: InboundMessage, stx: ServerTransaction, app: AppConnection, dialog: Dialog | undefined): void {
    const txnId = newMsgId();
    const method = inb.message.method ?? '';
    const timer = setTimeout(() => this.onAppResponseTimeout(txnId), this.opts.appResponseTimeoutMs ?? 64_000);
    timer.unref();
    const onTerminated = (): void => this.forgetServerRequest(txnId);
    const pending: PendingServerRequest = {
      txnId, stx, inbound: inb, app, finalSent: false, canceled: false, dialog, timer, onTerminated,
      toTag: dialog ? undefined : generateTag(),
    };
    this.serverRequests.set(txnId, pending);
    if (method === 'INVITE') {
      this.pendingInvites.set(stx.id, pending);
      if (pending.toTag) this.earlyUasDialogs.set(earlyDialogKey(inb.message.callId, pending.toTag), pending);
    }
    stx.on('terminated', onTerminated);
    const meta = this.metaOf(inb);
    const local = inb.flow;
    meta.receivedOn = dialog ? undefined : { address: local.localAddress, port: local.localPort };
    app.sendSip(sipEventHead(meta, txnId, dialog?.id ?? ''), requestBytes(inb));
    if (method === 'ACK') this.forgetServerRequest(txnId);
  }

  private forgetServerRequest(txnId: string): void {
    const p = this.serverRequests.get(txnId);
    if (!p) return;
    clearTimeout(p.timer);
    p.stx.off('terminated', p.onTerminated);
    this.serverRequests.delete(txnId);
    if (this.pendingInvites.get(p.stx.id) === p) this.pendingInvites.delete(p.stx.id);
    if (p.toTag) {
      const key = earlyDialogKey(p.inbound.message.callId, p.toTag);
      if (this.earlyUasDialogs.get(key) === p) this.earlyUasDialogs.delete(key);
    }
  }

  private onAppResponseTimeout(txnId: string): void {
    const p = this.serverRequests.get(txnId);
    if (!p) return;
    if (!p.finalSent) this.respondStateless(p.stx, 408, 'Request Timeout');
    this.forgetServerRequest(txnId);
  }

  private onNetworkCancel(inb: InboundMessage, stx: ServerTransaction): void {
    const invite = stx.cancelTarget;
    if (invite && this.proxy.cancel(invite, inb, stx)) return;
    const pending = invite ? this.pendingInvites.get(invite.id) : undefined;
    if (!invite || !pending || pending.finalSent) {
      // 9.2: a matching transaction that already has its final response: 200 (with the To tag of that final) and
      // no effect; none at all: 481
      if (stx.cancelMatched) this.respondStateless(stx, 200, 'OK', undefined, invite?.lastResponse?.toTag);
      else this.respondStateless(stx, 481, 'Call/Transaction Does Not Exist');
      return;
    }
    const ok = buildResponse(inb.message, 200, 'OK', pending.toTag);
    stx.respond(ok).catch(() => undefined);
    pending.canceled = true;
    pending.finalSent = true;
    const terminated = buildResponse(pending.inbound.message, 487, 'Request Terminated', pending.toTag);
    invite.respond(terminated).catch(() => undefined);
    // drachtio delivers the CANCEL under the INVITE's transaction id; srf emits 'cancel' on the request
    pending.app.sendSip(sipEventHead(this.metaOf(inb), pending.txnId, ''), requestBytes(inb));
  }

  private onInDialogRequest(inb: InboundMessage, stx: ServerTransaction, toTag: string): void {
    const msg = inb.message;
    const dialog = this.dialogs.findForIncoming(msg.callId ?? '', toTag);
    if (!dialog && msg.method === 'UPDATE') {
      const invite = this.earlyUasDialogOf(msg, toTag);
      if (invite) return this.handToApp(inb, stx, invite.app, undefined);
    }
    if (!dialog && this.proxy.routeInDialog(inb, stx)) return;
    if (!dialog || dialog.remoteTag !== (msg.fromTag ?? '')) return this.respondStateless(stx, 481, 'Call/Transaction Does Not Exist');
    // 12.2.2: CSeq must increase
    const seq = msg.cseq?.seq ?? 0;
    if (dialog.remoteSeq !== undefined && seq <= dialog.remoteSeq) return this.respondStateless(stx, 500, 'Server Internal Error');
    dialog.remoteSeq = seq;
    const method = msg.method ?? '';
    if (TARGET_REFRESH.has(method)) {
      const contact = msg.get('Contact');
      const na = contact ? parseNameAddr(contact) : null;
      if (na) dialog.remoteTarget = na.rawUri;
    }
    const app = this.appById(dialog.ownerAppId);
    if (!app) {
      // the owning app is gone: end the call cleanly rather than leave the peer hanging
      if (method === 'BYE') {
        this.respondStateless(stx, 200, 'OK');
        this.dialogs.remove(dialog);
      } else {
        this.respondStateless(stx, 480, 'Temporarily Unavailable');
      }
      return;
    }
    this.handToApp(inb, stx, app, dialog);
    if (method === 'BYE') {
      // 15.1.2: the dialog ends with the BYE; it is removed once the app has answered (sendAppResponse),
      // or after 64*T1 if the app never does
      setTimeout(() => this.dialogs.remove(dialog), 64 * this.T1).unref();
    }
  }

  /** The pending INVITE whose early dialog (a 1xx with our tag sent, no final yet) an in-dialog request is in. */
  private earlyUasDialogOf(msg: SipMessage, toTag: string): PendingServerRequest | undefined {
    const invite = this.earlyUasDialogs.get(earlyDialogKey(msg.callId, toTag));
    if (!invite || invite.finalSent || invite.inbound.message.fromTag !== msg.fromTag) return undefined;
    const last = invite.stx.lastResponse;
    return last && (last.status ?? 0) > 100 && (last.status ?? 0) < 200 && last.toTag === toTag ? invite : undefined;
  }

  private appById(id: string): AppConnection | undefined {
    return this.opts.apps.findById(id);
  }

  /** ACK for a 2xx (13.3.1.4): stops our retransmissions and goes to the app in-dialog. */
  private onNetworkAck(inb: InboundMessage): void {
    const msg = inb.message;
    const dialog = this.dialogs.findForIncoming(msg.callId ?? '', msg.toTag ?? '');
    if (!dialog) {
      this.proxy.routeInDialog(inb, undefined);
      return;
    }
    // only the first ACK for the awaited 2xx goes up; retransmitted ACKs are absorbed
    if (dialog.awaitingAckSeq === undefined || msg.cseq?.seq !== dialog.awaitingAckSeq) return;
    dialog.awaitingAckSeq = undefined;
    const app = this.appById(dialog.ownerAppId);
    if (!app) return;
    app.sendSip(sipEventHead(this.metaOf(inb), newMsgId(), dialog.id), requestBytes(inb));
  }

  private onStrayResponse(inb: InboundMessage): void {
    // 13.2.2.4: a retransmitted 2xx after the client transaction is gone: resend our ACK
    const msg = inb.message;
    if (msg.cseq?.method !== 'INVITE' || (msg.status ?? 0) < 200 || (msg.status ?? 0) >= 300) return;
    // 13.2.2.4 applies only to INVITEs we sent: anything else (no dialog of ours) is dropped
    const dialog = this.dialogs.getById(dialogIdFor(msg.callId ?? '', msg.fromTag ?? ''));
    if (!dialog || dialog.role !== 'uac') return;
    if (dialog.remoteTag === msg.toTag) {
      if (dialog.lastAck && dialog.lastAck.inviteSeq === msg.cseq.seq) {
        this.opts.transport.send(dialog.lastAck.data, dialog.lastAck.target).catch(() => undefined);
      }
    } else {
      // 2xx from a fork we did not keep: ACK and BYE it
      this.ackAndByeStrayFork(inb);
    }
  }

  private ackAndByeStrayFork(inb: InboundMessage): void {
    const res = inb.message;
    const contact = res.get('Contact');
    const target = contact ? parseNameAddr(contact)?.rawUri : undefined;
    if (!target) return;
    const local = this.localFor(inb.flow.protocol, inb.flow.remoteAddress);
    const send = (method: string, seq: number) => {
      const req = new SipMessage();
      req.method = method;
      req.requestUri = target;
      req.headers = [
        { name: 'Via', value: viaFor(local, generateBranch()) },
        { name: 'Max-Forwards', value: '70' },
        { name: 'From', value: res.get('From') ?? '' },
        { name: 'To', value: res.get('To') ?? '' },
        { name: 'Call-ID', value: res.callId ?? '' },
        { name: 'CSeq', value: `${seq} ${method}` },
      ];
      for (const rr of res.getAll('Record-Route').reverse()) req.append('Route', rr);
      return this.opts.transactions.sendStateless(req, flowTarget(inb.flow));
    };
    const seq = res.cseq?.seq ?? 1;
    send('ACK', seq).then(() => send('BYE', seq + 1)).catch(() => undefined);
  }

  private onAppGone(app: AppConnection): void {
    // pending requests are answered, not left hanging (drachtio: 480 when the app can't be reached)
    for (const p of this.serverRequests.valuesSnapshot()) {
      if (p.app !== app) continue;
      if (!p.finalSent && p.inbound.message.method !== 'ACK') this.respondStateless(p.stx, 480, 'Temporarily Unavailable');
      this.forgetServerRequest(p.txnId);
    }
    for (const c of this.clientRequests.valuesSnapshot()) if (c.app === app) this.clientRequests.delete(c.txnId);
  }

  // ---------------------------------------------------------------------------------------------
  // apps -> network

  /** srf.proxyRequest: the app hands a network request it was given to the stateful proxy (proxy.ts). */
  private onAppProxy(app: AppConnection, msgId: string, tokens: string[], payload: string): void {
    const cmd = parseProxyCommand(app, msgId, tokens, payload);
    if (!cmd) return app.send(apiResponse(msgId, 'NOK', 'proxy: transaction id and a destination are required'));
    const pending = this.serverRequests.get(cmd.txnId);
    if (!pending || pending.finalSent || pending.app !== app) return app.send(apiResponse(msgId, 'NOK', 'transaction not found (already answered, canceled or timed out)'));
    // the app answers nothing more to this request: the proxy does
    pending.finalSent = true;
    this.forgetServerRequest(pending.txnId);
    this.proxy.start(cmd, pending.inbound, pending.stx);
  }

  private async onAppSip(cmd: AppSipCommand): Promise<void> {
    let msg: SipMessage;
    try {
      msg = readAppMessage(cmd.sip);
    } catch (err) {
      cmd.app.send(apiResponse(cmd.msgId, 'NOK', (err as Error).message));
      return;
    }
    try {
      if (msg.isResponse) {
        if (!cmd.transactionId) return cmd.app.send(apiResponse(cmd.msgId, 'NOK', 'transaction id missing'));
        return await this.sendAppResponse(cmd, msg);
      }
      if (cmd.dialogId) return await this.sendInDialog(cmd, msg, cmd.dialogId);
      if (cmd.transactionId && msg.method === 'CANCEL') return this.sendAppCancel(cmd);
      const existing = msg.get('Call-ID') ? this.dialogs.findByCallId(msg.get('Call-ID') ?? '') : undefined;
      if (existing && msg.method !== 'INVITE') return await this.sendInDialog(cmd, msg, existing.id);
      return await this.sendNewRequest(cmd, msg);
    } catch (err) {
      cmd.app.send(apiResponse(cmd.msgId, 'NOK', (err as Error).message || 'failed to send'));
    }
  }

  /** Complete an app's response to a network request (8.2.6) and send it in the server transaction. */
  private async sendAppResponse(cmd: AppSipCommand, appMsg: SipMessage): Promise<void> {
    const pending = this.serverRequests.get(cmd.transactionId);
    if (!pending) return cmd.app.send(apiResponse(cmd.msgId, 'NOK', 'transaction not found (already answered, canceled or timed out)'));
    const status = appMsg.status ?? 500;
    if (pending.finalSent) return cmd.app.send(apiResponse(cmd.msgId, 'NOK', pending.canceled ? 'request was canceled' : 'final response already sent'));
    const req = pending.inbound.message;
    const method = req.method ?? '';
    const tag = status > 100 ? (req.toTag ?? pending.toTag) : req.toTag;
    const res = buildResponse(req, status, appMsg.reason || undefined, tag);
    const local = this.localFor(pending.inbound.flow.protocol, pending.inbound.flow.remoteAddress);
    const createsDialog = DIALOG_CREATING.has(method) && !req.toTag && status > 100 && status < 300;
    if (createsDialog) for (const rr of req.getAll('Record-Route')) res.append('Record-Route', rr);
    for (const h of appMsg.headers) {
      if (!appMayAddToResponse(h.name)) continue;
      res.append(h.name, h.name === 'Contact' ? localizeContact(h.value, local) : h.name === 'P-Asserted-Identity' ? replaceLocalhost(h.value, local) : h.value);
    }
    if ((createsDialog || (method === 'INVITE' && status >= 200 && status < 300)) && !res.has('Contact')) res.append('Contact', contactFor(local));
    res.body = appMsg.body;
    ensureContentType(res);

    let dialog = pending.dialog;
    if (createsDialog && status >= 200 && !dialog) dialog = this.createUasDialog(pending, res, local);
    if (status >= 200) {
      // done with this request once its final goes out: let go of the transaction before it is sent, so the
      // transaction layer can reduce it to a compact record (17.2.2 Completed / RFC 6026 Accepted)
      pending.finalSent = true;
      this.forgetServerRequest(pending.txnId);
    }
    let sending: Promise<SentInfo>;
    if (method === 'INVITE' && status >= 200 && status < 300 && dialog) {
      const inviteSeq = req.cseq?.seq ?? 0;
      const d = dialog;
      d.awaitingAckSeq = inviteSeq;
      pending.stx.once('ack-timeout', () => this.guard(() => this.onAckTimeout(d, inviteSeq)));
      sending = pending.stx.respond2xxRetransmit(res);
    } else {
      sending = pending.stx.respond(res);
    }
    // the bytes just sent, for the echo (read before awaiting: a later response replaces them)
    const wire = pending.stx.lastResponse === res ? pending.stx.lastResponseWire : undefined;
    const sent = await sending;
    if (status >= 200 && method === 'BYE' && pending.dialog) this.dialogs.remove(pending.dialog);
    const meta: WireMeta = { source: 'application', bytes: sent.bytes, protocol: sent.flow.protocol, address: sent.flow.remoteAddress, port: sent.flow.remotePort };
    const dialogId = method === 'INVITE' && status >= 200 && status < 300 ? (dialog?.id ?? '') : (pending.dialog?.id ?? '');
    const echoHead = sentResponseEchoHead(cmd.msgId, meta, pending.txnId, dialogId);
    const echo = wire ?? res.serialise();
    // srf builds nothing on the echo of a non-INVITE final (an INVITE's echo creates its dialog): it may wait
    // for the next frame to this app
    if (status >= 200 && method !== 'INVITE') cmd.app.sendSipDeferred(echoHead, echo);
    else cmd.app.sendSip(echoHead, echo);
  }

  private createUasDialog(pending: PendingServerRequest, res: SipMessage, local: LocalAddress): Dialog {
    const req = pending.inbound.message;
    const contact = req.get('Contact');
    const remoteTarget = (contact ? parseNameAddr(contact)?.rawUri : undefined) ?? req.requestUri ?? '';
    const dialog: Dialog = {
      id: dialogIdFor(req.callId ?? '', req.fromTag ?? ''),
      role: 'uas',
      callId: req.callId ?? '',
      localTag: pending.toTag ?? generateTag(),
      remoteTag: req.fromTag ?? '',
      localParty: res.get('To') ?? '',
      remoteParty: req.get('From') ?? '',
      localSeq: generateCSeq(),
      remoteSeq: req.cseq?.seq,
      remoteTarget,
      routeSet: req.getAll('Record-Route'),
      flow: this.replyTo(pending.inbound),
      lastInviteSeq: 0,
      localContact: res.get('Contact') ?? contactFor(local),
      ownerAppId: pending.app.id,
      state: 'confirmed',
    };
    this.dialogs.add(dialog);
    return dialog;
  }

  /**
   * 13.3.1.4: no ACK for our 2xx within 64*T1 (the transaction layer retransmitted it): tear the dialog
   * down with a BYE and tell the app with an `unsolicited` BYE (drachtio-server endRetransmitFinalResponse).
   */
  private onAckTimeout(dialog: Dialog, inviteSeq: number): void {
    if (dialog.awaitingAckSeq !== inviteSeq || dialog.state === 'terminated') return;
    dialog.awaitingAckSeq = undefined;
    this.log?.info({ dialog: dialog.id }, 'no ACK for 2xx: sending BYE');
    const bye = this.buildInDialogRequest(dialog, 'BYE', undefined);
    bye.append('Reason', 'SIP ;cause=200 ;text="ACK timeout"');
    this.resolveDialogTarget(dialog).then((target) => {
      this.setVia(bye, target);
      const ctx = this.opts.transactions.sendRequest(bye, target);
      ctx.on('terminated', () => undefined);
      const app = this.appById(dialog.ownerAppId);
      if (app) {
        const meta: WireMeta = { source: 'application', bytes: bye.serialise().length, protocol: target.protocol, address: target.address, port: target.port };
        app.sendSip(sipEventHead(meta, 'unsolicited', dialog.id), bye.serialise());
      }
      this.dialogs.remove(dialog);
    }).catch(() => this.dialogs.remove(dialog));
  }

  /** 12.2.1.1: build a request within a dialog. */
  private buildInDialogRequest(dialog: Dialog, method: string, appMsg: SipMessage | undefined): SipMessage {
    const req = new SipMessage();
    req.method = method;
    req.requestUri = dialog.remoteTarget;
    const seq = method === 'ACK' ? dialog.lastInviteSeq : ++dialog.localSeq;
    if (method === 'INVITE') dialog.lastInviteSeq = seq;
    req.headers = [
      { name: 'Via', value: '' },
      { name: 'Max-Forwards', value: '70' },
      { name: 'From', value: dialog.localParty },
      { name: 'To', value: dialog.remoteParty },
      { name: 'Call-ID', value: dialog.callId },
      { name: 'CSeq', value: `${seq} ${method}` },
    ];
    for (const r of dialog.routeSet) req.append('Route', r);
    const local = this.localFor(dialog.flow.protocol, dialog.flow.address);
    if (TARGET_REFRESH.has(method)) req.append('Contact', dialog.localContact);
    if (appMsg) {
      for (const h of appMsg.headers) {
        if (!appMayAddToRequest(h.name)) continue;
        if (h.name === 'Contact') {
          req.set('Contact', localizeContact(h.value, local));
          continue;
        }
        req.append(h.name, replaceLocalhost(h.value, local));
      }
      req.body = appMsg.body;
      ensureContentType(req);
    }
    return req;
  }

  /**
   * Where an in-dialog request goes: the first Route (loose routing, 12.2.1.1) or the remote target;
   * over the dialog's own connection when it has one (TCP/TLS/WS, and UAS dialogs over UDP whose
   * Contact is not reachable: symmetric signalling for phones behind NAT).
   */
  private async resolveDialogTarget(dialog: Dialog): Promise<SendTarget> {
    if (dialog.routeSet.length === 0 && (dialog.flow.protocol !== 'udp' || dialog.role === 'uas')) return dialog.flow;
    const next = dialog.routeSet.length > 0 ? (parseNameAddr(dialog.routeSet[0])?.rawUri ?? dialog.remoteTarget) : dialog.remoteTarget;
    const targets = await this.opts.resolver.resolveUri(next);
    if (targets.length === 0) throw new Error(`unable to resolve ${next}`);
    const t = targets[0];
    if (t.protocol === dialog.flow.protocol && t.address === dialog.flow.address && t.port === dialog.flow.port) return dialog.flow;
    return t;
  }

  private setVia(req: SipMessage, target: SendTarget): void {
    const local = this.localFor(target.protocol, target.address);
    req.set('Via', viaFor(local, generateBranch()));
  }

  private async sendInDialog(cmd: AppSipCommand, appMsg: SipMessage, dialogId: string): Promise<void> {
    const dialog = this.dialogs.getById(dialogId);
    if (!dialog) return cmd.app.send(apiResponse(cmd.msgId, 'NOK', 'unable to find dialog'));
    const method = appMsg.method ?? '';
    const req = this.buildInDialogRequest(dialog, method, appMsg);
    const target = await this.resolveDialogTarget(dialog);
    this.setVia(req, target);
    const txnId = newMsgId();
    if (method === 'ACK') {
      const data = req.serialise();
      const sent = await this.opts.transport.send(data, target);
      dialog.lastAck = { data, target, inviteSeq: dialog.lastInviteSeq };
      cmd.app.sendSip(sentRequestEchoHead(cmd.msgId, sentMeta(sent), txnId), req.serialise());
      return;
    }
    this.startClientTransaction(cmd, req, target, txnId, dialog.id);
    if (method === 'BYE') {
      // 15.1.1: the dialog is over once the BYE is sent; keep it long enough to match its response
      setTimeout(() => this.dialogs.remove(dialog), 64 * this.T1).unref();
      dialog.state = 'terminated';
    }
  }

  private sendAppCancel(cmd: AppSipCommand): void {
    const pending = this.clientRequests.get(cmd.transactionId);
    if (!pending || pending.request.method !== 'INVITE') {
      cmd.app.send(apiResponse(cmd.msgId, 'NOK', 'transaction not found'));
      return;
    }
    const cancel = buildCancel(pending.request);
    pending.ctx.cancel(cancel);
    const meta: WireMeta = { source: 'application', bytes: cancel.serialise().length, protocol: pending.target.protocol, address: pending.target.address, port: pending.target.port };
    cmd.app.sendSip(sentRequestEchoHead(cmd.msgId, meta, newMsgId()), cancel.serialise());
  }

  /** A new out-of-dialog request: complete the skeleton (8.1.1) and send it to the Request-URI or the outbound proxy. */
  private async sendNewRequest(cmd: AppSipCommand, appMsg: SipMessage): Promise<void> {
    const method = appMsg.method ?? '';
    const next = cmd.outboundProxy || appMsg.requestUri || '';
    const targets = await this.opts.resolver.resolveUri(next);
    const target = targets[0];
    if (!target) return cmd.app.send(apiResponse(cmd.msgId, 'NOK', `unable to resolve ${next}`));
    if (this.isOwnAddress(target)) return cmd.app.send(apiResponse(cmd.msgId, 'NOK', 'can not send request to myself'));
    const local = this.localFor(target.protocol, target.address);

    const req = new SipMessage();
    req.method = method;
    req.requestUri = appMsg.requestUri;
    const fromValue = appMsg.get('From');
    let from = fromValue ? replaceLocalhost(fromValue, local) : `<${localUri(local)}>`;
    if (!/;\s*tag=/i.test(stripUriPart(from))) from += `;tag=${generateTag()}`;
    const to = appMsg.get('To') ? replaceLocalhost(appMsg.get('To') ?? '', local) : `<${appMsg.requestUri}>`;
    const callId = appMsg.get('Call-ID') ?? generateCallId();
    const cseq = appMsg.get('CSeq') ?? `${generateCSeq()} ${method}`;
    req.headers = [
      { name: 'Via', value: viaFor(local, generateBranch()) },
      { name: 'Max-Forwards', value: appMsg.get('Max-Forwards') ?? '70' },
      { name: 'From', value: from },
      { name: 'To', value: to },
      { name: 'Call-ID', value: callId },
      { name: 'CSeq', value: cseq },
    ];
    for (const h of appMsg.headers) {
      if (!appMayAddToRequest(h.name)) continue;
      req.append(h.name, h.name === 'Contact' ? localizeContact(h.value, local) : h.name === 'P-Asserted-Identity' ? replaceLocalhost(h.value, local) : h.value);
    }
    if (DIALOG_CREATING.has(method) && !req.has('Contact')) req.append('Contact', contactFor(local));
    req.body = appMsg.body;
    ensureContentType(req);
    const fromTag = /;\s*tag=([^;>\s]+)/i.exec(stripUriPart(from))?.[1] ?? '';
    this.startClientTransaction(cmd, req, target, newMsgId(), method === 'INVITE' ? dialogIdFor(callId, fromTag) : '');
  }

  private startClientTransaction(cmd: AppSipCommand, req: SipMessage, target: SendTarget, txnId: string, dialogId: string): void {
    const ctx = this.opts.transactions.sendRequest(req, target);
    const pending: PendingClientRequest = { txnId, ctx, request: req, target, app: cmd.app, dialogId };
    this.clientRequests.set(txnId, pending);
    // Echo at once, before any response can exist: srf registers the transaction from the echo
    const wire = ctx.wire;
    const meta: WireMeta = { source: 'application', bytes: wire.length, protocol: target.protocol, address: target.address, port: target.port };
    cmd.app.sendSip(sentRequestEchoHead(cmd.msgId, meta, txnId), wire);
    ctx.on('response', (inb: InboundMessage) => this.guard(() => this.onClientResponse(pending, inb)));
    ctx.on('timeout', () => this.guard(() => this.synthesizeResponse(pending, 408, 'Request Timeout')));
    ctx.on('transport-error', () => this.guard(() => this.synthesizeResponse(pending, 503, 'Service Unavailable')));
    ctx.on('terminated', () => this.releaseClientRequest(pending));
  }

  /** Done with a client transaction: forget it and stop listening, so its finished transaction can be dropped. */
  private releaseClientRequest(pending: PendingClientRequest): void {
    if (this.clientRequests.get(pending.txnId) === pending) this.clientRequests.delete(pending.txnId);
    pending.ctx.removeAllListeners('response').removeAllListeners('timeout').removeAllListeners('transport-error').removeAllListeners('terminated');
  }

  private synthesizeResponse(pending: PendingClientRequest, status: number, reason: string): void {
    const res = buildResponse(pending.request, status, reason, undefined);
    const meta: WireMeta = { source: 'network', bytes: res.serialise().length, protocol: pending.target.protocol, address: pending.target.address, port: pending.target.port };
    pending.app.sendSip(sipEventHead(meta, pending.txnId, pending.dialogId && this.dialogs.getById(pending.dialogId) ? pending.dialogId : ''), res.serialise());
    this.clientRequests.delete(pending.txnId);
    if (pending.request.method === 'INVITE') this.dropEarlyDialog(pending);
  }

  private dropEarlyDialog(pending: PendingClientRequest): void {
    const d = pending.dialogId ? this.dialogs.getById(pending.dialogId) : undefined;
    if (d && d.state === 'early' && d.role === 'uac') this.dialogs.remove(d);
  }

  private onClientResponse(pending: PendingClientRequest, inb: InboundMessage): void {
    const res = inb.message;
    const status = res.status ?? 0;
    const method = pending.request.method ?? '';
    let dialogId = '';
    const isInitialInvite = method === 'INVITE' && !pending.request.toTag;
    if (isInitialInvite && status > 100 && status < 300 && res.toTag) {
      const existing = this.dialogs.getById(pending.dialogId);
      if (existing && existing.state === 'confirmed') {
        if (existing.remoteTag !== res.toTag) this.ackAndByeStrayFork(inb);
        else if (existing.lastAck) this.opts.transport.send(existing.lastAck.data, existing.lastAck.target).catch(() => undefined);
        return; // retransmitted 2xx: the app already has it
      }
      const dialog = this.upsertUacDialog(pending, inb, existing);
      if (status >= 200) dialog.state = 'confirmed';
      dialogId = dialog.id;
    } else if (isInitialInvite && status >= 300) {
      this.dropEarlyDialog(pending);
    } else if (pending.request.toTag) {
      dialogId = pending.dialogId;
      if (method === 'BYE' && status >= 200) {
        const d = this.dialogs.getById(pending.dialogId);
        if (d) this.dialogs.remove(d);
      }
    }
    if (pending.request.toTag && method === 'INVITE' && status >= 200 && status < 300) {
      // re-INVITE 2xx retransmitted: resend the ACK we already sent
      const d = this.dialogs.getById(pending.dialogId);
      if (d?.lastAck && d.lastAck.inviteSeq === res.cseq?.seq) {
        this.opts.transport.send(d.lastAck.data, d.lastAck.target).catch(() => undefined);
        return;
      }
      if (d && TARGET_REFRESH.has(method)) {
        const na = res.get('Contact') ? parseNameAddr(res.get('Contact') ?? '') : null;
        if (na) d.remoteTarget = na.rawUri;
      }
    }
    pending.app.sendSip(sipEventHead(this.metaOf(inb), pending.txnId, dialogId), res.serialise());
    // a non-INVITE final ends what the app can do with the request (17.1.2.2: retransmissions are absorbed)
    if (method !== 'INVITE' && status >= 200) this.releaseClientRequest(pending);
  }

  /** 12.1.2: the UAC's dialog from a 1xx with a tag (early) or a 2xx (confirmed). */
  private upsertUacDialog(pending: PendingClientRequest, inb: InboundMessage, existing: Dialog | undefined): Dialog {
    const res = inb.message;
    const req = pending.request;
    const contact = res.get('Contact');
    const remoteTarget = (contact ? parseNameAddr(contact)?.rawUri : undefined) ?? req.requestUri ?? '';
    const routeSet = res.getAll('Record-Route').reverse();
    if (existing) {
      existing.remoteTag = res.toTag ?? existing.remoteTag;
      existing.remoteParty = res.get('To') ?? existing.remoteParty;
      existing.remoteTarget = remoteTarget;
      existing.routeSet = routeSet;
      return existing;
    }
    const flow: SendTarget = { protocol: inb.flow.protocol, address: inb.flow.remoteAddress, port: inb.flow.remotePort, flowId: inb.flow.id };
    const dialog: Dialog = {
      id: pending.dialogId,
      role: 'uac',
      callId: req.callId ?? '',
      localTag: req.fromTag ?? '',
      remoteTag: res.toTag ?? '',
      localParty: req.get('From') ?? '',
      remoteParty: res.get('To') ?? '',
      localSeq: req.cseq?.seq ?? 1,
      remoteSeq: undefined,
      remoteTarget,
      routeSet,
      flow: pending.target.protocol === 'udp' ? pending.target : flow,
      lastInviteSeq: req.cseq?.seq ?? 1,
      localContact: req.get('Contact') ?? contactFor(this.localFor(pending.target.protocol, pending.target.address)),
      ownerAppId: pending.app.id,
      state: 'early',
    };
    this.dialogs.add(dialog);
    return dialog;
  }
}

// -----------------------------------------------------------------------------------------------

function isProtocol(p: string | undefined): p is TransportProtocol {
  return p === 'udp' || p === 'tcp' || p === 'tls' || p === 'ws' || p === 'wss';
}

/**
 * A network request as the app gets it: the serialised message, with the top Via as stamped by the transport
 * (RFC 3261 18.2.1). When the request arrived in exactly that form, its bytes are reused and only the Via spliced.
 */
/** A network request's bytes for the app: as received with the stamped top Via spliced in, else re-serialised. */
function requestBytes(inb: InboundMessage): Buffer {
  return (inb.verbatim && verbatimBytes(inb.message, inb.verbatim)) || inb.message.serialise();
}

function flowTarget(flow: Flow): SendTarget {
  return { protocol: flow.protocol, address: flow.remoteAddress, port: flow.remotePort, flowId: flow.id };
}

function sentMeta(sent: SentInfo): WireMeta {
  return { source: 'application', bytes: sent.bytes, protocol: sent.flow.protocol, address: sent.flow.remoteAddress, port: sent.flow.remotePort };
}

/** The part of a name-addr after the URI (so a `;tag=` inside <...> isn't mistaken for the header's). */
function stripUriPart(value: string): string {
  const gt = value.lastIndexOf('>');
  return gt === -1 ? value : value.slice(gt + 1);
}

/** RFC 3261 8.2.6.2 response; the To tag is added only when the request has none and this isn't a 100. */
function earlyDialogKey(callId: string | undefined, toTag: string): string {
  return `${callId ?? ''}\n${toTag}`;
}

export function buildResponse(req: SipMessage, status: number, reason: string | undefined, toTag: string | undefined): SipMessage {
  return buildTxnResponse(req, status, reason, toTag && status > 100 ? { toTag } : {});
}

/** RFC 3261 9.1: CANCEL mirrors the INVITE's Request-URI, Call-ID, To, From, CSeq number, top Via and Route. */
export function buildCancel(invite: SipMessage): SipMessage {
  const cancel = new SipMessage();
  cancel.method = 'CANCEL';
  cancel.requestUri = invite.requestUri;
  cancel.headers = [
    { name: 'Via', value: invite.get('Via') ?? '' },
    { name: 'Max-Forwards', value: '70' },
    { name: 'From', value: invite.get('From') ?? '' },
    { name: 'To', value: invite.get('To') ?? '' },
    { name: 'Call-ID', value: invite.get('Call-ID') ?? '' },
    { name: 'CSeq', value: `${invite.cseq?.seq ?? 1} CANCEL` },
  ];
  for (const r of invite.getAll('Route')) cancel.append('Route', r);
  return cancel;
}

