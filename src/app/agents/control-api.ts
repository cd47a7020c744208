/**
 * The dialer control API (docs/openapi.yaml, tag "control"), served by the admin HTTP server
 * behind the same bearer token:
 *
 *   POST   /v1/agents/{userId}/session        connect the agent      GET / DELETE likewise
 *   POST   /v1/calls                          {agent, to, callerId?} call a customer for an agent
 *   GET    /v1/calls, /v1/calls/{id}
 *   POST   /v1/calls/{id}/hangup|hold|unhold|mute|unmute|dtmf|transfer|transfer/complete|
 *                     transfer/cancel|three-way|recording/start|recording/stop
 *   GET    /v1/calls/{id}/recordings
 *   GET    /v1/events                         WebSocket: the control event stream
 *
 * A session or call owned by another instance (state is shared in Redis, media and dialogs are
 * not): the command is forwarded to the owner's API (`apiUrl` in its Redis liveness key) with the
 * caller's bearer token, and the owner's answer is returned as is; only when the owner cannot be
 * reached (or the request was already forwarded once) is it answered 409 with `instance` and `apiUrl`.
 * GET works everywhere.
 */
import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import type { IncomingMessage } from 'node:http';
import type { Socket } from 'node:net';
import { WebSocketServer, type WebSocket } from 'ws';
import { HttpError, send, type ApiRoute, type ApiUpgrade, type ErrorCode } from '../admin/server.js';
import { isUserId } from '../users/user-store.js';
import type { Logger } from 'pino';
import { ControlError, type AgentService, type TransferTarget } from './agent-service.js';
import type { ControlEventBus } from './control-events.js';

const USER = '([0-9a-fA-F-]{36})';
const CALL = '([0-9a-fA-F-]{36})';

/** A WebSocket client whose unsent backlog passes this is cut off (close 1013), never buffered without end. */
export const MAX_EVENT_BACKLOG_BYTES = 1024 * 1024;

function fromControlError(err: ControlError): HttpError {
  return new HttpError(
    err.status,
    err.code as ErrorCode,
    err.message,
    err.field ? [{ field: err.field, message: err.message }] : [],
    // where the call or session lives: the client sends the command there
    err.location ? { instance: err.location.instance, apiUrl: err.location.apiUrl } : {},
  );
}

async function run<T>(work: () => Promise<T>): Promise<T> {
  try {
    return await work();
  } catch (err) {
    if (err instanceof ControlError) throw fromControlError(err);
    throw err;
  }
}

function invalid(field: string, message: string): HttpError {
  return new HttpError(400, 'validation_failed', `${field} ${message}`, [{ field, message }]);
}

function objectBody(body: unknown): Record<string, unknown> {
  if (body === undefined) return {};
  if (typeof body !== 'object' || body === null || Array.isArray(body)) throw invalid('body', 'must be a JSON object');
  return body as Record<string, unknown>;
}

function optionalBoolean(body: Record<string, unknown>, field: string): boolean | undefined {
  const value = body[field];
  if (value === undefined) return undefined;
  if (typeof value !== 'boolean') throw invalid(field, 'must be a boolean');
  return value;
}

function phoneNumber(body: Record<string, unknown>, field: string, required: boolean): string | undefined {
  const value = body[field];
  if (value === undefined && !required) return undefined;
  if (typeof value !== 'string' || !/^\+?[0-9 ()./-]{2,32}$/.test(value) || !/\d/.test(value)) throw invalid(field, 'must be a phone number');
  return value;
}

/** Marks a command forwarded by another instance: it is never forwarded a second time. */
export const FORWARDED_HEADER = 'x-dialcore-forwarded-by';
const FORWARD_TIMEOUT_MS = 10_000;

/**
 * A command for a session or call of another instance goes to that instance's API: the route runs
 * here first (validation, lookup); a 409 naming the owner's apiUrl is then replayed there.
 */
