/**
 * One B2BUA call: the caller's INVITE (A leg, a UAS dialog) bridged to a callee (B leg, a UAC
 * dialog) with the media anchored on rtpengine (RFC 3264 offer/answer through MediaSession).
 *
 *   const session = calls.start(req, res, plan);      // CallRegistry, see call-registry.ts
 *   session.on('answered', ...).on('ended', ({ reason }) => ...);
 *
 * Built on srf.createUAC + srf.createUAS (not createB2BUA) so that every SDP goes through
 * rtpengine with per-leg flags, nothing of A's request is copied to B unless the plan says so
 * (masking), and forks/failover stay under our control:
 *
 * - The plan's `groups` are tried in order; the targets of one group are INVITEd at once (a user's
 *   registrations, RFC 3261 §16.7 parallel forking): the first 2xx wins, the other forks are
 *   CANCELed (§9.1) and any 2xx that crossed the CANCEL is ACKed and BYEd. The next group (the
 *   next carrier gateway) is tried when a group failed with 408/5xx or gave no response at all
 *   within `noResponseFailoverMs`.
 * - Early media: an 18x with SDP is answered through rtpengine and relayed to A as 183 with SDP
 *   (RFC 3960 gateway model: the first fork with early media owns it); 18x without SDP -> 180.
 * - CANCEL from A cancels every fork (the edge has answered 487 to A). A final failure from B is
 *   mapped (failure-mapping.ts) and sent to A with a standard reason phrase.
 * - Late offer (INVITE without SDP, RFC 3261 §13.2.1): B is INVITEd without SDP; B's 2xx offer goes
 *   through rtpengine to A's 2xx and A's answer in its ACK through rtpengine to B's ACK.
 * - Re-INVITE or UPDATE (RFC 3311) from either side (hold/resume, RFC 3264 §8.4) -> rtpengine
 *   re-offer -> re-INVITE or UPDATE on the other leg -> its answer through rtpengine -> 200 to the
 *   requester; an offer-less re-INVITE is passed through the same way with the offer in the 2xx and
 *   the answer in the ACK (§14.2); an UPDATE without SDP or a repeated SDP is a refresh answered
 *   here. 491 is passed back (and sent on glare). See onOffer() and docs/interop.md.
 * - RFC 4028 session timers on each leg (session-timer.ts): negotiated on every INVITE/UPDATE,
 *   refreshed by us when we are the refresher, and the call ended when the peer's refresh is due
 *   and missing. Allow/Supported come from src/app/sip/capabilities.ts; 100rel is not implemented.
 * - BYE from either side ends both legs. Every path ends in `end()`, which deletes the media
 *   session, cancels/BYEs whatever B-leg dialog exists and answers A if it is still unanswered.
 *   Guards against a vanished peer: ring timeout, max call duration, and the edge's BYE after an
 *   ACK timeout (RFC 3261 §13.3.1.4) which arrives as a 'destroy'.
 */
import { EventEmitter } from 'node:events';
import { randomUUID } from 'node:crypto';
import type { Logger } from 'pino';
import {
  MediaError,
  detectLegKind,
  type Leg,
  type LegKind,
  type MediaSession,
  type MediaSessionRegistry,
} from '../media/index.js';
import {
  createLateOfferUAC,
  handleEarlyUpdates,
  isLateOfferAnswered,
  isSipFailure,
  sendReinvite,
  type Dialog,
  type LateOfferAnswered,
  type SipHeaders,
  type Srf,
  type SrfMessage,
  type SrfRequest,
  type SrfResponse,
} from '../sip/srf.js';
import { CALL_ALLOW, badExtensionHeaders, supportedHeader, unsupportedRequired } from '../sip/capabilities.js';
import { bestFailure, isFailoverStatus, mapFailureToCaller, reasonPhrase, type CalleeKind } from './failure-mapping.js';
import {
  DEFAULT_SESSION_TIMER,
  LegSessionTimer,
  negotiateAsUas,
  retryIntervalAfter422,
  sendRefresh,
  timerFromResponse,
  uacRequestHeaders,
  type NegotiatedTimer,
  type SessionTimerConfig,
} from './session-timer.js';

/** One place the B leg may be reached. */
export interface CallTarget {
  /** Request-URI of the B-leg INVITE (registered contact, PBX URI, number@gateway). */
  uri: string;
  /** Next hop when it differs from the Request-URI (the NAT/WebSocket flow of a registration). */
  proxy?: string;
  /** Digest credentials answered on 401/407 (RFC 3261 §22.2). */
  auth?: { username: string; password: string };
  /** Every header of the B-leg INVITE the B2BUA sets (From, To, P-Asserted-Identity, ...). */
  headers: SipHeaders;
  /** For logs and the gateway channel count (binding id, gateway name). */
  label: string;
  /** Called once when this target answered (the call is up on it); the returned function when the call ends. */
  onConnected?: () => () => void;
}

export interface CallPlan {
  direction: 'inbound' | 'outbound' | 'internal';
  callee: CalleeKind;
  bLegKind: LegKind;
  /** Fork groups tried in order (see the module comment). */
  groups: CallTarget[][];
  /** Users on either side (kick-off ends their calls; the admin API lists them). */
  userIds: string[];
  /** Applied to every SDP sent to B (number masking: an SDP o=/s= line may carry the caller's number). */
  protectCallee?: (text: string) => string;
  /** Safe facts for session listings (never the masked customer's number). */
  summary?: Record<string, string>;
}

