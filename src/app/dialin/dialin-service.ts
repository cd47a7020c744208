/**
 * Dial-in: an agent calls an access number, dialcore answers with media through rtpengine (a
 * leg like the agent legs, agents/answer.ts), runs the login IVR (ivr.ts) with prompts played by
 * rtpengine `play media`, and on a right ID and PIN the call becomes the agent's session
 * (AgentService.adoptLeg): parked with silence or hold music until the dialer bridges a customer.
 *
 * Digits come from every source callers use, each press counted once (the leg's 'dtmf' event,
 * agents/sip-leg.ts with agents/dtmf-dedup.ts):
 * - RFC 4733 telephone-events, reported by rtpengine (dtmf-events.ts);
 * - in-band G.711 tones, during the login whatever the caller offered (old PBXs and mobile
 *   gateways offer telephone-event and send tones): rtpengine detects them (media-session.ts
 *   detectInbandDtmf) and reports them the same way. With detection on, rtpengine reports each
 *   RFC 4733 event twice, ~40 ms apart: the leg's de-duplication counts it once;
 * - SIP INFO (application/dtmf-relay, application/dtmf; answered 200 by sip-leg.ts).
 * rtpengine's reports keep reaching the leg after the login, so the agent's keys show in the
 * event stream as `call.dtmf` (agent-service.ts) whichever way the phone sends them.
 *
 * The check of an ID and PIN always runs the scrypt verification, against a dummy hash when the
 * ID is unknown, so a wrong ID and a wrong PIN take the same path and get the same answer.
 * Failures count towards the lockout of the ID entered and of the caller's number (lockout.ts).
 * Digits and PINs are never logged.
 */
import type { Logger } from 'pino';
import { randomBytes } from 'node:crypto';
import type { MediaSessionRegistry } from '../media/index.js';
import type { Srf, SrfRequest, SrfResponse } from '../sip/srf.js';
import { AGENT_LEG_METHODS } from '../sip/capabilities.js';
import type { UserRecord } from '../users/types.js';
import { hashPin, verifyPinAsync } from '../users/secrets.js';
import { answerLeg } from '../agents/answer.js';
import type { SipLeg } from '../agents/sip-leg.js';
import type { DtmfEventRouter, RtpengineDtmfEvent } from './dtmf-events.js';
import { DialInIvr, type IvrTiming, type LoginVerdict, type PromptName } from './ivr.js';
import type { DialInLockouts } from './lockout.js';
import type { DialInPrompts } from './prompts.js';

export interface DialInAgents {
  adoptLeg(user: UserRecord, leg: SipLeg): Promise<unknown>;
  sessionsOf(userId: string): number;
}

export interface DialInServiceOptions {
  srf: Srf;
  media: MediaSessionRegistry;
  agents: DialInAgents;
  users: { getByDialInId(id: string): Promise<UserRecord | null> };
  lockouts: DialInLockouts;
  prompts: DialInPrompts;
  dtmf: DtmfEventRouter;
  accessNumbers: readonly string[];
  timing: IvrTiming;
  logger?: Logger;
}

const DIAL_IN_ID = /^\d{1,16}$/;
const TELEPHONE_EVENT = /^a=rtpmap:\d+\s+telephone-event\//im;

export class DialInService {
  private readonly numbers: Set<string>;
  private readonly live = new Set<DialInCall>();
  /** Verified against when the ID is unknown, so both paths cost one scrypt. */
  private readonly dummyHash = hashPin(randomBytes(8).toString('hex'));
  private readonly log?: Logger;

  constructor(private readonly o: DialInServiceOptions) {
    this.numbers = new Set(o.accessNumbers.map(normaliseNumber));
    this.log = o.logger?.child({ component: 'dial-in' });
  }

  isAccessNumber(dialled: string | undefined): boolean {
    return dialled !== undefined && this.numbers.size > 0 && this.numbers.has(normaliseNumber(dialled));
  }

  /** Calls in the login IVR now (not yet an agent session). */
  get activeCount(): number {
    return this.live.size;
  }

