/**
 * Agent sessions and customer calls (the dialer control API's engine).
 *
 * - An agent session is the agent's leg, kept up between customer calls: dialcore INVITEs the
 *   agent by their connection method (every registration of a webrtc/sip-phone user, first
 *   answer wins, with the usual auto-answer hints when asked; the PBX URI of a sip-address user
 *   with its credentials); a dial-in agent's session is the call they made (adoptLeg). Between
 *   calls the agent's internal side is parked: silence, or the hold music looped.
 * - A customer call is dialled through the outbound gateways (dial plan, E.164, failover, the
 *   campaign or user caller ID) and, when answered, bridged into the session: the two legs'
 *   internal sides are pointed at each other (sip-leg.ts), no new INVITE to the agent.
 *   An inbound DID call to a connected agent is answered and bridged the same way.
 * - Transfers (blind, attended) and 3-way, mute, hold, DTMF and recording act on the legs.
 *
 * State lives in Redis (agent-state.ts) so that any instance can show any session or call and
 * send a command to the instance that owns it; events go out on the control event bus.
 */
import type { Logger } from 'pino';
import type { CarrierConfig } from '../carriers/index.js';
import type { MediaSessionRegistry } from '../media/index.js';
import {
  applyDialPlan,
  createNumberMasker,
  maskingApplies,
  resolveUserDialPlan,
  transferCallerNumber,
  type MaskStyle,
} from '../policies/index.js';
import type { SessionSummary } from '../registrar/kick.js';
import type { SipHeaders, Srf, SrfRequest, SrfResponse } from '../sip/srf.js';
import { uriHost } from '../sip/uri-host.js';
import type { UserRecord } from '../users/types.js';
import type { DialPlans } from '../calls/call-rules.js';
import { outboundCallerHeaders } from '../calls/call-rules.js';
import { outboundGatewayGroups, type GatewayChannels } from '../calls/carrier-routing.js';
import type { CallTarget, DialogId } from '../calls/call-session.js';
import type { CallRegistry } from '../calls/call-registry.js';
import { planUserCall, type BindingLister, type UserCallOptions } from '../calls/user-calls.js';
import { answerLeg } from './answer.js';
import { AgentStateStore } from './agent-state.js';
import type { ControlEventBus, ControlEventInput } from './control-events.js';
import { DialFailure, dialLeg } from './dial.js';
import { AgentSession, CustomerCall, type AgentSessionView, type CustomerCallView, type Recording } from './model.js';
import type { AgentPrompts } from './prompts.js';
import { SipLeg } from './sip-leg.js';
import { parseReferTo } from './refer-to.js';
import type { ConferenceBridge } from './conference.js';
import { convertCallRecordings } from './recordings.js';
import { AGENT_LEG_METHODS } from '../sip/capabilities.js';

/** A refusal the API shows as it is (status, machine code, message naming the field or the rule). */
export class ControlError extends Error {
  constructor(
    readonly status: number,
    readonly code: 'not_found' | 'conflict' | 'forbidden' | 'validation_failed' | 'unavailable' | 'not_implemented',
    message: string,
    readonly field?: string,
    /** Where the session or call lives when it is on another instance. */
    readonly location?: { instance: string; apiUrl: string | null },
  ) {
    super(message);
  }
}

/** How long a REFER's NOTIFY waits for the device's answer before the transfer goes on anyway. */
const NOTIFY_WAIT_MS = 1_000;

export interface AgentServiceOptions {
  srf: Srf;
  media: MediaSessionRegistry;
  state: AgentStateStore;
  events: ControlEventBus;
  users: { get(id: string): Promise<UserRecord | null> };
  bindings: BindingLister;
  /** Several instances: an agent's registrations held by another instance are reached through it. */
  forward?: UserCallOptions['forward'];
  carriers: CarrierConfig;
  channels: GatewayChannels;
  dialPlans: DialPlans;
  /** Host of the From/To URIs agents' devices see. */
  domain: string;
  instanceId: string;
  prompts: AgentPrompts;
  ringTimeoutMs: number;
  noResponseFailoverMs?: number;
  defaultCallerNumber?: string | null;
  maskStyle?: MaskStyle;
  /** rtpengine's --recording-dir (pcap method): recordings are refused when unset. */
  recordingDir?: string | null;
  /** The user's other live calls on this instance (device calls), counted with the session against maxSessions. */
  userCallCount?: (userId: string) => number;
  /** Device calls on this instance: REFER with Replaces (RFC 3891) from an agent's phone names one of them. */
  deviceCalls?: Pick<CallRegistry, 'findByCallerDialog'>;
  /** 3-way calls: absent = refused with 501 and the reason. */
  conference?: ConferenceBridge;
  logger?: Logger;
}

export interface StartSessionOptions {
  /** Send Call-Info answer-after=0 / Alert-Info auto-answer to the agent's device. */
  autoAnswer?: boolean;
}

export type TransferTarget = { number: string } | { agent: string };

export class AgentService {
  private readonly sessions = new Map<string, AgentSession>(); // by user id
  private readonly calls = new Map<string, CustomerCall>();
  private readonly log?: Logger;
  /** Graceful drain: no new session or call here; those up go on. */
  private draining = false;

  constructor(private readonly o: AgentServiceOptions) {
    this.log = o.logger?.child({ component: 'agents' });
  }

  get instanceId(): string {
    return this.o.instanceId;
  }

  get sessionCount(): number {
    return this.sessions.size;
  }

  get callCount(): number {
    return this.calls.size;
  }

  /** From now on new sessions and calls are refused with 503 (the instance is shutting down). */
  drain(): void {
    this.draining = true;
  }

  private assertNotDraining(): void {
    if (this.draining) throw new ControlError(503, 'unavailable', 'this instance is draining (shutting down): use another instance');
  }

  // ---------------------------------------------------------------------------------- sessions

