/**
 * RFC 4028 session timers, one per leg of a call (the B2BUA is a UA on each leg, §2).
 *
 * - Negotiation as UAS (§9), for every INVITE/re-INVITE/UPDATE a leg sends us: a Session-Expires
 *   below our Min-SE gets 422 with our Min-SE; otherwise the 2xx carries the interval (the
 *   request's, never above ours and never below its Min-SE) and the refresher: the one the request
 *   named, else the UAC when it supports `timer` (Require: timer then goes in the 2xx), else us.
 * - Negotiation as UAC (§7): our INVITE/re-INVITE/UPDATE carries Supported: timer, Session-Expires
 *   and Min-SE; a 422 is retried once with the 422's Min-SE; the 2xx's Session-Expires (and its
 *   refresher) is what holds; a 2xx without one means no timer on that leg (§7.4).
 * - The refresher refreshes at half the interval (§10); the other side ends the session when no
 *   refresh came by `interval - min(32, interval / 3)` seconds (§10): BYE, and the call's media goes
 *   with it (call-session.ts).
 */
import { isSipFailure, sendReinvite, type Dialog, type SipHeaders, type SrfMessage, type SrfResponse } from '../sip/srf.js';
import { optionTagsOf } from '../sip/capabilities.js';

export interface SessionTimerConfig {
  /** Interval we ask for and the most we accept (seconds). RFC 4028 §4 recommends 1800. */
  sessionExpiresSeconds: number;
  /**
   * Smallest interval we accept (seconds). RFC 4028 §4: at least 90, which the config enforces
   * (src/config); only tests set less, to see refreshes and expiry in seconds.
   */
  minSessionExpiresSeconds: number;
}

export const DEFAULT_SESSION_TIMER: SessionTimerConfig = { sessionExpiresSeconds: 1800, minSessionExpiresSeconds: 90 };

/** RFC 4028 §4: Min-SE MUST NOT be below 90 s. */
export const MIN_SE_FLOOR = 90;

/** The longest interval we run a timer for (a day; also the config's bound): a peer's larger value is capped. */
export const MAX_SESSION_EXPIRES = 86_400;

export type Refresher = 'uac' | 'uas';

export interface SessionExpires {
  seconds: number;
  refresher?: Refresher;
}

/** What a leg agreed: the interval, and whether we (the B2BUA on that leg) refresh. */
export interface NegotiatedTimer {
  seconds: number;
  weRefresh: boolean;
}

/** Parses `Session-Expires: 1800;refresher=uac` (§4: delta-seconds *(;se-params)); null when absent, 'malformed' when unusable. */
export function parseSessionExpires(value: string | undefined): SessionExpires | null | 'malformed' {
  if (value === undefined) return null;
  const [delta, ...params] = value.split(';').map((p) => p.trim());
  if (!delta || !/^\d{1,10}$/.test(delta)) return 'malformed';
  const seconds = Number(delta);
  if (seconds <= 0) return 'malformed';
  let refresher: Refresher | undefined;
  for (const param of params) {
    const [name, raw] = param.split('=').map((p) => p.trim().toLowerCase());
    if (name === 'refresher') {
      if (raw !== 'uac' && raw !== 'uas') return 'malformed';
      refresher = raw;
    }
  }
  return refresher ? { seconds, refresher } : { seconds };
}

/** Parses `Min-SE: 90` (§5); null when absent, 'malformed' when unusable. */
export function parseMinSe(value: string | undefined): number | null | 'malformed' {
  if (value === undefined) return null;
  const delta = value.split(';')[0]!.trim();
  if (!/^\d{1,10}$/.test(delta)) return 'malformed';
  return Number(delta);
}

export type UasNegotiation =
  | { ok: true; timer: NegotiatedTimer; headers: Record<string, string> }
  | { ok: false; status: 400 | 422; reason: string; headers: Record<string, string> };

/**
 * RFC 4028 §9: what to answer a request (INVITE, re-INVITE, UPDATE) received on a leg: the 2xx
 * headers and the timer that results, or 422 / 400.
 */
