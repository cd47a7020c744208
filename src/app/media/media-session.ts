/**
 * One call's media through rtpengine, between leg A (the caller) and leg B (the callee).
 *
 *   const media = sessions.create({ callId });
 *   const bSdp = await media.offer(aSdp, 'webrtc', 'plain');   // INVITE toward B carries bSdp
 *   (late offer: media.offer(bOfferIn2xx, aKind, bKind, 'b'), then media.answer(aAnswerInAck))
 *   const aSdp2 = await media.answer(bAnswerSdp);              // 183/200 toward A carries aSdp2
 *   const toA = await media.reoffer(bHoldSdp, 'b');            // re-INVITE from B (hold) ...
 *   const toB = await media.answer(aAnswerSdp);                // ... and A's answer to it
 *   await media.delete();                                      // always, however the call ends
 *
 * Offer/answer follows RFC 3264: `answer()` answers whichever offer is pending (the initial one,
 * or a re-offer from either side); it may be called again for the same offer (183 then 200).
 * Hold (RFC 3264 §8.4: sendonly/inactive, or c=0.0.0.0) is carried through by rtpengine; the
 * session records who holds. Operations on one session are serialised; `delete()` is idempotent,
 * waits for an operation in flight, and removes the session from its registry whatever the
 * engine says, so a leak check is `registry.count === 0` once every call has ended.
 */
import { randomBytes } from 'node:crypto';
import type { Logger } from 'pino';
import { Gauge, type Registry } from 'prom-client';
import {
  DEFAULT_LEG_CODECS,
  answerFlags,
  offerFlags,
  planCodecs,
  type LegCodecPreferences,
} from './leg-flags.js';
import { RtpengineError, type NgFlag, type RtpenginePool } from './rtpengine.js';
import { inspectSdp, isHoldSdp, type LegKind, type SdpSummary } from './sdp-inspect.js';

/** The part of the pool a media session uses (a test double can stand in). */
export type MediaEngine = Pick<
  RtpenginePool,
  'offer' | 'answer' | 'delete' | 'query' | 'playMedia' | 'stopMedia' | 'playDtmf' | 'blockDtmf' | 'unblockDtmf' | 'controlMedia' | 'startRecording' | 'stopRecording'
>;

export type Leg = 'a' | 'b';
export type MediaSessionState = 'new' | 'offered' | 'answered' | 'deleted';

/** Media errors the B2BUA maps to SIP: 488 for an SDP it cannot use, 503/500 for the engine. */
export class MediaError extends Error {
  constructor(
    readonly kind: 'bad-sdp' | 'state' | 'engine',
    message: string,
    override readonly cause?: unknown,
  ) {
    super(message);
    this.name = 'MediaError';
  }

  /** A SIP status for the failed offer/answer (RFC 3261 §21.4.26 488, §21.5.4 503). */
  get sipStatus(): 488 | 500 | 503 {
    if (this.kind === 'bad-sdp') return 488;
    if (this.cause instanceof RtpengineError && (this.cause.kind === 'unavailable' || this.cause.engineUnreachable)) return 503;
    return 500;
  }
}

export interface MediaSessionOptions {
  /** rtpengine call-id (usually the A leg's Call-ID; unique per live call). */
  callId: string;
  /** Codecs each kind of leg is given. */
  codecs?: LegCodecPreferences;
  /** Ask rtpengine to allow `play DTMF` into this call (RFC 4733 injection). */
  injectDtmf?: boolean;
  /** Record the call from the start (rtpengine recording must be configured). */
  record?: boolean;
  logger?: Logger;
}

interface PendingOffer {
  from: Leg;
}

function randomTag(): string {
  return randomBytes(8).toString('hex');
}

