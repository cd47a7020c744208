/**
 * The SipResolver against node's real dns.promises.Resolver, talking to a tiny authoritative DNS server on
 * 127.0.0.1 (RFC 1035 wire format; NAPTR RFC 3403, SRV RFC 2782, AAAA RFC 3596).
 */
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import dgram from 'node:dgram';
import dns from 'node:dns';
import { SipResolver } from './index.js';

type Answer =
  | { type: 'A'; address: string }
  | { type: 'AAAA'; address: string }
  | { type: 'SRV'; priority: number; weight: number; port: number; target: string }
  | { type: 'NAPTR'; order: number; preference: number; flags: string; service: string; replacement: string };
const TYPE_CODES: Record<Answer['type'], number> = { A: 1, AAAA: 28, SRV: 33, NAPTR: 35 };

const ZONE: Record<string, Answer[]> = {
  'example.test': [
    { type: 'NAPTR', order: 50, preference: 50, flags: 's', service: 'SIP+D2U', replacement: '_sip._udp.example.test' },
    { type: 'NAPTR', order: 10, preference: 50, flags: 's', service: 'SIP+D2T', replacement: '_sip._tcp.example.test' },
  ],
  '_sip._tcp.example.test': [{ type: 'SRV', priority: 10, weight: 0, port: 5070, target: 'edge.example.test' }],
  '_sip._udp.example.test': [{ type: 'SRV', priority: 10, weight: 0, port: 5060, target: 'edge.example.test' }],
  'edge.example.test': [{ type: 'A', address: '192.0.2.44' }, { type: 'AAAA', address: '2001:db8::44' }],
};

function encodeName(name: string): Buffer {
  const parts = name.split('.').filter(Boolean).map((label) => Buffer.concat([Buffer.from([label.length]), Buffer.from(label)]));
  return Buffer.concat([...parts, Buffer.from([0])]);
}
const charString = (s: string) => Buffer.concat([Buffer.from([s.length]), Buffer.from(s)]);
const u16 = (n: number) => { const b = Buffer.alloc(2); b.writeUInt16BE(n); return b; };

function rdata(answer: Answer): Buffer {
  switch (answer.type) {
    case 'A': return Buffer.from(answer.address.split('.').map(Number));
    case 'AAAA': {
      const [head, tail = ''] = answer.address.split('::');
      const h = head ? head.split(':') : [];
      const t = tail ? tail.split(':') : [];
      const groups = [...h, ...Array(8 - h.length - t.length).fill('0'), ...t];
      return Buffer.concat(groups.map((g) => u16(parseInt(g, 16))));
    }
    case 'SRV': return Buffer.concat([u16(answer.priority), u16(answer.weight), u16(answer.port), encodeName(answer.target)]);
    case 'NAPTR': return Buffer.concat([u16(answer.order), u16(answer.preference), charString(answer.flags), charString(answer.service), charString(''), encodeName(answer.replacement)]);
  }
}

function respond(query: Buffer): Buffer {
  let offset = 12;
  const labels: string[] = [];
  while (query[offset] !== 0) {
    labels.push(query.toString('ascii', offset + 1, offset + 1 + query[offset]));
    offset += query[offset] + 1;
  }
  const qtype = query.readUInt16BE(offset + 1);
  const question = query.subarray(12, offset + 5);
  const name = labels.join('.').toLowerCase();
  const known = ZONE[name];
  const answers = (known ?? []).filter((a) => TYPE_CODES[a.type] === qtype);
  const header = Buffer.alloc(12);
  header.writeUInt16BE(query.readUInt16BE(0), 0);
  header.writeUInt16BE(known ? 0x8580 : 0x8583, 2);   // QR AA RD RA, rcode 0 or 3 (NXDOMAIN)
  header.writeUInt16BE(1, 4);
  header.writeUInt16BE(answers.length, 6);
  const records = answers.map((a) => {
    const data = rdata(a);
    const fixed = Buffer.alloc(10);
    fixed.writeUInt16BE(TYPE_CODES[a.type], 0);
    fixed.writeUInt16BE(1, 2);
    fixed.writeUInt32BE(120, 4);
    fixed.writeUInt16BE(data.length, 8);
    return Buffer.concat([Buffer.from([0xc0, 0x0c]), fixed, data]);
  });
  return Buffer.concat([header, question, ...records]);
}

describe('SipResolver over real DNS wire format', () => {
  const server = dgram.createSocket('udp4');
  let queries = 0;
  beforeAll(async () => {
    server.on('message', (msg, rinfo) => {
      queries++;
      try { server.send(respond(msg), rinfo.port, rinfo.address); } catch { /* ignore bad queries */ }
    });
    await new Promise<void>((resolve) => server.bind(0, '127.0.0.1', () => resolve()));
  });
  afterAll(() => new Promise<void>((resolve) => server.close(() => resolve())));

  function makeResolver(): SipResolver {
    const resolver = new dns.promises.Resolver({ timeout: 1000, tries: 1 });
    resolver.setServers([`127.0.0.1:${server.address().port}`]);
    return new SipResolver({ resolver, hostsLookup: null });
  }

  it('follows NAPTR -> SRV -> A/AAAA for a SIP URI', async () => {
    const sipDns = makeResolver();
    expect(await sipDns.resolveUri('sip:alice@example.test')).toEqual([
      { protocol: 'tcp', address: '192.0.2.44', port: 5070 },
      { protocol: 'tcp', address: '2001:db8::44', port: 5070 },
      { protocol: 'udp', address: '192.0.2.44', port: 5060 },
      { protocol: 'udp', address: '2001:db8::44', port: 5060 },
    ]);
    const before = queries;
    await sipDns.resolveUri('sip:bob@example.test');
    expect(queries).toBe(before);   // all from the cache
  });

  it('uses the URI port and transport params', async () => {
    const sipDns = makeResolver();
    expect(await sipDns.resolveUri('sip:edge.example.test:5099;transport=tcp')).toEqual([
      { protocol: 'tcp', address: '192.0.2.44', port: 5099 },
      { protocol: 'tcp', address: '2001:db8::44', port: 5099 },
    ]);
    expect(await sipDns.resolveUri('sips:alice@[2001:db8::9]')).toEqual([{ protocol: 'tls', address: '2001:db8::9', port: 5061 }]);
    expect(await sipDns.resolveUri('sip:nobody@missing.test')).toEqual([]);
    expect(await sipDns.resolveUri('tel:+15551234')).toEqual([]);
  });
});
