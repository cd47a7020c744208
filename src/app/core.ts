/**
 * The dialcore core: a drachtio-srf app. It talks to a SIP server (our edge or the C++
 * drachtio-server) only through drachtio-srf, and keeps its state in Redis.
 *
 *  - OPTIONS out of dialog: 200 with Allow/Supported/Accept (keep-alives from phones and trunks, RFC 3261 11.2)
 *  - REGISTER: the registrar (src/app/registrar) with digest auth and the per-user rules
 *  - INVITE: the call router (src/app/calls) when media is configured
 *  - methods nobody handles are not routed, so the SIP server answers them (503 / 501 / 405 with Allow)
 *  - the admin HTTP API, /metrics, /healthz, /livez and /readyz
 *  - graceful drain on SIGTERM (drain()): 503 + Retry-After to new requests while live calls finish
 */
import { randomBytes } from 'node:crypto';
import type { Logger } from 'pino';
import { connectSrf, createSrf, onFlowClosed, sendFinalResponse, type SipMethod, type Srf, type SrfRequest, type SrfResponse, type RequestHandler } from './sip/srf.js';
import { allowHeader, supportedHeader } from './sip/capabilities.js';
import { uriHost } from './sip/uri-host.js';
import { connectRedis } from './users/redis-connection.js';
import { startRegistrarServices, type RegistrarServices } from './registrar/services.js';
import type { DigestAlgorithm } from './auth/ha1.js';
import type { SessionDirectory, SessionTerminator } from './registrar/kick.js';
import { startAdminApi, type ApiRoute, type ApiUpgrade, type RunningAdminApi } from './admin/server.js';

/**
 * RFC 3261 §11.2: capabilities in answer to OPTIONS: Allow names the methods the core and its
 * features handle (src/app/sip/capabilities.ts), Supported the option tags implemented.
 */
export function optionsResponder(methods: () => readonly SipMethod[] = () => []): RequestHandler {
  return (_req: SrfRequest, res: SrfResponse): void => {
    const headers: Record<string, string> = {
      Allow: allowHeader(methods()),
      Accept: 'application/sdp',
      'Accept-Encoding': 'identity',
      'Accept-Language': 'en',
    };
    // the option tags are those of calls (RFC 4028 timer): named only when calls are handled here
    if (methods().includes('INVITE')) headers.Supported = supportedHeader();
    sendFinalResponse(res, 200, 'OK', headers);
  };
}

export interface CoreOptions {
  drachtio: { host: string; port: number; secret: string };
  redisUrl: string;
  /** A Redis Sentinel group instead of the single server of redisUrl. */
  redisSentinel?: { masterName: string; sentinels: Array<{ host: string; port: number }>; password?: string };
  /** A Redis Cluster (some of its nodes) instead of the single server of redisUrl. */
  redisCluster?: { rootNodes: Array<{ host: string; port: number }>; password?: string };
  /** null: no admin API in this process (an extra app worker of `dialcore start --app-workers`) */
  /**
   * `advertisedHost`: where the other instances reach this API (the apiUrl they forward control commands
   * to); default the listening host.
   */
  http: { host: string; port: number; adminToken: string; advertisedHost?: string } | null;
  registrar: {
    realm: string;
    nonceSecret: string;
    nonceLifetimeSeconds: number;
    minExpires: number;
    maxExpires: number;
    defaultExpires: number;
    /** digest challenges offered, most preferred first */
    digestAlgorithms: DigestAlgorithm[];
    /** NAT keep-alive OPTIONS to UDP registrations (src/app/registrar/nat-keepalive.ts); 0 or absent: none */
    keepaliveIntervalSeconds?: number;
    keepaliveMisses?: number;
  };
  /** This instance's SIP address for the other instances sharing the Redis (config cluster.instanceAddress): `ip:port`, `;transport=tcp` appended for TCP. */
  instanceAddress?: string;
  logger: Logger;
}

/** What a calls feature plugs into the core (src/app/calls). */
export interface CallFeature {
  invite: RequestHandler;
  /** Methods the feature handles (Allow of OPTIONS, src/app/sip/capabilities.ts), e.g. CALL_METHODS. */
  methods: readonly SipMethod[];
  /** called once the SIP server link is up */
  connected?(): void;
  terminator: SessionTerminator;
  sessions: SessionDirectory;
  /** Routes and WebSocket endpoints the feature adds to the admin API (the dialer control API). */
  api?: { routes: ApiRoute[]; upgrades: ApiUpgrade[] };
  /** Told where the admin API listens (other instances send commands there). */
  apiListening?(url: string): void;
  /** Calls and agent sessions up on this instance (what a graceful drain waits for). */
  liveCalls(): number;
  /** rtpengines seen healthy by this instance's pings. */
  mediaHealth(): { healthy: number; total: number };
  /** Graceful drain: refuse new calls and agent sessions from now on (SIP and the control API). */
  drain(): void;
  stop(): Promise<void>;
}

export interface RunningCore {
  srf: Srf;
  hostport: string;
  services: RegistrarServices;
  admin: RunningAdminApi | null;
  /**
   * Graceful drain (SIGTERM): new REGISTERs, INVITEs and OPTIONS get 503 with Retry-After (RFC 3261
   * §21.5.4), so phones and trunks fail over (RFC 3263 §4.3); live calls go on. Resolves once no call
   * is left or `limitMs` has passed.
   */
  drain(limitMs: number): Promise<void>;
  stop(): Promise<void>;
}