export type CallEndReason =
  | 'caller-hangup'
  | 'callee-hangup'
  | 'caller-cancel'
  | 'rejected'
  | 'no-answer'
  | 'media-failure'
  | 'max-duration'
  /** A leg stopped answering inside the dialog (re-INVITE 408/481). */
  | 'peer-lost'
  /** RFC 4028 §10: a leg's session timer ran out without a refresh. */
  | 'session-expired'
  /** RFC 3891: the caller's dialog was replaced (attended transfer); the callee's side lives on elsewhere. */
  | 'replaced'
  | 'terminated'
  | 'error';

export interface CallEnd {
  reason: CallEndReason;
  /** Final status sent to A when the call never got answered. */
  status?: number;
  /** From answer to end; 0 when never answered. */
  talkMs: number;
}

/** A dialog as RFC 3891 §3 names it in Replaces: Call-ID and the tags as seen by the core (local = to-tag). */
export interface DialogId {
  callId: string;
  localTag: string;
  remoteTag: string;
}

/**
 * The callee's side of an answered call, handed to a new owner (see `handOverCallee`): its dialog
 * (still up), and the call's rtpengine session whose `b` monologue is the callee and whose `a`
 * monologue, freed from the caller, is the new owner's to point elsewhere (RFC 3264 §8 re-offer).
 */
export interface HandedOverCallee {
  dialog: Dialog;
  media: MediaSession;
  calleeKind: LegKind;
  /** The callee's last SDP. */
  calleeSdp: string;
  /** The SDP rtpengine last wrote for the caller: the address and ports of the `a` monologue. */
  callerSideSdp: string;
  /** The SDP the callee last received from us (a refresh re-INVITE repeats it, RFC 3264 §8). */
  sdpToCallee: string;
  /**
   * RFC 4028 on the callee's leg, for the new owner to keep: what the leg agreed (null: no timer)
   * and when (the peer counts from then), our configuration, and whether the callee takes UPDATE for refreshes (RFC 3311 §5.1).
   */
  sessionTimer: { negotiated: NegotiatedTimer | null; negotiatedAt: number; config: SessionTimerConfig; allowsUpdate: boolean };
  /** Releases what the call held on the callee's target (a gateway channel); call it when the callee's side ends. */
  release: () => void;
}

export type CallState = 'routing' | 'ringing' | 'early' | 'answered' | 'ended';

export interface CallSessionEvents {
  ringing: [];
  'early-media': [];
  answered: [];
  held: [by: Leg];
  resumed: [by: Leg];
  ended: [end: CallEnd];
}

export interface CallTimers {
  /** No answer within this -> forks canceled, A gets 480. Default 60 s. */
  ringTimeoutMs?: number;
  /** A group that sent no response at all within this is abandoned for the next one. Default 5 s. */
  noResponseFailoverMs?: number;
  /** An answered call is ended after this (peer vanished without BYE). Default 4 h. */
  maxDurationMs?: number;
  /** RFC 4028 session timers on both legs (default 1800 s asked, 90 s minimum). */
  sessionTimer?: SessionTimerConfig;
}

export interface CallSessionDeps {
  srf: Srf;
  media: MediaSessionRegistry;
  logger?: Logger;
  timers?: CallTimers;
}

interface Attempt {
  target: CallTarget;
  request?: SrfRequest;
  cancelWanted: boolean;
  settled: boolean;
  /** Any response (provisional or final) received. */
  responded: boolean;
}

type GroupOutcome = { answered: Dialog | LateOfferAnswered; target: CallTarget } | { failed: number; noResponse?: boolean } | { aborted: true };

const SDP_HEADERS: SipHeaders = { 'Content-Type': 'application/sdp' };

/** RFC 3261 §20.5 / §20.37: what we implement, on every INVITE, re-INVITE, UPDATE and 2xx we send in a call. */
const CAPABILITY_HEADERS: SipHeaders = { Allow: CALL_ALLOW, Supported: supportedHeader() };

/** An offer/answer exchange in progress (RFC 3264 §4: one at a time per session). */
type Exchange = 'relay' | undefined;

export class CallSession extends EventEmitter<CallSessionEvents> {
  readonly id = randomUUID();
  readonly callId: string;
  readonly startedAt = new Date();
  readonly aLegKind: LegKind;
  private stateValue: CallState = 'routing';
  private planValue?: CallPlan;
  private media?: MediaSession;
  private uas?: Dialog;
  private uac?: Dialog;
  /** B answered a late-offer INVITE and waits for the ACK carrying our answer (end() must ACK and BYE it). */
  private lateAnswered?: LateOfferAnswered;
  private answeredAt = 0;
  private aFinalSent = false;
  private earlyMediaOwner?: Attempt;
  private readonly attempts = new Set<Attempt>();
  private readonly outstanding = new Set<Promise<unknown>>();
  private readonly timers = new Set<NodeJS.Timeout>();
  private releaseTarget?: () => void;
  private endPromise?: Promise<void>;
  private endResolve!: (end: CallEnd) => void;
  /** Settles when the call ended and every B-leg attempt (and stray dialog) is cleaned. */
  readonly finished: Promise<CallEnd>;
  private readonly logger?: Logger;
  private readonly ringTimeoutMs: number;
  private readonly noResponseFailoverMs: number;
  private readonly maxDurationMs: number;
  private readonly sessionTimer: SessionTimerConfig;
  /** RFC 4028 timer of each leg, once answered. */
  private readonly legTimers: Partial<Record<Leg, LegSessionTimer>> = {};
  /** Last SDP each leg sent us and we sent it (RFC 3264 §8: a refresh repeats it; a same-version offer changes nothing). */
  private readonly sdpFrom: Record<Leg, string> = { a: '', b: '' };
  private readonly sdpTo: Record<Leg, string> = { a: '', b: '' };
  /** Requests we send on each leg's dialog, one at a time (RFC 3261 §14.1 re-INVITEs; RFC 3311 §5.1 offers). */
  private readonly legQueues: Record<Leg, Promise<unknown>> = { a: Promise.resolve(), b: Promise.resolve() };
  /** Offers (re-INVITEs, UPDATEs with SDP) of ours in progress on each leg: an offer from that leg meanwhile is glare. */
  private readonly offersSent: Record<Leg, number> = { a: 0, b: 0 };
  private exchange: Exchange;
  /** Whether the A leg's INVITE carried no SDP (late offer). */
  private lateOffer = false;

