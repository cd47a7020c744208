/**
 * `dialcore start --app-workers 2` without --nonce-secret: the edge shares requests between the two
 * app processes round robin, so a REGISTER's challenge and its authenticated retry usually land on
 * different workers. Both must sign nonces with one key, or every retry is challenged again.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runSipp, startRedis, waitUntil, startRtpengine, type RedisServer, type RtpengineServer } from '../harness/index.js';
import { startLoopbackCore, type DialcoreProcess } from '../fixtures/cli-process.js';

const HOST = '127.0.0.1';
const TOKEN = 'workers-test-admin-token-0123456789';
const REALM = 'dialcore';

let redis: RedisServer;
let rtpengine: RtpengineServer;
let core: DialcoreProcess;
let sipPort = 0;

beforeAll(async () => {
  redis = await startRedis();
  rtpengine = await startRtpengine();
  ({ core, sipPort } = await startLoopbackCore({
    redis: ['--redis', redis.url], rtpengineNgPort: rtpengine.ngPort, token: TOKEN,
    extraArgs: ['--app-workers', '2', '--realm', REALM, '--log-level', 'info'],
  }));
}, 60_000);

afterAll(async () => {
  await core?.stop();
  await rtpengine?.stop();
  await redis?.stop();
});

describe('dialcore start --app-workers 2', () => {
  it('answers every digest retry, whichever worker challenged it', async () => {
    const created = await core.api('POST', '/v1/users', { username: 'worker-agent', login: '7101', password: 'worker-pass-1', connectionMethod: 'sip-phone', active: true });
    expect(created.status).toBe(201);
    // the second app worker connects to the edge after the first: wait until both have
    await waitUntil(async () => (core.output().match(/core connected to SIP server/g) ?? []).length >= 2, { timeoutMs: 20_000, what: 'both app workers connected' });
    const phone = await runSipp({
      scenario: 'register-auth-uac.xml', target: `${HOST}:${sipPort}`, calls: 20, rate: 10, timeoutMs: 20_000, traceMessages: true,
      inf: { rows: [['7101', 'worker-pass-1', REALM]] },
    });
    expect(phone.stats.successful, phone.errors + (phone.messages ?? '').slice(-1500)).toBe(20);
    expect(phone.stats.failed).toBe(0);
  });
});
