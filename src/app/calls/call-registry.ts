/**
 * The live calls of this core instance. Starts CallSessions, counts them (the leak check is
 * `count === 0` once every call ended), and implements the registrar's kick-off and the admin
 * API's session listing (SessionTerminator / SessionDirectory in registrar/kick.ts).
 */
import { EventEmitter } from 'node:events';
import { Counter, Gauge, type Registry } from 'prom-client';
import type { Logger } from 'pino';
import type { SessionDirectory, SessionSummary, SessionTerminator } from '../registrar/kick.js';
import type { MediaSessionRegistry } from '../media/index.js';
import type { Srf, SrfRequest, SrfResponse } from '../sip/srf.js';
import { CallSession, type CallEnd, type CallPlan, type CallTimers, type DialogId } from './call-session.js';

export interface CallRegistryOptions {
  srf: Srf;
  media: MediaSessionRegistry;
  timers?: CallTimers;
  /** Refuse new calls beyond this many live ones (503). 0 = no limit. */
  maxCalls?: number;
  registry?: Registry;
  logger?: Logger;
}

export interface CallRegistryEvents {
  /** A session was created (before ringing): tests and observers attach their listeners here. */
  session: [session: CallSession];
  ended: [session: CallSession, end: CallEnd];
}

export class CallRegistry extends EventEmitter<CallRegistryEvents> implements SessionTerminator, SessionDirectory {
  private readonly sessions = new Map<string, CallSession>();
  private readonly liveGauge?: Gauge;
  private readonly endedCounter?: Counter<'reason'>;

  constructor(private readonly options: CallRegistryOptions) {
    super();
    const registry = options.registry;
    if (registry) {
      const gauge = registry.getSingleMetric('dialcore_calls_live');
      this.liveGauge = gauge instanceof Gauge ? gauge : new Gauge({ name: 'dialcore_calls_live', help: 'Live B2BUA calls on this instance', registers: [registry] });
      const counter = registry.getSingleMetric('dialcore_calls_ended_total');
      this.endedCounter =
        counter instanceof Counter
          ? (counter as Counter<'reason'>)
          : new Counter({ name: 'dialcore_calls_ended_total', help: 'Calls ended, by reason', labelNames: ['reason'] as const, registers: [registry] });
    }
  }

  /** Live sessions (ringing or answered; removed once fully cleaned up). */
  get count(): number {
    return this.sessions.size;
  }

  get full(): boolean {
    const max = this.options.maxCalls ?? 0;
    return max > 0 && this.sessions.size >= max;
  }

  /** A session for an incoming INVITE; `session.connect(plan)` rings the plan's targets. */
  create(req: SrfRequest, res: SrfResponse): CallSession {
    const session = new CallSession({ srf: this.options.srf, media: this.options.media, logger: this.options.logger, timers: this.options.timers }, req, res);
    this.sessions.set(session.id, session);
    this.liveGauge?.set(this.sessions.size);
    session.once('ended', (end) => this.endedCounter?.inc({ reason: end.reason }));
    void session.finished.then((end) => {
      this.sessions.delete(session.id);
      this.liveGauge?.set(this.sessions.size);
      this.emit('ended', session, end);
    });
    this.emit('session', session);
    return session;
  }

  /** Creates a session and connects it (does not wait for the call to end). */
  start(req: SrfRequest, res: SrfResponse, plan: CallPlan): CallSession {
    const session = this.create(req, res);
    void session.connect(plan);
    return session;
  }

  get(id: string): CallSession | undefined {
    return this.sessions.get(id);
  }

  list(): CallSession[] {
    return [...this.sessions.values()];
  }

  /** The answered call whose caller's dialog is `id` (RFC 3891 §3 Replaces), if it is on this instance. */
  findByCallerDialog(id: DialogId): CallSession | undefined {
    return this.list().find((s) => s.matchesCallerDialog(id));
  }

  ofUser(userId: string): CallSession[] {
    return this.list().filter((s) => s.userIds.includes(userId) && s.state !== 'ended');
  }

  /** SessionTerminator: ends this instance's calls of the user (kick-off). */
  async terminateUserSessions(userId: string): Promise<number> {
    const sessions = this.ofUser(userId);
    await Promise.all(sessions.map((s) => s.hangup('terminated')));
    return sessions.length;
  }

  /** SessionDirectory: the user's live calls on this instance. */
  async listUserSessions(userId: string): Promise<SessionSummary[]> {
    return this.ofUser(userId).map((s) => s.summary());
  }

  /** Ends one call by id (admin "log out session"); false when unknown. */
  async hangup(id: string): Promise<boolean> {
    const session = this.sessions.get(id);
    if (!session) return false;
    await session.hangup('terminated');
    return true;
  }

  /** Ends every call and waits for their cleanup (shutdown). */
  async hangupAll(): Promise<void> {
    const sessions = this.list();
    await Promise.all(sessions.map(async (s) => {
      await s.hangup('terminated');
      await s.finished;
    }));
  }
}
