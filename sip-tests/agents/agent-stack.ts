/**
 * The call stack (sip-tests/calls/call-stack.ts) plus agent sessions and the control API on a
 * real admin HTTP server: what a dialer talks to. `api()` sends authenticated JSON requests,
 * `events()` opens the WebSocket event stream and collects what arrives.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll } from 'vitest';
import WebSocket from 'ws';
import { startAdminApi, type ApiRoute, type RunningAdminApi } from '../../src/app/admin/server.js';
import { JanusConferenceBridge, startAgentFeature, type AgentFeature, type ControlEvent } from '../../src/app/agents/index.js';
import type { SippServer } from '../harness/index.js';
import { startJanus, type JanusServer } from '../harness/janus.js';
import { waitUntil } from '../harness/index.js';
import { DOMAIN, startCallStack, type CallStack, type CallStackOptions } from '../calls/call-stack.js';

export const ADMIN_TOKEN = 'agent-tests-admin-token-0123456789';

export interface EventLog {
  readonly events: ControlEvent[];
  /** Waits for an event matching `predicate` (already received or to come). */
  waitFor(predicate: (e: ControlEvent) => boolean, timeoutMs?: number): Promise<ControlEvent>;
  close(): void;
}

export interface AgentStack {
  cs: CallStack;
  agents: AgentFeature;
  admin: RunningAdminApi;
  /** The 3-way mixer, when the stack was started with `janus: true`. */
  janus?: JanusServer;
  api(method: string, path: string, body?: unknown): Promise<{ status: number; body: any }>;
  events(query?: string): Promise<EventLog>;
  stop(): Promise<void>;
}

/** A feature built on the agent stack (e.g. dial-in): its API routes, its idle check, its stop. */
export interface StackExtension {
  routes?: ApiRoute[];
  idle?: () => boolean;
  stop(): Promise<void>;
}

export type AgentStackOptions = CallStackOptions & {
  holdMusic?: string;
  /** Start a Janus AudioBridge on loopback and mix 3-way calls with it (config mixer.janusUrl). */
  janus?: boolean;
  extend?: (parts: { cs: CallStack; agents: AgentFeature }) => Promise<StackExtension>;
};

export async function startAgentStack(options: AgentStackOptions = {}): Promise<AgentStack> {
  const janus = options.janus ? await startJanus() : undefined;
  const recordingDir = mkdtempSync(join(tmpdir(), 'dialcore-recordings-'));
  const cs = await startCallStack({
    ...options,
    rtpengineArgs: [...(options.rtpengineArgs ?? []), `--recording-dir=${recordingDir}`, '--recording-method=pcap'],
  });
  const agents = await startAgentFeature({
    srf: cs.srf,
    media: cs.media,
    redis: cs.services.redis,
    users: { get: (id) => cs.services.store.get(id) },
    bindings: cs.services.bindings,
    carriers: cs.carriers,
    channels: cs.channels,
    dialPlans: cs.dialPlans,
    domain: DOMAIN,
    ringTimeoutMs: 15_000,
    noResponseFailoverMs: 3_000,
    promptsDir: mkdtempSync(join(tmpdir(), 'dialcore-agent-prompts-')),
    recordingDir,
    userCallCount: (userId) => cs.calls.ofUser(userId).length,
    deviceCalls: cs.calls,
    ...(options.holdMusic ? { holdMusic: options.holdMusic } : {}),
    ...(janus ? { conference: new JanusConferenceBridge(janus.url) } : {}),
  });
  cs.hooks.agentSessions = agents.service;
  cs.hooks.terminateUserSessions = (userId) => agents.service.terminateUser(userId);
  cs.hooks.listUserSessions = (userId) => agents.service.listUserSessions(userId);
  const extension = await options.extend?.({ cs, agents });
  cs.hooks.idle = () => agents.service.sessionCount === 0 && agents.service.callCount === 0 && (extension?.idle?.() ?? true);
  const admin = await startAdminApi({
    ...cs.services.adminApiOptions,
    routes: [...agents.api.routes, ...(extension?.routes ?? [])],
    upgrades: agents.api.upgrades,
    token: ADMIN_TOKEN,
    host: '127.0.0.1',
    port: 0,
  });
  agents.apiListening(`http://127.0.0.1:${admin.port}`);
  const base = `http://127.0.0.1:${admin.port}`;
  const sockets: WebSocket[] = [];
  return {
    cs,
    agents,
    admin,
    ...(janus ? { janus } : {}),
    async api(method, path, body) {
      const response = await fetch(base + path, {
        method,
        headers: { Authorization: `Bearer ${ADMIN_TOKEN}`, ...(body !== undefined ? { 'Content-Type': 'application/json' } : {}) },
        ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
      });
      const text = await response.text();
      return { status: response.status, body: text ? JSON.parse(text) : undefined };
    },
    async events(query = '') {
      const ws = new WebSocket(`ws://127.0.0.1:${admin.port}/v1/events${query}`, { headers: { Authorization: `Bearer ${ADMIN_TOKEN}` } });
      sockets.push(ws);
      const events: ControlEvent[] = [];
      ws.on('message', (data) => events.push(JSON.parse(String(data)) as ControlEvent));
      await new Promise<void>((resolve, reject) => {
        ws.once('open', () => resolve());
        ws.once('error', reject);
      });
      return {
        events,
        async waitFor(predicate, timeoutMs = 15_000) {
          await waitUntil(() => events.some(predicate), { timeoutMs, what: 'a control event' }).catch(() => {
            throw new Error(`event not received; got: ${events.map((e) => e.type).join(', ')}`);
          });
          return events.find(predicate)!;
        },
        close: () => ws.close(),
      };
    },
    async stop() {
      for (const ws of sockets) ws.terminate();
      await extension?.stop().catch(() => undefined);
      await agents.stop().catch(() => undefined);
      await admin.close();
      await cs.stop();
      await janus?.stop();
      rmSync(recordingDir, { recursive: true, force: true });
    },
  };
}

/** One agent stack per test file; SIPp peers in `servers` stopped after each test, then nothing may be left. */
export function useAgentStack(onStarted: (stack: AgentStack) => void, servers: SippServer[], options?: AgentStackOptions): void {
  let stack: AgentStack | undefined;
  beforeAll(async () => {
    stack = await startAgentStack(options);
    onStarted(stack);
  });
  afterEach(async () => {
    if (stack) await stack.agents.service.stop();
    await Promise.all(servers.splice(0).map((s) => s.stop(1000)));
    stack?.cs.carriers.outboundGateways.splice(0);
    await stack?.cs.expectIdle();
  });
  afterAll(async () => {
    await stack?.stop();
  });
}