export function negotiateAsUas(req: Pick<SrfMessage, 'get'>, config: SessionTimerConfig): UasNegotiation {
  const requested = parseSessionExpires(req.get('Session-Expires'));
  const theirMinSe = parseMinSe(req.get('Min-SE'));
  if (requested === 'malformed' || theirMinSe === 'malformed') {
    return { ok: false, status: 400, reason: 'Bad Session-Expires or Min-SE', headers: {} };
  }
  const ourMin = config.minSessionExpiresSeconds;
  if (requested && requested.seconds < ourMin) {
    return { ok: false, status: 422, reason: 'Session Interval Too Small', headers: { 'Min-SE': String(ourMin) } };
  }
  const uacSupportsTimer = optionTagsOf(req, 'Supported').includes('timer') || optionTagsOf(req, 'Require').includes('timer');
  // §9: the UAS may lower the interval, not below the request's Min-SE (§5: 90 when absent)
  const floor = Math.max(theirMinSe ?? Math.min(MIN_SE_FLOOR, ourMin), ourMin);
  let seconds = requested ? Math.max(Math.min(requested.seconds, config.sessionExpiresSeconds), Math.min(floor, requested.seconds)) : Math.max(config.sessionExpiresSeconds, floor);
  // §9: keep the refresher the UAC named; else the UAC when it can refresh, else us
  const refresher: Refresher = requested?.refresher ?? (uacSupportsTimer ? 'uac' : 'uas');
  seconds = Math.min(seconds, MAX_SESSION_EXPIRES);
  const headers: Record<string, string> = { 'Session-Expires': `${seconds};refresher=${refresher}` };
  // §9: Require: timer only toward a UAC that supports it (a UAC without it would reject the 2xx)
  if (uacSupportsTimer) headers.Require = 'timer';
  return { ok: true, timer: { seconds, weRefresh: refresher === 'uas' }, headers };
}

/** RFC 4028 §7.1: headers of a request we send on a leg (initial INVITE, re-INVITE, UPDATE). */
export function uacRequestHeaders(seconds: number, config: SessionTimerConfig, refresher?: Refresher): Record<string, string> {
  return {
    Supported: 'timer',
    'Session-Expires': refresher ? `${seconds};refresher=${refresher}` : String(seconds),
    'Min-SE': String(config.minSessionExpiresSeconds),
  };
}

/**
 * RFC 4028 §7.2/§7.4: the timer a 2xx to our request sets; null when the 2xx has no Session-Expires
 * (the peer does not do session timers: none on that leg). A value below the Min-SE we sent, or
 * above a day, is taken as that bound (a peer must not make us refresh twice a second).
 */
export function timerFromResponse(res: Pick<SrfMessage, 'get'>, config: SessionTimerConfig): NegotiatedTimer | null {
  const value = parseSessionExpires(res.get('Session-Expires'));
  if (!value || value === 'malformed') return null;
  const seconds = Math.min(Math.max(value.seconds, config.minSessionExpiresSeconds), MAX_SESSION_EXPIRES);
  // §7.2: a 2xx names the refresher; one that does not leaves it to us, the UAC
  return { seconds, weRefresh: (value.refresher ?? 'uac') === 'uac' };
}

/** RFC 4028 §7.4: the interval to retry with after a 422 (its Min-SE), or null when it gave none usable. */
export function retryIntervalAfter422(res: Pick<SrfMessage, 'get'> | undefined, asked: number): number | null {
  const minSe = parseMinSe(res?.get('Min-SE'));
  if (minSe === null || minSe === 'malformed' || minSe <= asked || minSe > MAX_SESSION_EXPIRES) return null;
  return minSe;
}

export interface LegTimerHooks {
  /** Send a refresh (re-INVITE or UPDATE with our headers); resolves with the timer its 2xx set (null: none), rejects on failure. */
  refresh(seconds: number): Promise<NegotiatedTimer | null>;
  /** The session expired on this leg (no refresh in time, or our refresh failed for good). */
  expired(): void;
}

/**
 * The timer of one leg. `set()` after every 2xx to an INVITE/UPDATE on the leg (sent or received),
 * `stop()` at the end of the call.
 */
export class LegSessionTimer {
  private refreshTimer?: NodeJS.Timeout;
  private expiryTimer?: NodeJS.Timeout;
  private current: NegotiatedTimer | null = null;
  private since = Date.now();
  /** Bumped by every set(): a refresh that completes after a newer set() is ignored. */
  private generation = 0;
  private stopped = false;

  constructor(private readonly hooks: LegTimerHooks) {}

