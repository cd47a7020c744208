/**
 * Graceful drain of `dialcore start` on SIGTERM: new REGISTERs, INVITEs and OPTIONS get 503 with
 * Retry-After and the control API refuses new calls, while a live agent session goes on; /readyz
 * turns 503 (load balancers stop sending) while /livez stays 200. Once the drain limit passes, the
 * session is ended (BYE to the agent's PBX) and the process exits 0.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freePort, runSipp, startRedis, startRtpengine, startSippServer, waitUntil, type RedisServer, type RtpengineServer, type SippServer } from '../harness/index.js';
import { startLoopbackCore, type DialcoreProcess } from '../fixtures/cli-process.js';
import { receivedRequest } from '../calls/sipp-trace.js';

const HOST = '127.0.0.1';
const TOKEN = 'drain-test-admin-token-0123456789';
const DRAIN_SECONDS = 4;

let redis: RedisServer;
let rtpengine: RtpengineServer;
let core: DialcoreProcess;
let pbx: SippServer;
let sipPort = 0;

const api = (method: string, path: string, body?: unknown) => core.api(method, path, body);

beforeAll(async () => {
  redis = await startRedis();
  rtpengine = await startRtpengine();
  ({ core, sipPort } = await startLoopbackCore({
    redis: ['--redis', redis.url], rtpengineNgPort: rtpengine.ngPort, token: TOKEN,
    extraArgs: ['--drain-seconds', String(DRAIN_SECONDS), '--log-level', 'warn'],
  }));
}, 60_000);

afterAll(async () => {
  await core?.stop();
  await pbx?.stop(1000);
  await rtpengine?.stop();
  await redis?.stop();
});

describe('graceful drain on SIGTERM', () => {
  let agentId = '';

  it('reports each dependency on /healthz, and is ready before the signal', async () => {
    const health = await api('GET', '/healthz');
    expect(health).toMatchObject({ status: 200, json: { status: 'ok', redis: 'ok', sip: 'ok', rtpengine: 'ok', draining: false } });
    expect((await api('GET', '/readyz')).status).toBe(200);
    expect((await api('GET', '/livez')).status).toBe(200);
  });

  it('keeps a live agent session through the drain, refuses new work, and exits 0 after the limit', async () => {
    const pbxPort = await freePort();
    pbx = await startSippServer({ scenario: 'uas', localPort: pbxPort, traceMessages: true, timeoutMs: 60_000 });
    const created = await api('POST', '/v1/users', {
      username: 'drain-agent', login: '7301', password: 'drain-pass-1', connectionMethod: 'sip-address',
      sipAddress: { uri: `sip:2001@${HOST}:${pbxPort}` },
    });
    expect(created.status).toBe(201);
    agentId = created.json.id as string;
    expect((await api('POST', `/v1/agents/${agentId}/session`, {})).status).toBe(201);
    await waitUntil(async () => (await api('GET', `/v1/agents/${agentId}/session`)).json.state === 'ready', { timeoutMs: 10_000, what: 'agent session ready' });

    const exited = new Promise<number | null>((resolve) => core.child.once('exit', (code) => resolve(code)));
    const signalledAt = Date.now();
    core.child.kill('SIGTERM');
    await waitUntil(async () => (await api('GET', '/readyz')).status === 503, { timeoutMs: 2000, what: '/readyz 503 while draining' });
    expect((await api('GET', '/readyz')).json).toMatchObject({ status: 'not-ready', draining: true });
    expect((await api('GET', '/livez')).status).toBe(200);

    // SIP: OPTIONS, REGISTER and a new INVITE are refused with 503 and Retry-After (RFC 3261 §21.5.4)
    const options = await runSipp({ scenario: 'options-uac.xml', target: `${HOST}:${sipPort}`, calls: 1, traceMessages: true, timeoutMs: 5000 });
    expect(options.messages).toMatch(/^SIP\/2\.0 503 /m);
    expect(options.messages).toMatch(/^Retry-After: \d+/m);
    const register = await runSipp({
      scenario: 'register-auth-uac.xml', target: `${HOST}:${sipPort}`, calls: 1, traceMessages: true, timeoutMs: 5000,
      inf: { rows: [['7301', 'drain-pass-1', 'dialcore']] },
    });
    expect(register.messages).toMatch(/^SIP\/2\.0 503 /m);
    const invite = await runSipp({ scenario: 'uac', target: `${HOST}:${sipPort}`, calls: 1, traceMessages: true, timeoutMs: 5000 });
    expect(invite.stats.successful).toBe(0);
    expect(invite.messages).toMatch(/^SIP\/2\.0 503 /m);

    // the control API refuses new sessions and calls; the live session is still up
    const call = await api('POST', '/v1/calls', { agent: agentId, to: '+442071234567' });
    expect(call.status).toBe(503);
    expect((await api('GET', `/v1/agents/${agentId}/session`)).json.state).toBe('ready');

    // the limit passes: the session is ended (BYE to the PBX) and the process exits 0
    expect(await exited).toBe(0);
    expect(Date.now() - signalledAt).toBeGreaterThanOrEqual(DRAIN_SECONDS * 1000 - 500);
    const pbxResult = await pbx.stop(3000);
    expect(receivedRequest(pbxResult.messages, 'BYE')).toBeDefined();
  });
});
