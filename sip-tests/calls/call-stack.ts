/**
 * The product's call handling on real peers, for the call suites and the B2BUA bench:
 * redis-server + rtpengine + the edge + a drachtio-srf app running the registrar (srf.register)
 * and the call router (srf.invite) exactly as the core wires them.
 *
 *   const cs = await startCallStack();
 *   const user = await cs.createUser({ login: '1001', connectionMethod: 'sip-phone' });
 *   const phonePort = await cs.registerPhone(user);           // SIPp REGISTER through the registrar
 *   const phone = await startSippServer({ scenario: 'uas-answer-rtp.xml', localPort: phonePort });
 *   await runSipp({ scenario: 'call-carrier-uac.xml', target: cs.target, ...cs.carrierSippArgs() });
 *   await cs.expectIdle();                                     // no call, media session or dialog left
 *
 * SIPp peers acting as the carrier bind 127.0.0.2 (the inbound trunk's only source): devices and
 * gateways use 127.0.0.1, so the router tells them apart by source address as in production.
 */
import { afterAll, afterEach, beforeAll } from 'vitest';
import { createRequire } from 'node:module';
import { createClient } from 'redis';
import { startStack, waitFor, type StackOptions, type TestStack } from '../fixtures/stack.js';
import { freePort, runSipp, startRedis, startRtpengine, type RedisServer, type RtpengineServer, type SippServer, waitUntil } from '../harness/index.js';
import { MediaSessionRegistry, RtpenginePool } from '../../src/app/media/index.js';
import { startRegistrarServices, type RegistrarServices } from '../../src/app/registrar/services.js';
import { validateCarrierConfig, type CarrierConfig, type OutboundGateway } from '../../src/app/carriers/index.js';
import { validateDialPlanConfig } from '../../src/app/policies/index.js';
import { CallRegistry, GatewayChannels, createCallRouter, type CallTimers } from '../../src/app/calls/index.js';
import { requestCloseFlow, type Srf } from '../../src/app/sip/srf.js';
import type { SessionSummary, SessionTerminator } from '../../src/app/registrar/kick.js';
import type { DigestAlgorithm } from '../../src/app/auth/ha1.js';
import type { Registry } from 'prom-client';
import type { CallRouterDeps } from '../../src/app/calls/call-router.js';
import type { DialPlans } from '../../src/app/calls/call-rules.js';

export const CARRIER_IP = '127.0.0.2';
export const DOMAIN = 'dialcore.test';
export const PASSWORD = 'phone-secret-1';

export interface TestUser {
  id: string;
  login: string;
  password: string;
}

export interface CallStack {
  redis: RedisServer;
  rtpengine: RtpengineServer;
  stack: TestStack;
  srf: Srf;
  services: RegistrarServices;
  pool: RtpenginePool;
  media: MediaSessionRegistry;
  calls: CallRegistry;
  channels: GatewayChannels;
  /** Mutable: tests set `carriers.outboundGateways` / `inboundTrunks[0].dids`. */
  carriers: CarrierConfig;
  /** host:port of the edge */
  target: string;
  createUser(fields: Record<string, unknown>): Promise<TestUser>;
  /** Registers a SIPp "phone" for the user through the registrar; returns the SIPp port to run the UAS on. */
  registerPhone(user: TestUser, port?: number): Promise<number>;
  /** Routes DID (E.164 digits) to the user. */
  routeDid(did: string, userId: string): void;
  /** A gateway on 127.0.0.1:port (validated with the carriers module's defaults). */
  gateway(name: string, port: number, extra?: Record<string, unknown>): OutboundGateway;
  /** SIPp options that make a runSipp act as the carrier trunk (source 127.0.0.2). */
  carrierSippArgs(): string[];
  /** Call-ids rtpengine still holds (ng `list`). */
  rtpengineCalls(): Promise<string[]>;
  /** Packets rtpengine received per leg of a live call (ng `query`), [leg a, leg b]. */
  packetsByLeg(callId: string): Promise<number[]>;
  /** The dial plans the router applies (default country 44). */
  dialPlans: DialPlans;
  /** Set by stacks built on this one: agent sessions take inbound DID calls and kicks. */
  hooks: {
    agentSessions?: NonNullable<CallRouterDeps['agentSessions']>;
    terminateUserSessions?: (userId: string) => Promise<number>;
    idle?: () => boolean;
    /** The user's agent session in GET /v1/users/{id}/sessions, as the core's calls feature lists it. */
    listUserSessions?: (userId: string) => SessionSummary[];
    /** Dial-in access numbers (src/app/dialin), as the core's calls feature wires them. */
    dialIn?: NonNullable<CallRouterDeps['dialIn']>;
  };
  /** Waits until no call, media session, rtpengine call or edge dialog is left. */
  expectIdle(timeoutMs?: number): Promise<void>;
  stop(): Promise<void>;
}