  constructor(
    private readonly deps: CallSessionDeps,
    private readonly req: SrfRequest,
    private readonly res: SrfResponse,
  ) {
    super();
    this.callId = req.get('Call-ID') ?? req.callId;
    this.aLegKind = detectLegKind(req.body ?? '') ?? (/^wss?$/i.test(req.protocol) ? 'webrtc' : 'plain');
    this.logger = deps.logger?.child({ call: this.id });
    this.ringTimeoutMs = deps.timers?.ringTimeoutMs ?? 60_000;
    this.noResponseFailoverMs = deps.timers?.noResponseFailoverMs ?? 5_000;
    this.maxDurationMs = deps.timers?.maxDurationMs ?? 4 * 3_600_000;
    this.sessionTimer = deps.timers?.sessionTimer ?? DEFAULT_SESSION_TIMER;
    this.finished = new Promise((resolve) => (this.endResolve = resolve));
    // RFC 3261 §9.2: the edge answered the CANCEL (200) and the INVITE (487); we stop the forks.
    req.on('cancel', () => {
      this.aFinalSent = true;
      void this.end('caller-cancel');
    });
    // an UPDATE from A in the early dialog of our 18x (srf emits it on the INVITE)
    req.on('update', (update, res) => this.onEarlyUpdate('a', update, res));
  }

  private get isEnded(): boolean {
    return this.stateValue === 'ended';
  }

  get state(): CallState {
    return this.stateValue;
  }

  get plan(): CallPlan | undefined {
    return this.planValue;
  }

  get userIds(): readonly string[] {
    return this.planValue?.userIds ?? [];
  }

  /** Legs holding the other right now. */
  get holding(): ReadonlySet<Leg> {
    return this.media?.holding ?? new Set();
  }

  /** The RFC 4028 interval and refresher of a leg (null: no session timer on it). */
  sessionTimerOf(leg: Leg): NegotiatedTimer | null {
    return this.legTimers[leg]?.negotiated ?? null;
  }

  /** Runs the call to its end (never rejects). */
  async connect(plan: CallPlan): Promise<void> {
    this.planValue = plan;
    if (this.isEnded) return;
    // RFC 4028 §9: a Session-Expires below our Min-SE is refused before anything rings
    const aTimer = negotiateAsUas(this.req, this.sessionTimer);
    if (!aTimer.ok) return void this.end('rejected', aTimer.status, aTimer.headers);
    let media: MediaSession;
    try {
      media = this.deps.media.create({ callId: this.callId });
    } catch {
      return void this.end('error', 482); // the Call-ID is already a live call here (loop or replay)
    }
    this.media = media;
    // RFC 3261 §13.2.1 / RFC 3264 §5: an INVITE without SDP asks for an offer; B is INVITEd without
    // one too (as Kamailio with rtpengine does): B's 2xx offer goes through rtpengine to A's 2xx, and
    // A's answer in its ACK through rtpengine to the ACK toward B.
    this.lateOffer = !this.req.body || !this.req.body.trim();
    let offerForB: string | undefined;
    if (!this.lateOffer) {
      this.sdpFrom.a = this.req.body;
      try {
        offerForB = await media.offer(this.req.body, this.aLegKind, plan.bLegKind);
      } catch (err) {
        return void this.end('media-failure', mediaStatus(err));
      }
      if (this.isEnded) return;
      if (plan.protectCallee) offerForB = plan.protectCallee(offerForB);
    }
    this.stateValue = 'ringing';
    const ringTimer = this.timer(this.ringTimeoutMs, () => void this.end('no-answer', 480));

    const failures: number[] = [];
    for (let index = 0; index < plan.groups.length; index++) {
      const group = plan.groups[index]!;
      const hasNext = index < plan.groups.length - 1;
      const outcome = await this.ringGroup(group, offerForB, hasNext);
      if ('aborted' in outcome) return;
      if ('answered' in outcome) {
        this.clearTimer(ringTimer);
        if (offerForB !== undefined) this.sdpTo.b = offerForB;
        return this.bridge(outcome.answered, outcome.target, aTimer.headers, aTimer.timer);
      }
      failures.push(outcome.failed);
      if (!hasNext || !(outcome.noResponse || isFailoverStatus(outcome.failed))) break;
      this.logger?.info({ status: outcome.failed }, 'fork group failed; trying the next one');
    }
    this.clearTimer(ringTimer);
    const status = failures.length ? bestFailure(failures) : 480;
    return void this.end('rejected', mapFailureToCaller(status, plan.callee));
  }

  /** RFC 3891 §3: whether `id` names the caller's dialog of this answered call. */
  matchesCallerDialog(id: DialogId): boolean {
    const uas = this.uas;
    return this.stateValue === 'answered' && uas !== undefined && uas.connected && uas.sip.callId === id.callId && uas.sip.localTag === id.localTag && uas.sip.remoteTag === id.remoteTag;
  }