export class MediaSession {
  readonly callId: string;
  /** rtpengine tags of the two legs (monologues); B2BUA-internal, not SIP tags. */
  readonly aTag = randomTag();
  readonly bTag = randomTag();
  private kinds?: Record<Leg, LegKind>;
  private pending?: PendingOffer;
  private stateValue: MediaSessionState = 'new';
  private onEngine = false;
  private queue: Promise<unknown> = Promise.resolve();
  private deletion?: Promise<void>;
  private readonly heldBy = new Set<Leg>();
  private readonly codecs: LegCodecPreferences;
  private readonly extraFlags: NgFlag[];
  private readonly record: boolean;
  private readonly logger?: Logger;

  constructor(
    private readonly engine: MediaEngine,
    options: MediaSessionOptions,
    private readonly onDeleted?: (session: MediaSession) => void,
  ) {
    if (!options.callId) throw new Error('MediaSession: callId is required');
    this.callId = options.callId;
    this.codecs = options.codecs ?? DEFAULT_LEG_CODECS;
    this.extraFlags = options.injectDtmf ? ['inject DTMF'] : [];
    this.record = options.record ?? false;
    this.logger = options.logger?.child({ callId: options.callId });
  }

  get state(): MediaSessionState {
    return this.stateValue;
  }

  /** Leg kinds, once offered. */
  get legKinds(): Readonly<Record<Leg, LegKind>> | undefined {
    return this.kinds;
  }

  /** Legs that currently hold the other (their last offer was sendonly/inactive). */
  get holding(): ReadonlySet<Leg> {
    return this.heldBy;
  }

  /**
   * The initial offer: from A (its INVITE's SDP) returns the SDP to send to B; from B (the offer in
   * B's 2xx to an INVITE without SDP, RFC 3261 §13.2.1 late offer) returns the SDP for A's 2xx, and
   * `answer()` then takes A's answer from its ACK.
   */
  offer(sdp: string, aLegKind: LegKind, bLegKind: LegKind, from: Leg = 'a'): Promise<string> {
    return this.serialised(async () => {
      if (this.stateValue !== 'new') throw new MediaError('state', `initial offer in state ${this.stateValue}`);
      const summary = inspectOrThrow(sdp);
      const declared = from === 'a' ? aLegKind : bLegKind;
      if (summary.kind !== declared) {
        this.logger?.debug({ leg: from, declared, detected: summary.kind }, 'offerer SDP kind differs from the declared kind');
      }
      this.kinds = { a: aLegKind, b: bLegKind };
      const reply = await this.sendOffer(sdp, summary, from);
      this.stateValue = 'offered';
      return reply;
    });
  }

  /** Answers the pending offer with the other leg's SDP; returns the SDP for the offerer. */
  answer(answerSdp: string): Promise<string> {
    return this.serialised(async () => {
      const pending = this.pending;
      const kinds = this.kinds;
      if (!pending || !kinds) throw new MediaError('state', `answer without an offer (state ${this.stateValue})`);
      inspectOrThrow(answerSdp);
      const answerer: Leg = pending.from === 'a' ? 'b' : 'a';
      const flags = answerFlags(kinds[answerer], kinds[pending.from], { flags: this.extraFlags });
      const reply = await this.engineCall(() =>
        this.engine.answer({
          'call-id': this.callId,
          'from-tag': this.tagOf(pending.from),
          'to-tag': this.tagOf(answerer),
          sdp: answerSdp,
          ...flags,
        }),
      );
      this.stateValue = 'answered';
      return reply.sdp;
    });
  }

  /** A re-offer (re-INVITE or UPDATE with SDP, e.g. hold/resume) from `from`: returns the SDP for the other leg. */
  reoffer(sdp: string, from: Leg): Promise<string> {
    return this.serialised(async () => {
      if (this.stateValue !== 'answered') throw new MediaError('state', `re-offer in state ${this.stateValue}`);
      const summary = inspectOrThrow(sdp);
      return this.sendOffer(sdp, summary, from);
    });
  }

