/**
 * Carrier gateway OPTIONS monitoring through the edge: a SIPp gateway that answers stays up, a
 * gateway whose TCP port refuses connections is marked down after two failed probes and comes
 * back when it answers again; rankOutboundGateways then skips the down one.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startSippServer, freePort } from '../harness/index.js';
import { startStack, type TestStack } from '../fixtures/stack.js';
import { GatewayChannels, GatewayMonitor, probeSucceeded } from '../../src/app/calls/index.js';
import { rankOutboundGateways, validateCarrierConfig, type OutboundGateway } from '../../src/app/carriers/index.js';
import type { Srf } from '../../src/app/sip/srf.js';

function gateways(raw: unknown[]): OutboundGateway[] {
  const v = validateCarrierConfig({ outboundGateways: raw, inboundTrunks: [] });
  if (!v.ok) throw new Error(JSON.stringify(v.errors));
  return v.config.outboundGateways;
}

describe('gateway OPTIONS monitoring', () => {
  let stack: TestStack;
  let srf: Srf;
  beforeAll(async () => {
    stack = await startStack();
    srf = await stack.connectApp();
  });
  afterAll(async () => {
    await stack?.stop();
  });

  it('classifies probe answers: 2xx-4xx alive, 408/5xx/6xx/none not', () => {
    expect([200, 404, 405, 483].every(probeSucceeded)).toBe(true);
    expect([0, 408, 500, 503, 603].some(probeSucceeded)).toBe(false);
  });

  it('keeps an answering gateway up, marks a refusing one down after two failures, and back up when it answers', async () => {
    const uas = await startSippServer({ scenario: 'options-uas.xml', transport: 't1' });
    const deadPort = await freePort();
    try {
      const [alive, dead] = gateways([
        { name: 'alive', host: '127.0.0.1', port: uas.port, transport: 'tcp', priority: 1, optionsIntervalSeconds: 30 },
        { name: 'dead', host: '127.0.0.1', port: deadPort, transport: 'tcp', priority: 10, optionsIntervalSeconds: 30 },
      ]);
      const channels = new GatewayChannels();
      const monitor = new GatewayMonitor(srf, [alive, dead], channels, { timeoutMs: 3000, failuresBeforeDown: 2 });
      expect(await monitor.probe(alive)).toBe(200);
      expect(await monitor.probe(dead)).toBe(503);
      expect(channels.health.get('dead')?.up ?? true).toBe(true); // one failure is not enough
      expect(await monitor.probe(dead)).toBe(503);
      expect(channels.health.get('dead')?.up).toBe(false);
      expect(channels.health.get('alive')?.up).toBe(true);
      // the down gateway (higher priority) is skipped for calls
      expect(rankOutboundGateways('+442071234567', [alive, dead], channels.health).map((g) => g.name)).toEqual(['alive']);
      // the dead gateway comes back (now pointing at the live SIPp): one good answer marks it up
      const revived = { ...dead, port: uas.port };
      expect(await monitor.probe(revived)).toBe(200);
      expect(channels.health.get('dead')?.up).toBe(true);
      monitor.stop();
    } finally {
      await uas.stop();
    }
  });
});
