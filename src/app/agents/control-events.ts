/**
 * The dialer's event stream: what happens to agent sessions and calls, as JSON, published on one
 * Redis channel so that a WebSocket client connected to any instance sees the events of every
 * instance (GET /v1/events, see control-api.ts).
 *
 * Numbers in events are shown as the agent sees them: for a masked agent the customer's number is
 * masked with the agent's own masking rules, exactly as on the wire.
 */
import type { Logger } from 'pino';
import type { Redis } from '../users/redis.js';

export const CONTROL_EVENTS_CHANNEL = 'dc:control-events';

export type ControlEventType =
  | 'agent.session.connecting'
  | 'agent.session.up'
  | 'agent.session.down'
  | 'call.dialing'
  | 'call.ringing'
  | 'call.answered'
  | 'call.bridged'
  | 'call.held'
  | 'call.resumed'
  | 'call.muted'
  | 'call.unmuted'
  | 'call.transferring'
  | 'call.transferred'
  | 'call.three-way'
  | 'call.ended'
  | 'call.dtmf'
  | 'recording.started'
  | 'recording.stopped';

export interface ControlEvent {
  type: ControlEventType;
  /** ISO time the event happened on the instance that published it. */
  at: string;
  /** Publishing instance. */
  instance: string;
  /** Agent (user id) the event belongs to. */
  agent?: string;
  sessionId?: string;
  callId?: string;
  [detail: string]: unknown;
}

export interface ControlEventInput {
  type: ControlEventType;
  agent?: string;
  sessionId?: string;
  callId?: string;
  [detail: string]: unknown;
}

export class ControlEventBus {
  private readonly listeners = new Set<(event: ControlEvent) => void>();
  private subscription: { close(): Promise<void> } | null = null;

  constructor(
    private readonly redis: Redis,
    private readonly instance: string,
    private readonly log?: Logger,
  ) {}

  async start(): Promise<void> {
    if (this.subscription) return;
    this.subscription = await this.redis.subscribe(CONTROL_EVENTS_CHANNEL, (message) => this.dispatch(message));
  }

  async stop(): Promise<void> {
    const subscription = this.subscription;
    this.subscription = null;
    await subscription?.close().catch(() => undefined);
  }

  /** Publishes to every instance (this one included, through the subscription). Never throws. */
  publish(event: ControlEventInput): void {
    const full: ControlEvent = { ...event, at: new Date().toISOString(), instance: this.instance };
    this.redis.publish(CONTROL_EVENTS_CHANNEL, JSON.stringify(full)).catch((err: unknown) => {
      this.log?.warn({ err: err instanceof Error ? err.message : String(err), type: event.type }, 'control event not published');
    });
  }

  on(listener: (event: ControlEvent) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  private dispatch(message: string): void {
    let event: ControlEvent;
    try {
      const parsed = JSON.parse(message) as unknown;
      if (typeof parsed !== 'object' || parsed === null || typeof (parsed as { type?: unknown }).type !== 'string') return;
      event = parsed as ControlEvent;
    } catch {
      return;
    }
    for (const listener of this.listeners) listener(event);
  }
}