  /**
   * RFC 3891 replacement of the caller's dialog: the callee's side (dialog and media) is handed to
   * the caller's new owner and the caller gets a BYE; the call ends with reason `replaced`. The
   * callee's RFC 4028 timer goes with it: this session stops its own, the new owner runs it on.
   * Undefined when the call is not answered with a plain-RTP caller (a WebRTC caller's side of the
   * media cannot be re-pointed at a plain leg) or an exchange is in progress.
   */
  handOverCallee(): HandedOverCallee | undefined {
    const { uac, media } = this;
    if (this.stateValue !== 'answered' || !uac?.connected || !media || this.aLegKind !== 'plain' || this.exchange) return undefined;
    // this session was the only listener on the callee's dialog; the new owner listens from now on
    for (const event of ['destroy', 'modify', 'update'] as const) uac.removeAllListeners(event);
    const negotiated = this.sessionTimerOf('b');
    const negotiatedAt = this.legTimers.b?.negotiatedAt ?? Date.now();
    this.legTimers.b?.stop();
    const handed: HandedOverCallee = {
      dialog: uac,
      media,
      calleeKind: this.planValue!.bLegKind,
      calleeSdp: this.sdpFrom.b,
      callerSideSdp: this.sdpTo.a,
      sdpToCallee: this.sdpTo.b,
      sessionTimer: { negotiated, negotiatedAt, config: this.sessionTimer, allowsUpdate: this.allowsUpdate('b') },
      release: this.releaseTarget ?? (() => undefined),
    };
    this.uac = undefined;
    this.media = undefined;
    this.releaseTarget = undefined;
    void this.end('replaced');
    return handed;
  }

  /** Ends the call from our side (admin logout, kick-off, shutdown). */
  hangup(reason: CallEndReason = 'terminated'): Promise<void> {
    return this.end(reason, 480);
  }

  summary(): { id: string; kind: string; startedAt: string; state: CallState; direction?: string; [detail: string]: unknown } {
    return {
      ...(this.planValue?.summary ?? {}),
      id: this.id,
      kind: 'call',
      startedAt: this.startedAt.toISOString(),
      state: this.stateValue,
      direction: this.planValue?.direction,
    };
  }

  // -------------------------------------------------------------------------------------------
  // ringing
  // -------------------------------------------------------------------------------------------

  /** `offer` undefined: the late-offer INVITE (no SDP) toward B. */
  private ringGroup(group: readonly CallTarget[], offer: string | undefined, hasNext: boolean): Promise<GroupOutcome> {
    return new Promise<GroupOutcome>((resolve) => {
      let decided = false;
      const statuses: number[] = [];
      const groupAttempts: Attempt[] = [];
      const decide = (outcome: GroupOutcome): void => {
        if (decided) return;
        decided = true;
        if (noResponseTimer) this.clearTimer(noResponseTimer);
        this.removeListener('ended', onEnd);
        resolve(outcome);
      };
      const onEnd = (): void => decide({ aborted: true });
      this.once('ended', onEnd);
      const noResponseTimer = hasNext
        ? this.timer(this.noResponseFailoverMs, () => {
            if (groupAttempts.some((a) => a.responded)) return;
            for (const attempt of groupAttempts) this.cancelAttempt(attempt);
            decide({ failed: 408, noResponse: true });
          })
        : undefined;

      const launch = (attempt: Attempt, sessionExpires: number, retried422: boolean): void => {
        const target = attempt.target;
        const headers: SipHeaders = {
          ...target.headers,
          ...CAPABILITY_HEADERS,
          ...uacRequestHeaders(sessionExpires, this.sessionTimer),
          ...(offer !== undefined ? SDP_HEADERS : {}),
        };
        const options = { headers, ...(target.proxy ? { proxy: target.proxy } : {}), ...(target.auth ? { auth: target.auth } : {}) };
        const progress = {
          cbRequest: (err: Error | null, request: SrfRequest) => {
            if (err || !request) return;
            attempt.request = request;
            handleEarlyUpdates(request, (update, res) => this.onEarlyUpdate('b', update, res));
            if (attempt.cancelWanted) this.sendCancel(attempt);
          },
          cbProvisional: (provisional: SrfResponse) => {
            attempt.responded = true;
            if (!decided) void this.onProvisional(attempt, provisional);
          },
        };
        const running = (offer !== undefined
          ? this.deps.srf.createUAC(target.uri, { ...options, localSdp: offer }, progress)
          : createLateOfferUAC(this.deps.srf, target.uri, options, progress)
        ).then(
          (answered) => {
            attempt.settled = true;
            attempt.responded = true;
            this.attempts.delete(attempt);
            if (decided || this.isEnded || attempt.cancelWanted) {
              // a 2xx that crossed our CANCEL (or a losing fork): ACKed, now BYE (§15)
              return this.discard(answered);
            }
            for (const other of groupAttempts) if (other !== attempt) this.cancelAttempt(other);
            decide({ answered, target });
          },
          (err: unknown) => {
            const status = isSipFailure(err) ? err.status : 503;
            // RFC 4028 §7.4: a 422 is retried once with the interval its Min-SE asks for
            const retryWith = status === 422 && !retried422 ? retryIntervalAfter422(isSipFailure(err) ? err.res : undefined, sessionExpires) : null;
            if (retryWith !== null && !decided && !this.isEnded && !attempt.cancelWanted) {
              attempt.request = undefined;
              return launch(attempt, retryWith, true);
            }
            attempt.settled = true;
            attempt.responded = true;
            this.attempts.delete(attempt);
            if (!isSipFailure(err)) this.logger?.warn({ err: errMessage(err), target: target.label }, 'B-leg INVITE failed locally');
            statuses.push(status);
            if (status >= 600) for (const other of groupAttempts) this.cancelAttempt(other); // §16.7 step 5
            if (groupAttempts.every((a) => a.settled)) decide({ failed: bestFailure(statuses) });
          },
        );
        this.track(running);
      };

      if (group.length === 0) return decide({ failed: 480 });
      for (const target of group) {
        const attempt: Attempt = { target, cancelWanted: false, settled: false, responded: false };
        groupAttempts.push(attempt);
        this.attempts.add(attempt);
        launch(attempt, this.sessionTimer.sessionExpiresSeconds, false);
      }
    });
  }