  async startSession(userId: string, options: StartSessionOptions = {}): Promise<AgentSessionView> {
    this.assertNotDraining();
    const user = await this.o.users.get(userId);
    if (!user) throw new ControlError(404, 'not_found', 'no such user');
    if (!user.active) throw new ControlError(403, 'forbidden', 'the user is inactive');
    if (user.connectionMethod === 'dial-in') {
      throw new ControlError(409, 'conflict', 'a dial-in agent connects by calling an access number', 'connectionMethod');
    }
    await this.assertNoSession(userId);
    await this.assertSessionAllowed(user);
    const planned = await planUserCall(
      user,
      { number: 'dialer', displayName: 'Dialer', customerNumbers: [] },
      { bindings: this.o.bindings, domain: this.o.domain, direction: 'internal', forward: this.o.forward ?? null },
    );
    if (!planned.ok) {
      throw new ControlError(409, 'unavailable', user.connectionMethod === 'sip-address' ? 'the agent has no SIP address' : 'the agent has no registered device');
    }
    const session = new AgentSession(user, user.connectionMethod);
    if (!(await this.o.state.claimSession(session.view(this.instanceId)))) {
      throw new ControlError(409, 'conflict', 'the agent already has a session');
    }
    this.sessions.set(userId, session);
    this.armSessionTimeout(session);
    this.publish({ type: 'agent.session.connecting', agent: userId, sessionId: session.id, connectionMethod: session.method });
    const hints: SipHeaders = options.autoAnswer
      ? { 'Call-Info': `<sip:${this.o.domain}>;answer-after=0`, 'Alert-Info': '<urn:alert:service:auto-answer>' }
      : {};
    const groups = planned.plan.groups.map((group) => group.map((t): CallTarget => ({ ...t, headers: { ...t.headers, ...hints } })));
    void dialLeg({
      srf: this.o.srf,
      media: this.o.media,
      groups,
      kind: planned.plan.bLegKind,
      methods: AGENT_LEG_METHODS,
      ringTimeoutMs: this.o.ringTimeoutMs,
      ...(this.o.noResponseFailoverMs !== undefined ? { noResponseFailoverMs: this.o.noResponseFailoverMs } : {}),
      signal: session.abort.signal,
      ...(this.log ? { logger: this.log } : {}),
    }).then(
      ({ leg }) =>
        this.sessionConnected(session, leg).catch(async (err: unknown) => {
          this.warn(err, 'agent session set-up failed');
          await leg.hangup();
          await this.endSession(session, 'media-failure');
        }),
      (err: unknown) => {
        const cause = err instanceof DialFailure ? (err.reason === 'aborted' ? 'ended-by-api' : `agent-${err.reason}`) : 'error';
        void this.endSession(session, cause);
      },
    );
    return session.view(this.instanceId);
  }

  /**
   * A leg that is already up becomes the agent's session (dial-in: the agent called an access
   * number and logged in). Refused (false) when the agent already has one.
   */
  async adoptLeg(user: UserRecord, leg: SipLeg): Promise<AgentSessionView | null> {
    if (this.sessions.has(user.id) || (await this.o.state.getSession(user.id))) return null;
    const session = new AgentSession(user, user.connectionMethod);
    if (!(await this.o.state.claimSession(session.view(this.instanceId)))) return null;
    this.sessions.set(user.id, session);
    this.armSessionTimeout(session);
    this.publish({ type: 'agent.session.connecting', agent: user.id, sessionId: session.id, connectionMethod: session.method });
    await this.sessionConnected(session, leg);
    return session.view(this.instanceId);
  }

  async getSession(userId: string): Promise<AgentSessionView> {
    const local = this.sessions.get(userId);
    if (local) return local.view(this.instanceId);
    const stored = await this.o.state.getSession(userId);
    if (!stored) throw new ControlError(404, 'not_found', 'the agent has no session');
    return stored;
  }

  async deleteSession(userId: string): Promise<void> {
    const session = this.sessions.get(userId);
    if (!session) {
      const stored = await this.o.state.getSession(userId);
      if (!stored) throw new ControlError(404, 'not_found', 'the agent has no session');
      throw await this.elsewhere(stored.instance, 'the session lives on another instance');
    }
    await this.endSession(session, 'ended-by-api');
  }

  /** Kick-off (deactivate, delete, reset, logout) on this instance: ends the agent's session and calls. */
  async terminateUser(userId: string): Promise<number> {
    const session = this.sessions.get(userId);
    const calls = [...this.calls.values()].filter((c) => c.agentId === userId);
    await Promise.all([...calls.map((c) => this.endCall(c, 'agent-kicked')), ...(session ? [this.endSession(session, 'kicked')] : [])]);
    return calls.length + (session ? 1 : 0);
  }

  listUserSessions(userId: string): SessionSummary[] {
    const session = this.sessions.get(userId);
    if (!session) return [];
    return [{ id: session.id, kind: 'agent-session', startedAt: session.startedAt.toISOString(), state: session.state, connectionMethod: session.method, callId: session.callId ?? null }];
  }

  private async sessionConnected(session: AgentSession, leg: SipLeg): Promise<void> {
    if (session.state === 'ended') {
      await leg.hangup();
      return;
    }
    session.leg = leg;
    session.state = 'ready';
    leg.on('ended', () => void this.endSession(session, 'agent-hangup'));
    leg.on('dtmf', (digit, source) => this.publish({ type: 'call.dtmf', agent: session.userId, sessionId: session.id, ...(session.callId ? { callId: session.callId } : {}), digit, source, from: 'agent' }));
    leg.on('refer', (req, res) => void this.onAgentRefer(session, req, res));
    await this.saveSession(session);
    this.publish({ type: 'agent.session.up', agent: session.userId, sessionId: session.id, connectionMethod: session.method });
    await this.idle(session);
  }

