/**
 * Admin HTTP API (docs/openapi.yaml): node:http, JSON, `Authorization: Bearer <token>`,
 * loopback by default. Responses never carry a password, HA1, PIN hash or PBX password: users
 * go out as PublicUser only.
 *
 * Deactivate, delete, password reset, reset and logout publish kick events; every core
 * instance's KickHandler then removes the bindings and ends the sessions it holds.
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { metricsRegistry } from '../observability/metrics.js';
import type { Logger } from '../observability/logger.js';
import type { Binding, BindingStore } from '../registrar/binding-store.js';
import type { SessionDirectory } from '../registrar/kick.js';
import type { Redis } from '../users/redis.js';
import { toPublicUser, type FieldError } from '../users/types.js';
import { UserStoreError, isUserId, type UserStore } from '../users/user-store.js';

export interface AdminApiOptions {
  store: UserStore;
  bindings: BindingStore;
  redis: Redis;
  /** Bearer token; required (DIALCORE_ADMIN_TOKEN or config). */
  token: string;
  sessions?: SessionDirectory;
  /** Require the token on GET /metrics too (default false: scrapers on loopback). */
  metricsRequireAuth?: boolean;
  maxBodyBytes?: number;
  log?: Logger;
  /** More routes (the control API of the calls feature), behind the same token. */
  routes?: ApiRoute[];
  /** WebSocket endpoints (GET with Upgrade), behind the same token. */
  upgrades?: ApiUpgrade[];
  /** The instance's other dependencies and state, for /healthz and /readyz (Redis is checked here). */
  health?: () => InstanceHealth;
}

/** What /healthz reports beside Redis. */
export interface InstanceHealth {
  /** The link to the SIP server (the edge or drachtio-server) is up. */
  sip: boolean;
  /** rtpengines seen healthy by this instance's pings; absent when the process has no media. */
  rtpengine?: { healthy: number; total: number };
  /** SIGTERM received: new registrations and calls are refused while live calls finish. */
  draining: boolean;
}

/** A route another module adds to the API. */
export interface ApiRoute {
  method: string;
  pattern: RegExp;
  handler: (ctx: ApiContext) => Promise<void>;
}

export interface ApiContext {
  req: IncomingMessage;
  res: ServerResponse;
  params: string[];
  url: URL;
  /** The request's JSON body (bounded; 400/413/415 as HttpErrors). */
  body(required: boolean): Promise<unknown>;
}

export interface ApiUpgrade {
  pattern: RegExp;
  handle(req: IncomingMessage, socket: Socket, head: Buffer): void;
}

export type ErrorCode =
  | 'bad_request'
  | 'validation_failed'
  | 'unauthorized'
  | 'not_found'
  | 'method_not_allowed'
  | 'conflict'
  | 'payload_too_large'
  | 'unsupported_media_type'
  | 'unavailable'
  | 'forbidden'
  | 'not_implemented'
  | 'internal';

export class HttpError extends Error {
  constructor(
    readonly status: number,
    readonly code: ErrorCode,
    message: string,
    readonly details: FieldError[] = [],
    /** More members of the error object (e.g. where a call lives). */
    readonly extra: Record<string, unknown> = {},
  ) {
    super(message);
  }
}

type Context = ApiContext;

type Handler = (ctx: Context) => Promise<void>;

interface Route {
  method: string;
  pattern: RegExp;
  handler: Handler;
  /** Reachable without the token. */
  open?: boolean;
}

const ID = '([0-9a-fA-F-]{36})';
const JSON_TYPE = 'application/json; charset=utf-8';

export function send(res: ServerResponse, status: number, body?: unknown, headers: Record<string, string> = {}): void {
  const text = body === undefined ? '' : JSON.stringify(body);
  res.writeHead(status, {
    ...(body === undefined ? {} : { 'Content-Type': JSON_TYPE }),
    'Content-Length': String(Buffer.byteLength(text)),
    'Cache-Control': 'no-store',
    'X-Content-Type-Options': 'nosniff',
    ...headers,
  });
  res.end(text);
}

function sendError(res: ServerResponse, err: HttpError, headers: Record<string, string> = {}): void {
  const first = err.details[0];
  send(
    res,
    err.status,
    {
      error: {
        code: err.code,
        message: err.message,
        ...(first ? { field: first.field } : {}),
        ...(err.details.length ? { details: err.details } : {}),
        ...err.extra,
      },
    },
    headers,
  );
}

function fromStoreError(err: UserStoreError): HttpError {
  switch (err.code) {
    case 'validation':
      return new HttpError(400, 'validation_failed', err.errors[0] ? `${err.errors[0].field} ${err.errors[0].message}` : err.message, err.errors);
    case 'conflict':
      return new HttpError(409, 'conflict', err.errors[0] ? `${err.errors[0].field} ${err.errors[0].message}` : err.message, err.errors);
    case 'not-found':
      return new HttpError(404, 'not_found', 'no such user');
  }
}