  private async onProvisional(attempt: Attempt, provisional: SrfResponse): Promise<void> {
    if (this.aFinalSent || this.isEnded || provisional.status === 100) return;
    const body = provisional.body;
    // With a late offer an 18x SDP is B's offer, which only a PRACK could answer (RFC 3262, not
    // implemented): it is a preview of the 2xx's offer, and A hears ringing.
    if (!this.lateOffer && body && body.trim() && this.media && (!this.earlyMediaOwner || this.earlyMediaOwner === attempt)) {
      this.earlyMediaOwner = attempt;
      try {
        const sdpForA = await this.media.answer(body);
        if (this.aFinalSent || this.isEnded) return;
        this.stateValue = 'early';
        this.sendToA(183, { headers: SDP_HEADERS, body: sdpForA });
        this.emit('early-media');
        return;
      } catch (err) {
        this.logger?.info({ err: errMessage(err) }, 'early media SDP refused; relaying as ringing');
      }
    }
    if (this.stateValue === 'ringing') {
      this.sendToA(180);
      this.emit('ringing');
    }
  }

  /**
   * RFC 3311 in an early dialog: without reliable provisionals (RFC 3262 is not implemented) the
   * initial offer/answer is not complete before the 2xx, so an UPDATE carrying an offer is refused
   * as §5.2 says: from B (we offered in the INVITE and have no answer) 491; from A (its offer in the
   * INVITE is not answered yet) 500 with a Retry-After of 0-10 s. One without SDP (a target refresh)
   * gets 200.
   */
  private onEarlyUpdate(from: Leg, update: SrfRequest, res: SrfResponse): void {
    const unsupported = unsupportedRequired(update);
    if (unsupported.length > 0) return safeSend(res, 420, { headers: badExtensionHeaders(unsupported) });
    if (update.body && update.body.trim()) {
      this.logger?.info({ from }, 'UPDATE with an offer in an early dialog refused');
      return from === 'b' ? safeSend(res, 491) : safeSend(res, 500, { headers: { 'Retry-After': String(Math.floor(Math.random() * 11)) } });
    }
    safeSend(res, 200, { headers: CAPABILITY_HEADERS });
  }

  private cancelAttempt(attempt: Attempt): void {
    if (attempt.settled || attempt.cancelWanted) return;
    attempt.cancelWanted = true;
    if (attempt.request) this.sendCancel(attempt);
  }

  private sendCancel(attempt: Attempt): void {
    try {
      attempt.request?.cancel();
    } catch (err) {
      this.logger?.debug({ err: errMessage(err) }, 'CANCEL not sent');
    }
  }

  /** A B-leg answer we will not use: BYE it (a late-offer 2xx is ACKed first). */
  private discard(answered: Dialog | LateOfferAnswered): void {
    if (isLateOfferAnswered(answered)) this.track(answered.destroy());
    else this.release(answered);
  }

  // -------------------------------------------------------------------------------------------
  // answered
  // -------------------------------------------------------------------------------------------