  /** Answers a call to an access number and runs the login; never throws. */
  async answer(req: SrfRequest, res: SrfResponse, callerNumber: string | undefined): Promise<void> {
    const caller = callerNumber && /^\+?[\d*#]{1,32}$/.test(callerNumber) ? callerNumber : null;
    let leg: SipLeg;
    try {
      leg = await answerLeg({ srf: this.o.srf, media: this.o.media, req, res, methods: AGENT_LEG_METHODS, ...(this.log ? { logger: this.log } : {}) });
    } catch (err) {
      this.log?.warn({ err: err instanceof Error ? err.message : String(err) }, 'dial-in call not answered');
      return;
    }
    const call = new DialInCall(this, leg, caller, TELEPHONE_EVENT.test(req.body ?? ''));
    this.live.add(call);
    try {
      await call.run();
    } catch (err) {
      this.log?.warn({ err: err instanceof Error ? err.message : String(err) }, 'dial-in call failed');
      await leg.hangup();
    } finally {
      this.live.delete(call);
      await call.release();
    }
  }

  async stop(): Promise<void> {
    await Promise.all([...this.live].map((call) => call.abort()));
  }

  /** @internal the check DialInCall runs; one path whatever the ID. */
  async check(id: string, pin: string, caller: string | null): Promise<{ verdict: LoginVerdict; user?: UserRecord }> {
    const knownShape = DIAL_IN_ID.test(id);
    const [user, locked] = await Promise.all([
      knownShape ? this.o.users.getByDialInId(id) : Promise.resolve(null),
      this.o.lockouts.isLocked(knownShape ? id : null, caller),
    ]);
    const pinMatches = await verifyPinAsync(pin.slice(0, 32), user?.dialIn?.pinHash || this.dummyHash);
    this.log?.info({ caller, outcome: locked ? 'locked' : user && pinMatches ? 'verified' : 'invalid' }, 'dial-in ID and PIN entered');
    if (locked) return { verdict: 'locked' };
    if (!user || !pinMatches) {
      // an attempt with nothing typed at all (timeouts) is not a guess: it does not count
      if (id !== '' || pin !== '') {
        await this.o.lockouts.recordFailure(knownShape ? id : null, caller).catch((err: unknown) => this.warn(err, 'dial-in failure not counted'));
      }
      return { verdict: 'invalid' };
    }
    if (!user.active) return { verdict: 'inactive', user };
    if (user.connectionMethod !== 'dial-in') return { verdict: 'wrong-method', user };
    if (user.maxSessions > 0 && this.o.agents.sessionsOf(user.id) >= user.maxSessions) return { verdict: 'max-sessions', user };
    return { verdict: 'ok', user };
  }

  /** @internal */
  get options(): DialInServiceOptions {
    return this.o;
  }

  /** @internal */
  warn(err: unknown, message: string): void {
    this.log?.warn({ err: err instanceof Error ? err.message : String(err) }, message);
  }

  /** @internal */
  info(fields: Record<string, unknown>, message: string): void {
    this.log?.info(fields, message);
  }
}

/** One call in the login IVR. */
class DialInCall {
  private readonly ivr: DialInIvr;
  private language: string | null = null;
  private user?: UserRecord;
  private listeningForEvents = false;
  private readonly onKey = (digit: string): void => this.ivr.digit(digit);
  private readonly onEnded = (): void => this.ivr.cancel();

  constructor(
    private readonly service: DialInService,
    private readonly leg: SipLeg,
    private readonly caller: string | null,
    /** What rtpengine reports is labelled `rfc4733` when the caller offered telephone-event, `inband` otherwise. */
    private readonly offersTelephoneEvent: boolean,
  ) {
    this.ivr = new DialInIvr(
      {
        play: (prompt) => this.play(prompt),
        stopPlaying: () => this.leg.stopPlaying(),
        check: async (id, pin) => {
          const { verdict, user } = await this.service.check(id, pin, this.caller);
          if (user) this.language = user.language;
          if (verdict === 'ok') this.user = user;
          return verdict;
        },
      },
      service.options.timing,
    );
  }

