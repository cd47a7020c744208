/**
 * The two things the dialer controls: an agent's session (the agent's leg, kept up between
 * customer calls, as VICIdial keeps a logged-in agent's phone in a conference) and a customer
 * call bridged into it. Plain state holders; agent-service.ts runs them.
 */
import { randomUUID } from 'node:crypto';
import type { ConnectionMethod, UserRecord } from '../users/types.js';
import type { NumberMasker } from '../policies/index.js';
import type { SipLeg } from './sip-leg.js';

export type AgentSessionState = 'connecting' | 'ready' | 'on-call' | 'ended';

export class AgentSession {
  readonly id = randomUUID();
  readonly startedAt = new Date();
  state: AgentSessionState = 'connecting';
  leg?: SipLeg;
  /** The customer call bridged to the agent now (or being consulted/transferred). */
  callId?: string;
  endCause?: string;
  readonly abort = new AbortController();
  timeoutTimer?: NodeJS.Timeout;

  constructor(
    public user: UserRecord,
    readonly method: ConnectionMethod,
  ) {}

  get userId(): string {
    return this.user.id;
  }

  view(instance: string): AgentSessionView {
    return {
      id: this.id,
      agent: this.user.id,
      connectionMethod: this.method,
      state: this.state,
      callId: this.callId ?? null,
      instance,
      startedAt: this.startedAt.toISOString(),
      ...(this.endCause ? { endCause: this.endCause } : {}),
    };
  }
}

export interface AgentSessionView {
  id: string;
  agent: string;
  connectionMethod: ConnectionMethod;
  state: AgentSessionState;
  callId: string | null;
  instance: string;
  startedAt: string;
  endCause?: string;
}

export type CustomerCallState = 'dialing' | 'ringing' | 'answered' | 'bridged' | 'held' | 'transferring' | 'transferred' | 'ended';

export interface Recording {
  startedAt: string;
  stoppedAt: string | null;
  /** The WAV, once the call has ended (GET /v1/calls/{id}/recordings/{n} serves it). */
  file?: string;
  bytes?: number;
  seconds?: number;
}

export class CustomerCall {
  readonly id = randomUUID();
  readonly createdAt = new Date();
  state: CustomerCallState = 'dialing';
  leg?: SipLeg;
  answeredAt?: Date;
  endedAt?: Date;
  endCause?: string;
  muted = false;
  recording = false;
  readonly recordings: Recording[] = [];
  /** Attended transfer / 3-way: the third party's leg. */
  third?: {
    leg?: SipLeg;
    to: string;
    mode: 'attended' | 'three-way';
    abort: AbortController;
    roomLeave?: () => Promise<void>;
    /** Bridging the answered third party to the agent (attended) or into the mixer (3-way). */
    connecting?: Promise<void>;
    /** `connecting` done: the agent talks with the third party. */
    connected?: boolean;
  };
  /** After a completed transfer the agent is gone; the call lives on between customer and target. */
  partner?: SipLeg;
  readonly abort = new AbortController();

  constructor(
    /** The agent whose session the call is bridged into (until a transfer hands it on). */
    public agentId: string,
    public sessionId: string,
    readonly direction: 'outbound' | 'inbound',
    /** The customer's number, unmasked (never shown to a masked agent). */
    readonly number: string,
    /** The caller ID presented to the customer (outbound) or the DID dialled (inbound). */
    readonly presented: string | null,
    /** Masks what a masked agent would see (undefined: nothing to mask). */
    public masker: NumberMasker | undefined,
  ) {}

  view(instance: string): CustomerCallView {
    const shown = (text: string): string => (this.masker ? this.masker.maskText(text) : text);
    return {
      id: this.id,
      agent: this.agentId,
      sessionId: this.sessionId,
      direction: this.direction,
      to: this.direction === 'outbound' ? shown(this.number) : this.presented,
      from: this.direction === 'outbound' ? this.presented : shown(this.number),
      state: this.state,
      muted: this.muted,
      recording: this.recording,
      instance,
      createdAt: this.createdAt.toISOString(),
      answeredAt: this.answeredAt?.toISOString() ?? null,
      endedAt: this.endedAt?.toISOString() ?? null,
      ...(this.endCause ? { endCause: this.endCause } : {}),
      ...(this.third ? { third: { to: shown(this.third.to), mode: this.third.mode, connected: this.third.connected === true } } : {}),
    };
  }
}

export interface CustomerCallView {
  id: string;
  agent: string;
  sessionId: string;
  direction: 'outbound' | 'inbound';
  to: string | null;
  from: string | null;
  state: CustomerCallState;
  muted: boolean;
  recording: boolean;
  instance: string;
  createdAt: string;
  answeredAt: string | null;
  endedAt: string | null;
  endCause?: string;
  third?: { to: string; mode: string; connected: boolean };
}

export function newSessionId(): string {
  return randomUUID();
}