  private async bridge(answered: Dialog | LateOfferAnswered, target: CallTarget, aTimerHeaders: SipHeaders, aTimer: NegotiatedTimer): Promise<void> {
    const media = this.media!;
    const late = isLateOfferAnswered(answered) ? answered : undefined;
    let sdpForA: string;
    if (late) {
      this.lateAnswered = late;
      if (!late.sdp.trim()) return void this.end('media-failure', 488); // §13.3.1: B's 2xx had to carry the offer
      this.sdpFrom.b = late.sdp;
      try {
        sdpForA = await media.offer(late.sdp, this.aLegKind, this.planValue!.bLegKind, 'b');
      } catch (err) {
        return void this.end('media-failure', mediaStatus(err));
      }
    } else {
      const uac = answered as Dialog;
      this.uac = uac;
      uac.on('destroy', () => void this.end('callee-hangup'));
      // srf handles every wire message of one TCP read synchronously: a BYE right behind the 200
      // may have ended the dialog before the promise let us listen (no 'destroy' seen).
      if (!uac.connected) return void this.end('callee-hangup');
      if (!uac.remote.sdp || !uac.remote.sdp.trim()) return void this.end('media-failure', 488);
      this.sdpFrom.b = uac.remote.sdp;
      try {
        sdpForA = await media.answer(uac.remote.sdp);
      } catch (err) {
        return void this.end('media-failure', mediaStatus(err));
      }
    }
    if (this.isEnded) return;
    let uas: Dialog;
    try {
      this.aFinalSent = true;
      this.sdpTo.a = sdpForA;
      uas = await this.deps.srf.createUAS(this.req, this.res, { localSdp: sdpForA, headers: { ...SDP_HEADERS, ...CAPABILITY_HEADERS, ...aTimerHeaders } });
    } catch (err) {
      // A canceled (or vanished) while B answered: B gets a BYE in end().
      this.logger?.info({ err: errMessage(err) }, 'A leg could not be answered');
      return void this.end(this.isEnded ? 'caller-cancel' : 'error');
    }
    if (this.isEnded) {
      this.release(uas);
      return;
    }
    this.uas = uas;
    uas.on('destroy', () => void this.end('caller-hangup'));
    if (!uas.connected) return void this.end('caller-hangup'); // BYE processed before we listened (see above)
    if (late) {
      // A's ACK carries its answer to B's offer (RFC 3264 §5); without one the call can't have media
      const ackSdp = await this.nextAck(uas);
      if (this.isEnded) return;
      if (!ackSdp || !ackSdp.trim()) return void this.end('media-failure');
      this.sdpFrom.a = ackSdp;
      let uac: Dialog;
      try {
        let sdpForB = await media.answer(ackSdp);
        if (this.planValue?.protectCallee) sdpForB = this.planValue.protectCallee(sdpForB);
        this.sdpTo.b = sdpForB;
        this.lateAnswered = undefined;
        uac = await late.ack(sdpForB);
      } catch (err) {
        this.logger?.info({ err: errMessage(err) }, 'late-offer answer not bridged');
        return void this.end('media-failure');
      }
      this.uac = uac;
      uac.on('destroy', () => void this.end('callee-hangup'));
      if (this.isEnded) return this.release(uac);
    }
    const uac = this.uac!;
    if (!uac.connected) return void this.end('callee-hangup');
    this.stateValue = 'answered';
    this.answeredAt = Date.now();
    this.releaseTarget = target.onConnected?.();
    for (const [leg, dialog] of [['a', uas], ['b', uac]] as const) {
      dialog.on('modify', (req, res) => void this.onOffer(leg, 'INVITE', req, res));
      dialog.on('update', (req, res) => void this.onOffer(leg, 'UPDATE', req, res));
      this.legTimers[leg] = new LegSessionTimer({ refresh: (seconds) => this.refresh(leg, seconds), expired: () => void this.end('session-expired') });
    }
    this.legTimers.a!.set(aTimer);
    this.legTimers.b!.set(timerFromResponse(uac.res, this.sessionTimer));
    this.timer(this.maxDurationMs, () => void this.end('max-duration'));
    this.emit('answered');
  }

  /** The SDP of the next ACK on a dialog ('' without one; undefined if the dialog ended first). */
  private nextAck(dialog: Dialog): Promise<string | undefined> {
    return new Promise((resolve) => {
      const onAck = (ack: SrfRequest): void => {
        this.removeListener('ended', onEnd);
        resolve(ack.body ?? '');
      };
      const onEnd = (): void => {
        dialog.removeListener('ack', onAck);
        resolve(undefined);
      };
      dialog.once('ack', onAck);
      this.once('ended', onEnd);
    });
  }

  private dialogOf(leg: Leg): Dialog | undefined {
    return leg === 'a' ? this.uas : this.uac;
  }

  /** Runs `send` after the requests already queued on the leg's dialog (one at a time, §14.1); `isOffer`: it carries an offer. */
  private onLeg<T>(leg: Leg, send: () => Promise<T>, isOffer: boolean): Promise<T> {
    const run = this.legQueues[leg].catch(() => undefined).then(async () => {
      if (isOffer) this.offersSent[leg]++;
      try {
        return await send();
      } finally {
        if (isOffer) this.offersSent[leg]--;
      }
    });
    this.legQueues[leg] = run;
    return run;
  }

  /** The peer of `leg` takes UPDATE (RFC 3311 §5.1: only sent to a UA that allows it). */
  private allowsUpdate(leg: Leg): boolean {
    const message: SrfMessage | undefined = leg === 'a' ? this.req : this.uac?.res;
    return /(^|,)\s*UPDATE\s*(,|$)/i.test(message?.get('Allow') ?? '');
  }

  /** Session-timer headers for a request we send on `leg` that keeps its current refresher (RFC 4028 §7.4). */
  private timerHeadersFor(leg: Leg): SipHeaders {
    const current = this.sessionTimerOf(leg);
    return uacRequestHeaders(current?.seconds ?? this.sessionTimer.sessionExpiresSeconds, this.sessionTimer, current ? (current.weRefresh ? 'uac' : 'uas') : undefined);
  }

  /**
   * An offer (or a request for one) sent to `leg`: an UPDATE when the incoming request was one and
   * the peer allows UPDATE, else a re-INVITE. Returns the peer's SDP and the 2xx; for an offer-less
   * re-INVITE the peer's SDP is its offer and `ack` sends our answer.
   */
  private sendToLeg(leg: Leg, method: 'INVITE' | 'UPDATE', sdp: string | undefined): Promise<{ sdp: string; res: SrfResponse; ack?: (answer: string) => void }> {
    const dialog = this.dialogOf(leg);
    if (!dialog) return Promise.reject(new Error('no dialog'));
    const headers: SipHeaders = { ...CAPABILITY_HEADERS, ...this.timerHeadersFor(leg) };
    return this.onLeg(leg, async () => {
      if (method === 'UPDATE' && sdp !== undefined && this.allowsUpdate(leg)) {
        const res = await dialog.request({ method: 'UPDATE', headers: { ...headers, ...SDP_HEADERS }, body: sdp });
        if (res.status >= 300) throw Object.assign(new Error(`UPDATE: ${res.status}`), { status: res.status, reason: res.reason, res });
        return { sdp: res.body ?? '', res };
      }
      const sent = await sendReinvite(dialog, { ...(sdp !== undefined ? { sdp } : {}), headers });
      return 'ack' in sent ? { sdp: sent.sdp, res: sent.res, ack: sent.ack } : { sdp: sent.res.body ?? '', res: sent.res };
    }, true);
  }

