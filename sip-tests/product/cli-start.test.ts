/**
 * The product as shipped: `dialcore start` (bin/dialcore.js, from source) with the flags the README shows, its
 * own Redis and rtpengine on loopback, driven only from outside: a user created through the admin API, a SIPp
 * phone registering with a plain MD5 digest REGISTER over UDP and TCP (SIPp 3.6.1 answers the first challenge only,
 * so this also pins the default challenge order), the bindings seen through the admin API and in /metrics, a
 * deactivation kicking them, a webrtc user over WebSocket (and refused over UDP), a call to a dial-in access number
 * answered by the login, then SIGTERM while a dial-in caller is in the login (the drain waits for it).
 *
 * With DIALCORE_TEST_DRACHTIO_SERVER=<drachtio binary>, the C++ drachtio-server takes the SIP listeners and
 * `dialcore app --drachtio` connects to it instead (`dialcore start` runs both halves in one process).
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freePort, runSipp, startDrachtioServer, startRedis, startRtpengine, waitUntil, type DrachtioServer, type RedisServer, type RtpengineServer } from '../harness/index.js';
import { drachtioServerBinary } from '../fixtures/stack.js';
import { registerOverWebSocket } from '../fixtures/ws-register.js';
import { SHIPPED_CONFIG, startDialcoreProcess, type DialcoreProcess } from '../fixtures/cli-process.js';

const HOST = '127.0.0.1';
const TOKEN = 'cli-test-admin-token-0123456789';
const REALM = 'dialcore';

let redis: RedisServer;
let rtpengine: RtpengineServer;
let drachtioServer: DrachtioServer | undefined;
let core: DialcoreProcess;
let sipPort = 0;
let wsPort = 0;
let httpBase = '';
let dtmfEventsPort = 0;
let promptsDir = '';
const ACCESS_NUMBER = '0800100200';

async function api(method: string, path: string, body?: unknown): Promise<{ status: number; json: unknown; text: string }> {
  const res = await fetch(`${httpBase}${path}`, {
    method,
    headers: { authorization: `Bearer ${TOKEN}`, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
  });
  const text = await res.text();
  let json: unknown = null;
  try {
    json = JSON.parse(text);
  } catch {
    // /metrics is text
  }
  return { status: res.status, json, text };
}

beforeAll(async () => {
  redis = await startRedis();
  dtmfEventsPort = await freePort();
  rtpengine = await startRtpengine({ dtmfLogPort: dtmfEventsPort });
  promptsDir = mkdtempSync(join(tmpdir(), 'dialcore-cli-prompts-'));
  sipPort = await freePort();
  wsPort = await freePort();
  const httpPort = await freePort();
  const adminPort = await freePort();
  httpBase = `http://${HOST}:${httpPort}`;
  const drachtioSecret = 'cli-test-drachtio-secret';
  if (drachtioServerBinary) {
    drachtioServer = await startDrachtioServer({
      binary: drachtioServerBinary, adminPort, secret: drachtioSecret,
      listeners: [{ protocol: 'udp', port: sipPort }, { protocol: 'tcp', port: sipPort }, { protocol: 'ws', port: wsPort }],
    });
  }
  const sipServer = drachtioServerBinary
    ? ['app', '--drachtio', `${HOST}:${adminPort}`]
    : ['start', '--sip', `udp:${HOST}:${sipPort}`, '--sip', `tcp:${HOST}:${sipPort}`, '--sip', `ws:${HOST}:${wsPort}`, '--admin', `${HOST}:${adminPort}`];
  core = await startDialcoreProcess([
    ...sipServer, '--http', `${HOST}:${httpPort}`,
    '--redis', redis.url, '--rtpengine', `${HOST}:${rtpengine.ngPort}`,
    '--realm', REALM, '--log-level', 'warn',
    '--access-number', ACCESS_NUMBER, '--dtmf-events', `${HOST}:${dtmfEventsPort}`, '--prompts-dir', promptsDir,
  ], { DIALCORE_ADMIN_TOKEN: TOKEN, DIALCORE_SECRET: drachtioSecret }, httpBase);
}, 60_000);

afterAll(async () => {
  if (core && core.child.exitCode === null) {
    core.child.kill('SIGKILL');
    await new Promise((resolve) => core.child.once('exit', resolve));
  }
  await drachtioServer?.stop();
  await rtpengine?.stop();
  await redis?.stop();
  if (promptsDir) rmSync(promptsDir, { recursive: true, force: true });
});

describe('dialcore start refuses', () => {
  it('an instance address that is not one of its SIP listeners, naming the field, before starting anything', async () => {
    const port = await freePort();
    const run = spawnSync(process.execPath, [
      fileURLToPath(new URL('../../bin/dialcore.js', import.meta.url)), 'start', '--sip', `udp:${HOST}:${port}`,
      '--instance-address', `tcp:${HOST}:${port}`, '--nonce-secret', 'a-shared-nonce-secret-0123456789',
    ], {
      env: { ...process.env, DIALCORE_FROM_SOURCE: '1', DIALCORE_SECRET: 'cli-test-secret', DIALCORE_ADMIN_TOKEN: TOKEN, DIALCORE_CONFIG: SHIPPED_CONFIG },
      encoding: 'utf8', timeout: 30_000,
    });
    expect(run.status).toBe(1);
    expect(run.stderr).toContain(`cluster.instanceAddress: tcp:${HOST}:${port} is not one of this instance's SIP listeners`);
  }, 40_000);
});

describe('dialcore start', () => {
  let userId = '';

  it('creates a user through the admin API; the password never comes back', async () => {
    const created = await api('POST', '/v1/users', {
      username: 'cli-agent', login: '7001', password: 'cli-phone-pass-1', connectionMethod: 'sip-phone', active: true, maxSessions: 2,
    });
    expect(created.status, created.text).toBe(201);
    userId = (created.json as { id: string }).id;
    expect(created.text).not.toContain('cli-phone-pass-1');
  });

  it('registers a SIPp phone with an MD5 digest REGISTER (the first challenge offered is MD5)', async () => {
    const phone = await runSipp({
      scenario: 'register-auth-uac.xml', target: `${HOST}:${sipPort}`, calls: 1, traceMessages: true, timeoutMs: 15_000,
      inf: { rows: [['7001', 'cli-phone-pass-1', REALM]] },
    });
    expect(phone.stats.successful, phone.errors + (phone.messages ?? '').slice(-1500)).toBe(1);
    const registrations = await api('GET', `/v1/users/${userId}/registrations`);
    expect(registrations.status).toBe(200);
    expect((registrations.json as { registrations: unknown[] }).registrations).toHaveLength(1);
  });

  it('refuses a wrong password with 403 and counts it in /metrics', async () => {
    const phone = await runSipp({
      scenario: 'register-auth-uac.xml', target: `${HOST}:${sipPort}`, calls: 1, traceMessages: true, timeoutMs: 15_000,
      inf: { rows: [['7001', 'not-the-password', REALM]] },
    });
    expect(phone.stats.successful).toBe(0);
    expect(phone.messages).toMatch(/^SIP\/2\.0 403 /m);
    const metrics = await api('GET', '/metrics');
    expect(metrics.status).toBe(200);
    expect(metrics.text).toMatch(/dialcore_register_responses_total\{[^}]*status="200"[^}]*\} [1-9]/);
    expect(metrics.text).toMatch(/dialcore_auth_failures_total\{[^}]*\} [1-9]/);
  });

  it('registers over TCP too; deactivating the user removes its bindings within a second', async () => {
    const phone = await runSipp({
      scenario: 'register-auth-uac.xml', target: `${HOST}:${sipPort}`, transport: 't1', calls: 1, timeoutMs: 15_000, traceMessages: true,
      inf: { rows: [['7001', 'cli-phone-pass-1', REALM]] },
    });
    expect(phone.stats.successful, phone.errors).toBe(1);
    // the 200 lists both bindings (RFC 3261 10.3 step 8); the TCP one goes when SIPp closes its connection
    const ok = (phone.messages ?? '').split(/\r?\n\r?\n/).find((m) => /^SIP\/2\.0 200 /m.test(m)) ?? '';
    expect(ok.match(/^Contact: .*transport=(UDP|TCP)/gim)?.map((c) => /transport=(\w+)/i.exec(c)![1]!.toUpperCase()).sort()).toEqual(['TCP', 'UDP']);
    const before = await api('GET', `/v1/users/${userId}/registrations`);
    expect((before.json as { registrations: unknown[] }).registrations.length, before.text).toBeGreaterThan(0);
    const deactivated = await api('PATCH', `/v1/users/${userId}`, { active: false });
    expect(deactivated.status, deactivated.text).toBe(200);
    const started = Date.now();
    await waitUntil(async () => ((await api('GET', `/v1/users/${userId}/registrations`)).json as { registrations: unknown[] }).registrations.length === 0,
      { timeoutMs: 1000, intervalMs: 50, what: 'bindings removed after deactivation' });
    expect(Date.now() - started).toBeLessThan(1000);
  });

  it('a webrtc user registers over WebSocket; a sip-phone user may not (403 Connection Method Not Allowed)', async () => {
    const created = await api('POST', '/v1/users', {
      username: 'cli-webphone', login: '7002', password: 'cli-web-pass-1', connectionMethod: 'webrtc', active: true,
    });
    expect(created.status, created.text).toBe(201);
    const socket = await registerOverWebSocket({ url: `ws://${HOST}:${wsPort}`, login: '7002', password: 'cli-web-pass-1', realm: REALM, domain: REALM });
    try {
      const registrations = await api('GET', `/v1/users/${(created.json as { id: string }).id}/registrations`);
      expect((registrations.json as { registrations: Array<{ transport: string }> }).registrations.map((r) => r.transport)).toEqual(['ws']);
    } finally {
      socket.terminate();
    }
    const phoneOverUdp = await runSipp({
      scenario: 'register-auth-uac.xml', target: `${HOST}:${sipPort}`, calls: 1, traceMessages: true, timeoutMs: 15_000,
      inf: { rows: [['7002', 'cli-web-pass-1', REALM]] },
    });
    expect(phoneOverUdp.messages).toMatch(/^SIP\/2\.0 403 Connection Method Not Allowed/m);
  });

  it('dial-in: a call to the access number is answered by the login (prompts made at start); the lockouts API answers', async () => {
    expect(readdirSync(join(promptsDir, 'dialin')).filter((f) => f.endsWith('.wav')).length).toBeGreaterThanOrEqual(10);
    const created = await api('POST', '/v1/users', {
      username: 'cli-desk', login: '7003', password: 'cli-desk-pass-1', connectionMethod: 'sip-phone', active: true,
    });
    expect(created.status, created.text).toBe(201);
    const caller = await runSipp({
      scenario: 'call-device-uac.xml', target: `${HOST}:${sipPort}`, calls: 1, timeoutMs: 20_000, extraArgs: ['-d', '1500'],
      inf: { rows: [['7003', 'cli-desk-pass-1', REALM, ACCESS_NUMBER]] },
    });
    expect(caller.stats.successful, caller.errors + core.output()).toBe(1);
    const lockouts = await api('GET', '/v1/dialin/lockouts');
    expect(lockouts.status).toBe(200);
    expect(lockouts.json).toEqual({ lockouts: [], policy: { failures: 10, windowSeconds: 900 } });
  });

  it('SIGTERM drains: a caller in the dial-in login is a live call (not cut off); then exit code 0 within the bound', async () => {
    // the desk user of the dial-in test calls the access number and hangs up itself after 3 s; a
    // drain that did not count it would stop at once and BYE it (the scenario then fails)
    const caller = runSipp({
      scenario: 'call-device-uac.xml', target: `${HOST}:${sipPort}`, calls: 1, timeoutMs: 20_000, extraArgs: ['-d', '3000'],
      inf: { rows: [['7003', 'cli-desk-pass-1', REALM, ACCESS_NUMBER]] },
    });
    await new Promise((resolve) => setTimeout(resolve, 1500)); // answered and in the login by now (set-up takes ms)
    const exited = new Promise<number | null>((resolve) => core.child.once('exit', (code) => resolve(code)));
    core.child.kill('SIGTERM');
    const result = await caller;
    expect(result.stats.successful, result.errors + core.output()).toBe(1);
    const code = await Promise.race([exited, new Promise<string>((resolve) => setTimeout(() => resolve('timeout'), 8000))]);
    expect(code, core.output()).toBe(0);
  });
});