function ownedByAnyInstance(route: ApiRoute, instanceId: string, log?: Logger): ApiRoute {
  return {
    ...route,
    handler: async (ctx) => {
      let parsedBody: unknown;
      const body = async (required: boolean): Promise<unknown> => (parsedBody = await ctx.body(required));
      try {
        await route.handler({ ...ctx, body });
      } catch (err) {
        const apiUrl = err instanceof HttpError && err.status === 409 ? err.extra.apiUrl : undefined;
        if (typeof apiUrl !== 'string' || ctx.req.headers[FORWARDED_HEADER] !== undefined) throw err;
        let answer: Response;
        try {
          answer = await fetch(new URL(ctx.url.pathname + ctx.url.search, apiUrl), {
            method: ctx.req.method ?? 'POST',
            headers: {
              authorization: ctx.req.headers.authorization ?? '',
              [FORWARDED_HEADER]: instanceId,
              ...(parsedBody === undefined ? {} : { 'content-type': 'application/json' }),
            },
            ...(parsedBody === undefined ? {} : { body: JSON.stringify(parsedBody) }),
            signal: AbortSignal.timeout(FORWARD_TIMEOUT_MS),
            redirect: 'manual',
          });
        } catch (forwardErr) {
          log?.warn({ err: forwardErr instanceof Error ? forwardErr.message : String(forwardErr), owner: apiUrl }, 'control command not forwarded to its owner instance');
          throw err;
        }
        const text = await answer.text();
        const headers: Record<string, string> = {};
        for (const name of ['content-type', 'location']) {
          const value = answer.headers.get(name);
          if (value) headers[name] = value;
        }
        ctx.res.writeHead(answer.status, { ...headers, 'Content-Length': String(Buffer.byteLength(text)), 'Cache-Control': 'no-store' });
        ctx.res.end(text);
      }
    },
  };
}

export function controlApiRoutes(service: AgentService, log?: Logger): ApiRoute[] {
  return controlRoutes(service).map((route) => (route.method === 'GET' ? route : ownedByAnyInstance(route, service.instanceId, log)));
}

function controlRoutes(service: AgentService): ApiRoute[] {
  const userParam = (id: string): string => {
    if (!isUserId(id)) throw new HttpError(404, 'not_found', 'no such user');
    return id;
  };
  const callAction = (path: string, action: (id: string, body: Record<string, unknown>) => Promise<unknown>): ApiRoute => ({
    method: 'POST',
    pattern: new RegExp(`^/v1/calls/${CALL}/${path}$`),
    handler: async ({ res, params, body }) => {
      const parsed = objectBody(await body(false));
      send(res, 200, await run(() => action(params[0]!.toLowerCase(), parsed)));
    },
  });
  return [
    {
      method: 'POST',
      pattern: new RegExp(`^/v1/agents/${USER}/session$`),
      handler: async ({ res, params, body }) => {
        const parsed = objectBody(await body(false));
        const autoAnswer = optionalBoolean(parsed, 'autoAnswer');
        const id = userParam(params[0]!.toLowerCase());
        const session = await run(() => service.startSession(id, autoAnswer !== undefined ? { autoAnswer } : {}));
        send(res, 201, session, { Location: `/v1/agents/${id}/session` });
      },
    },
    {
      method: 'GET',
      pattern: new RegExp(`^/v1/agents/${USER}/session$`),
      handler: async ({ res, params }) => send(res, 200, await run(() => service.getSession(userParam(params[0]!.toLowerCase())))),
    },
    {
      method: 'DELETE',
      pattern: new RegExp(`^/v1/agents/${USER}/session$`),
      handler: async ({ res, params }) => {
        await run(() => service.deleteSession(userParam(params[0]!.toLowerCase())));
        send(res, 204);
      },
    },
    {
      method: 'POST',
      pattern: /^\/v1\/calls$/,
      handler: async ({ res, body }) => {
        const parsed = objectBody(await body(true));
        const agent = parsed.agent;
        if (typeof agent !== 'string' || !isUserId(agent)) throw invalid('agent', 'must be a user id');
        const to = phoneNumber(parsed, 'to', true)!;
        const callerId = parsed.callerId === undefined || parsed.callerId === null ? undefined : phoneNumber(parsed, 'callerId', true);
        const call = await run(() => service.placeCall({ agent: agent.toLowerCase(), to, ...(callerId ? { callerId } : {}) }));
        send(res, 201, call, { Location: `/v1/calls/${call.id}` });
      },
    },
    {
      method: 'GET',
      pattern: /^\/v1\/calls$/,
      handler: async ({ res }) => send(res, 200, { calls: await service.listCalls() }),
    },
    {
      method: 'GET',
      pattern: new RegExp(`^/v1/calls/${CALL}$`),
      handler: async ({ res, params }) => send(res, 200, await run(() => service.getCall(params[0]!.toLowerCase()))),
    },
    {
      method: 'GET',
      pattern: new RegExp(`^/v1/calls/${CALL}/recordings$`),
      handler: async ({ res, params }) => send(res, 200, { recordings: await run(() => service.listRecordings(params[0]!.toLowerCase())) }),
    },
    {
      method: 'GET',
      pattern: new RegExp(`^/v1/calls/${CALL}/recordings/(\\d{1,4})$`),
      handler: async ({ res, params }) => {
        const recordings = await run(() => service.listRecordings(params[0]!.toLowerCase()));
        const recording = recordings[Number(params[1]) - 1];
        const path = recording?.file ? service.recordingPath(recording.file) : null;
        if (!path || !existsSync(path)) throw new HttpError(404, 'not_found', 'no such recording on this instance');
        const data = await readFile(path);
        res.writeHead(200, { 'Content-Type': 'audio/wav', 'Content-Length': String(data.length), 'Cache-Control': 'no-store' });
        res.end(data);
      },
    },
    callAction('hangup', (id) => service.hangupCall(id)),
    callAction('hold', (id) => service.hold(id, true)),
    callAction('unhold', (id) => service.hold(id, false)),
    callAction('mute', (id) => service.mute(id, true)),
    callAction('unmute', (id) => service.mute(id, false)),
    callAction('dtmf', (id, body) => {
      if (typeof body.digits !== 'string') throw invalid('digits', 'must be a string of 0-9 * # A-D');
      return service.sendDtmf(id, body.digits);
    }),
    callAction('transfer', (id, body) => {
      const mode = body.mode ?? 'blind';
      if (mode !== 'blind' && mode !== 'attended') throw invalid('mode', 'must be blind or attended');
      return service.transfer(id, transferTarget(body), mode);
    }),
    callAction('transfer/complete', (id) => service.completeTransfer(id)),
    callAction('transfer/cancel', (id) => service.cancelTransfer(id)),
    callAction('three-way', (id, body) => service.threeWay(id, phoneNumber(body, 'to', true)!)),
    callAction('recording/start', (id) => service.startRecording(id)),
    callAction('recording/stop', (id) => service.stopRecording(id)),
  ];
}

