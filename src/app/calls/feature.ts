/**
 * The calls feature as the core runs it: rtpengine pool + media sessions, the B2BUA call
 * registry, and the INVITE router with carriers, dial plans and the per-user rules; plus the
 * kick-off hooks (end the user's calls, close their connections).
 */
import type { Logger } from 'pino';
import { MediaSessionRegistry, RtpenginePool } from '../media/index.js';
import { validateCarrierConfig } from '../carriers/index.js';
import { validateDialPlanConfig, type DialPlanConfig } from '../policies/index.js';
import { metricsRegistry } from '../observability/metrics.js';
import type { RegistrarServices } from '../registrar/services.js';
import { requestCloseFlow, type Srf } from '../sip/srf.js';
import type { CallFeature } from '../core.js';
import { AGENT_LEG_METHODS, CALL_METHODS } from '../sip/capabilities.js';
import { CallRegistry } from './call-registry.js';
import { GatewayChannels } from './carrier-routing.js';
import { createCallRouter } from './call-router.js';
import { GatewayMonitor } from './gateway-monitor.js';
import { JanusConferenceBridge, startAgentFeature } from '../agents/index.js';
import { startDialInFeature, type DialInConfig } from '../dialin/index.js';
import { ForwardRelays } from '../cluster/instance-forward.js';
import { PbxMonitor, pbxHealthRoutes } from './pbx-monitor.js';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export interface CallFeatureConfig {
  /** rtpengine ng endpoints, "host:port" */
  rtpengines: string[];
  rtpenginePingIntervalMs: number;
  /** host of the URIs devices see on delivered calls (From/To) */
  domain: string;
  /** raw `carriers` section of the config file (validated here) */
  carriers: unknown;
  /** raw `dialPlans` section: { default: plan, named?: { name: plan } } */
  dialPlans: unknown;
  ringTimeoutSeconds: number;
  maxCallSeconds: number;
  /** Agent sessions: where the prompts are written, the hold music (none = silence). */
  agents?: { promptsDir: string; holdMusic?: string | null };
  /** Dial-in access numbers and the login IVR (src/app/dialin); prompts go under agents.promptsDir. */
  dialIn?: Omit<DialInConfig, 'promptsDir'>;
  /** rtpengine's recording directory (pcap method); null = recording refused. */
  recordingDir?: string | null;
  /** Janus HTTP API root for 3-way calls (agents/conference.ts); null = 3-way refused. */
  janusUrl?: string | null;
  /** RFC 4028 (src/app/calls/session-timer.ts) */
  sessionExpiresSeconds: number;
  minSessionExpiresSeconds: number;
  /** OPTIONS health of sip-address users' PBXs (pbx-monitor.ts); 0 or absent: none */
  pbxOptionsIntervalSeconds?: number;
}

export class CallConfigError extends Error {
  constructor(readonly problems: Array<{ field: string; message: string }>) {
    super('invalid calls configuration:\n' + problems.map((p) => `  ${p.field}: ${p.message}`).join('\n'));
  }
}

/** Validate the carriers and dial plan sections; throws CallConfigError naming every bad field. */
export function validateCallConfig(config: Pick<CallFeatureConfig, 'carriers' | 'dialPlans'>): {
  carriers: ReturnType<typeof validateCarrierConfig> & { ok: true };
  plans: Record<string, DialPlanConfig>;
  defaultPlan: DialPlanConfig;
} {
  const problems: Array<{ field: string; message: string }> = [];
  const carriers = validateCarrierConfig(config.carriers ?? { outboundGateways: [], inboundTrunks: [] }, 'carriers');
  if (!carriers.ok) problems.push(...carriers.errors);
  const raw = (config.dialPlans ?? {}) as { default?: unknown; named?: Record<string, unknown> };
  const def = validateDialPlanConfig(raw.default ?? {}, 'dialPlans.default');
  if (!def.ok) problems.push(...def.errors);
  const plans: Record<string, DialPlanConfig> = {};
  if (raw.named !== undefined && (typeof raw.named !== 'object' || raw.named === null || Array.isArray(raw.named))) {
    problems.push({ field: 'dialPlans.named', message: 'must be an object of name -> plan' });
  } else {
    for (const [name, plan] of Object.entries(raw.named ?? {})) {
      const v = validateDialPlanConfig(plan, `dialPlans.named.${name}`);
      if (v.ok) plans[name] = v.plan;
      else problems.push(...v.errors);
    }
  }
  if (problems.length || !carriers.ok || !def.ok) throw new CallConfigError(problems);
  return { carriers, plans, defaultPlan: def.plan };
}