  /**
   * Ends the call's media on rtpengine. Idempotent; never rejects (a failure is logged: the
   * session is forgotten locally either way, and rtpengine's own timeout reaps what is left).
   */
  delete(): Promise<void> {
    if (!this.deletion) {
      const previous = this.queue;
      this.stateValue = 'deleted';
      this.deletion = previous
        .catch(() => undefined)
        .then(async () => {
          if (!this.onEngine) return;
          try {
            await this.engine.delete({ 'call-id': this.callId });
          } catch (err) {
            this.logger?.error({ err: err instanceof Error ? err.message : String(err) }, 'rtpengine delete failed');
          }
        })
        .finally(() => {
          this.onEngine = false;
          this.onDeleted?.(this);
        });
    }
    return this.deletion;
  }

  /** Plays a file to `toLeg` (rtpengine `play media`). */
  async playMedia(toLeg: Leg, file: string, repeatTimes?: number): Promise<void> {
    this.assertLive();
    await this.engineCall(() =>
      this.engine.playMedia({ 'call-id': this.callId, 'from-tag': this.tagOf(toLeg), file, 'repeat-times': repeatTimes }),
    );
  }

  async stopMedia(toLeg: Leg): Promise<void> {
    this.assertLive();
    await this.engineCall(() => this.engine.stopMedia({ 'call-id': this.callId, 'from-tag': this.tagOf(toLeg) }));
  }