  /** Between calls: parked, hold music looped if configured. */
  private async idle(session: AgentSession): Promise<void> {
    const leg = session.leg;
    if (!leg || session.state === 'ended') return;
    session.state = 'ready';
    session.callId = undefined;
    await leg.park().catch((err: unknown) => this.warn(err, 'parking the agent failed'));
    if (this.o.prompts.holdMusic) await leg.play(this.o.prompts.holdMusic, true).catch((err: unknown) => this.warn(err, 'hold music failed'));
    await this.saveSession(session);
  }

  /**
   * While the agent's session holds a customer and the agent may transfer, a call the agent's
   * device places is the consultation of an attended transfer (REFER with Replaces follows): it
   * presents the number transferCidType chooses, as the API's transfers do.
   */
  consultationCallerNumber(userId: string): string | undefined {
    const session = this.sessions.get(userId);
    const call = session?.callId ? this.calls.get(session.callId) : undefined;
    if (!session?.user.transfer || !call || (call.state !== 'bridged' && call.state !== 'held')) return undefined;
    return this.transferPresentation(session.user, call);
  }

  private transferPresentation(agent: UserRecord, call: CustomerCall): string | undefined {
    return transferCallerNumber(agent, { campaignNumber: call.direction === 'outbound' ? call.presented : null, contactNumber: call.number });
  }

  /** The number of this user's sessions counted against maxSessions: the agent session and the device calls. */
  sessionsOf(userId: string): number {
    return (this.sessions.has(userId) ? 1 : 0) + (this.o.userCallCount?.(userId) ?? 0);
  }

  /** sessionTimeoutSeconds bounds a session as it bounds a registration: past it, the session and its call end. */
  private armSessionTimeout(session: AgentSession): void {
    const ms = session.user.sessionTimeoutSeconds * 1000;
    if (ms <= 0) return;
    session.timeoutTimer = setTimeout(() => void this.endSession(session, 'session-timeout'), ms);
    session.timeoutTimer.unref();
  }

  private async endSession(session: AgentSession, cause: string): Promise<void> {
    if (session.state === 'ended') return;
    session.state = 'ended';
    session.endCause = cause;
    clearTimeout(session.timeoutTimer);
    session.abort.abort();
    const call = session.callId ? this.calls.get(session.callId) : undefined;
    if (call && call.agentId === session.userId) await this.endCall(call, cause === 'agent-hangup' ? 'agent-hangup' : 'session-ended');
    await session.leg?.hangup();
    if (this.sessions.get(session.userId) === session) this.sessions.delete(session.userId);
    await this.o.state.releaseSession(session.userId, session.id).catch((err: unknown) => this.warn(err, 'session state not released'));
    this.publish({ type: 'agent.session.down', agent: session.userId, sessionId: session.id, cause });
  }

  // ----------------------------------------------------------------------------- customer calls

  /**
   * A call the dialer places for an agent: dialled through the gateways, bridged on answer. The
   * dialer's own calls are not subject to the agent's manual-dial privilege; the dial plan applies.
   */
  async placeCall(request: { agent: string; to: string; callerId?: string }): Promise<CustomerCallView> {
    this.assertNotDraining();
    const session = this.sessions.get(request.agent);
    if (!session) {
      const stored = await this.o.state.getSession(request.agent);
      if (!stored) throw new ControlError(409, 'conflict', 'the agent has no session', 'agent');
      throw await this.elsewhere(stored.instance, 'the agent session lives on another instance');
    }
    if (session.state !== 'ready') throw new ControlError(409, 'conflict', `the agent session is ${session.state}`, 'agent');
    const user = (await this.o.users.get(session.userId)) ?? session.user;
    session.user = user;
    const { plan, userRules } = resolveUserDialPlan(user.dialPlan, this.o.dialPlans.plans, this.o.dialPlans.defaultPlan);
    const dialled = applyDialPlan(request.to, plan, userRules);
    if (!dialled.ok) throw new ControlError(dialled.status === 403 ? 403 : 400, dialled.status === 403 ? 'forbidden' : 'validation_failed', `to: ${dialled.reason}`, 'to');
    const e164 = dialled.e164;
    const callerUser = request.callerId ? { callerIdName: user.callerIdName, callerIdNumber: request.callerId } : user;
    const groups = this.gatewayGroups(e164, callerUser);
    if (groups.length === 0) throw new ControlError(503, 'unavailable', 'no outbound gateway can take the call');
    const call = new CustomerCall(user.id, session.id, 'outbound', `+${e164.replace(/^\+/, '')}`, request.callerId ?? user.callerIdNumber ?? null, this.maskerFor(user, [e164, `+${e164}`]));
    this.calls.set(call.id, call);
    session.callId = call.id;
    session.state = 'on-call';
    await Promise.all([this.saveSession(session), this.saveCall(call)]);
    this.publishCall(call, 'call.dialing', { to: call.number });
    void dialLeg({
      srf: this.o.srf,
      media: this.o.media,
      groups,
      kind: 'plain',
      injectDtmf: true,
      ringTimeoutMs: this.o.ringTimeoutMs,
      ...(this.o.noResponseFailoverMs !== undefined ? { noResponseFailoverMs: this.o.noResponseFailoverMs } : {}),
      signal: call.abort.signal,
      onRinging: () => {
        if (call.state !== 'dialing') return;
        call.state = 'ringing';
        void this.saveCall(call);
        this.publishCall(call, 'call.ringing');
      },
      ...(this.log ? { logger: this.log } : {}),
    }).then(
      ({ leg }) =>
        this.customerAnswered(call, leg).catch(async (err: unknown) => {
          this.warn(err, 'bridging the customer failed');
          call.leg ??= leg;
          await this.endCall(call, this.bridgeFailureCause(call, leg));
        }),
      (err: unknown) => {
        const cause = err instanceof DialFailure ? (err.reason === 'aborted' ? 'hangup-by-api' : err.reason) : 'error';
        void this.endCall(call, cause, err instanceof DialFailure ? err.status : undefined);
      },
    );
    return call.view(this.instanceId);
  }

