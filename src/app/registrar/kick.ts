/**
 * Kick-off: deactivation, deletion, password reset, "reset user" and logouts are published as
 * `kick` events on dc:events; every core instance, on receipt, removes the user's bindings
 * (idempotent, so N instances doing it is harmless) and ends the live sessions and flows it
 * holds through the injected SessionTerminator (implemented by the calls code).
 */
import type { EventBus, KickReason } from '../users/events.js';
import { kicksHandled } from '../observability/metrics.js';
import type { Logger } from '../observability/logger.js';
import type { BindingStore } from './binding-store.js';

export interface SessionTerminator {
  /** Ends this instance's live calls/connections of the user; returns how many. */
  terminateUserSessions(userId: string): Promise<number>;
  /** Closes the user's connection-oriented flows (WebSocket/TCP/TLS) held by this instance. */
  closeUserFlows?(userId: string): Promise<void>;
}

/** A user's live calls as the calls code reports them (GET /v1/users/{id}/sessions). */
export interface SessionSummary {
  id: string;
  kind: string;
  startedAt: string;
  [detail: string]: unknown;
}

export interface SessionDirectory {
  listUserSessions(userId: string): Promise<SessionSummary[]>;
}

export interface KickHandlerOptions {
  events: EventBus;
  bindings: BindingStore;
  terminator?: SessionTerminator;
  log?: Logger;
}

export interface KickOutcome {
  userId: string;
  reason: KickReason;
  bindingsRemoved: number;
  sessionsEnded: number;
}

export class KickHandler {
  private unsubscribe: (() => void) | null = null;
  private readonly listeners = new Set<(outcome: KickOutcome) => void>();

  constructor(private readonly options: KickHandlerOptions) {}

  start(): void {
    if (this.unsubscribe) return;
    this.unsubscribe = this.options.events.on((event) => {
      if (event.type !== 'kick') return;
      void this.kick(event.userId, event.reason, event.bindingId);
    });
  }

  stop(): void {
    this.unsubscribe?.();
    this.unsubscribe = null;
  }

  /** Notified after each handled kick (tests, audit logs). */
  onKick(listener: (outcome: KickOutcome) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  async kick(userId: string, reason: KickReason, bindingId?: string): Promise<KickOutcome> {
    const { bindings, terminator, log } = this.options;
    let bindingsRemoved = 0;
    let sessionsEnded = 0;
    try {
      if (bindingId) {
        bindingsRemoved = (await bindings.remove(userId, bindingId)) ? 1 : 0;
      } else {
        bindingsRemoved = await bindings.removeAll(userId);
        if (terminator) {
          sessionsEnded = await terminator.terminateUserSessions(userId);
          await terminator.closeUserFlows?.(userId);
        }
      }
      kicksHandled.inc({ reason });
      log?.info({ userId, reason, bindingId, bindingsRemoved, sessionsEnded }, 'user kicked');
    } catch (err) {
      log?.error({ err, userId, reason }, 'kick failed');
    }
    const outcome = { userId, reason, bindingsRemoved, sessionsEnded };
    for (const listener of this.listeners) listener(outcome);
    return outcome;
  }
}
