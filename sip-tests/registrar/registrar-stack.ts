/**
 * The registrar stack for SIP-level tests: a real redis-server, the SIP edge on loopback
 * (UDP+TCP), a drachtio-srf app running the registrar (startRegistrarServices), and the admin
 * API on its own port. `restartApp()` replaces the core app (new process state, same Redis).
 */
import { createClient } from 'redis';
import { startStack, type TestStack } from '../fixtures/stack.js';
import { startRedis, type RedisServer } from '../harness/index.js';
import { startRegistrarServices, type RegistrarServices, type RegistrarServicesOptions } from '../../src/app/registrar/services.js';
import { startAdminApi, type RunningAdminApi } from '../../src/app/admin/server.js';
import { connectSrf, createSrf, type Srf } from '../../src/app/sip/srf.js';

export const REALM = 'dialcore.test';
export const ADMIN_TOKEN = 'sip-test-admin-token-123456';

export interface RegistrarStack {
  redis: RedisServer;
  sip: TestStack;
  services: RegistrarServices;
  admin: RunningAdminApi;
  /** 127.0.0.1:<port> of the edge (UDP and TCP). */
  target: string;
  sipPort: number;
  /** Calls the admin API with the token. */
  api(method: string, path: string, body?: unknown): Promise<{ status: number; json: any }>;
  /** Stops the core app (srf + services) and starts a fresh one on the same edge and Redis. */
  restartApp(): Promise<void>;
  stop(): Promise<void>;
}

type ServiceOverrides = Partial<Omit<RegistrarServicesOptions, 'client' | 'realm'>>;

export async function startRegistrarStack(overrides: ServiceOverrides = {}): Promise<RegistrarStack> {
  const redis = await startRedis();
  const sip = await startStack({ protocols: ['udp', 'tcp'] });
  const clients: Array<{ close(): Promise<unknown> }> = [];

  const startApp = async (): Promise<{ srf: Srf; services: RegistrarServices }> => {
    const client = createClient({ url: redis.url });
    client.on('error', () => undefined);
    await client.connect();
    clients.push(client);
    const services = await startRegistrarServices({
      client,
      realm: REALM,
      nonceSecret: 'sip-test-nonce-secret-0123456789',
      algorithms: ['MD5', 'SHA-256'], // SIPp 3.6.1 answers only the first challenge and knows only MD5
      ...overrides,
    });
    // Our own srf (not sip.connectApp()): restartApp disconnects it, the fixture must not again.
    const srf = createSrf();
    await connectSrf(srf, { host: '127.0.0.1', port: sip.addresses.admin.port, secret: sip.secret });
    srf.register(services.registerHandler);
    return { srf, services };
  };

  let app = await startApp();
  const admin = await startAdminApi({ ...app.services.adminApiOptions, token: ADMIN_TOKEN, port: 0 });

  const stack: RegistrarStack = {
    redis,
    sip,
    services: app.services,
    admin,
    target: sip.target,
    sipPort: sip.sipPort,
    async api(method, path, body) {
      const res = await fetch(`http://127.0.0.1:${admin.port}${path}`, {
        method,
        headers: { Authorization: `Bearer ${ADMIN_TOKEN}`, ...(body !== undefined ? { 'Content-Type': 'application/json' } : {}) },
        ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
      });
      const text = await res.text();
      return { status: res.status, json: text ? JSON.parse(text) : null };
    },
    async restartApp() {
      app.srf.disconnect();
      await app.services.stop();
      app = await startApp();
      stack.services = app.services;
    },
    async stop() {
      await admin.close();
      app.srf.disconnect();
      await app.services.stop();
      await sip.stop();
      await Promise.all(clients.map((c) => c.close().catch(() => undefined)));
      await redis.stop();
    },
  };
  return stack;
}