export async function startCallFeature(
  deps: { srf: Srf; services: RegistrarServices; logger: Logger },
  config: CallFeatureConfig,
): Promise<CallFeature> {
  const { srf, services, logger } = deps;
  const validated = validateCallConfig(config);
  const pool = new RtpenginePool({ engines: config.rtpengines, pingIntervalMs: config.rtpenginePingIntervalMs, registry: metricsRegistry, logger });
  pool.start();
  const media = new MediaSessionRegistry(pool, { registry: metricsRegistry });
  const calls = new CallRegistry({
    srf,
    media,
    timers: {
      ringTimeoutMs: config.ringTimeoutSeconds * 1000,
      maxDurationMs: config.maxCallSeconds * 1000,
      sessionTimer: { sessionExpiresSeconds: config.sessionExpiresSeconds, minSessionExpiresSeconds: config.minSessionExpiresSeconds },
    },
    registry: metricsRegistry,
    logger,
  });
  const channels = new GatewayChannels();
  const monitor = new GatewayMonitor(srf, validated.carriers.config.outboundGateways, channels, { logger });
  const mixer = config.janusUrl ? new JanusConferenceBridge(config.janusUrl, logger) : undefined;
  void mixer?.check().then(
    () => logger.info({ janusUrl: config.janusUrl }, '3-way mixer (Janus AudioBridge) ready'),
    (err: unknown) => logger.error({ janusUrl: config.janusUrl, err: err instanceof Error ? err.message : String(err) }, '3-way mixer not usable: 3-way calls will fail'),
  );
  const pbxMonitor = new PbxMonitor(srf, services.store, { intervalMs: (config.pbxOptionsIntervalSeconds ?? 0) * 1000, logger });
  const agents = await startAgentFeature({
    srf,
    media,
    redis: services.redis,
    users: { get: (id) => services.store.get(id) },
    bindings: services.bindings,
    carriers: validated.carriers.config,
    channels,
    dialPlans: { plans: validated.plans, defaultPlan: validated.defaultPlan },
    domain: config.domain,
    ringTimeoutMs: config.ringTimeoutSeconds * 1000,
    promptsDir: config.agents?.promptsDir ?? join(tmpdir(), 'dialcore-prompts'),
    holdMusic: config.agents?.holdMusic ?? null,
    recordingDir: config.recordingDir ?? null,
    ...(mixer ? { conference: mixer } : {}),
    userCallCount: (userId) => calls.ofUser(userId).length,
    forward: services.forward,
    deviceCalls: calls,
    logger,
  });
  const promptsDir = config.agents?.promptsDir ?? join(tmpdir(), 'dialcore-prompts');
  const dialIn = config.dialIn
    ? await startDialInFeature(
        {
          srf,
          media,
          redis: services.redis,
          agents: agents.service,
          users: { getByDialInId: (id) => services.store.getByDialInId(id) },
          instanceId: agents.service.instanceId,
          logger,
        },
        { ...config.dialIn, promptsDir },
      )
    : undefined;
  // several instances: calls forwarded here for registrations whose flows this instance holds
  const relays = services.forward ? new ForwardRelays(srf, logger) : undefined;
  const invite = createCallRouter({
    agentSessions: agents.service,
    ...(dialIn ? { dialIn: dialIn.service } : {}),
    calls,
    users: {
      get: (id) => services.store.get(id),
      getByLogin: (login) => services.cache.getByLogin(login),
      getByInternalNumber: (n) => services.store.getByInternalNumber(n),
    },
    bindings: services.bindings,
    auth: services.auth,
    nonceCounts: services.nonceCounts,
    abuse: services.abuse,
    carriers: validated.carriers.config,
    channels,
    redis: services.redis,
    dialPlans: { plans: validated.plans, defaultPlan: validated.defaultPlan },
    domain: config.domain,
    forward: services.forward && relays ? { ...services.forward, relay: (req, res, flow) => relays.relay(req, res, flow) } : null,
    logger,
  });
  return {
    invite,
    methods: [...CALL_METHODS, ...AGENT_LEG_METHODS],
    // gateway probes need the server link, which the core opens after this returns
    connected: () => {
      monitor.start();
      pbxMonitor.start();
    },
    sessions: {
      listUserSessions: async (userId) => [...agents.service.listUserSessions(userId), ...(await calls.listUserSessions(userId))],
    },
    api: { routes: [...agents.api.routes, ...(dialIn?.routes ?? []), ...pbxHealthRoutes(pbxMonitor)], upgrades: agents.api.upgrades },
    apiListening: (url) => agents.apiListening(url),
    terminator: {
      terminateUserSessions: async (userId) =>
        (await agents.service.terminateUser(userId)) + (await calls.terminateUserSessions(userId)) + ((await relays?.terminateUser(userId)) ?? 0),
      // close the WebSocket/TCP/TLS connections the user's devices registered over
      async closeUserFlows(userId) {
        for (const flow of services.flows.flowsOf(userId)) requestCloseFlow(srf, flow.transport, flow.address, flow.port);
      },
    },
    // a call in the dial-in login is live too: a drain lets the agent finish logging in
    liveCalls: () => calls.count + agents.service.callCount + agents.service.sessionCount + (relays?.count ?? 0) + (dialIn?.service.activeCount ?? 0),
    mediaHealth: () => {
      const engines = pool.status();
      return { healthy: engines.filter((e) => e.healthy).length, total: engines.length };
    },
    drain: () => agents.service.drain(),
    async stop() {
      monitor.stop();
      await dialIn?.stop();
      pbxMonitor.stop();
      await agents.stop();
      await calls.hangupAll();
      await pool.close();
    },
  };
}