  /**
   * A re-INVITE (RFC 3261 §14.2) or UPDATE (RFC 3311 §5.2) from `from` in the confirmed dialog.
   * - RFC 4028 §9: negotiated like the initial INVITE (422 below our Min-SE); its 2xx restarts the leg's timer.
   * - No SDP: an UPDATE is a refresh answered here; a re-INVITE asks for an offer, so the other leg
   *   is re-INVITEd without SDP, its offer goes through rtpengine to our 2xx and the answer in the
   *   ACK back through rtpengine to the other leg's ACK.
   * - The same SDP as last time (RFC 3264 §8): a refresh, answered with our last SDP.
   * - A new offer: rtpengine re-offer -> the other leg (UPDATE if it allows UPDATE and this was one,
   *   else re-INVITE) -> its answer through rtpengine -> 2xx. 491 passes back; a second offer while
   *   one is being relayed gets 491 (RFC 3311 §5.2, RFC 3261 §14.2).
   */
  private async onOffer(from: Leg, method: 'INVITE' | 'UPDATE', req: SrfRequest, res: SrfResponse): Promise<void> {
    const other: Leg = from === 'a' ? 'b' : 'a';
    const media = this.media;
    if (!this.dialogOf(from) || !this.dialogOf(other) || !media || this.stateValue !== 'answered') return safeSend(res, 481);
    const unsupported = unsupportedRequired(req);
    if (unsupported.length > 0) return safeSend(res, 420, { headers: badExtensionHeaders(unsupported) });
    const timer = negotiateAsUas(req, this.sessionTimer);
    if (!timer.ok) return safeSend(res, timer.status, { headers: timer.headers });
    const okHeaders: SipHeaders = { ...CAPABILITY_HEADERS, ...timer.headers };
    const offer = req.body && req.body.trim() ? req.body : undefined;
    // glare: a re-INVITE or an offer crossing an offer of ours on the same dialog (RFC 3261 §14.2, RFC 3311 §5.2)
    if ((method === 'INVITE' || offer !== undefined) && this.offersSent[from] > 0) return safeSend(res, 491);

    if (offer === undefined && method === 'UPDATE') {
      safeSend(res, 200, { headers: okHeaders });
      return this.legTimers[from]?.set(timer.timer);
    }
    if (offer !== undefined && sameSdp(offer, this.sdpFrom[from])) {
      safeSend(res, 200, { headers: { ...okHeaders, ...SDP_HEADERS }, body: this.sdpTo[from] });
      return this.legTimers[from]?.set(timer.timer);
    }
    // an offer arriving while another exchange is relayed (RFC 3261 §14.2, RFC 3311 §5.2)
    if (this.exchange) return safeSend(res, 491);
    this.exchange = 'relay';
    const wasHolding = media.holding.has(from);
    try {
      if (offer === undefined) {
        await this.relayOfferless(from, res, okHeaders, timer.timer);
      } else {
        let offerForOther = await media.reoffer(offer, from);
        if (other === 'b' && this.planValue?.protectCallee) offerForOther = this.planValue.protectCallee(offerForOther);
        const reply = await this.sendToLeg(other, method, offerForOther);
        this.sdpTo[other] = offerForOther;
        this.sdpFrom[other] = reply.sdp;
        this.legTimers[other]?.set(timerFromResponse(reply.res, this.sessionTimer));
        let sdpBack = await media.answer(reply.sdp);
        if (from === 'b' && this.planValue?.protectCallee) sdpBack = this.planValue.protectCallee(sdpBack);
        this.sdpFrom[from] = offer;
        this.sdpTo[from] = sdpBack;
        safeSend(res, 200, { headers: { ...okHeaders, ...SDP_HEADERS }, body: sdpBack });
        this.legTimers[from]?.set(timer.timer);
      }
    } catch (err) {
      const status = err instanceof MediaError ? 488 : isSipFailure(err) ? (err.status === 491 ? 491 : 488) : 500;
      this.logger?.info({ err: errMessage(err), from, method }, 'offer not bridged');
      if (!res.finalResponseSent) safeSend(res, status);
      // RFC 3261 §12.2.1.2: 481 or 408 to a request inside the dialog -> that dialog is gone.
      if (isSipFailure(err) && (err.status === 408 || err.status === 481)) void this.end('peer-lost');
      else if (offer === undefined && res.finalResponseSent) void this.end('media-failure'); // the answer never came
      return;
    } finally {
      this.exchange = undefined;
    }
    const nowHolding = media.holding.has(from);
    if (nowHolding && !wasHolding) this.emit('held', from);
    else if (!nowHolding && wasHolding) this.emit('resumed', from);
  }