  get negotiated(): NegotiatedTimer | null {
    return this.current;
  }

  /** When the current timer started (the 2xx that set it), in ms since the epoch. */
  get negotiatedAt(): number {
    return this.since;
  }

  /**
   * `since`: when the 2xx that set the timer went or came (default now); a timer taken over from
   * another owner of the dialog keeps its deadlines, since the peer counts from that 2xx.
   */
  set(timer: NegotiatedTimer | null, since = Date.now()): void {
    if (this.stopped) return;
    this.clear();
    this.generation++;
    this.current = timer;
    this.since = since;
    if (!timer) return;
    // §10: without a refresh by interval - min(32, interval/3) the session is over (the refresher's
    // own refresh failing included: the peer's timer was not restarted either)
    const expiresAt = since + (timer.seconds - Math.min(32, timer.seconds / 3)) * 1000;
    this.expiryTimer = this.after(expiresAt - Date.now(), () => this.hooks.expired());
    // §10: the refresher sends its refresh at half the interval
    if (timer.weRefresh) this.refreshTimer = this.after(since + timer.seconds * 500 - Date.now(), () => void this.refreshNow(timer.seconds, expiresAt));
  }

  stop(): void {
    this.stopped = true;
    this.clear();
  }

  private async refreshNow(seconds: number, expiresAt: number): Promise<void> {
    const generation = this.generation;
    let next: NegotiatedTimer | null;
    try {
      next = await this.hooks.refresh(seconds);
    } catch {
      // §10: anything but 408/481 leaves the session up: try again halfway to the expiry while there is time
      const left = expiresAt - Date.now();
      if (!this.stopped && generation === this.generation && left > 2000) {
        this.refreshTimer = this.after(left / 2, () => void this.refreshNow(seconds, expiresAt));
      }
      return;
    }
    if (this.stopped || generation !== this.generation) return; // ended, or a refresh from the peer reset the timer meanwhile
    this.set(next);
  }

  private after(ms: number, fn: () => void): NodeJS.Timeout {
    const t = setTimeout(() => {
      if (!this.stopped) fn();
    }, Math.max(0, ms));
    t.unref();
    return t;
  }

  private clear(): void {
    if (this.refreshTimer) clearTimeout(this.refreshTimer);
    if (this.expiryTimer) clearTimeout(this.expiryTimer);
    this.refreshTimer = undefined;
    this.expiryTimer = undefined;
  }
}

export interface RefreshRequest {
  seconds: number;
  config: SessionTimerConfig;
  /** The peer listed UPDATE in its Allow (RFC 3311 §5.1). */
  allowsUpdate: boolean;
  /** The SDP the peer last received from us: a re-INVITE refresh repeats it unchanged (RFC 3264 §8). */
  sdp: string;
  /** Further headers (Allow, Supported). */
  headers?: SipHeaders;
  /** Runs each request sent, e.g. queued behind other requests on the dialog (RFC 3261 §14.1); `isInvite` for re-INVITEs. */
  serialise?: <T>(send: () => Promise<T>, isInvite: boolean) => Promise<T>;
}

/**
 * RFC 4028 §10: our refresh on a dialog: UPDATE without SDP when the peer allows it, else a
 * re-INVITE with the unchanged SDP; a 422 is retried once with its Min-SE (§7.4). Resolves with
 * the final response (any status; the caller acts on 408/481 and failures).
 */
export async function sendRefresh(dialog: Dialog, request: RefreshRequest): Promise<SrfResponse> {
  const serialise = request.serialise ?? (<T>(send: () => Promise<T>) => send());
  const attempt = (interval: number): Promise<SrfResponse> => {
    const headers: SipHeaders = { ...request.headers, ...uacRequestHeaders(interval, request.config, 'uac') };
    if (request.allowsUpdate) return serialise(() => dialog.request({ method: 'UPDATE', headers }), false);
    return serialise(
      () =>
        sendReinvite(dialog, { sdp: request.sdp, headers }).then(
          (sent) => sent.res,
          (err: unknown) => {
            if (isSipFailure(err) && err.res) return err.res;
            throw err;
          },
        ),
      true,
    );
  };
  const res = await attempt(request.seconds);
  const retryWith = res.status === 422 ? retryIntervalAfter422(res, request.seconds) : null;
  return retryWith !== null ? attempt(retryWith) : res;
}