  /**
   * An inbound DID call for `user`: bridged into their session when it is on this instance and
   * ready (true); false leaves the call to the normal routing (ring their devices).
   */
  async deliverInbound(user: UserRecord, req: SrfRequest, res: SrfResponse, callerNumber: string | undefined, customerNumbers: readonly string[]): Promise<boolean> {
    const session = this.sessions.get(user.id);
    if (!session || session.state !== 'ready') return false;
    const call = new CustomerCall(user.id, session.id, 'inbound', callerNumber ?? 'anonymous', req.calledNumber || null, this.maskerFor(user, customerNumbers));
    this.calls.set(call.id, call);
    session.callId = call.id;
    session.state = 'on-call';
    this.publishCall(call, 'call.ringing', { from: call.number });
    let leg: SipLeg | undefined;
    try {
      leg = await answerLeg({ srf: this.o.srf, media: this.o.media, req, res, injectDtmf: true, ...(this.log ? { logger: this.log } : {}) });
      await this.customerAnswered(call, leg);
    } catch (err) {
      this.warn(err, 'inbound call to an agent session failed');
      await this.endCall(call, this.bridgeFailureCause(call, leg));
    }
    return true;
  }

  private async customerAnswered(call: CustomerCall, leg: SipLeg): Promise<void> {
    call.leg = leg;
    if (call.state === 'ended') {
      await leg.hangup();
      return;
    }
    call.state = 'answered';
    call.answeredAt = new Date();
    leg.on('ended', () => void this.endCall(call, call.partner ? 'hangup' : 'customer-hangup'));
    leg.on('dtmf', (digit, source) => this.publishCall(call, 'call.dtmf', { digit, source, from: 'customer' }));
    this.publishCall(call, 'call.answered');
    const session = this.sessions.get(call.agentId);
    if (!session?.leg || session.state === 'ended') {
      await this.endCall(call, 'session-ended');
      return;
    }
    const user = session.user;
    await this.bridge(session.leg, leg);
    call.state = 'bridged';
    await this.saveCall(call);
    this.publishCall(call, 'call.bridged');
    if (user.callConnectAnnouncement) await session.leg.play(this.o.prompts.callConnected).catch((err: unknown) => this.warn(err, 'announcement failed'));
    if (user.recordDirectCalls) await this.startRecording(call.id).catch((err: unknown) => this.warn(err, 'recording failed to start'));
  }

  /**
   * Why putting a customer through failed: a party that hung up meanwhile (its BYE raced the
   * bridge's rtpengine re-offers, which then find its call deleted), else rtpengine itself.
   */
  private bridgeFailureCause(call: CustomerCall, customerLeg: SipLeg | undefined): string {
    if (customerLeg?.endCause === 'remote-hangup') return 'customer-hangup';
    if (this.sessions.get(call.agentId)?.leg?.endCause === 'remote-hangup') return 'agent-hangup';
    return 'media-failure';
  }

  private async bridge(a: SipLeg, b: SipLeg): Promise<void> {
    await Promise.all([a.stopPlaying(), b.stopPlaying()]);
    await Promise.all([a.connect(b.internalSdp), b.connect(a.internalSdp)]);
  }

  private localCall(callId: string): CustomerCall | undefined {
    return this.calls.get(callId);
  }

  /** The call (local, else as stored); throws 404 when unknown. */
  async getCall(callId: string): Promise<CustomerCallView> {
    const call = this.localCall(callId);
    if (call) return call.view(this.instanceId);
    const stored = await this.o.state.getCall(callId);
    if (!stored) throw new ControlError(404, 'not_found', 'no such call');
    return stored;
  }

  async listCalls(): Promise<CustomerCallView[]> {
    return this.o.state.listCalls();
  }

  /** A live call owned by this instance, or the right refusal (404 unknown, 409 ended, 307 elsewhere). */
  private async commandTarget(callId: string, allowEnded = false): Promise<CustomerCall | CustomerCallView> {
    const call = this.localCall(callId);
    if (call) return call;
    const stored = await this.o.state.getCall(callId);
    if (!stored) throw new ControlError(404, 'not_found', 'no such call');
    if (stored.state === 'ended') {
      if (allowEnded) return stored;
      throw new ControlError(409, 'conflict', 'the call has ended');
    }
    throw await this.elsewhere(stored.instance, 'the call lives on another instance');
  }

  private async liveCall(callId: string, states?: readonly CustomerCall['state'][]): Promise<CustomerCall> {
    const target = await this.commandTarget(callId);
    if (!(target instanceof CustomerCall) || target.state === 'ended') throw new ControlError(409, 'conflict', 'the call has ended');
    if (states && !states.includes(target.state)) throw new ControlError(409, 'conflict', `the call is ${target.state}`);
    return target;
  }

  /** Idempotent: hanging up an ended call answers with the call as it ended. */
  async hangupCall(callId: string): Promise<CustomerCallView> {
    const target = await this.commandTarget(callId, true);
    if (!(target instanceof CustomerCall)) return target;
    await this.endCall(target, 'hangup-by-api');
    return target.view(this.instanceId);
  }

  async hold(callId: string, held: boolean): Promise<CustomerCallView> {
    const call = await this.liveCall(callId, held ? ['bridged', 'held'] : ['held', 'bridged']);
    // the three legs are in the mixer: leave the 3-way first (transfer/cancel)
    if (call.third?.mode === 'three-way') throw new ControlError(409, 'conflict', 'the call is in a 3-way; cancel it first');
    const leg = call.leg!;
    const agentLeg = this.sessions.get(call.agentId)?.leg;
    if (held && call.state === 'bridged') {
      await Promise.all([leg.park(), agentLeg?.park()]);
      if (this.o.prompts.holdMusic) await leg.play(this.o.prompts.holdMusic, true).catch((err: unknown) => this.warn(err, 'hold music failed'));
      call.state = 'held';
      this.publishCall(call, 'call.held');
    } else if (!held && call.state === 'held') {
      if (!agentLeg) throw new ControlError(409, 'conflict', 'the agent session has ended');
      await this.bridge(agentLeg, leg);
      call.state = 'bridged';
      this.publishCall(call, 'call.resumed');
    }
    await this.saveCall(call);
    return call.view(this.instanceId);
  }

