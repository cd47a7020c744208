/**
 * Several dialcore instances on one Redis (each `dialcore start` as shipped, on its own loopback
 * address): a browser webphone registers over WSS with instance A; a carrier's call for it
 * arrives at instance B, which holds no connection to the browser. B sends the call to A (the
 * instance its binding names), A relays it over the browser's WebSocket, and the audio flows
 * both ways through B's rtpengine. A kick sent to instance C's API ends the call and the
 * registration wherever they live. A is reached by the others over TCP (it has no UDP listener), B
 * and C over UDP.
 */
import { writeFileSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createClient } from 'redis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freePort, runSipp, startRedis, startRtpengine, startSippServer, waitUntil, type RedisServer, type RtpengineServer, type SippServer } from '../harness/index.js';
import { startBrowser, type Webphone, type WebphoneBrowser } from '../harness/browser.js';
import { startLoopbackCore, type DialcoreProcess } from '../fixtures/cli-process.js';
import { makeSelfSignedCert } from '../fixtures/stack.js';
import { headerValues } from '../calls/sipp-trace.js';
import { CARRIER_IP } from '../calls/call-stack.js';

const TOKEN = 'cluster-test-admin-token-0123456789';
const NONCE_SECRET = 'cluster-test-shared-nonce-secret-0123';
const REALM = 'dialcore';
const DID = '442071239000';

interface Instance { name: string; ip: string; sipPort: number; wssPort: number; httpBase: string; process: DialcoreProcess }

let redis: RedisServer;
let rtpengine: RtpengineServer;
let browser: WebphoneBrowser;
let dir: string;
/** the customers' carrier for calls the dialer places (answers with RTP) */
let gateway: SippServer;
let gatewayPort = 0;
const instances: Instance[] = [];

/** dialcore_forwarded_relays_live on an instance's /metrics */
async function relaysLive(instance: Instance): Promise<number> {
  const text = await (await fetch(`${instance.httpBase}/metrics`, { headers: { authorization: `Bearer ${TOKEN}` } })).text();
  const line = /^dialcore_forwarded_relays_live (\d+)$/m.exec(text);
  if (!line) throw new Error('no dialcore_forwarded_relays_live in /metrics');
  return Number(line[1]);
}

/**
 * `reachedOver: 'tcp'`: the instance has no UDP SIP listener and tells the others to reach it over TCP
 * (`--instance-address tcp:ip:port`): a call forwarded to it over UDP could not arrive.
 */
async function startInstance(name: string, ip: string, configFile: string, cert: { certFile: string; keyFile: string }, reachedOver: 'udp' | 'tcp' = 'udp'): Promise<Instance> {
  const sipPort = await freePort();
  const wssPort = await freePort();
  const { core, httpBase } = await startLoopbackCore({
    host: ip, sipPort, redis: ['--redis', redis.url], rtpengineNgPort: rtpengine.ngPort, token: TOKEN, env: { DIALCORE_CONFIG: configFile },
    sipListeners: (port) => [...(reachedOver === 'udp' ? [`udp:${ip}:${port}`] : []), `tcp:${ip}:${port}`, `wss:${ip}:${wssPort}`],
    extraArgs: [
      '--tls-cert', cert.certFile, '--tls-key', cert.keyFile, '--realm', REALM, '--domain', REALM,
      '--nonce-secret', NONCE_SECRET, '--instance-address', `${reachedOver}:${ip}:${sipPort}`, '--log-level', 'warn',
    ],
  });
  return { name, ip, sipPort, wssPort, httpBase, process: core };
}

beforeAll(async () => {
  redis = await startRedis();
  rtpengine = await startRtpengine();
  dir = mkdtempSync(join(tmpdir(), 'dialcore-cluster-'));
  gatewayPort = await freePort();
  gateway = await startSippServer({ scenario: 'uas-answer-rtp.xml', localPort: gatewayPort, timeoutMs: 300_000 });
  const configFile = join(dir, 'dialcore.jsonc');
  writeFileSync(configFile, JSON.stringify({
    carriers: { outboundGateways: [{ name: 'gw', host: '127.0.0.1', port: gatewayPort, transport: 'udp' }], inboundTrunks: [{ name: 'carrier', sources: [`${CARRIER_IP}/32`], didLookup: 'redis' }] },
    dialPlans: { default: { defaultCountryCode: '44' } },
  }));
  const cert = makeSelfSignedCert();
  for (const [name, ip] of [['a', '127.0.0.3'], ['b', '127.0.0.4'], ['c', '127.0.0.5']] as const) {
    // A is reached over TCP only (the WebRTC INVITE B forwards to it is ~3 KB: RFC 3261 §18.1.1); B and C over UDP
    instances.push(await startInstance(name, ip, configFile, cert, name === 'a' ? 'tcp' : 'udp'));
  }
  browser = await startBrowser();
}, 120_000);

