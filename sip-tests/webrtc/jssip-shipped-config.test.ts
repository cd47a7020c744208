/**
 * A real JsSIP webphone (headless chromium) against `dialcore start` with the shipped config file:
 * the digest challenge it gets must be one JsSIP answers. JsSIP 3.x keeps only the last
 * WWW-Authenticate of a 401 and aborts unless it is MD5, so a 401 offering MD5 then SHA-256 failed
 * every browser registration ("Authentication Error") while SIPp and raw clients registered fine.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freePort, startRedis, startRtpengine, type RedisServer, type RtpengineServer } from '../harness/index.js';
import { startBrowser, type WebphoneBrowser } from '../harness/browser.js';
import { startLoopbackCore, type DialcoreProcess } from '../fixtures/cli-process.js';
import { makeSelfSignedCert } from '../fixtures/stack.js';

const HOST = '127.0.0.1';
const TOKEN = 'jssip-test-admin-token-0123456789';

let redis: RedisServer;
let rtpengine: RtpengineServer;
let core: DialcoreProcess;
let browser: WebphoneBrowser;
let wssPort = 0;

beforeAll(async () => {
  redis = await startRedis();
  rtpengine = await startRtpengine();
  wssPort = await freePort();
  const cert = makeSelfSignedCert();
  ({ core } = await startLoopbackCore({
    redis: ['--redis', redis.url], rtpengineNgPort: rtpengine.ngPort, token: TOKEN,
    sipListeners: (sipPort) => [`udp:${HOST}:${sipPort}`, `wss:${HOST}:${wssPort}`],
    extraArgs: ['--tls-cert', cert.certFile, '--tls-key', cert.keyFile, '--log-level', 'warn'],
  }));
  browser = await startBrowser();
}, 120_000);

afterAll(async () => {
  await browser?.close();
  await core?.stop();
  await rtpengine?.stop();
  await redis?.stop();
}, 60_000);

describe('JsSIP webphone against the shipped configuration', () => {
  it('registers over WSS with the digest challenge dialcore offers by default', async () => {
    const created = await core.api('POST', '/v1/users', { username: 'jssip-agent', login: '7601', password: 'jssip-pass-1', connectionMethod: 'webrtc', active: true });
    expect(created.status).toBe(201);
    const phone = await browser.newWebphone('jssip');
    try {
      await phone.register({ wsUrl: `wss://${HOST}:${wssPort}`, sipUri: 'sip:7601@dialcore', password: 'jssip-pass-1' });
      const listed = await core.api('GET', `/v1/users/${created.json.id as string}/registrations`);
      expect((listed.json.registrations as Array<{ transport: string }>).map((r) => r.transport)).toEqual(['wss']);
    } finally {
      await phone.close();
    }
  });
});