  async run(): Promise<void> {
    const { dtmf, lockouts } = this.service.options;
    this.leg.on('ended', this.onEnded);
    this.leg.on('dtmf', this.onKey);
    await dtmf.listen(this.leg.media.callId, (event) => this.onEngineDigit(event));
    this.listeningForEvents = true;
    await this.leg.detectInbandDtmf(true).catch((err: unknown) => this.service.warn(err, 'in-band DTMF detection not enabled'));
    if (this.leg.ended) return;
    if (this.caller && (await lockouts.isLocked(null, this.caller))) {
      this.service.info({ caller: this.caller }, 'dial-in caller number locked out');
      await this.sayAndWait('locked');
      await this.sayAndWait('goodbye');
      await this.leg.hangup();
      return;
    }
    const outcome = await this.ivr.run();
    if (outcome.kind === 'ended') {
      this.service.info({ caller: this.caller, reason: outcome.reason }, 'dial-in login ended');
      await this.leg.hangup();
      return;
    }
    const user = this.user!;
    this.handOver();
    // the session's audio as sent (RFC 4733 keys are still reported: call.dtmf)
    await this.leg.detectInbandDtmf(false).catch(() => undefined);
    const adopted = await this.service.options.agents.adoptLeg(user, this.leg);
    if (!adopted) {
      // another session appeared meanwhile (another instance, another call)
      await this.sayAndWait('refused-sessions');
      await this.sayAndWait('goodbye');
      await this.leg.hangup();
      return;
    }
    this.service.info({ user: user.id, caller: this.caller }, 'dial-in agent logged in');
  }

  /**
   * Logged in: the IVR stops listening; rtpengine's reports for the call keep reaching the leg
   * (so the agent session publishes them) until the leg ends.
   */
  private handOver(): void {
    this.stopIvr();
    if (!this.listeningForEvents) return;
    this.listeningForEvents = false;
    const callId = this.leg.media.callId;
    const dtmf = this.service.options.dtmf;
    if (this.leg.ended) void dtmf.unlisten(callId).catch(() => undefined);
    else this.leg.once('ended', () => void dtmf.unlisten(callId).catch(() => undefined));
  }

  /** Stops listening for digits (the call is gone, or handed over). Idempotent. */
  async release(): Promise<void> {
    this.stopIvr();
    if (this.listeningForEvents) {
      this.listeningForEvents = false;
      await this.service.options.dtmf.unlisten(this.leg.media.callId).catch(() => undefined);
    }
  }

  /** The IVR stops and no longer hears the leg's keys or its end. */
  private stopIvr(): void {
    this.leg.off('ended', this.onEnded);
    this.leg.off('dtmf', this.onKey);
    this.ivr.cancel();
  }

  async abort(): Promise<void> {
    this.ivr.cancel();
    await this.leg.hangup();
  }

  private onEngineDigit(event: RtpengineDtmfEvent): void {
    const callerTag = this.leg.externalSide === 'a' ? this.leg.media.aTag : this.leg.media.bTag;
    if (event.sourceTag && event.sourceTag !== callerTag) return; // not sent by the caller
    this.leg.reportDtmf(event.digit, this.offersTelephoneEvent ? 'rfc4733' : 'inband');
  }

  private async play(prompt: PromptName): Promise<number> {
    const file = this.service.options.prompts.file(prompt, this.language);
    try {
      await this.leg.play(file.path);
    } catch (err) {
      this.service.warn(err, 'dial-in prompt not played');
    }
    return file.durationMs;
  }

  private async sayAndWait(prompt: PromptName): Promise<void> {
    const ms = await this.play(prompt);
    await new Promise((resolve) => setTimeout(resolve, ms).unref());
  }
}

/** Called numbers compare without spaces, punctuation or a leading + (E.164 digits). */
function normaliseNumber(number: string): string {
  return number.replace(/[\s().-]/g, '').replace(/^\+/, '');
}
