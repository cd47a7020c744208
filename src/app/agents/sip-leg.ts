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
 */
import { EventEmitter } from 'node:events';
import { randomUUID } from 'node:crypto';
import type { Logger } from 'pino';
import { inspectSdp, parkedSdp, type Leg, type LegKind, type MediaSession } from '../media/index.js';
import type { Dialog, SipHeaders, SrfRequest, SrfResponse } from '../sip/srf.js';
import { DtmfDeduplicator, type DtmfSource } from './dtmf-dedup.js';
import { parseInfoDtmf } from './dtmf-info.js';

/** How long a hang-up waits for the BYE's response before the media is released anyway. */
const BYE_WAIT_MS = 2_000;

export type LegEndCause = 'remote-hangup' | 'local-hangup' | 'peer-lost' | 'media-failure';

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

  /** RFC 3264 §8: a re-offer from the peer (hold, resume, codec change) answered through rtpengine. */
  private async onReinvite(req: SrfRequest, res: SrfResponse): Promise<void> {
    const offer = req.body;
    if (!offer) {
      // an offer-less re-INVITE asks for our offer (RFC 3261 §14.2); ours is the SDP we last sent
      res.send(200, { body: this.dialog.local.sdp, headers: { 'Content-Type': 'application/sdp' } });
      return;
    }
    try {
      await this.media.reoffer(offer, this.externalSide);
      const toPeer = await this.media.answer(this.endpointSdp);
      this.peerSdp = offer;
      res.send(200, { body: toPeer, headers: { 'Content-Type': 'application/sdp' } });
    } catch (err) {
      this.logger?.warn({ err: err instanceof Error ? err.message : String(err) }, 're-INVITE refused');
      res.send(488, 'Not Acceptable Here');
    }
  }

  private onInfo(req: SrfRequest, res: SrfResponse): void {
    const digit = parseInfoDtmf(req.get('Content-Type'), req.body);
    res.send(200);
    if (digit) this.reportDtmf(digit, 'info');
  }
}
