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
 * - Re-INVITE from either side (hold/resume, RFC 3264 §8.4) -> rtpengine re-offer -> re-INVITE
 *   on the other leg -> its answer through rtpengine -> 200 to the requester. 491 is passed back.
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
import { isSipFailure, type Dialog, type SipHeaders, type Srf, type SrfRequest, type SrfResponse } from '../sip/srf.js';
import { bestFailure, isFailoverStatus, mapFailureToCaller, reasonPhrase, type CalleeKind } from './failure-mapping.js';

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
  | 'terminated'
  | 'error';

export interface CallEnd {
  reason: CallEndReason;
  /** Final status sent to A when the call never got answered. */
  status?: number;
  /** From answer to end; 0 when never answered. */
  talkMs: number;
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

type GroupOutcome = { answered: Dialog; target: CallTarget } | { failed: number; noResponse?: boolean } | { aborted: true };

const SDP_HEADERS: SipHeaders = { 'Content-Type': 'application/sdp' };

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
    this.finished = new Promise((resolve) => (this.endResolve = resolve));
    // RFC 3261 §9.2: the edge answered the CANCEL (200) and the INVITE (487); we stop the forks.
    req.on('cancel', () => {
      this.aFinalSent = true;
      void this.end('caller-cancel');
    });
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