export interface CallStackOptions {
  timers?: CallTimers;
  rtpenginePorts?: number;
  /** rtpengine sends DTMF events as UDP JSON to 127.0.0.1:<port> (--dtmf-log-dest). */
  dtmfLogPort?: number;
  /** Extra rtpengine arguments (e.g. a wider --port-min/--port-max for load). */
  rtpengineArgs?: readonly string[];
  registry?: Registry;
  /** Edge listeners (default udp + tcp on one port; ws/wss get ports of their own). */
  protocols?: StackOptions['protocols'];
  /** Certificate for tls/wss listeners (see fixtures/stack.ts). */
  tls?: StackOptions['tls'];
  /** Digest algorithms offered, most preferred first. Default ['MD5'] (SIPp 3.6.1 answers MD5 only). */
  algorithms?: DigestAlgorithm[];
  /**
   * A kick also closes the user's connection flows (WebSocket/TCP/TLS) through the edge, as the
   * core's calls feature does (src/app/calls/feature.ts). Default false: the kick ends calls only.
   */
  closeUserFlowsOnKick?: boolean;
  /** NAT keep-alive OPTIONS to UDP bindings (src/app/registrar/nat-keepalive.ts). Default: none. */
  natKeepalive?: { intervalMs: number; missesBeforeDrop?: number; timeoutMs?: number };
}

interface NgListClient {
  list(dest: { port: number; host: string }, opts: Record<string, unknown>): Promise<unknown>;
  on(event: 'error', listener: (err: unknown) => void): unknown;
  close(): void;
}