  /** An offer-less re-INVITE from `from` (RFC 3261 §14.2), passed through to the other leg. */
  private async relayOfferless(from: Leg, res: SrfResponse, okHeaders: SipHeaders, timer: NegotiatedTimer): Promise<void> {
    const other: Leg = from === 'a' ? 'b' : 'a';
    const media = this.media!;
    const requester = this.dialogOf(from)!;
    const reply = await this.sendToLeg(other, 'INVITE', undefined);
    if (!reply.ack) throw new Error('offer-less re-INVITE answered without a way to ACK');
    const ackOther = reply.ack;
    let answered = false;
    try {
      if (!reply.sdp.trim()) throw new MediaError('bad-sdp', 'the 2xx to an offer-less re-INVITE carried no offer');
      this.legTimers[other]?.set(timerFromResponse(reply.res, this.sessionTimer));
      let offerForRequester = await media.reoffer(reply.sdp, other);
      if (from === 'b' && this.planValue?.protectCallee) offerForRequester = this.planValue.protectCallee(offerForRequester);
      this.sdpFrom[other] = reply.sdp;
      const ack = this.nextAck(requester);
      safeSend(res, 200, { headers: { ...okHeaders, ...SDP_HEADERS }, body: offerForRequester });
      this.sdpTo[from] = offerForRequester;
      this.legTimers[from]?.set(timer);
      const answer = await ack;
      if (!answer || !answer.trim()) throw new MediaError('bad-sdp', 'the ACK carried no answer');
      let answerForOther = await media.answer(answer);
      if (other === 'b' && this.planValue?.protectCallee) answerForOther = this.planValue.protectCallee(answerForOther);
      this.sdpFrom[from] = answer;
      this.sdpTo[other] = answerForOther;
      ackOther(answerForOther);
      answered = true;
    } finally {
      // the other leg's 2xx is ACKed whatever happened (§13.2.2.4), with its own last answer if we have no new one
      if (!answered) ackOther(this.sdpTo[other] || reply.sdp);
    }
  }

  /** RFC 4028 §10: our refresh on `leg` (UPDATE without SDP when the peer allows it, else a re-INVITE with our last SDP). */
  private async refresh(leg: Leg, seconds: number): Promise<NegotiatedTimer | null> {
    const dialog = this.dialogOf(leg);
    if (!dialog || this.isEnded) return null;
    const res = await sendRefresh(dialog, {
      seconds, config: this.sessionTimer, allowsUpdate: this.allowsUpdate(leg), sdp: this.sdpTo[leg], headers: CAPABILITY_HEADERS,
      serialise: (send, isInvite) => this.onLeg(leg, send, isInvite),
    });
    if (res.status === 408 || res.status === 481) {
      void this.end('peer-lost'); // RFC 3261 §12.2.1.2
      return null;
    }
    if (res.status >= 300) throw new Error(`session refresh on leg ${leg}: ${res.status}`);
    this.logger?.debug({ leg, status: res.status }, 'session refreshed');
    return timerFromResponse(res, this.sessionTimer);
  }

  // -------------------------------------------------------------------------------------------
  // ending
  // -------------------------------------------------------------------------------------------

  private end(reason: CallEndReason, status?: number, headers?: SipHeaders): Promise<void> {
    if (this.endPromise) return this.endPromise;
    const wasAnswered = this.stateValue === 'answered';
    this.stateValue = 'ended';
    for (const t of this.timers) clearTimeout(t);
    this.timers.clear();
    this.legTimers.a?.stop();
    this.legTimers.b?.stop();
    let sentStatus: number | undefined;
    if (!this.aFinalSent) {
      sentStatus = status ?? 480;
      this.sendToA(sentStatus, headers ? { headers } : {});
      this.aFinalSent = true;
    }
    for (const attempt of this.attempts) this.cancelAttempt(attempt);
    const end: CallEnd = { reason, ...(sentStatus !== undefined ? { status: sentStatus } : {}), talkMs: wasAnswered ? Date.now() - this.answeredAt : 0 };
    this.logger?.info({ reason, status: sentStatus, talkMs: end.talkMs }, 'call ended');
    this.emit('ended', end);
    this.endPromise = (async () => {
      this.releaseTarget?.();
      if (this.lateAnswered) this.track(this.lateAnswered.destroy());
      if (this.uac) this.release(this.uac);
      if (this.uas) this.release(this.uas);
      await this.media?.delete();
      while (this.outstanding.size > 0) await Promise.allSettled([...this.outstanding]);
      this.endResolve(end);
    })();
    return this.endPromise;
  }

  /** BYE a dialog still up (§15.1.1); a dialog the peer already ended is left alone. */
  private release(dialog: Dialog): void {
    if (!dialog.connected) return;
    this.track(dialog.destroy().catch((err: unknown) => this.logger?.debug({ err: errMessage(err) }, 'BYE failed')));
  }

  private sendToA(status: number, opts: { headers?: SipHeaders; body?: string } = {}): void {
    if (this.aFinalSent && status >= 200) return;
    try {
      this.res.send(status, reasonPhrase(status), opts);
    } catch (err) {
      this.logger?.debug({ err: errMessage(err), status }, 'response to A not sent');
    }
  }

  private track(promise: Promise<unknown>): void {
    const tracked = promise.catch(() => undefined).finally(() => this.outstanding.delete(tracked));
    this.outstanding.add(tracked);
  }

  private timer(ms: number, fn: () => void): NodeJS.Timeout {
    const t = setTimeout(() => {
      this.timers.delete(t);
      fn();
    }, ms);
    t.unref();
    this.timers.add(t);
    return t;
  }

  private clearTimer(t: NodeJS.Timeout): void {
    clearTimeout(t);
    this.timers.delete(t);
  }
}

/**
 * RFC 3264 §8: an offer that repeats the previous one (same o= version, nothing changed: a session
 * refresh, RFC 4028 §10) changes nothing. Compared in full: a peer that changes its SDP without
 * raising the version still gets its change relayed.
 */
function sameSdp(sdp: string, previous: string): boolean {
  const normalise = (text: string): string => text.replace(/\r\n/g, '\n').trim();
  return previous.length > 0 && normalise(sdp) === normalise(previous);
}

function mediaStatus(err: unknown): number {
  return err instanceof MediaError ? err.sipStatus : 500;
}

function safeSend(res: SrfResponse, status: number, opts: { headers?: SipHeaders; body?: string } = {}): void {
  try {
    res.send(status, reasonPhrase(status), opts);
  } catch {
    // the transaction is gone (peer gave up)
  }
}

function errMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