afterAll(async () => {
  await browser?.close();
  await Promise.all(instances.map((i) => i.process.stop()));
  await gateway?.stop(1000);
  await rtpengine?.stop();
  await redis?.stop();
  if (dir) rmSync(dir, { recursive: true, force: true });
}, 60_000);

describe('several instances on one Redis', () => {
  let phone: Webphone;
  let userId = '';

  it('a browser on instance A answers a carrier call that arrived at instance B, with audio both ways; a kick from instance C ends it', async () => {
    const [a, b, c] = instances as [Instance, Instance, Instance];
    const created = await a.process.api('POST', '/v1/users', { username: 'cluster-agent', login: '7501', password: 'cluster-pass-1', connectionMethod: 'webrtc', active: true });
    expect(created.status).toBe(201);
    userId = created.json.id as string;
    const client = createClient({ url: redis.url });
    await client.connect();
    await client.set(`dc:did:${DID}`, userId);
    await client.quit();

    phone = await browser.newWebphone('cluster');
    await phone.register({ wsUrl: `wss://${a.ip}:${a.wssPort}`, sipUri: `sip:7501@${REALM}`, password: 'cluster-pass-1', autoAnswer: true });
    // every instance sees the binding, held by A
    const listed = await b.process.api('GET', `/v1/users/${userId}/registrations`);
    expect((listed.json.registrations as Array<{ transport: string }>).map((r) => r.transport)).toEqual(['wss']);

    const carrier = runSipp({
      scenario: 'call-carrier-uac.xml', target: `${b.ip}:${b.sipPort}`, service: DID, calls: 1, traceMessages: true, timeoutMs: 40_000,
      keys: { caller: '+447700900123', caller_national: '07700900123' },
      extraArgs: ['-i', CARRIER_IP, '-mi', CARRIER_IP, '-d', '30000'],
    });
    const incoming = await phone.waitForIncoming(15_000);
    await phone.waitForConfirmed(incoming.id, 10_000);
    const stats = await phone.waitForMedia({ minPacketsSent: 50, minPacketsReceived: 50, timeoutMs: 15_000 });
    expect(stats.dtlsState).toBe('connected');
    expect(stats.totalAudioEnergy).toBeGreaterThan(0);
    // the INVITE reached the browser from A (its WSS Via), relayed for B
    const invite = (await phone.receivedSipMessages()).find((m) => m.startsWith('INVITE '))!;
    expect(headerValues(invite, 'Via')[0]).toMatch(/^SIP\/2\.0\/WSS /);
    expect(invite).not.toMatch(/X-Dialcore-Forward/i);
    // A relays it (counted there), B placed it
    expect(await relaysLive(a)).toBe(1);
    expect(await relaysLive(b)).toBe(0);

    // kick from C: deactivate ends the call (BYE towards the carrier) and removes the binding
    expect((await c.process.api('POST', `/v1/users/${userId}/deactivate`)).status).toBe(200);
    const ended = await phone.waitForEnd(incoming.id, 5_000);
    expect(ended.status).toBe('ended');
    const result = await carrier;
    expect(result.messages).toMatch(/^BYE /m);
    await waitUntil(async () => ((await a.process.api('GET', `/v1/users/${userId}/registrations`)).json.registrations as unknown[]).length === 0,
      { timeoutMs: 2000, what: 'binding removed' });
    expect(await relaysLive(a)).toBe(0);
  }, 90_000);

  it('a control command sent to any instance is carried out by the instance that owns the session', async () => {
    const [a, b, c] = instances as [Instance, Instance, Instance];
    const created = await a.process.api('POST', '/v1/users', { username: 'cluster-agent-3', login: '7503', password: 'cluster-pass-3', connectionMethod: 'webrtc', active: true });
    expect(created.status).toBe(201);
    const id = created.json.id as string;
    const agentPhone = await browser.newWebphone('cluster-3');
    await agentPhone.register({ wsUrl: `wss://${a.ip}:${a.wssPort}`, sipUri: `sip:7503@${REALM}`, password: 'cluster-pass-3', autoAnswer: true });

    // the session is started through C: C owns it (its call reaches the browser through A)
    expect((await c.process.api('POST', `/v1/agents/${id}/session`, { autoAnswer: true })).status).toBe(201);
    await waitUntil(async () => (await b.process.api('GET', `/v1/agents/${id}/session`)).json.state === 'ready', { timeoutMs: 15_000, what: 'agent ready' });
    const session = await b.process.api('GET', `/v1/agents/${id}/session`);
    expect(session.json.instance).toBeTruthy();
    expect(session.json.instance).toBe((await c.process.api('GET', `/v1/agents/${id}/session`)).json.instance);

    // the dialer asks B for a customer call: B hands the command to C, which places and bridges it
    const placed = await b.process.api('POST', '/v1/calls', { agent: id, to: '+442071234567' });
    expect(placed.status, JSON.stringify(placed.json)).toBe(201);
    const callId = placed.json.id as string;
    await waitUntil(async () => (await a.process.api('GET', `/v1/calls/${callId}`)).json.state === 'bridged', { timeoutMs: 15_000, what: 'customer bridged' });
    const media = await agentPhone.waitForMedia({ minPacketsSent: 50, minPacketsReceived: 50, timeoutMs: 15_000 });
    expect(media.totalAudioEnergy, 'the customer is heard in the browser').toBeGreaterThan(0);
    // hold from A, hang-up from B: each carried out by C
    expect((await a.process.api('POST', `/v1/calls/${callId}/hold`)).status).toBe(200);
    await waitUntil(async () => (await c.process.api('GET', `/v1/calls/${callId}`)).json.state === 'held', { timeoutMs: 5000, what: 'held' });
    expect((await b.process.api('POST', `/v1/calls/${callId}/hangup`)).status).toBe(200);
    await waitUntil(async () => (await c.process.api('GET', `/v1/agents/${id}/session`)).json.state === 'ready', { timeoutMs: 5000, what: 'agent ready again' });

    // a command that was already forwarded once is not forwarded again: 409 naming the owner
    const looped = await fetch(`${b.httpBase}/v1/agents/${id}/session`, { method: 'DELETE', headers: { authorization: `Bearer ${TOKEN}`, 'x-dialcore-forwarded-by': 'test' } });
    expect(looped.status).toBe(409);
    expect(((await looped.json()) as { error?: { apiUrl?: string } }).error?.apiUrl).toBe(c.httpBase);
    // ending the session through A: the browser gets the BYE
    expect((await a.process.api('DELETE', `/v1/agents/${id}/session`)).status).toBe(204);
    await waitUntil(async () => (await agentPhone.receivedSipMessages()).some((m) => /^BYE /.test(m)), { timeoutMs: 5000, what: 'BYE in the browser' });
    await agentPhone.close();
  }, 90_000);

  it('an instance that dies takes its registrations with it: a call for them gets 480 at once, not a forward into the void', async () => {
    const [a, b] = instances as [Instance, Instance];
    const created = await b.process.api('POST', '/v1/users', { username: 'cluster-agent-2', login: '7502', password: 'cluster-pass-2', connectionMethod: 'webrtc', active: true });
    expect(created.status).toBe(201);
    const id = created.json.id as string;
    const client = createClient({ url: redis.url });
    await client.connect();
    await client.set(`dc:did:${DID}2`, id);
    await client.quit();
    const second = await browser.newWebphone('cluster-2');
    await second.register({ wsUrl: `wss://${a.ip}:${a.wssPort}`, sipUri: `sip:7502@${REALM}`, password: 'cluster-pass-2', autoAnswer: true });

    a.process.child.kill('SIGKILL');
    await new Promise((resolve) => a.process.child.once('exit', resolve));
    // the binding outlives the instance in Redis (until its expiry), but its holder's heartbeat lapses
    expect(((await b.process.api('GET', `/v1/users/${id}/registrations`)).json.registrations as unknown[]).length).toBe(1);
    await new Promise((resolve) => setTimeout(resolve, 7000));
    const startedAt = Date.now();
    const carrier = await runSipp({
      scenario: 'call-carrier-uac.xml', target: `${b.ip}:${b.sipPort}`, service: `${DID}2`, calls: 1, traceMessages: true, timeoutMs: 20_000,
      keys: { caller: '+447700900124', caller_national: '07700900124' },
      extraArgs: ['-i', CARRIER_IP, '-mi', CARRIER_IP],
    });
    expect(carrier.stats.successful).toBe(0);
    expect(carrier.messages).toMatch(/^SIP\/2\.0 480 /m);
    expect(Date.now() - startedAt).toBeLessThan(5000);
    await second.close();
  }, 60_000);
});
