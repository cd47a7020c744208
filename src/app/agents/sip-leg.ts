/**
 * One SIP leg dialcore terminates (an agent's phone or browser, a customer reached through a
 * carrier, a transfer target), with its own rtpengine call (see media/parked-sdp.ts):
 *
 *   external side  <->  rtpengine  <->  internal side -> parked | another leg's internal side | mixer
 *
 * Bridging two legs points each one's internal side at the other's (`connect`): an rtpengine
 * re-offer from the internal side (RFC 3264 §8) that leaves the external side's address and
 * ports as they are, so the phone or carrier is never re-INVITEd for a bridge, an unbridge, a
 * hold or a transfer. Everything the leg's peer sends inside the dialog is handled here:
 * re-INVITE (RFC 3261 §14.2, relayed through rtpengine and answered at once), INFO DTMF
 * (application/dtmf-relay, application/dtmf), BYE, REFER (handed to whoever listens).
 *
 * A leg taken over from a call (the far end of an attended transfer, call-session.ts
 * `handOverCallee`) keeps the RFC 4028 session timer that call agreed: we refresh when we are
 * the refresher (§10), the peer's refreshes (re-INVITE, UPDATE) are negotiated as in §9, and a
 * session that is not refreshed in time ends with a BYE.
 */
import { EventEmitter } from 'node:events';
import { randomUUID } from 'node:crypto';
import type { Logger } from 'pino';
import { inspectSdp, parkedSdp, type Leg, type LegKind, type MediaSession } from '../media/index.js';
import type { Dialog, SipHeaders, SrfRequest, SrfResponse } from '../sip/srf.js';
import { DtmfDeduplicator, type DtmfSource } from './dtmf-dedup.js';
import { parseInfoDtmf } from './dtmf-info.js';
import {
  LegSessionTimer,
  negotiateAsUas,
  sendRefresh,
  timerFromResponse,
  type NegotiatedTimer,
  type SessionTimerConfig,
} from '../calls/session-timer.js';

/** How long a hang-up waits for the BYE's response before the media is released anyway. */
const BYE_WAIT_MS = 2_000;

export type LegEndCause = 'remote-hangup' | 'local-hangup' | 'peer-lost' | 'media-failure' | 'session-expired';

export interface SipLegEvents {
  ended: [cause: LegEndCause];
  /**
   * A key the peer pressed, once however many ways it was sent: SIP INFO (RFC 2976 with
   * application/dtmf-relay or application/dtmf), or RFC 4733 events and in-band tones rtpengine
   * reported for this leg's call (handed in by `reportDtmf`, e.g. by dial-in).
   */
  dtmf: [digit: string, source: DtmfSource];
  /** REFER from the peer (RFC 3515). A listener must answer `res`; without one it gets 403. */
  refer: [req: SrfRequest, res: SrfResponse];
}

export interface SipLegInit {
  dialog: Dialog;
  media: MediaSession;
  /** Which rtpengine monologue of `media` is the SIP peer. */
  externalSide: Leg;
  /** What the peer speaks (its SDP kind). */
  kind: LegKind;
  /** SDP rtpengine wrote for the internal side: where another leg (or the mixer) sends this leg's audio. */
  internalSdp: string;
  /** The peer's last SDP (offer or answer). */
  peerSdp: string;
  /** RFC 4028: a timer the leg's dialog already agreed, kept running (see the module comment). */
  sessionTimer?: { negotiated: NegotiatedTimer | null; negotiatedAt: number; config: SessionTimerConfig; allowsUpdate: boolean; sdpToPeer: string };
  logger?: Logger;
}

export class SipLeg extends EventEmitter<SipLegEvents> {
  readonly id = randomUUID();
  readonly dialog: Dialog;
  readonly media: MediaSession;
  readonly kind: LegKind;
  readonly externalSide: Leg;
  readonly internalSide: Leg;
  readonly internalSdp: string;
  private peerSdp: string;
  /** Where the internal side points now (parked, a leg's internal SDP, a mixer participant). */
  private endpointSdp = parkedSdp();
  private endedCause?: LegEndCause;
  private ending?: Promise<void>;
  private readonly logger?: Logger;
  private readonly timer?: { leg: LegSessionTimer; config: SessionTimerConfig; allowsUpdate: boolean };
  /** What the peer last received from us (a refresh re-INVITE repeats it, RFC 3264 §8). */
  private sdpToPeer: string;
  private readonly dtmfPresses = new DtmfDeduplicator();