/** `{to: "+4420..."}` or `{agent: "<user id>"}`. */
function transferTarget(body: Record<string, unknown>): TransferTarget {
  if (body.agent !== undefined) {
    if (typeof body.agent !== 'string' || !isUserId(body.agent)) throw invalid('agent', 'must be a user id');
    return { agent: body.agent.toLowerCase() };
  }
  return { number: phoneNumber(body, 'to', true)! };
}

/**
 * GET /v1/events (WebSocket, RFC 6455): every control event of every instance, one JSON text
 * message each. `?agent=<user id>` keeps one agent's events. A client that does not read (its
 * backlog passes MAX_EVENT_BACKLOG_BYTES) is cut off with 1013 instead of being buffered.
 */
export function controlEventsUpgrade(events: ControlEventBus, options: { maxBacklogBytes?: number; maxClients?: number } = {}): ApiUpgrade & { close(): void; clients(): number } {
  const wss = new WebSocketServer({ noServer: true, maxPayload: 4096 });
  const maxBacklog = options.maxBacklogBytes ?? MAX_EVENT_BACKLOG_BYTES;
  const maxClients = options.maxClients ?? 1000;
  const filters = new Map<WebSocket, string | null>();
  const unsubscribe = events.on((event) => {
    if (filters.size === 0) return;
    const text = JSON.stringify(event);
    for (const [ws, agent] of filters) {
      if (agent && event.agent !== agent) continue;
      if (ws.bufferedAmount > maxBacklog) {
        filters.delete(ws);
        ws.close(1013, 'too slow: events were not read');
        setTimeout(() => ws.terminate(), 1000).unref();
        continue;
      }
      ws.send(text);
    }
  });
  return {
    pattern: /^\/v1\/events$/,
    handle(req: IncomingMessage, socket: Socket, head: Buffer) {
      if (filters.size >= maxClients) {
        socket.end('HTTP/1.1 503 Service Unavailable\r\nConnection: close\r\nContent-Length: 0\r\n\r\n');
        return;
      }
      const agent = new URL(req.url ?? '/', 'http://admin.invalid').searchParams.get('agent');
      if (agent !== null && !isUserId(agent)) {
        socket.end('HTTP/1.1 400 Bad Request\r\nConnection: close\r\nContent-Length: 0\r\n\r\n');
        return;
      }
      wss.handleUpgrade(req, socket, head, (ws) => {
        filters.set(ws, agent?.toLowerCase() ?? null);
        ws.on('close', () => filters.delete(ws));
        ws.on('error', () => filters.delete(ws));
        ws.on('message', () => undefined); // the stream is one-way; pings are answered by ws
      });
    },
    close() {
      unsubscribe();
      for (const ws of filters.keys()) ws.terminate();
      filters.clear();
      wss.close();
    },
    clients: () => filters.size,
  };
}