  /** Injects RFC 4733 DTMF as if sent by `fromLeg` (needs `injectDtmf` and flowing RTP). */
  async playDtmf(fromLeg: Leg, code: string, durationMs?: number): Promise<void> {
    this.assertLive();
    if (!/^[0-9A-D*#]$/i.test(code)) throw new MediaError('state', `not a DTMF digit: ${JSON.stringify(code)}`);
    await this.engineCall(() =>
      this.engine.playDtmf({ 'call-id': this.callId, 'from-tag': this.tagOf(fromLeg), code, duration: durationMs }),
    );
  }

  /**
   * In-band DTMF from `fromLeg` (G.711 tones from old PBXs and mobile gateways): rtpengine decodes
   * that leg's audio, detects the tones (reported like RFC 4733 events, on its DTMF log) and
   * replaces them with silence (`block DTMF`, `detect DTMF`, DTMF-security `silence`: measured on
   * rtpengine 10.5, where `detect DTMF` without a PCM blocking mode detects nothing). `on: false`
   * restores the audio as it was (`unblock DTMF`).
   */
  async detectInbandDtmf(fromLeg: Leg, on: boolean): Promise<void> {
    this.assertLive();
    const ref = { 'call-id': this.callId, 'from-tag': this.tagOf(fromLeg) };
    await this.engineCall(() =>
      on ? this.engine.blockDtmf({ ...ref, flags: ['detect DTMF'], 'DTMF-security': 'silence' }) : this.engine.unblockDtmf(ref),
    );
  }

  /**
   * Mutes or unmutes what `fromLeg` sends: `silence` replaces it with silence (the other side still
   * gets RTP, a mute), `block` drops it (hold).
   */
  async setMediaFlow(fromLeg: Leg, how: 'block' | 'silence', on: boolean): Promise<void> {
    this.assertLive();
    const command = `${on ? '' : 'un'}${how} media` as 'block media' | 'unblock media' | 'silence media' | 'unsilence media';
    await this.engineCall(() => this.engine.controlMedia(command, { 'call-id': this.callId, 'from-tag': this.tagOf(fromLeg) }));
  }

  async startRecording(): Promise<void> {
    this.assertLive();
    await this.engineCall(() => this.engine.startRecording({ 'call-id': this.callId }));
  }

  async stopRecording(): Promise<void> {
    this.assertLive();
    await this.engineCall(() => this.engine.stopRecording({ 'call-id': this.callId }));
  }

  // -------------------------------------------------------------------------------------------

  private async sendOffer(sdp: string, summary: SdpSummary, from: Leg): Promise<string> {
    const kinds = this.kinds!;
    const to: Leg = from === 'a' ? 'b' : 'a';
    const codec = planCodecs(summary, kinds[to], this.codecs);
    const flags = offerFlags(kinds[from], kinds[to], { codec, flags: this.extraFlags });
    const isInitial = this.stateValue === 'new';
    this.onEngine = true; // from here on rtpengine may hold state for the call
    let reply;
    try {
      reply = await this.engineCall(() =>
        this.engine.offer({
          'call-id': this.callId,
          'from-tag': this.tagOf(from),
          ...(isInitial ? {} : { 'to-tag': this.tagOf(to) }),
          sdp,
          ...flags,
          ...(isInitial && this.record ? { 'record call': 'yes' as const } : {}),
        }),
      );
    } catch (err) {
      // A failed initial offer left nothing behind (the pool deletes on engines that timed out).
      if (isInitial) this.onEngine = false;
      throw err;
    }
    this.pending = { from };
    if (isHoldSdp(summary)) this.heldBy.add(from);
    else this.heldBy.delete(from);
    return reply.sdp;
  }

  private tagOf(leg: Leg): string {
    return leg === 'a' ? this.aTag : this.bTag;
  }

  private assertLive(): void {
    if (this.stateValue === 'deleted') throw new MediaError('state', 'media session deleted');
  }

  private async engineCall<T>(call: () => Promise<T>): Promise<T> {
    try {
      return await call();
    } catch (err) {
      if (err instanceof RtpengineError && err.kind === 'error-reply' && !err.isUnknownCall) {
        throw new MediaError('bad-sdp', err.message, err);
      }
      throw new MediaError('engine', err instanceof Error ? err.message : String(err), err);
    }
  }

  private serialised<T>(operation: () => Promise<T>): Promise<T> {
    if (this.stateValue === 'deleted') return Promise.reject(new MediaError('state', 'media session deleted'));
    const run = this.queue.catch(() => undefined).then(() => {
      if (this.stateValue === 'deleted') throw new MediaError('state', 'media session deleted');
      return operation();
    });
    this.queue = run;
    return run;
  }
}

function inspectOrThrow(sdp: string): SdpSummary {
  const inspection = inspectSdp(sdp);
  if (!inspection.ok) throw new MediaError('bad-sdp', inspection.error);
  return inspection.summary;
}

/**
 * The live media sessions of this instance, by call-id. `count` is the leak check: it is back to
 * zero once every call has ended.
 */
export class MediaSessionRegistry {
  private readonly sessions = new Map<string, MediaSession>();
  private readonly liveGauge?: Gauge;
  private readonly logger?: Logger;

  constructor(
    private readonly engine: MediaEngine,
    options: { registry?: Registry; logger?: Logger } = {},
  ) {
    this.logger = options.logger;
    if (options.registry) {
      const name = 'dialcore_media_sessions';
      const existing = options.registry.getSingleMetric(name);
      this.liveGauge =
        existing instanceof Gauge
          ? existing
          : new Gauge({ name, help: 'Live rtpengine media sessions (one per call)', registers: [options.registry] });
    }
  }

  /** A new session for a call; a call-id already live is refused (one media session per call). */
  create(options: Omit<MediaSessionOptions, 'logger'>): MediaSession {
    if (this.sessions.has(options.callId)) throw new Error(`media session for call ${options.callId} already exists`);
    const session = new MediaSession(this.engine, { ...options, logger: this.logger }, (s) => {
      if (this.sessions.get(s.callId) === s) this.sessions.delete(s.callId);
      this.liveGauge?.set(this.sessions.size);
    });
    this.sessions.set(options.callId, session);
    this.liveGauge?.set(this.sessions.size);
    return session;
  }

  get(callId: string): MediaSession | undefined {
    return this.sessions.get(callId);
  }

  get count(): number {
    return this.sessions.size;
  }

  callIds(): string[] {
    return [...this.sessions.keys()];
  }

  /** Deletes every live session (shutdown). */
  async deleteAll(): Promise<void> {
    await Promise.all([...this.sessions.values()].map((s) => s.delete()));
  }
}