export async function startCallStack(options: CallStackOptions = {}): Promise<CallStack> {
  const redis = await startRedis();
  const rtpengine = await startRtpengine({
    mediaPorts: options.rtpenginePorts ?? 100,
    ...(options.rtpengineArgs ? { extraArgs: options.rtpengineArgs } : {}),
    ...(options.dtmfLogPort !== undefined ? { dtmfLogPort: options.dtmfLogPort } : {}),
  });
  const stack = await startStack({
    ...(options.protocols ? { protocols: options.protocols } : {}),
    ...(options.tls ? { tls: options.tls } : {}),
  });
  const srf = await stack.connectApp();
  const client = createClient({ url: redis.url });
  client.on('error', () => undefined);
  await client.connect();

  const pool = new RtpenginePool({ engines: [`127.0.0.1:${rtpengine.ngPort}`], pingIntervalMs: 0, ...(options.registry ? { registry: options.registry } : {}) });
  pool.start();
  const media = new MediaSessionRegistry(pool, options.registry ? { registry: options.registry } : {});
  const calls = new CallRegistry({ srf, media, timers: { ringTimeoutMs: 15_000, noResponseFailoverMs: 3_000, ...options.timers }, ...(options.registry ? { registry: options.registry } : {}) });
  // the services are created after the terminator that needs their flows: reached through this
  let flowsOf: ((userId: string) => Array<{ transport: string; address: string; port: number }>) | undefined;
  const hooks: CallStack['hooks'] = {};
  const terminateAll = async (userId: string): Promise<number> =>
    (await calls.terminateUserSessions(userId)) + ((await hooks.terminateUserSessions?.(userId)) ?? 0);
  const terminator: SessionTerminator = options.closeUserFlowsOnKick
    ? {
        terminateUserSessions: terminateAll,
        // as src/app/calls/feature.ts: close the connections the user's devices registered over
        async closeUserFlows(userId) {
          for (const flow of flowsOf?.(userId) ?? []) requestCloseFlow(srf, flow.transport, flow.address, flow.port);
        },
      }
    : { terminateUserSessions: terminateAll };
  const services = await startRegistrarServices({
    client,
    realm: DOMAIN,
    nonceSecret: 'calls-test-nonce-secret-0123456789',
    algorithms: options.algorithms ?? ['MD5'], // SIPp 3.6.1 answers MD5 challenges only
    terminator,
    sessions: { listUserSessions: async (userId) => [...(hooks.listUserSessions?.(userId) ?? []), ...(await calls.listUserSessions(userId))] },
    abuse: { neverBan: ['127.0.0.1', CARRIER_IP] },
    ...(options.natKeepalive ? { natKeepalive: { srf, ...options.natKeepalive } } : {}),
  });
  flowsOf = (userId) => services.flows.flowsOf(userId);
  srf.register(services.registerHandler);

  const parsedCarriers = validateCarrierConfig({
    outboundGateways: [],
    inboundTrunks: [{ name: 'carrier-a', sources: [`${CARRIER_IP}/32`], dids: {}, didLookup: 'table-then-redis' }],
  });
  if (!parsedCarriers.ok) throw new Error(JSON.stringify(parsedCarriers.errors));
  const carriers = parsedCarriers.config;
  const plan = validateDialPlanConfig({ defaultCountryCode: '44', minDigits: 11, maxDigits: 13, blockedPrefixes: ['449'] });
  if (!plan.ok) throw new Error(JSON.stringify(plan.errors));
  const channels = new GatewayChannels();
  const dialPlans: DialPlans = { plans: {}, defaultPlan: plan.plan };

  srf.invite(
    createCallRouter({
      calls,
      users: { get: (id) => services.store.get(id), getByLogin: (login) => services.cache.getByLogin(login), getByInternalNumber: (n) => services.store.getByInternalNumber(n) },
      bindings: services.bindings,
      auth: services.auth,
      nonceCounts: services.nonceCounts,
      abuse: services.abuse,
      carriers,
      channels,
      redis: services.redis,
      dialPlans,
      domain: DOMAIN,
      agentSessions: {
        deliverInbound: (...args) => hooks.agentSessions?.deliverInbound(...args) ?? Promise.resolve(false),
        sessionsOf: (userId) => hooks.agentSessions?.sessionsOf?.(userId) ?? 0,
        consultationCallerNumber: (userId) => hooks.agentSessions?.consultationCallerNumber?.(userId),
      },
      dialIn: {
        isAccessNumber: (dialled) => hooks.dialIn?.isAccessNumber(dialled) ?? false,
        answer: (...args) => hooks.dialIn?.answer(...args) ?? Promise.resolve(),
      },
    }),
  );

  const require = createRequire(import.meta.url);
  const { Client } = require('rtpengine-client') as { Client: new (o: { localAddress: string; localPort: number; timeout: number }) => NgListClient };
  const ng = new Client({ localAddress: '127.0.0.1', localPort: 0, timeout: 2000 });
  ng.on('error', () => undefined);

  const rtpengineCalls = async (): Promise<string[]> => {
    const reply = (await ng.list({ port: rtpengine.ngPort, host: '127.0.0.1' }, { limit: 1000 })) as { calls?: unknown };
    return Array.isArray(reply.calls) ? reply.calls.map(String) : [];
  };

  let userCount = 0;
  return {
    redis, rtpengine, stack, srf, services, pool, media, calls, channels, carriers, dialPlans, hooks,
    target: stack.target,
    async createUser(fields) {
      userCount++;
      const login = typeof fields.login === 'string' ? fields.login : `u${Date.now() % 100000}${userCount}`;
      const created = await services.store.create({
        username: `user ${login}`,
        connectionMethod: 'sip-phone',
        password: PASSWORD,
        ...fields,
        login,
      });
      return { id: created.id, login, password: PASSWORD };
    },
    async registerPhone(user, port) {
      const localPort = port ?? (await freePort());
      const r = await runSipp({
        scenario: 'register-auth-uac.xml',
        target: stack.target,
        localPort,
        calls: 1,
        inf: { rows: [[user.login, user.password, DOMAIN]] },
        timeoutMs: 10_000,
      });
      if (r.stats.successful !== 1) throw new Error(`REGISTER of ${user.login} failed: ${r.errors}\n${r.stdout.slice(-1500)}`);
      return localPort;
    },
    routeDid(did, userId) {
      carriers.inboundTrunks[0]!.dids[did] = userId;
    },
    gateway(name, port, extra = {}) {
      const parsed = validateCarrierConfig({ outboundGateways: [{ name, host: '127.0.0.1', port, transport: 'udp', ...extra }], inboundTrunks: [] });
      if (!parsed.ok) throw new Error(JSON.stringify(parsed.errors));
      return parsed.config.outboundGateways[0]!;
    },
    carrierSippArgs: () => ['-i', CARRIER_IP, '-mi', CARRIER_IP],
    rtpengineCalls,
    async packetsByLeg(callId) {
      const session = media.get(callId);
      if (!session) return [];
      const reply = await pool.query({ 'call-id': callId });
      return [session.aTag, session.bTag].map((tag) => packetsOf(reply.tags[tag]));
    },
    async expectIdle(timeoutMs = 10_000) {
      await waitUntil(async () => calls.count === 0 && media.count === 0 && (hooks.idle?.() ?? true) && ((await stack.serverDialogs()) ?? 0) === 0, {
        timeoutMs, what: 'no live call, media session or edge dialog',
      }).catch(async () => {
        throw new Error(`not idle: calls ${calls.count}, media ${media.count}, edge dialogs ${await stack.serverDialogs()}`);
      });
      const start = Date.now();
      let left = await rtpengineCalls();
      while (left.length > 0 && Date.now() - start < timeoutMs) {
        await new Promise((r) => setTimeout(r, 100));
        left = await rtpengineCalls();
      }
      if (left.length > 0) throw new Error(`rtpengine still holds calls: ${left.join(', ')}`);
    },
    async stop() {
      await calls.hangupAll().catch(() => undefined);
      ng.close();
      await services.stop().catch(() => undefined);
      await pool.close();
      await client.close().catch(() => undefined);
      await stack.stop();
      await rtpengine.stop();
      await redis.stop();
    },
  };
}

