/**
 * A WebRTC agent (real headless chromium, JsSIP over WSS) in an agent session: the core INVITEs
 * the browser once; customer calls are bridged into that one call by rtpengine re-offers (no new
 * INVITE to the browser), with audio both ways (browser getStats, rtpengine counters).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freePort, startSippServer, waitUntil, type SippServer } from '../harness/index.js';
import { startBrowser, type Webphone, type WebphoneBrowser } from '../harness/browser.js';
import { DOMAIN } from '../calls/call-stack.js';
import { useAgentStack, type AgentStack } from './agent-stack.js';

let st: AgentStack;
let browser: WebphoneBrowser;
const servers: SippServer[] = [];
const phones: Webphone[] = [];
useAgentStack((started) => (st = started), servers, { protocols: ['udp', 'tcp', 'wss'], tls: 'self-signed' });

beforeAll(async () => {
  browser = await startBrowser();
}, 120_000);

afterAll(async () => {
  await Promise.all(phones.splice(0).map((p) => p.close()));
  await browser?.close();
}, 60_000);

describe('webrtc agent session', () => {
  it('connects the browser once, bridges a customer call into it with audio both ways, and ends it', async () => {
    const wss = st.cs.stack.addresses.sip.find((l) => l.protocol === 'wss')!;
    const user = await st.cs.createUser({ connectionMethod: 'webrtc' });
    const phone = await browser.newWebphone(user.login);
    phones.push(phone);
    await phone.register({ wsUrl: `wss://127.0.0.1:${wss.port}`, sipUri: `sip:${user.login}@${DOMAIN}`, password: user.password, autoAnswer: true });
    expect((await st.api('POST', `/v1/agents/${user.id}/session`, { autoAnswer: true })).status).toBe(201);
    await waitUntil(async () => (await st.api('GET', `/v1/agents/${user.id}/session`)).body?.state === 'ready', { timeoutMs: 15_000, what: 'agent ready' });

    const gwPort = await freePort();
    servers.push(await startSippServer({ scenario: 'uas-answer-rtp.xml', localPort: gwPort, timeoutMs: 60_000 }));
    st.cs.carriers.outboundGateways.push(st.cs.gateway('gw-a', gwPort));
    const placed = await st.api('POST', '/v1/calls', { agent: user.id, to: '+442071234567' });
    expect(placed.status).toBe(201);
    await waitUntil(async () => (await st.api('GET', `/v1/calls/${placed.body.id}`)).body?.state === 'bridged', { timeoutMs: 15_000, what: 'bridged' });

    const stats = await phone.waitForMedia({ minPacketsSent: 50, minPacketsReceived: 50, timeoutMs: 15_000 });
    expect(stats.dtlsState).toBe('connected');
    expect(stats.totalAudioEnergy, 'the customer audio decodes to sound in the browser').toBeGreaterThan(0);
    for (const id of st.cs.media.callIds()) {
      const perLeg = await st.cs.packetsByLeg(id);
      expect(Math.min(...perLeg), `rtpengine packets per leg of ${id}`).toBeGreaterThan(20);
    }
    const invites = (await phone.receivedSipMessages()).filter((m) => /^INVITE /.test(m));
    expect(invites, 'one INVITE to the browser: the customer is bridged without another').toHaveLength(1);

    await st.api('POST', `/v1/calls/${placed.body.id}/hangup`);
    await waitUntil(async () => (await st.api('GET', `/v1/agents/${user.id}/session`)).body?.state === 'ready', { timeoutMs: 5_000, what: 'ready again' });
    expect((await st.api('DELETE', `/v1/agents/${user.id}/session`)).status).toBe(204);
    await waitUntil(async () => (await phone.receivedSipMessages()).some((m) => /^BYE /.test(m)), { timeoutMs: 5_000, what: 'BYE in the browser' });
  }, 60_000);
});