  constructor(init: SipLegInit) {
    super();
    this.dialog = init.dialog;
    this.media = init.media;
    this.kind = init.kind;
    this.externalSide = init.externalSide;
    this.internalSide = init.externalSide === 'a' ? 'b' : 'a';
    this.internalSdp = init.internalSdp;
    this.peerSdp = init.peerSdp;
    this.logger = init.logger?.child({ leg: this.id });
    this.sdpToPeer = init.sessionTimer?.sdpToPeer ?? this.dialog.local.sdp;
    if (init.sessionTimer) {
      const { config, allowsUpdate, negotiated, negotiatedAt } = init.sessionTimer;
      const leg = new LegSessionTimer({ refresh: (seconds) => this.refresh(seconds), expired: () => void this.finish('session-expired', true) });
      this.timer = { leg, config, allowsUpdate };
      leg.set(negotiated, negotiatedAt); // the peer counts from that 2xx, not from the hand-over
      this.dialog.on('update', (req, res) => this.onUpdate(req, res));
    }
    this.dialog.on('destroy', () => void this.finish('remote-hangup', false));
    // The peer's BYE can be handled by srf in the same read as the 2xx that created the dialog,
    // before whoever awaited the dialog could listen: such a dialog is already over.
    if (this.dialog.connected === false) queueMicrotask(() => void this.finish('remote-hangup', false));
    this.dialog.on('modify', (req, res) => void this.onReinvite(req, res));
    this.dialog.on('info', (req, res) => this.onInfo(req, res));
    this.dialog.on('refer', (req, res) => {
      if (this.listenerCount('refer') === 0) return res.send(403, 'Transfer Not Allowed');
      this.emit('refer', req, res);
    });
  }

  get callId(): string {
    return this.dialog.sip.callId;
  }

  get ended(): boolean {
    return this.endedCause !== undefined;
  }

  /** Why the leg ended (undefined while it is up). */
  get endCause(): LegEndCause | undefined {
    return this.endedCause;
  }

  /** Audio codecs of the peer's last SDP, in its order (rtpmap names, e.g. `PCMA`, `opus`). */
  peerCodecs(): string[] {
    const inspected = inspectSdp(this.peerSdp);
    return inspected.ok ? inspected.summary.codecs.map((c) => c.name.toUpperCase()) : [];
  }

  /** Points the internal side at `sdp` (another leg's `internalSdp`, a mixer participant, or parked). */
  async connect(sdp: string): Promise<void> {
    if (this.ended) return;
    this.endpointSdp = sdp;
    await this.media.reoffer(sdp, this.internalSide);
    // rtpengine wrote an offer for the peer with the ports it already has; the peer's last SDP answers it
    await this.media.answer(this.peerSdp);
  }

  /** Connects the internal side to nothing (the peer hears silence, or what is played to it). */
  park(): Promise<void> {
    return this.connect(parkedSdp());
  }

  /** Plays an audio file to the peer (rtpengine `play media`); `repeat` loops it (music on hold). */
  async play(file: string, repeat = false): Promise<void> {
    if (this.ended) return;
    await this.media.playMedia(this.externalSide, file, repeat ? 10_000 : undefined);
  }

  async stopPlaying(): Promise<void> {
    if (this.ended) return;
    await this.media.stopMedia(this.externalSide).catch(() => undefined);
  }

  /** In-band DTMF tones from the peer detected by rtpengine (media-session.ts detectInbandDtmf). */
  async detectInbandDtmf(on: boolean): Promise<void> {
    if (this.ended) return;
    await this.media.detectInbandDtmf(this.externalSide, on);
  }

  /** A key press the peer sent, reported by rtpengine (or by SIP INFO); emitted as 'dtmf' unless it repeats one just emitted. */
  reportDtmf(digit: string, source: DtmfSource): void {
    if (!this.ended && this.dtmfPresses.accept(digit, source)) this.emit('dtmf', digit, source);
  }

  /** Sends an RFC 4733 digit to the peer, as if from the other side of the bridge (needs `inject DTMF`). */
  async sendDtmf(digit: string, durationMs = 160): Promise<void> {
    await this.media.playDtmf(this.internalSide, digit, durationMs);
  }

  /** Mute: what the peer says is replaced by silence toward the bridge. */
  async setMuted(muted: boolean): Promise<void> {
    await this.media.setMediaFlow(this.externalSide, 'silence', muted);
  }