function digestToken(token: string): Buffer {
  return createHash('sha256').update(token, 'utf8').digest();
}

/** The registration as the API shows it. */
export function publicBinding(binding: Binding, now = Date.now()) {
  return {
    id: binding.id,
    contact: binding.contact,
    instanceId: binding.instanceId,
    regId: binding.regId,
    transport: binding.flow.transport,
    sourceAddress: binding.flow.address,
    sourcePort: binding.flow.port,
    receivedOn: binding.flow.receivedOn,
    userAgent: binding.userAgent,
    connectionMethod: binding.connectionMethod,
    firstRegisteredAt: new Date(binding.firstRegisteredAt).toISOString(),
    registeredAt: new Date(binding.registeredAt).toISOString(),
    expiresAt: new Date(binding.expiresAt).toISOString(),
    expiresIn: Math.max(0, Math.round((binding.expiresAt - now) / 1000)),
  };
}

export function createAdminApi(options: AdminApiOptions): Server {
  if (!options.token || options.token.length < 16) throw new Error('admin API token must be at least 16 characters');
  const tokenDigest = digestToken(options.token);
  const maxBodyBytes = options.maxBodyBytes ?? 64 * 1024;
  const { store, bindings, log } = options;

  const authorised = (req: IncomingMessage): boolean => {
    const header = req.headers.authorization;
    const match = header ? /^Bearer\s+(\S+)\s*$/i.exec(header) : null;
    // Compare digests: constant time and independent of the presented token's length.
    return match !== null && timingSafeEqual(digestToken(match[1]!), tokenDigest);
  };

  const readJson = async (req: IncomingMessage, required: boolean): Promise<unknown> => {
    const length = Number(req.headers['content-length'] ?? 0);
    if (length > maxBodyBytes) throw new HttpError(413, 'payload_too_large', `body larger than ${maxBodyBytes} bytes`);
    const chunks: Buffer[] = [];
    let size = 0;
    for await (const chunk of req) {
      size += (chunk as Buffer).length;
      if (size > maxBodyBytes) throw new HttpError(413, 'payload_too_large', `body larger than ${maxBodyBytes} bytes`);
      chunks.push(chunk as Buffer);
    }
    if (size === 0) {
      if (required) throw new HttpError(400, 'bad_request', 'a JSON body is required');
      return undefined;
    }
    const type = (req.headers['content-type'] ?? '').split(';')[0]!.trim().toLowerCase();
    if (type !== 'application/json') throw new HttpError(415, 'unsupported_media_type', 'Content-Type must be application/json');
    try {
      return JSON.parse(Buffer.concat(chunks).toString('utf8'));
    } catch {
      throw new HttpError(400, 'bad_request', 'body is not valid JSON');
    }
  };

  const withStore = async <T>(work: () => Promise<T>): Promise<T> => {
    try {
      return await work();
    } catch (err) {
      if (err instanceof UserStoreError) throw fromStoreError(err);
      throw err;
    }
  };

  const userOr404 = async (id: string) => {
    const user = isUserId(id) ? await store.get(id) : null;
    if (!user) throw new HttpError(404, 'not_found', 'no such user');
    return user;
  };

  const redisReachable = async (): Promise<boolean> => {
    try {
      // every master of a Redis Cluster must answer (redis.ts ping)
      return await Promise.race([
        options.redis.ping(),
        new Promise<boolean>((_, reject) => setTimeout(() => reject(new Error('timeout')), 1000).unref()),
      ]);
    } catch {
      return false;
    }
  };

  const healthReport = async () => {
    const redis = await redisReachable();
    const other = options.health?.();
    const rtpengine = other?.rtpengine ? (other.rtpengine.healthy > 0 ? 'ok' : 'unavailable') : undefined;
    const healthy = redis && (other?.sip ?? true) && rtpengine !== 'unavailable';
    return {
      healthy,
      body: {
        status: healthy ? 'ok' : 'unavailable',
        redis: redis ? 'ok' : 'unreachable',
        ...(other ? { sip: other.sip ? 'ok' : 'disconnected' } : {}),
        ...(other?.rtpengine ? { rtpengine, rtpengines: other.rtpengine } : {}),
        draining: other?.draining ?? false,
      },
    };
  };

  const routes: Route[] = [
    {
      // liveness: the process serves HTTP (its event loop is not stuck); dependencies do not count
      method: 'GET',
      pattern: /^\/livez$/,
      open: true,
      handler: async ({ res }) => send(res, 200, { status: 'alive' }),
    },
    {
      // every dependency separately; 503 when one is down
      method: 'GET',
      pattern: /^\/healthz$/,
      open: true,
      handler: async ({ res }) => {
        const report = await healthReport();
        send(res, report.healthy ? 200 : 503, report.body);
      },
    },
    {
      // readiness: healthy and not draining, i.e. send new traffic here
      method: 'GET',
      pattern: /^\/readyz$/,
      open: true,
      handler: async ({ res }) => {
        const report = await healthReport();
        const ready = report.healthy && !report.body.draining;
        send(res, ready ? 200 : 503, { ...report.body, status: ready ? 'ready' : 'not-ready' });
      },
    },
    {
      method: 'GET',
      pattern: /^\/metrics$/,
      open: !options.metricsRequireAuth,
      handler: async ({ res }) => {
        const text = await metricsRegistry.metrics();
        res.writeHead(200, { 'Content-Type': metricsRegistry.contentType, 'Content-Length': String(Buffer.byteLength(text)) });
        res.end(text);
      },
    },
    {
      method: 'POST',
      pattern: /^\/v1\/users$/,
      handler: async ({ req, res }) => {
        const user = await withStore(async () => store.create(await readJson(req, true)));
        send(res, 201, user, { Location: `/v1/users/${user.id}` });
      },
    },
    {
      method: 'GET',
      pattern: /^\/v1\/users$/,
      handler: async ({ res, url }) => {
        const limitText = url.searchParams.get('limit');
        const limit = limitText === null ? 100 : Number(limitText);
        if (!Number.isInteger(limit) || limit < 1 || limit > 500) {
          throw new HttpError(400, 'validation_failed', 'limit must be an integer from 1 to 500', [{ field: 'limit', message: 'must be an integer from 1 to 500' }]);
        }
        const cursor = url.searchParams.get('cursor');
        if (cursor !== null && !isUserId(cursor)) {
          throw new HttpError(400, 'validation_failed', 'cursor is not valid', [{ field: 'cursor', message: 'is not valid' }]);
        }
        send(res, 200, await store.list({ cursor, limit }));
      },
    },
    {
      method: 'GET',
      pattern: new RegExp(`^/v1/users/${ID}$`),
      handler: async ({ res, params }) => send(res, 200, toPublicUser(await userOr404(params[0]!))),
    },
    {
      method: 'PATCH',
      pattern: new RegExp(`^/v1/users/${ID}$`),
      handler: async ({ req, res, params }) => {
        const body = await readJson(req, true);
        send(res, 200, await withStore(() => store.update(params[0]!, body)));
      },
    },
    {
      method: 'DELETE',
      pattern: new RegExp(`^/v1/users/${ID}$`),
      handler: async ({ res, params }) => {
        if (!(await withStore(() => store.delete(params[0]!)))) throw new HttpError(404, 'not_found', 'no such user');
        send(res, 204);
      },
    },
    {
      method: 'POST',
      pattern: new RegExp(`^/v1/users/${ID}/reset-password$`),
      handler: async ({ req, res, params }) => {
        await readJson(req, false);
        const { user, password } = await withStore(() => store.resetPassword(params[0]!));
        log?.info({ userId: user.id }, 'password reset by admin');
        send(res, 200, { password, user });
      },
    },
    {
      method: 'POST',
      pattern: new RegExp(`^/v1/users/${ID}/(activate|deactivate)$`),
      handler: async ({ req, res, params }) => {
        await readJson(req, false);
        send(res, 200, await withStore(() => store.setActive(params[0]!, params[1] === 'activate')));
      },
    },
    {
      method: 'POST',
      pattern: new RegExp(`^/v1/users/${ID}/reset$`),
      handler: async ({ req, res, params }) => {
        await readJson(req, false);
        await withStore(() => store.resetUser(params[0]!));
        send(res, 204);
      },
    },
    {
      method: 'GET',
      pattern: new RegExp(`^/v1/users/${ID}/registrations$`),
      handler: async ({ res, params }) => {
        const user = await userOr404(params[0]!);
        const now = Date.now();
        send(res, 200, { registrations: (await bindings.list(user.id, now)).map((b) => publicBinding(b, now)) });
      },
    },
    {
      method: 'GET',
      pattern: new RegExp(`^/v1/users/${ID}/sessions$`),
      handler: async ({ res, params }) => {
        const user = await userOr404(params[0]!);
        const now = Date.now();
        const [registrations, calls] = await Promise.all([
          bindings.list(user.id, now),
          options.sessions ? options.sessions.listUserSessions(user.id) : Promise.resolve([]),
        ]);
        send(res, 200, { registrations: registrations.map((b) => publicBinding(b, now)), calls });
      },
    },
    {
      method: 'POST',
      pattern: new RegExp(`^/v1/users/${ID}/logout$`),
      handler: async ({ req, res, params }) => {
        await readJson(req, false);
        const user = await userOr404(params[0]!);
        const registrations = (await bindings.list(user.id)).length;
        await store.kick(user.id, 'logout');
        send(res, 202, { registrations });
      },
    },
    {
      method: 'DELETE',
      pattern: new RegExp(`^/v1/users/${ID}/registrations/([A-Za-z0-9_-]{1,64})$`),
      handler: async ({ res, params }) => {
        const user = await userOr404(params[0]!);
        const bindingId = params[1]!;
        if (!(await bindings.list(user.id)).some((b) => b.id === bindingId)) throw new HttpError(404, 'not_found', 'no such registration');
        await store.kick(user.id, 'logout', bindingId);
        send(res, 202, { registrations: 1 });
      },
    },
    ...(options.routes ?? []),
  ];

  const dispatch = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    let url: URL;
    try {
      url = new URL(req.url ?? '/', 'http://admin.invalid');
    } catch {
      throw new HttpError(400, 'bad_request', 'invalid request target');
    }
    const candidates = routes
      .map((route) => ({ route, match: route.pattern.exec(url.pathname) }))
      .filter((c): c is { route: Route; match: RegExpExecArray } => c.match !== null);
    if (candidates.length === 0) throw new HttpError(404, 'not_found', 'no such resource');
    const chosen = candidates.find((c) => c.route.method === req.method);
    const open = chosen?.route.open === true;
    if (!open && !authorised(req)) throw new HttpError(401, 'unauthorized', 'missing or invalid bearer token');
    if (!chosen) {
      const allow = candidates.map((c) => c.route.method).join(', ');
      sendError(res, new HttpError(405, 'method_not_allowed', `use ${allow}`), { Allow: allow });
      return;
    }
    await chosen.route.handler({ req, res, params: chosen.match.slice(1), url, body: (required) => readJson(req, required) });
  };

  const server = createServer((req, res) => {
    dispatch(req, res).catch((err: unknown) => {
      if (res.headersSent) {
        res.destroy();
        return;
      }
      if (err instanceof HttpError) {
        const headers: Record<string, string> = {};
        if (err.status === 401) headers['WWW-Authenticate'] = 'Bearer realm="dialcore-admin"';
        if (err.status === 413) headers.Connection = 'close';
        sendError(res, err, headers);
        if (err.status === 413) req.destroy();
        return;
      }
      log?.error({ err, method: req.method, path: req.url?.split('?')[0] }, 'admin API request failed');
      sendError(res, new HttpError(500, 'internal', 'internal error'));
    });
  });
  server.on('upgrade', (req: IncomingMessage, socket: Socket, head: Buffer) => {
    const refuse = (status: number, reason: string): void => {
      socket.end(`HTTP/1.1 ${status} ${reason}\r\nConnection: close\r\nContent-Length: 0\r\n\r\n`);
    };
    socket.on('error', () => socket.destroy());
    let path: string;
    try {
      path = new URL(req.url ?? '/', 'http://admin.invalid').pathname;
    } catch {
      return refuse(400, 'Bad Request');
    }
    const upgrade = (options.upgrades ?? []).find((u) => u.pattern.test(path));
    if (!upgrade) return refuse(404, 'Not Found');
    if (!authorised(req)) return refuse(401, 'Unauthorized');
    upgrade.handle(req, socket, head);
  });
  return server;
}

export interface RunningAdminApi {
  server: Server;
  host: string;
  port: number;
  close(): Promise<void>;
}

/** Listens on host:port (default 127.0.0.1:8080; port 0 picks a free one). */
export async function startAdminApi(options: AdminApiOptions & { host?: string; port?: number }): Promise<RunningAdminApi> {
  const server = createAdminApi(options);
  server.headersTimeout = 10_000;
  server.requestTimeout = 30_000;
  const host = options.host ?? '127.0.0.1';
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port ?? 8080, host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const address = server.address() as AddressInfo;
  return {
    server,
    host,
    port: address.port,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

/** Parses `--http 127.0.0.1:8080` / `[::1]:8080` / `8080`. */
export function parseListenAddress(text: string): { host: string; port: number } | null {
  const match = /^(?:\[([0-9a-fA-F:.]+)\]|([^:[\]]+)):(\d{1,5})$/.exec(text) ?? (/^(\d{1,5})$/.exec(text) ? [text, undefined, '127.0.0.1', text] : null);
  if (!match) return null;
  const port = Number(match[3]);
  if (!Number.isInteger(port) || port > 65_535) return null;
  return { host: match[1] ?? match[2] ?? '127.0.0.1', port };
}