  /** Mute the agent: the customer hears silence instead of the agent (rtpengine `silence media`). */
  async mute(callId: string, muted: boolean): Promise<CustomerCallView> {
    const call = await this.liveCall(callId, ['bridged', 'held', 'answered']);
    const agentLeg = this.sessions.get(call.agentId)?.leg;
    if (!agentLeg) throw new ControlError(409, 'conflict', 'the agent session has ended');
    if (call.muted !== muted) {
      await agentLeg.setMuted(muted);
      call.muted = muted;
      this.publishCall(call, muted ? 'call.muted' : 'call.unmuted');
      await this.saveCall(call);
    }
    return call.view(this.instanceId);
  }

  /** RFC 4733 digits to the customer (rtpengine `play DTMF`), one after the other. */
  async sendDtmf(callId: string, digits: string): Promise<CustomerCallView> {
    if (typeof digits !== 'string' || !/^[0-9A-Da-d*#]{1,32}$/.test(digits)) {
      throw new ControlError(400, 'validation_failed', 'digits must be 1-32 of 0-9 * # A-D', 'digits');
    }
    const call = await this.liveCall(callId, ['bridged', 'held', 'answered']);
    for (const digit of digits.toUpperCase()) {
      await call.leg!.sendDtmf(digit);
      await new Promise((r) => setTimeout(r, 200));
    }
    return call.view(this.instanceId);
  }

  async startRecording(callId: string): Promise<CustomerCallView> {
    const call = await this.liveCall(callId, ['bridged', 'held', 'answered', 'transferred']);
    if (!this.o.recordingDir) throw new ControlError(501, 'not_implemented', 'recording is not configured (config recording.dir, with rtpengine --recording-method=pcap)');
    if (!call.recording) {
      await call.leg!.media.startRecording();
      call.recording = true;
      call.recordings.push({ startedAt: new Date().toISOString(), stoppedAt: null });
      this.publishCall(call, 'recording.started');
      await this.saveCall(call);
    }
    return call.view(this.instanceId);
  }

  async stopRecording(callId: string): Promise<CustomerCallView> {
    const call = await this.liveCall(callId);
    if (call.recording) await this.recordingStopped(call, true);
    return call.view(this.instanceId);
  }

  /** The WAV of a recording on this instance's disk, or null. */
  recordingPath(file: string): string | null {
    if (!this.o.recordingDir || !/^[0-9a-f-]{36}-\d{1,4}\.wav$/.test(file)) return null;
    return `${this.o.recordingDir}/wav/${file}`;
  }

  async listRecordings(callId: string): Promise<Recording[]> {
    const call = this.localCall(callId);
    if (call) return call.recordings;
    const stored = await this.o.state.getCall(callId);
    if (!stored) throw new ControlError(404, 'not_found', 'no such call');
    return this.o.state.getRecordings(callId);
  }

  private async recordingStopped(call: CustomerCall, command: boolean): Promise<void> {
    if (command) await call.leg?.media.stopRecording().catch((err: unknown) => this.warn(err, 'stop recording failed'));
    call.recording = false;
    const last = call.recordings[call.recordings.length - 1];
    if (last && !last.stoppedAt) last.stoppedAt = new Date().toISOString();
    this.publishCall(call, 'recording.stopped');
    await this.o.state.saveRecordings(call.id, call.recordings).catch((err: unknown) => this.warn(err, 'recordings not saved'));
  }

  // ---------------------------------------------------------------------------------- transfers

  /**
   * Transfer the customer to a number or another agent. Blind: the agent is released at once and
   * the customer is bridged to the target when it answers. Attended: the customer waits on hold
   * while the agent talks to the target; `completeTransfer` bridges customer and target,
   * `cancelTransfer` returns the customer to the agent.
   */
  async transfer(callId: string, target: TransferTarget, mode: 'blind' | 'attended'): Promise<CustomerCallView> {
    const call = await this.liveCall(callId, ['bridged', 'held']);
    const session = this.sessions.get(call.agentId);
    const agent = session?.user ?? (await this.o.users.get(call.agentId));
    if (!agent?.transfer) throw new ControlError(403, 'forbidden', 'the agent does not have the transfer privilege');
    if ('agent' in target) return this.transferToAgent(call, target.agent, mode);
    const e164 = this.transferNumber(agent, target.number);
    const callerNumber = this.transferPresentation(agent, call);
    const groups = this.gatewayGroups(e164, { callerIdName: agent.callerIdName, callerIdNumber: callerNumber ?? null });
    if (groups.length === 0) throw new ControlError(503, 'unavailable', 'no outbound gateway can take the call');
    if (mode === 'blind') {
      await this.releaseAgent(call);
      call.state = 'transferring';
      this.publishCall(call, 'call.transferring', { mode, to: `+${e164}` });
      await call.leg!.park();
      if (this.o.prompts.holdMusic) await call.leg!.play(this.o.prompts.holdMusic, true).catch(() => undefined);
      void this.dialThird(call, groups).then(
        async (leg) => {
          if (call.state === 'ended') return void (await leg.hangup());
          try {
            await this.bridge(call.leg!, leg);
          } catch (err) {
            this.warn(err, 'bridging the transfer target failed');
            await leg.hangup();
            return void (await this.endCall(call, 'transfer-failed'));
          }
          this.handOver(call, leg, `+${e164}`, mode);
        },
        () => void this.endCall(call, 'transfer-failed'),
      );
    } else {
      await this.consult(call, groups, `+${e164}`, 'attended');
    }
    await this.saveCall(call);
    return call.view(this.instanceId);
  }

  async completeTransfer(callId: string): Promise<CustomerCallView> {
    const call = await this.liveCall(callId);
    const third = call.third;
    if (!third?.leg || third.mode !== 'attended') throw new ControlError(409, 'conflict', 'no answered consultation to complete');
    await third.connecting?.catch(() => undefined);
    if (call.third !== third || third.leg.ended) throw new ControlError(409, 'conflict', 'the consultation ended');
    await this.releaseAgent(call);
    await this.bridge(call.leg!, third.leg);
    this.handOver(call, third.leg, third.to, 'attended');
    call.third = undefined;
    await this.saveCall(call);
    return call.view(this.instanceId);
  }

  async cancelTransfer(callId: string): Promise<CustomerCallView> {
    const call = await this.liveCall(callId);
    const third = call.third;
    if (!third) throw new ControlError(409, 'conflict', 'no transfer or 3-way in progress');
    await this.dropThird(call);
    return call.view(this.instanceId);
  }

  /** 3-way: agent, customer and a third party in a real mixer (conference.ts). */
  async threeWay(callId: string, to: string): Promise<CustomerCallView> {
    const call = await this.liveCall(callId, ['bridged']);
    const session = this.sessions.get(call.agentId);
    const agent = session?.user;
    if (!agent?.threeWay) throw new ControlError(403, 'forbidden', 'the agent does not have the 3-way privilege');
    if (!this.o.conference) throw new ControlError(501, 'not_implemented', '3-way calls need a conference mixer (config mixer.janusUrl)');
    const e164 = this.transferNumber(agent, to);
    const callerNumber = this.transferPresentation(agent, call);
    const groups = this.gatewayGroups(e164, { callerIdName: agent.callerIdName, callerIdNumber: callerNumber ?? null });
    if (groups.length === 0) throw new ControlError(503, 'unavailable', 'no outbound gateway can take the call');
    await this.consult(call, groups, `+${e164}`, 'three-way');
    return call.view(this.instanceId);
  }

  private async consult(call: CustomerCall, groups: CallTarget[][], to: string, mode: 'attended' | 'three-way'): Promise<void> {
    if (call.third) throw new ControlError(409, 'conflict', 'a transfer or 3-way is already in progress');
    const third: NonNullable<CustomerCall['third']> = { to, mode, abort: new AbortController() };
    call.third = third;
    this.publishCall(call, mode === 'three-way' ? 'call.three-way' : 'call.transferring', { mode, to, phase: 'dialing' });
    const agentLeg = this.sessions.get(call.agentId)?.leg;
    if (mode === 'attended' && agentLeg) {
      // the customer waits on hold while the agent consults
      await Promise.all([call.leg!.park(), agentLeg.park()]);
      if (this.o.prompts.holdMusic) await call.leg!.play(this.o.prompts.holdMusic, true).catch(() => undefined);
      call.state = 'held';
    }
    void this.dialThird(call, groups, third.abort.signal).then(
      async (leg) => {
        if (call.third !== third || call.state === 'ended') return void (await leg.hangup());
        third.leg = leg;
        leg.on('ended', () => {
          if (call.third === third) void this.dropThird(call);
        });
        const agent = this.sessions.get(call.agentId)?.leg;
        if (!agent) return void (await this.dropThird(call));
        // complete/cancel wait for this: a re-bridge racing it would leave a side pointing at the wrong leg
        third.connecting =
          mode === 'attended'
            ? this.bridge(agent, leg)
            : this.o.conference!.join([agent, call.leg!, leg]).then((leave) => void (third.roomLeave = leave));
        await third.connecting;
        if (call.third !== third) return; // canceled or completed meanwhile
        third.connected = true;
        this.publishCall(call, mode === 'three-way' ? 'call.three-way' : 'call.transferring', { mode, to, phase: 'connected' });
        await this.saveCall(call);
      },
      () => {
        if (call.third === third) void this.dropThird(call, 'failed');
      },
    ).catch((err: unknown) => {
      this.warn(err, `connecting the ${mode} third party failed`);
      if (call.third === third) void this.dropThird(call, 'failed');
    });
  }

  /** Ends a consultation or the 3-way's third party; agent and customer are bridged again. */
  private async dropThird(call: CustomerCall, phase = 'canceled'): Promise<void> {
    const third = call.third;
    if (!third) return;
    call.third = undefined;
    third.abort.abort();
    await third.connecting?.catch(() => undefined);
    await third.roomLeave?.().catch((err: unknown) => this.warn(err, 'leaving the conference failed'));
    await third.leg?.hangup();
    this.publishCall(call, third.mode === 'three-way' ? 'call.three-way' : 'call.transferring', { mode: third.mode, to: third.to, phase });
    const agentLeg = this.sessions.get(call.agentId)?.leg;
    if (call.state !== 'ended' && call.leg && agentLeg) {
      await this.bridge(agentLeg, call.leg).catch((err: unknown) => this.warn(err, 're-bridging after a transfer failed'));
      call.state = 'bridged';
      this.publishCall(call, 'call.resumed');
    }
    await this.saveCall(call);
  }

  private async transferToAgent(call: CustomerCall, targetAgentId: string, mode: 'blind' | 'attended'): Promise<CustomerCallView> {
    if (mode !== 'blind') throw new ControlError(400, 'validation_failed', 'transfer to an agent is blind (the agent session is already connected)', 'mode');
    const target = this.sessions.get(targetAgentId);
    if (!target?.leg || target.state !== 'ready') throw new ControlError(409, 'conflict', 'the target agent has no ready session on this instance', 'to.agent');
    await this.releaseAgent(call);
    const targetUser = (await this.o.users.get(targetAgentId)) ?? target.user;
    call.agentId = targetAgentId;
    call.sessionId = target.id;
    call.masker = this.maskerFor(targetUser, [call.number]);
    target.callId = call.id;
    target.state = 'on-call';
    await this.bridge(target.leg, call.leg!);
    call.state = 'bridged';
    this.publishCall(call, 'call.transferred', { mode, toAgent: targetAgentId });
    await Promise.all([this.saveCall(call), this.saveSession(target)]);
    return call.view(this.instanceId);
  }

  /** The customer no longer belongs to the agent: the agent's session is back to ready. */
  private async releaseAgent(call: CustomerCall): Promise<void> {
    const session = this.sessions.get(call.agentId);
    if (session && session.callId === call.id) {
      if (call.muted) await session.leg?.setMuted(false).catch(() => undefined);
      call.muted = false;
      await this.idle(session);
    }
  }

  /** After a completed transfer: customer and target talk; the call ends when either hangs up. */
  private handOver(call: CustomerCall, leg: SipLeg, to: string, mode: string): void {
    call.partner = leg;
    call.state = 'transferred';
    leg.on('ended', () => void this.endCall(call, 'hangup'));
    this.publishCall(call, 'call.transferred', { mode, to });
    void this.saveCall(call);
  }

  private dialThird(call: CustomerCall, groups: CallTarget[][], signal?: AbortSignal): Promise<SipLeg> {
    const abort = new AbortController();
    call.abort.signal.addEventListener('abort', () => abort.abort(), { once: true });
    signal?.addEventListener('abort', () => abort.abort(), { once: true });
    return dialLeg({
      srf: this.o.srf, media: this.o.media, groups, kind: 'plain', ringTimeoutMs: this.o.ringTimeoutMs,
      ...(this.o.noResponseFailoverMs !== undefined ? { noResponseFailoverMs: this.o.noResponseFailoverMs } : {}),
      signal: abort.signal, ...(this.log ? { logger: this.log } : {}),
    }).then(({ leg }) => leg);
  }

  /**
   * REFER from the agent's device on the session's dialog (RFC 3515). Without Replaces: a blind
   * transfer of the customer to the Refer-To number. With Replaces (RFC 3891, the attended
   * transfer of desk phones, RFC 5589 §7): the customer is handed to the far end of the device's
   * consultation call named by Replaces. Same privilege rule as the API (403 without `transfer`).
   */
  private async onAgentRefer(session: AgentSession, req: SrfRequest, res: SrfResponse): Promise<void> {
    const call = session.callId ? this.calls.get(session.callId) : undefined;
    if (!session.user.transfer) return res.send(403, 'Transfer Not Allowed');
    if (!call || (call.state !== 'bridged' && call.state !== 'held')) return res.send(488, 'Not Acceptable Here');
    const target = parseReferTo(req.get('Refer-To'));
    if (!target.ok) {
      this.log?.info({ reason: target.reason }, 'REFER refused');
      return res.send(400, 'Bad Refer-To');
    }
    if (target.replaces) return this.referReplaces(session, call, target.number, target.replaces, res);
    try {
      await this.transfer(call.id, { number: target.number }, 'blind');
    } catch (err) {
      const status = err instanceof ControlError ? (err.status === 403 ? 403 : err.status === 400 ? 400 : 480) : 500;
      return res.send(status);
    }
    // RFC 3515 §2.4.4 / §2.4.5: 202, then the implicit subscription's NOTIFY with the outcome
    res.send(202, 'Accepted');
    await this.notifyRefer(session, 100, 'Trying');
    await this.notifyRefer(session, 200, 'OK');
  }

  /** RFC 3891 via REFER: the consultation's far end and the customer talk; the agent is back to ready. */
  private async referReplaces(session: AgentSession, call: CustomerCall, to: string, replaces: DialogId, res: SrfResponse): Promise<void> {
    res.send(202, 'Accepted');
    // the 100 first (answered, or given up after a moment), then the consultation's BYE, then the outcome
    await this.notifyRefer(session, 100, 'Trying');
    const device = this.o.deviceCalls?.findByCallerDialog(replaces);
    // RFC 3891 §3: no such dialog (and another user's call is no dialog of this agent's) -> 481
    if (!device || !device.userIds.includes(session.userId)) return this.notifyRefer(session, 481, 'Call/Transaction Does Not Exist');
    if (call.state !== 'bridged' && call.state !== 'held') return this.notifyRefer(session, 487, 'Request Terminated');
    const handed = device.handOverCallee();
    if (!handed) return this.notifyRefer(session, 488, 'Not Acceptable Here');
    const far = new SipLeg({
      dialog: handed.dialog,
      media: handed.media,
      externalSide: 'b',
      kind: handed.calleeKind,
      internalSdp: handed.callerSideSdp,
      peerSdp: handed.calleeSdp,
      // RFC 4028 §10: the far end may count on our refreshes; it keeps them across the hand-over
      sessionTimer: { ...handed.sessionTimer, sdpToPeer: handed.sdpToCallee },
      ...(this.log ? { logger: this.log } : {}),
    });
    far.once('ended', handed.release);
    this.publishCall(call, 'call.transferring', { mode: 'attended', to, via: 'refer' });
    try {
      await this.releaseAgent(call);
      if (!call.leg || call.leg.ended) throw new Error('the customer hung up');
      await this.bridge(call.leg, far);
    } catch (err) {
      this.warn(err, 'attended transfer by REFER failed');
      await far.hangup();
      this.notifyRefer(session, 500, 'Server Internal Error');
      return void (await this.endCall(call, 'transfer-failed'));
    }
    this.handOver(call, far, to, 'attended');
    this.notifyRefer(session, 200, 'OK');
  }

  /** The REFER's implicit subscription (RFC 3515 §2.4.4): a message/sipfrag NOTIFY; final statuses end it (§2.4.5). */
  private async notifyRefer(session: AgentSession, status: number, reason: string): Promise<void> {
    const state = status < 200 ? 'active;expires=60' : 'terminated;reason=noresource';
    const sent = session.leg?.dialog
      .request({ method: 'NOTIFY', headers: { Event: 'refer', 'Subscription-State': state, 'Content-Type': 'message/sipfrag;version=2.0' }, body: `SIP/2.0 ${status} ${reason}\r\n` })
      .catch(() => undefined);
    await Promise.race([sent, new Promise((resolve) => setTimeout(resolve, NOTIFY_WAIT_MS).unref())]);
  }

  // ------------------------------------------------------------------------------------ ending

  private async endCall(call: CustomerCall, cause: string, status?: number): Promise<void> {
    if (call.state === 'ended') return;
    const wasBridged = call.state === 'bridged' || call.state === 'held';
    call.state = 'ended';
    call.endedAt = new Date();
    call.endCause = cause;
    call.abort.abort();
    if (call.recording) await this.recordingStopped(call, false);
    const third = call.third;
    call.third = undefined;
    third?.abort.abort();
    await third?.roomLeave?.().catch(() => undefined);
    await Promise.all([call.leg?.hangup(), call.partner?.hangup(), third?.leg?.hangup()]);
    if (call.recordings.length > 0 && this.o.recordingDir && call.leg) {
      // rtpengine closed the pcap with the call (media deleted): turn it into WAV
      const files = convertCallRecordings(this.o.recordingDir, call.leg.media.callId, call.id);
      files.forEach((file, i) => Object.assign(call.recordings[Math.min(i, call.recordings.length - 1)]!, file));
      await this.o.state.saveRecordings(call.id, call.recordings).catch((err: unknown) => this.warn(err, 'recordings not saved'));
    }
    this.calls.delete(call.id);
    const session = this.sessions.get(call.agentId);
    if (session && session.callId === call.id && session.state !== 'ended') {
      if (call.muted) await session.leg?.setMuted(false).catch(() => undefined);
      await this.idle(session);
      if (wasBridged && cause === 'customer-hangup' && session.user.hangupBeep) {
        await session.leg?.play(this.o.prompts.hangupBeep).catch((err: unknown) => this.warn(err, 'hang-up beep failed'));
      }
    }
    await this.saveCall(call);
    this.publishCall(call, 'call.ended', { cause, ...(status ? { status } : {}) });
  }

  /** Shutdown: every call and session of this instance ended. */
  async stop(): Promise<void> {
    await Promise.all([...this.calls.values()].map((c) => this.endCall(c, 'shutdown')));
    await Promise.all([...this.sessions.values()].map((s) => this.endSession(s, 'shutdown')));
  }

  // ----------------------------------------------------------------------------------- helpers

  private async assertNoSession(userId: string): Promise<void> {
    if (this.sessions.has(userId) || (await this.o.state.getSession(userId))) throw new ControlError(409, 'conflict', 'the agent already has a session');
  }

  /** maxSessions counts the agent session with the user's live device calls (registrations are counted by the registrar). */
  private async assertSessionAllowed(user: UserRecord): Promise<void> {
    if (user.maxSessions <= 0) return;
    if (this.sessionsOf(user.id) >= user.maxSessions) throw new ControlError(409, 'conflict', `the user is at maxSessions (${user.maxSessions})`, 'maxSessions');
  }

  private transferNumber(agent: UserRecord, to: string): string {
    if (typeof to !== 'string' || to.length === 0 || to.length > 32) throw new ControlError(400, 'validation_failed', 'to must be a phone number', 'to');
    const { plan, userRules } = resolveUserDialPlan(agent.dialPlan, this.o.dialPlans.plans, this.o.dialPlans.defaultPlan);
    const result = applyDialPlan(to, plan, userRules);
    if (!result.ok) throw new ControlError(result.status === 403 ? 403 : 400, result.status === 403 ? 'forbidden' : 'validation_failed', `to: ${result.reason}`, 'to');
    return result.e164.replace(/^\+/, '');
  }

  private gatewayGroups(e164: string, caller: Pick<UserRecord, 'callerIdName' | 'callerIdNumber'>): CallTarget[][] {
    return outboundGatewayGroups(e164.replace(/^\+/, ''), this.o.carriers, this.o.channels, (gateway) =>
      outboundCallerHeaders(caller, {
        domain: uriHost(gateway.host),
        ...(this.o.defaultCallerNumber !== undefined ? { defaultNumber: this.o.defaultCallerNumber } : {}),
      }),
    );
  }

  private maskerFor(user: UserRecord, numbers: readonly string[]) {
    if (!maskingApplies(user) || numbers.length === 0) return undefined;
    return createNumberMasker(numbers, user.masking.keepLastDigits, this.o.maskStyle);
  }

  private async elsewhere(instance: string, message: string): Promise<ControlError> {
    const apiUrl = await this.o.state.instanceApiUrl(instance);
    return new ControlError(409, 'conflict', message, undefined, { instance, apiUrl });
  }

  private async saveSession(session: AgentSession): Promise<void> {
    if (session.state === 'ended') return;
    await this.o.state.saveSession(session.view(this.instanceId)).catch((err: unknown) => this.warn(err, 'session state not saved'));
  }

  private async saveCall(call: CustomerCall): Promise<void> {
    await this.o.state.saveCall(call.view(this.instanceId), call.state === 'ended').catch((err: unknown) => this.warn(err, 'call state not saved'));
  }

  private publish(event: ControlEventInput): void {
    this.o.events.publish(event);
  }

  /** Call events carry the call's numbers as the agent sees them (masked for a masked agent). */
  private publishCall(call: CustomerCall, type: ControlEventInput['type'], detail: Record<string, unknown> = {}): void {
    const payload = { ...detail };
    const masked = call.masker ? (call.masker.maskPayload(payload) as Record<string, unknown>) : payload;
    this.publish({ type, agent: call.agentId, sessionId: call.sessionId, callId: call.id, direction: call.direction, state: call.state, ...masked });
  }

  private warn(err: unknown, message: string): void {
    this.log?.warn({ err: err instanceof Error ? err.message : String(err) }, message);
  }
}
