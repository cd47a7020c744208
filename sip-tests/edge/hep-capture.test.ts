/**
 * HEP3 capture end to end: the embedded edge sends every SIP message it receives and sends to a
 * capture server (here a UDP socket on loopback standing in for Homer's heplify-server), with the
 * addresses and ports as on the wire and the Call-ID as correlation id.
 */
import dgram from 'node:dgram';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runSipp, waitUntil } from '../harness/index.js';
import { startEdgeStack, type TestStack } from '../fixtures/stack.js';
import { decodeHep3 } from '../../src/edge/capture/test-support.js';
import { HepChunk } from '../../src/edge/capture/hep.js';

interface Captured { source: string; destination: string; correlationId: string; payload: string; agentId: number; transport: number }

describe('HEP3 capture of the edge', () => {
  let stack: TestStack;
  let collector: dgram.Socket;
  const captured: Captured[] = [];

  beforeAll(async () => {
    collector = dgram.createSocket('udp4');
    await new Promise<void>((resolve) => collector.bind(0, '127.0.0.1', () => resolve()));
    collector.on('message', (msg) => {
      const hep = decodeHep3(msg);
      const ip = (type: number) => [...hep.chunks.get(type)!].join('.');
      captured.push({
        source: `${ip(HepChunk.ipv4Source)}:${hep.chunks.get(HepChunk.sourcePort)!.readUInt16BE(0)}`,
        destination: `${ip(HepChunk.ipv4Destination)}:${hep.chunks.get(HepChunk.destinationPort)!.readUInt16BE(0)}`,
        correlationId: hep.chunks.get(HepChunk.correlationId)?.toString() ?? '',
        payload: hep.chunks.get(HepChunk.payload)!.toString('latin1'),
        agentId: hep.chunks.get(HepChunk.captureAgentId)!.readUInt32BE(0),
        transport: hep.chunks.get(HepChunk.ipProtocol)!.readUInt8(0),
      });
    });
    stack = await startEdgeStack({ protocols: ['udp', 'tcp'], hep: { host: '127.0.0.1', port: collector.address().port, agentId: 4242 } });
    const app = await stack.connectApp();
    app.options((_req, res) => res.send(200, { headers: { 'X-App': 'hep' } }));
  });
  afterAll(async () => {
    await stack?.stop();
    collector?.close();
  });

  it('captures each request received and each response sent, both ways, with the Call-ID', async () => {
    const r = await runSipp({ scenario: 'options-uac.xml', target: stack.target, calls: 3, rate: 10, traceMessages: true });
    expect(r.stats.successful).toBe(3);
    const callIds = [...(r.messages ?? '').matchAll(/^Call-ID: *(\S+)/gim)].map((m) => m[1]!);
    const unique = [...new Set(callIds)];
    expect(unique).toHaveLength(3);
    await waitUntil(async () => captured.length >= 6, { timeoutMs: 3000, what: 'six HEP packets' });
    for (const callId of unique) {
      const ofCall = captured.filter((c) => c.correlationId === callId);
      const request = ofCall.find((c) => c.payload.startsWith('OPTIONS '));
      const response = ofCall.find((c) => c.payload.startsWith('SIP/2.0 200'));
      expect(request, callId).toBeDefined();
      expect(response, callId).toBeDefined();
      // as on the wire: the request from SIPp to the edge's listener, the response back
      expect(request!.destination).toBe(stack.target);
      expect(response!.source).toBe(stack.target);
      expect(response!.destination).toBe(request!.source);
      expect(response!.payload).toContain('X-App: hep');
      expect(request!.agentId).toBe(4242);
      expect(request!.transport).toBe(17);
    }
  });

  it('captures TCP traffic as TCP', async () => {
    const before = captured.length;
    const r = await runSipp({ scenario: 'options-uac.xml', target: stack.target, transport: 't1', calls: 1 });
    expect(r.stats.successful).toBe(1);
    await waitUntil(async () => captured.length >= before + 2, { timeoutMs: 3000, what: 'HEP packets of the TCP OPTIONS' });
    expect(captured.slice(before).every((c) => c.transport === 6)).toBe(true);
  });
});
