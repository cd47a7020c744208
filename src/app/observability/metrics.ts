/**
 * The app's one prom-client Registry. Every module registers its metrics on `metricsRegistry`
 * (never on prom-client's global default registry), and GET /metrics serialises it.
 *
 * Default Node metrics are included; they carry event-loop lag
 * (nodejs_eventloop_lag_seconds and the nodejs_eventloop_lag_p50/p90/p99 family).
 */
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';

export const metricsRegistry = new Registry();
collectDefaultMetrics({ register: metricsRegistry, eventLoopMonitoringPrecision: 20 });

/** Live bindings, by transport (udp/tcp/tls/ws/wss) and connection method (sip-phone/webrtc). */
export const registrationsGauge = new Gauge({
  name: 'dialcore_registrations',
  help: 'Live registrations (bindings) by transport and connection method',
  labelNames: ['transport', 'method'] as const,
  registers: [metricsRegistry],
});

/** Final responses to REGISTER, by status code; `dropped` counts silently dropped requests. */
export const registerOutcomes = new Counter({
  name: 'dialcore_register_responses_total',
  help: 'REGISTER outcomes by final status code (or "dropped")',
  labelNames: ['status'] as const,
  registers: [metricsRegistry],
});

/** Digest authentication failures by reason (wrong-password, unknown-user, replay, ...). */
export const authFailures = new Counter({
  name: 'dialcore_auth_failures_total',
  help: 'Digest authentication failures by reason',
  labelNames: ['reason'] as const,
  registers: [metricsRegistry],
});

/** Bans placed by the abuse guard, by scope (ip/user). */
export const bansTotal = new Counter({
  name: 'dialcore_bans_total',
  help: 'Bans placed after repeated failures, by scope',
  labelNames: ['scope'] as const,
  registers: [metricsRegistry],
});

/** Round-trip time of Redis commands (EVALSHA scripts are labelled by script name). */
export const redisCommandDuration = new Histogram({
  name: 'dialcore_redis_command_duration_seconds',
  help: 'Redis command latency',
  labelNames: ['command'] as const,
  buckets: [0.0002, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1],
  registers: [metricsRegistry],
});

/** Kick events handled by this instance (deactivate, delete, password reset, reset, logout). */
export const kicksHandled = new Counter({
  name: 'dialcore_kicks_handled_total',
  help: 'Kick events handled by this instance, by reason',
  labelNames: ['reason'] as const,
  registers: [metricsRegistry],
});

/** NAT keep-alive OPTIONS to UDP registrations (src/app/registrar/nat-keepalive.ts), answered or missed. */
export const natKeepalivePings = new Counter({
  name: 'dialcore_nat_keepalive_pings_total',
  help: 'Keep-alive OPTIONS sent to UDP registrations, by result (answered, missed)',
  labelNames: ['result'] as const,
  registers: [metricsRegistry],
});

/** Bindings removed because their phone stopped answering keep-alive OPTIONS. */
export const natKeepaliveDrops = new Counter({
  name: 'dialcore_nat_keepalive_bindings_dropped_total',
  help: 'UDP bindings removed after missed keep-alive OPTIONS',
  registers: [metricsRegistry],
});

/** Calls this instance relays for another instance to devices whose flows it holds (src/app/cluster); read at scrape. */
let forwardedRelaysSource: (() => number) | undefined;
export function reportForwardedRelays(source: () => number): void {
  forwardedRelaysSource = source;
}
export const forwardedRelaysLive = new Gauge({
  name: 'dialcore_forwarded_relays_live',
  help: 'Calls relayed by this instance for another instance to devices whose connections it holds',
  registers: [metricsRegistry],
  collect() {
    this.set(forwardedRelaysSource?.() ?? 0);
  },
});