/** Sum of `stats.packets` over the streams of one monologue in an ng query reply. */
function packetsOf(monologue: unknown): number {
  let total = 0;
  const medias = (monologue as { medias?: unknown })?.medias;
  if (!Array.isArray(medias)) return 0;
  for (const media of medias) {
    const streams = (media as { streams?: unknown })?.streams;
    if (!Array.isArray(streams)) continue;
    for (const stream of streams) {
      const packets = (stream as { stats?: { packets?: unknown } })?.stats?.packets;
      if (typeof packets === 'number') total += packets;
    }
  }
  return total;
}

/**
 * A test file's call stack: started before its tests; after each test the SIPp peers it pushed
 * into `servers` are stopped, `afterEachExtra` runs, and nothing may be left (expectIdle).
 */
export function useCallStack(
  onStarted: (cs: CallStack) => void,
  servers: SippServer[],
  afterEachExtra?: (cs: CallStack) => void,
  options?: CallStackOptions,
): void {
  let cs: CallStack | undefined;
  beforeAll(async () => {
    cs = await startCallStack(options);
    onStarted(cs);
  });
  afterEach(async () => {
    await Promise.all(servers.splice(0).map((s) => s.stop(1000)));
    if (cs) afterEachExtra?.(cs);
    await cs?.expectIdle();
  });
  afterAll(async () => {
    await cs?.stop();
  });
}