  /** Runs the call to its end (never rejects). */
  async connect(plan: CallPlan): Promise<void> {
    this.planValue = plan;
    if (this.isEnded) return;
    if (!this.req.body || !this.req.body.trim()) {
      // Late offer (INVITE without SDP) is not bridged: rtpengine needs A's offer first.
      return void this.end('media-failure', 488);
    }
    let media: MediaSession;
    try {
      media = this.deps.media.create({ callId: this.callId });
    } catch {
      return void this.end('error', 482); // the Call-ID is already a live call here (loop or replay)
    }
    this.media = media;
    let offerForB: string;
    try {
      offerForB = await media.offer(this.req.body, this.aLegKind, plan.bLegKind);
    } catch (err) {
      return void this.end('media-failure', mediaStatus(err));
    }
    if (this.isEnded) return;
    if (plan.protectCallee) offerForB = plan.protectCallee(offerForB);
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
        return this.bridge(outcome.answered, outcome.target);
      }
      failures.push(outcome.failed);
      if (!hasNext || !(outcome.noResponse || isFailoverStatus(outcome.failed))) break;
      this.logger?.info({ status: outcome.failed }, 'fork group failed; trying the next one');
    }
    this.clearTimer(ringTimer);
    const status = failures.length ? bestFailure(failures) : 480;
    return void this.end('rejected', mapFailureToCaller(status, plan.callee));
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

  private ringGroup(group: readonly CallTarget[], offer: string, hasNext: boolean): Promise<GroupOutcome> {
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

      if (group.length === 0) return decide({ failed: 480 });
      for (const target of group) {
        const attempt: Attempt = { target, cancelWanted: false, settled: false, responded: false };
        groupAttempts.push(attempt);
        this.attempts.add(attempt);
        const sdp = offer;
        const running = this.deps.srf
          .createUAC(
            target.uri,
            { headers: { ...target.headers, ...SDP_HEADERS }, localSdp: sdp, ...(target.proxy ? { proxy: target.proxy } : {}), ...(target.auth ? { auth: target.auth } : {}) },
            {
              cbRequest: (err, request) => {
                if (err || !request) return;
                attempt.request = request;
                if (attempt.cancelWanted) this.sendCancel(attempt);
              },
              cbProvisional: (provisional) => {
                attempt.responded = true;
                if (!decided) void this.onProvisional(attempt, provisional);
              },
            },
          )
          .then(
            (dialog) => {
              attempt.settled = true;
              attempt.responded = true;
              this.attempts.delete(attempt);
              if (decided || this.isEnded || attempt.cancelWanted) {
                // a 2xx that crossed our CANCEL (or a losing fork): ACKed by srf, now BYE (§15)
                return this.release(dialog);
              }
              for (const other of groupAttempts) if (other !== attempt) this.cancelAttempt(other);
              decide({ answered: dialog, target });
            },
            (err: unknown) => {
              attempt.settled = true;
              attempt.responded = true;
              this.attempts.delete(attempt);
              const status = isSipFailure(err) ? err.status : 503;
              if (!isSipFailure(err)) this.logger?.warn({ err: errMessage(err), target: target.label }, 'B-leg INVITE failed locally');
              statuses.push(status);
              if (status >= 600) for (const other of groupAttempts) this.cancelAttempt(other); // §16.7 step 5
              if (groupAttempts.every((a) => a.settled)) decide({ failed: bestFailure(statuses) });
            },
          );
        this.track(running);
      }
    });
  }

  private async onProvisional(attempt: Attempt, provisional: SrfResponse): Promise<void> {
    if (this.aFinalSent || this.isEnded || provisional.status === 100) return;
    const body = provisional.body;
    if (body && body.trim() && this.media && (!this.earlyMediaOwner || this.earlyMediaOwner === attempt)) {
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

  // -------------------------------------------------------------------------------------------
  // answered
  // -------------------------------------------------------------------------------------------

  private async bridge(uac: Dialog, target: CallTarget): Promise<void> {
    this.uac = uac;
    uac.on('destroy', () => void this.end('callee-hangup'));
    // srf handles every wire message of one TCP read synchronously: a BYE right behind the 200
    // may have ended the dialog before the promise let us listen (no 'destroy' seen).
    if (!uac.connected) return void this.end('callee-hangup');
    const media = this.media!;
    let sdpForA: string;
    try {
      sdpForA = await media.answer(uac.remote.sdp);
    } catch (err) {
      return void this.end('media-failure', mediaStatus(err));
    }
    if (this.isEnded) return;
    let uas: Dialog;
    try {
      this.aFinalSent = true;
      uas = await this.deps.srf.createUAS(this.req, this.res, { localSdp: sdpForA, headers: SDP_HEADERS });
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
    this.stateValue = 'answered';
    this.answeredAt = Date.now();
    this.releaseTarget = target.onConnected?.();
    uas.on('destroy', () => void this.end('caller-hangup'));
    if (!uas.connected) return void this.end('caller-hangup'); // BYE processed before we listened (see above)
    if (!uac.connected) return void this.end('callee-hangup');
    uas.on('modify', (req, res) => void this.relayReoffer('a', req, res));
    uac.on('modify', (req, res) => void this.relayReoffer('b', req, res));
    this.timer(this.maxDurationMs, () => void this.end('max-duration'));
    this.emit('answered');
  }

  /** A re-INVITE from `from` (RFC 3261 §14.2): re-offer through rtpengine to the other leg. */
  private async relayReoffer(from: Leg, req: SrfRequest, res: SrfResponse): Promise<void> {
    const own = from === 'a' ? this.uas : this.uac;
    const other = from === 'a' ? this.uac : this.uas;
    const media = this.media;
    if (!own || !other || !media || this.stateValue !== 'answered') return safeSend(res, 481);
    if (!req.body || !req.body.trim()) {
      // An offer-less re-INVITE asks for our offer: repeat the last SDP we gave this leg (§14.2).
      return safeSend(res, 200, { headers: SDP_HEADERS, body: own.local.sdp });
    }
    const wasHolding = media.holding.has(from);
    try {
      let offer = await media.reoffer(req.body, from);
      if (from === 'a' && this.planValue?.protectCallee) offer = this.planValue.protectCallee(offer);
      const answer = await other.modify(offer);
      const sdpBack = await media.answer(answer);
      safeSend(res, 200, { headers: SDP_HEADERS, body: from === 'b' && this.planValue?.protectCallee ? this.planValue.protectCallee(sdpBack) : sdpBack });
    } catch (err) {
      const status = err instanceof MediaError ? 488 : isSipFailure(err) ? (err.status === 491 ? 491 : 488) : 500;
      this.logger?.info({ err: errMessage(err), from }, 're-INVITE not bridged');
      safeSend(res, status);
      // RFC 3261 §12.2.1.2: 481 or 408 to a request inside the dialog -> that dialog is gone.
      if (isSipFailure(err) && (err.status === 408 || err.status === 481)) void this.end('peer-lost');
      return;
    }
    const nowHolding = media.holding.has(from);
    if (nowHolding && !wasHolding) this.emit('held', from);
    else if (!nowHolding && wasHolding) this.emit('resumed', from);
  }

  // -------------------------------------------------------------------------------------------
  // ending
  // -------------------------------------------------------------------------------------------

  private end(reason: CallEndReason, status?: number): Promise<void> {
    if (this.endPromise) return this.endPromise;
    const wasAnswered = this.stateValue === 'answered';
    this.stateValue = 'ended';
    for (const t of this.timers) clearTimeout(t);
    this.timers.clear();
    let sentStatus: number | undefined;
    if (!this.aFinalSent) {
      sentStatus = status ?? 480;
      this.sendToA(sentStatus);
      this.aFinalSent = true;
    }
    for (const attempt of this.attempts) this.cancelAttempt(attempt);
    const end: CallEnd = { reason, ...(sentStatus !== undefined ? { status: sentStatus } : {}), talkMs: wasAnswered ? Date.now() - this.answeredAt : 0 };
    this.logger?.info({ reason, status: sentStatus, talkMs: end.talkMs }, 'call ended');
    this.emit('ended', end);
    this.endPromise = (async () => {
      this.releaseTarget?.();
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
