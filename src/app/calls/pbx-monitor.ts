/**
 * Health of customers' PBXs by OPTIONS, as for carrier gateways (gateway-monitor.ts): every interval the
 * configured SIP URI of each active `sip-address` user is probed (RFC 3261 §11); a PBX that answers is up,
 * one that times out, cannot be reached or answers 408/5xx/6xx `failuresBeforeDown` times in a row is down.
 * The state is informational (admin API GET /v1/pbx-health, metric dialcore_pbx_health): calls to a PBX
 * that is down are still attempted, since the PBX may answer INVITEs while it refuses OPTIONS.
 */
import type { Logger } from 'pino';
import { Gauge } from 'prom-client';
import { metricsRegistry } from '../observability/metrics.js';
import { optionsProbe } from '../sip/options-probe.js';
import { forEachConcurrently } from '../../shared/concurrency.js';
import type { Srf } from '../sip/srf.js';
import type { PublicUser } from '../users/types.js';
import { HttpError, send, type ApiRoute } from '../admin/server.js';
import { probeSucceeded } from './gateway-monitor.js';

export interface PbxHealth {
  userId: string;
  uri: string;
  up: boolean;
  /** final status of the last probe; 0: no answer in time */
  lastStatus: number;
  /** consecutive failed probes */
  failures: number;
  /** ISO time of the last probe */
  checkedAt: string;
}

export interface PbxUserLister {
  list(options: { cursor?: string | null; limit?: number }): Promise<{ users: PublicUser[]; nextCursor: string | null }>;
}

export interface PbxMonitorOptions {
  intervalMs: number;
  /** a probe with no final response within this is a failure (default 5 s) */
  timeoutMs?: number;
  /** consecutive failures that mark a PBX down (default 2) */
  failuresBeforeDown?: number;
  /** probes in flight at once (default 50) */
  maxInFlight?: number;
  logger?: Logger;
}

const pbxHealthGauge = new Gauge({
  name: 'dialcore_pbx_health',
  help: 'Customer PBXs (sip-address users) by OPTIONS health, as probed by this instance',
  labelNames: ['state'] as const,
  registers: [metricsRegistry],
});

export class PbxMonitor {
  private readonly state = new Map<string, PbxHealth>();
  private timer: NodeJS.Timeout | null = null;
  private running = false;
  private stopped = false;

  constructor(private readonly srf: Srf, private readonly users: PbxUserLister, private readonly opts: PbxMonitorOptions) {}

  start(): void {
    if (this.timer || !(this.opts.intervalMs > 0)) return;
    this.timer = setInterval(() => void this.probeAll(), this.opts.intervalMs);
    this.timer.unref();
    void this.probeAll();
  }

  stop(): void {
    this.stopped = true;
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
  }

  /** The PBX health of one user, if they are an active sip-address user that was probed. */
  health(userId: string): PbxHealth | undefined {
    return this.state.get(userId);
  }

  all(): PbxHealth[] {
    return [...this.state.values()];
  }

  /** One round over every active sip-address user (users no longer such are forgotten). */
  async probeAll(): Promise<void> {
    if (this.running) return;
    this.running = true;
    try {
      const targets: Array<{ userId: string; uri: string }> = [];
      let cursor: string | null = null;
      do {
        const page: { users: PublicUser[]; nextCursor: string | null } = await this.users.list({ cursor, limit: 500 });
        for (const user of page.users) {
          if (user.active && user.connectionMethod === 'sip-address' && user.sipAddress) targets.push({ userId: user.id, uri: user.sipAddress.uri });
        }
        cursor = page.nextCursor;
      } while (cursor && !this.stopped);
      const wanted = new Set(targets.map((t) => t.userId));
      for (const userId of this.state.keys()) if (!wanted.has(userId)) this.state.delete(userId);
      await forEachConcurrently(targets, this.opts.maxInFlight ?? 50, async (target) => {
        this.record(target.userId, target.uri, await optionsProbe(this.srf, target.uri, this.opts.timeoutMs ?? 5000));
      }, () => this.stopped);
      const up = this.all().filter((h) => h.up).length;
      pbxHealthGauge.set({ state: 'up' }, up);
      pbxHealthGauge.set({ state: 'down' }, this.state.size - up);
    } catch (err) {
      this.opts.logger?.warn({ err: err instanceof Error ? err.message : String(err) }, 'PBX health round failed');
    } finally {
      this.running = false;
    }
  }

  private record(userId: string, uri: string, status: number): void {
    const previous = this.state.get(userId);
    const same = previous?.uri === uri;
    const ok = probeSucceeded(status);
    const failures = ok ? 0 : (same ? previous.failures : 0) + 1;
    const wasUp = same ? previous.up : true;
    const up = ok || (wasUp && failures < (this.opts.failuresBeforeDown ?? 2));
    if (same && up !== wasUp) {
      if (up) this.opts.logger?.info({ userId, status }, 'customer PBX answers OPTIONS again: up');
      else this.opts.logger?.warn({ userId, status, failures }, 'customer PBX fails OPTIONS: down');
    }
    this.state.set(userId, { userId, uri, up, lastStatus: status, failures, checkedAt: new Date().toISOString() });
  }
}

/**
 * Admin API: GET /v1/pbx-health (every probed PBX) and GET /v1/users/{id}/pbx-health (404 when the user
 * is not an active sip-address user or was not probed yet).
 */
export function pbxHealthRoutes(monitor: Pick<PbxMonitor, 'all' | 'health'>): ApiRoute[] {
  return [
    {
      method: 'GET',
      pattern: /^\/v1\/pbx-health$/,
      handler: async ({ res }) => send(res, 200, { pbxs: monitor.all() }),
    },
    {
      method: 'GET',
      pattern: /^\/v1\/users\/([0-9a-fA-F-]{36})\/pbx-health$/,
      handler: async ({ res, params }) => {
        const health = monitor.health(params[0]!.toLowerCase());
        if (!health) throw new HttpError(404, 'not_found', 'no PBX health for this user (not an active sip-address user, or not probed yet)');
        send(res, 200, health);
      },
    },
  ];
}
