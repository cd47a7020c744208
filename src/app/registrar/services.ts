/**
 * Wires the users/registrar/auth pieces for one core instance from a node-redis client:
 *
 *   const services = await startRegistrarServices({ client, realm, nonceSecret, terminator, log });
 *   srf.register(services.registerHandler);
 *   const api = await startAdminApi({ ...services.adminApiOptions, token, host, port });
 *   ...
 *   await services.stop();
 */
import { DigestAuthenticator } from '../auth/digest.js';
import type { DigestAlgorithm } from '../auth/ha1.js';
import { NonceCountStore } from '../auth/nonce-counts.js';
import type { Logger } from '../observability/logger.js';
import { EventBus } from '../users/events.js';
import { Redis, type NodeRedisClient } from '../users/redis.js';
import { UserCache } from '../users/user-cache.js';
import { UserStore } from '../users/user-store.js';
import { AbuseGuard, type AbuseGuardOptions } from './abuse.js';
import { BindingStore, type RegisteredContact } from './binding-store.js';
import { RegistrationCensus } from './census.js';
import { FlowBindings } from './flow-bindings.js';
import { NatKeepalive, type NatKeepaliveOptions } from './nat-keepalive.js';
import type { Srf } from '../sip/srf.js';
import { KickHandler, type SessionDirectory, type SessionTerminator } from './kick.js';
import { ForwardSigner, InstanceHeartbeat, type InstanceForwarding } from '../cluster/instance-forward.js';
import { Registrar, createRegistrar, type RegisterRequest, type RegisterResponse } from './registrar.js';

export interface RegistrarServicesOptions {
  /** A connected node-redis client (v5+). A duplicate connection is opened for pub/sub. */
  client: NodeRedisClient;
  realm: string;
  /** Shared by all core instances; at least 16 bytes. */
  nonceSecret: string;
  nonceLifetimeSeconds?: number;
  algorithms?: DigestAlgorithm[];
  minExpires?: number;
  maxExpires?: number;
  defaultExpires?: number;
  abuse?: Omit<AbuseGuardOptions, 'redis' | 'events' | 'log'>;
  terminator?: SessionTerminator;
  sessions?: SessionDirectory;
  censusIntervalMs?: number;
  /** This instance's SIP address for the other instances (cluster.instanceAddress); unset on a single instance. */
  instanceAddress?: string;
  /**
   * NAT keep-alive OPTIONS to UDP bindings registered through this instance (nat-keepalive.ts), sent
   * through `srf`; absent: none.
   */
  natKeepalive?: { srf: Srf } & Omit<NatKeepaliveOptions, 'fromHost' | 'log'>;
  log?: Logger;
}

export interface RegistrarServices {
  redis: Redis;
  events: EventBus;
  store: UserStore;
  cache: UserCache;
  bindings: BindingStore;
  auth: DigestAuthenticator;
  /** nonce counts of credentials other than REGISTER's (INVITE): the same Redis keys the registrar checks */
  nonceCounts: NonceCountStore;
  abuse: AbuseGuard;
  kicks: KickHandler;
  registrar: Registrar;
  /** bindings per connection flow: call flowClosed() when the SIP server reports a connection gone */
  flows: FlowBindings;
  /** Calls to bindings held by another instance go through it (src/app/cluster); null on a single instance. */
  forward: (InstanceForwarding & { heartbeat: InstanceHeartbeat }) | null;
  /** NAT keep-alive of UDP bindings, when configured */
  keepalive: NatKeepalive | null;
  /** For srf.register(...). */
  registerHandler: (req: RegisterRequest, res: RegisterResponse) => void;
  /** Spread into startAdminApi({ ...adminApiOptions, token, host, port }). */
  adminApiOptions: { store: UserStore; bindings: BindingStore; redis: Redis; sessions?: SessionDirectory; log?: Logger };
  stop(): Promise<void>;
}

export async function startRegistrarServices(options: RegistrarServicesOptions): Promise<RegistrarServices> {
  const log = options.log;
  const redis = new Redis(options.client);
  const events = new EventBus(redis, log);
  await events.start();
  const store = new UserStore({ redis, realm: options.realm, events });
  const cache = new UserCache(store, events);
  const bindings = new BindingStore(redis);
  const auth = new DigestAuthenticator({
    realm: options.realm,
    secret: options.nonceSecret,
    ...(options.nonceLifetimeSeconds !== undefined ? { nonceLifetimeSeconds: options.nonceLifetimeSeconds } : {}),
    ...(options.algorithms ? { algorithms: options.algorithms } : {}),
  });
  const abuse = new AbuseGuard({ ...options.abuse, redis, events, ...(log ? { log } : {}) });
  await abuse.start();
  const kicks = new KickHandler({ events, bindings, ...(options.terminator ? { terminator: options.terminator } : {}), ...(log ? { log } : {}) });
  kicks.start();
  const census = new RegistrationCensus(bindings, options.censusIntervalMs ?? 15_000, log, (options.maxExpires ?? 3600) * 1000);
  census.start();
  const flows = new FlowBindings(bindings, undefined, log);
  const forward = options.instanceAddress
    ? { instanceAddress: options.instanceAddress, signer: new ForwardSigner(options.nonceSecret), heartbeat: new InstanceHeartbeat(redis, options.instanceAddress, log) }
    : null;
  await forward?.heartbeat.start();
  const { srf: keepaliveSrf, ...keepaliveOptions } = options.natKeepalive ?? { srf: null };
  const keepalive = keepaliveSrf
    ? new NatKeepalive(keepaliveSrf, bindings, { ...(keepaliveOptions as Omit<NatKeepaliveOptions, 'fromHost'>), fromHost: options.realm, ...(log ? { log } : {}) })
    : null;
  keepalive?.start();
  const deps = {
    onRegistered: (registered: RegisteredContact[], userId: string) => {
      flows.track(registered);
      keepalive?.track(userId, registered);
    },
    users: cache,
    bindings,
    auth,
    abuse,
    ...(options.minExpires !== undefined ? { minExpires: options.minExpires } : {}),
    ...(options.maxExpires !== undefined ? { maxExpires: options.maxExpires } : {}),
    ...(options.defaultExpires !== undefined ? { defaultExpires: options.defaultExpires } : {}),
    ...(options.instanceAddress ? { instanceAddress: options.instanceAddress } : {}),
    ...(log ? { log } : {}),
  };
  return {
    redis,
    events,
    store,
    cache,
    bindings,
    auth,
    nonceCounts: new NonceCountStore(redis, auth.nonces.lifetimeMs),
    abuse,
    kicks,
    registrar: new Registrar(deps),
    flows,
    forward,
    keepalive,
    registerHandler: createRegistrar(deps),
    adminApiOptions: { store, bindings, redis, ...(options.sessions ? { sessions: options.sessions } : {}), ...(log ? { log } : {}) },
    async stop() {
      await forward?.heartbeat.stop();
      keepalive?.stop();
      census.stop();
      await bindings.flushCensus().catch(() => undefined);
      kicks.stop();
      abuse.stop();
      cache.close();
      await events.stop();
    },
  };
}
