/**
 * Cluster-wide events over Redis pub/sub (channel dc:events). Every core instance subscribes:
 * user changes invalidate read caches, kicks end a user's registrations and calls, bans are
 * mirrored into each instance's memory. Messages are JSON; anything malformed is ignored.
 */
import { EVENTS_CHANNEL } from './keys.js';
import type { Redis } from './redis.js';
import type { Logger } from '../observability/logger.js';

export type KickReason = 'deactivated' | 'deleted' | 'password-reset' | 'reset' | 'logout' | 'settings-changed';

export type DialcoreEvent =
  | { type: 'user-changed'; userId: string; logins: string[]; version: number; deleted?: boolean }
  | { type: 'kick'; userId: string; reason: KickReason; bindingId?: string }
  | { type: 'ban'; scope: 'ip'; subject: string; untilMs: number }
  | { type: 'unban'; scope: 'ip'; subject: string };

export type EventHandler = (event: DialcoreEvent) => void;

function isStringArray(value: unknown): value is string[] {
  return Array.isArray(value) && value.every((v) => typeof v === 'string');
}

export function parseEvent(message: string): DialcoreEvent | null {
  let data: unknown;
  try {
    data = JSON.parse(message);
  } catch {
    return null;
  }
  if (typeof data !== 'object' || data === null) return null;
  const e = data as Record<string, unknown>;
  switch (e.type) {
    case 'user-changed':
      if (typeof e.userId === 'string' && isStringArray(e.logins) && typeof e.version === 'number') {
        return { type: 'user-changed', userId: e.userId, logins: e.logins, version: e.version, deleted: e.deleted === true };
      }
      return null;
    case 'kick':
      if (typeof e.userId === 'string' && typeof e.reason === 'string') {
        return {
          type: 'kick',
          userId: e.userId,
          reason: e.reason as KickReason,
          ...(typeof e.bindingId === 'string' ? { bindingId: e.bindingId } : {}),
        };
      }
      return null;
    case 'ban':
      if (e.scope === 'ip' && typeof e.subject === 'string' && typeof e.untilMs === 'number') {
        return { type: 'ban', scope: 'ip', subject: e.subject, untilMs: e.untilMs };
      }
      return null;
    case 'unban':
      if (e.scope === 'ip' && typeof e.subject === 'string') return { type: 'unban', scope: 'ip', subject: e.subject };
      return null;
    default:
      return null;
  }
}

export class EventBus {
  private readonly handlers = new Set<EventHandler>();
  private readonly resyncHandlers = new Set<() => void>();
  private subscription: { close(): Promise<void> } | null = null;

  constructor(
    private readonly redis: Redis,
    private readonly log?: Logger,
    private readonly channel = EVENTS_CHANNEL,
  ) {}

  /** Subscribes (idempotent). Until started, this instance only publishes. */
  async start(): Promise<void> {
    if (this.subscription) return;
    this.subscription = await this.redis.subscribe(
      this.channel,
      (message) => this.dispatch(message),
      () => {
        // Messages may have been lost while disconnected: caches drop everything.
        for (const handler of this.resyncHandlers) handler();
      },
    );
  }

  async stop(): Promise<void> {
    const subscription = this.subscription;
    this.subscription = null;
    if (subscription) await subscription.close().catch(() => undefined);
  }

  async publish(event: DialcoreEvent): Promise<void> {
    await this.redis.publish(this.channel, JSON.stringify(event));
  }

  on(handler: EventHandler): () => void {
    this.handlers.add(handler);
    return () => this.handlers.delete(handler);
  }

  /** Called after a reconnect of the subscription, when events may have been missed. */
  onResync(handler: () => void): () => void {
    this.resyncHandlers.add(handler);
    return () => this.resyncHandlers.delete(handler);
  }

  private dispatch(message: string): void {
    const event = parseEvent(message);
    if (!event) {
      this.log?.warn({ channel: this.channel }, 'ignoring malformed event');
      return;
    }
    for (const handler of this.handlers) {
      try {
        handler(event);
      } catch (err) {
        this.log?.error({ err, type: event.type }, 'event handler failed');
      }
    }
  }
}