  /** Ends the leg: BYE to the peer (if still up) and the rtpengine call deleted. Idempotent. */
  hangup(headers?: SipHeaders): Promise<void> {
    return this.finish('local-hangup', true, headers);
  }

  private finish(cause: LegEndCause, sendBye: boolean, headers?: SipHeaders): Promise<void> {
    if (!this.ending) {
      this.endedCause = cause;
      this.timer?.leg.stop();
      this.ending = (async () => {
        if (sendBye && this.dialog.connected !== false) {
          const bye = this.dialog.destroy(headers ? { headers } : undefined).catch((err: unknown) => {
            this.logger?.debug({ err: err instanceof Error ? err.message : String(err) }, 'BYE not answered');
          });
          // a peer that does not answer the BYE holds its transaction for 32 s (RFC 3261 §17.1.2.2 Timer F), not us
          await Promise.race([bye, new Promise((resolve) => setTimeout(resolve, BYE_WAIT_MS).unref())]);
        }
        await this.media.delete();
        this.emit('ended', cause);
      })();
    }
    return this.ending;
  }

  /** RFC 3264 §8: a re-offer from the peer (hold, resume, codec change, a session refresh) answered through rtpengine. */
  private async onReinvite(req: SrfRequest, res: SrfResponse): Promise<void> {
    const timer = this.negotiateTimer(req, res);
    if (!timer) return;
    const offer = req.body;
    if (!offer) {
      // an offer-less re-INVITE asks for our offer (RFC 3261 §14.2); ours is the SDP we last sent
      res.send(200, { body: this.sdpToPeer, headers: { 'Content-Type': 'application/sdp', ...timer.headers } });
      return this.timer?.leg.set(timer.negotiated);
    }
    try {
      await this.media.reoffer(offer, this.externalSide);
      const toPeer = await this.media.answer(this.endpointSdp);
      this.peerSdp = offer;
      this.sdpToPeer = toPeer;
      res.send(200, { body: toPeer, headers: { 'Content-Type': 'application/sdp', ...timer.headers } });
      this.timer?.leg.set(timer.negotiated);
    } catch (err) {
      this.logger?.warn({ err: err instanceof Error ? err.message : String(err) }, 're-INVITE refused');
      res.send(488, 'Not Acceptable Here');
    }
  }

  /** RFC 3311 UPDATE on a leg with a session timer: a refresh without SDP (RFC 4028 §9); offers in UPDATE are not taken. */
  private onUpdate(req: SrfRequest, res: SrfResponse): void {
    if (req.body && req.body.trim()) return void res.send(488, 'Not Acceptable Here');
    const timer = this.negotiateTimer(req, res);
    if (!timer) return;
    res.send(200, { headers: timer.headers });
    this.timer?.leg.set(timer.negotiated);
  }

  /**
   * RFC 4028 §9 for a refresh from the peer: 422/400 sent here (undefined returned); else the 2xx's
   * headers and the timer it sets. A leg without a timer answers as before (no headers, no timer).
   */
  private negotiateTimer(req: SrfRequest, res: SrfResponse): { headers: Record<string, string>; negotiated: NegotiatedTimer | null } | undefined {
    if (!this.timer) return { headers: {}, negotiated: null };
    const negotiation = negotiateAsUas(req, this.timer.config);
    if (!negotiation.ok) {
      res.send(negotiation.status, negotiation.reason, { headers: negotiation.headers });
      return undefined;
    }
    return { headers: negotiation.headers, negotiated: negotiation.timer };
  }

  /** RFC 4028 §10: our refresh, with the unchanged SDP when it is a re-INVITE. */
  private async refresh(seconds: number): Promise<NegotiatedTimer | null> {
    const timer = this.timer;
    if (!timer || this.ended) return null;
    const res = await sendRefresh(this.dialog, { seconds, config: timer.config, allowsUpdate: timer.allowsUpdate, sdp: this.sdpToPeer });
    if (res.status === 408 || res.status === 481) {
      void this.finish('peer-lost', false); // RFC 3261 §12.2.1.2: the dialog is gone
      return null;
    }
    if (res.status >= 300) throw new Error(`session refresh: ${res.status}`);
    return timerFromResponse(res, timer.config);
  }

  private onInfo(req: SrfRequest, res: SrfResponse): void {
    const digit = parseInfoDtmf(req.get('Content-Type'), req.body);
    res.send(200);
    if (digit) this.reportDtmf(digit, 'info');
  }
}
