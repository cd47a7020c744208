/**
 * OPTIONS health of customers' PBXs (issue 15 item 5), on real peers: every active sip-address user's PBX URI
 * is probed like a carrier gateway; a SIPp PBX answering OPTIONS is up, a port where nothing answers is down
 * after two failed probes, a PBX that stops answering goes down; the state is in the admin API and metrics.
 */
import { describe, expect, it } from 'vitest';
import { freePort, startSippServer, waitUntil, type SippServer } from '../harness/index.js';
import { useCallStack, type CallStack } from './call-stack.js';
import { receivedMessages } from './sipp-trace.js';
import { PbxMonitor, pbxHealthRoutes, type PbxHealth } from '../../src/app/calls/pbx-monitor.js';
import { startAdminApi } from '../../src/app/admin/server.js';
import { metricsRegistry } from '../../src/app/observability/metrics.js';

let cs: CallStack;
const servers: SippServer[] = [];
useCallStack((started) => (cs = started), servers);

const TOKEN = 'pbx-health-admin-token-0123456789';

describe('customer PBX health by OPTIONS', () => {
  it('up while the PBX answers, down when it stops or never answers; in the admin API and metrics', async () => {
    const livePort = await freePort();
    const deadPort = await freePort();
    const live = await cs.createUser({ connectionMethod: 'sip-address', sipAddress: { uri: `sip:2001@127.0.0.1:${livePort}`, username: null, password: null } });
    const dead = await cs.createUser({ connectionMethod: 'sip-address', sipAddress: { uri: `sip:2002@127.0.0.1:${deadPort}`, username: null, password: null } });
    const inactive = await cs.createUser({ connectionMethod: 'sip-address', sipAddress: { uri: `sip:2003@127.0.0.1:${deadPort}`, username: null, password: null } });
    await cs.services.store.setActive(inactive.id, false);
    const phoneUser = await cs.createUser({});
    const pbx = await startSippServer({ scenario: 'options-uas.xml', localPort: livePort, traceMessages: true });
    servers.push(pbx);

    const monitor = new PbxMonitor(cs.srf, cs.services.store, { intervalMs: 300, timeoutMs: 250, failuresBeforeDown: 2 });
    const admin = await startAdminApi({ ...cs.services.adminApiOptions, token: TOKEN, host: '127.0.0.1', port: 0, routes: pbxHealthRoutes(monitor) });
    const get = async (path: string): Promise<{ status: number; body: unknown }> => {
      const res = await fetch(`http://127.0.0.1:${admin.port}${path}`, { headers: { authorization: `Bearer ${TOKEN}` } });
      return { status: res.status, body: await res.json() };
    };
    monitor.start();
    try {
      await waitUntil(() => monitor.health(live.id)?.up === true && monitor.health(dead.id)?.up === false, { timeoutMs: 5000, what: 'live up, dead down' });
      expect(monitor.health(live.id)).toMatchObject({ uri: `sip:2001@127.0.0.1:${livePort}`, lastStatus: 200, failures: 0 });
      expect(monitor.health(dead.id)).toMatchObject({ lastStatus: 0 });
      expect(monitor.health(inactive.id), 'inactive users are not probed').toBeUndefined();
      expect(monitor.health(phoneUser.id), 'only sip-address users').toBeUndefined();

      const list = await get('/v1/pbx-health');
      expect(list.status).toBe(200);
      const pbxs = (list.body as { pbxs: PbxHealth[] }).pbxs;
      expect(pbxs.map((p) => [p.userId, p.up]).sort()).toEqual([[dead.id, false], [live.id, true]].sort());
      expect((await get(`/v1/users/${live.id}/pbx-health`)).body).toMatchObject({ userId: live.id, up: true });
      expect((await get(`/v1/users/${phoneUser.id}/pbx-health`)).status).toBe(404);
      const metrics = await metricsRegistry.getSingleMetricAsString('dialcore_pbx_health');
      expect(metrics).toMatch(/dialcore_pbx_health\{state="up"\} 1/);
      expect(metrics).toMatch(/dialcore_pbx_health\{state="down"\} 1/);

      // the PBX goes away: down after two unanswered probes
      const answered = await pbx.stop(1000);
      servers.splice(0);
      expect(receivedMessages(answered.messages).find((m) => m.startsWith('OPTIONS '))?.split(/\r?\n/)[0]).toBe(`OPTIONS sip:2001@127.0.0.1:${livePort} SIP/2.0`);
      await waitUntil(() => monitor.health(live.id)?.up === false, { timeoutMs: 5000, what: 'live PBX down' });
    } finally {
      monitor.stop();
      await admin.close();
    }
  });
});