export async function startCore(
  opts: CoreOptions,
  calls?: (deps: { srf: Srf; services: RegistrarServices }) => Promise<CallFeature>,
): Promise<RunningCore> {
  const log = opts.logger;
  const redis = await connectRedis(
    opts.redisCluster ? { kind: 'cluster', ...opts.redisCluster }
      : opts.redisSentinel ? { kind: 'sentinel', ...opts.redisSentinel }
      : { kind: 'server', url: opts.redisUrl },
    log,
  );
  const client = redis.client;

  // An empty nonce secret is fine for one instance; several instances must share one (config registrar.nonceSecret).
  const nonceSecret = opts.registrar.nonceSecret || randomBytes(32).toString('hex');
  let feature: CallFeature | undefined;
  // the calls feature is created after the services it needs, so kicks reach it through these
  const terminator: SessionTerminator = {
    terminateUserSessions: (userId) => feature?.terminator.terminateUserSessions(userId) ?? Promise.resolve(0),
    closeUserFlows: (userId) => feature?.terminator.closeUserFlows?.(userId) ?? Promise.resolve(),
  };
  const sessions: SessionDirectory = { listUserSessions: (userId) => feature?.sessions.listUserSessions(userId) ?? Promise.resolve([]) };
  const srf = createSrf();
  const keepaliveSeconds = opts.registrar.keepaliveIntervalSeconds ?? 0;
  const services = await startRegistrarServices({
    client,
    realm: opts.registrar.realm,
    nonceSecret,
    nonceLifetimeSeconds: opts.registrar.nonceLifetimeSeconds,
    algorithms: opts.registrar.digestAlgorithms,
    minExpires: opts.registrar.minExpires,
    maxExpires: opts.registrar.maxExpires,
    defaultExpires: opts.registrar.defaultExpires,
    terminator,
    sessions,
    ...(opts.instanceAddress ? { instanceAddress: opts.instanceAddress } : {}),
    ...(keepaliveSeconds > 0
      ? { natKeepalive: { srf, intervalMs: keepaliveSeconds * 1000, missesBeforeDrop: opts.registrar.keepaliveMisses ?? 3 } }
      : {}),
    log: log.child({ component: 'registrar' }),
  });

  let draining = false;
  let retryAfterSeconds = 0;
  /** While draining, out-of-dialog requests are refused; in-dialog ones (BYE, re-INVITE) reach their dialogs as before. */
  const unlessDraining = (handler: RequestHandler): RequestHandler => (req, res) => {
    if (!draining) return handler(req, res);
    sendFinalResponse(res, 503, 'Service Unavailable', { 'Retry-After': String(retryAfterSeconds) });
  };
  srf.options(unlessDraining(optionsResponder(() => feature?.methods ?? [])));
  srf.register(unlessDraining(services.registerHandler));
  if (calls) {
    feature = await calls({ srf, services });
    srf.invite(unlessDraining(feature.invite));
  }
  let sipLinkUp = false;
  srf.on('connect', (err) => { sipLinkUp = !err; });
  srf.on('disconnect', () => { sipLinkUp = false; });
  const { hostport, serverVersion } = await connectSrf(srf, {
    host: opts.drachtio.host,
    port: opts.drachtio.port,
    secret: opts.drachtio.secret,
    enablePing: true,
    pingInterval: 10_000,
  });
  sipLinkUp = true;
  log.info({ drachtio: `${opts.drachtio.host}:${opts.drachtio.port}`, hostport, serverVersion }, 'core connected to SIP server');
  feature?.connected?.();
  const flowNotices = onFlowClosed(srf, (protocol, address, port) => {
    services.flows.flowClosed(protocol, address, port).catch((err: unknown) => log.warn({ err }, 'removing bindings of a closed flow failed'));
  });
  if (!flowNotices) {
    log.info({ serverVersion }, 'SIP server is not the dialcore edge: a kick removes bindings but cannot close connections, and bindings of closed connections last until they expire');
  }

  const admin = opts.http
    ? await startAdminApi({
        ...services.adminApiOptions,
        ...(feature?.api ? { routes: feature.api.routes, upgrades: feature.api.upgrades } : {}),
        token: opts.http.adminToken,
        health: () => ({ sip: sipLinkUp, ...(feature ? { rtpengine: feature.mediaHealth() } : {}), draining }),
        host: opts.http.host,
        port: opts.http.port,
      })
    : null;
  if (admin) {
    log.info({ http: `${admin.host}:${admin.port}` }, 'admin API, /metrics and /healthz listening');
    // where the other instances send control commands for this one's sessions and calls
    feature?.apiListening?.(`http://${uriHost(opts.http?.advertisedHost ?? admin.host)}:${admin.port}`);
  }

  return {
    srf,
    hostport,
    services,
    admin,
    async drain(limitMs) {
      draining = true;
      retryAfterSeconds = Math.max(1, Math.ceil(limitMs / 1000));
      feature?.drain();
      const deadline = Date.now() + limitMs;
      log.info({ liveCalls: feature?.liveCalls() ?? 0, limitMs }, 'draining: new registrations and calls refused');
      while ((feature?.liveCalls() ?? 0) > 0 && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 100));
      const left = feature?.liveCalls() ?? 0;
      if (left > 0) log.warn({ liveCalls: left }, 'drain limit reached: ending the calls left');
    },
    async stop() {
      await admin?.close().catch(() => undefined);
      // calls end with a BYE, which needs the SIP server link: disconnect after
      await feature?.stop().catch(() => undefined);
      srf.disconnect();
      await services.stop().catch(() => undefined);
      await redis.close();
    },
  };
}
