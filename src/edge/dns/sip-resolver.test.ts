import { describe, it, expect } from 'vitest';
import type { NaptrRecord, SrvRecord, RecordWithTtl } from 'node:dns';
import { SipResolver, orderSrvRecords, type DnsQueries } from './index.js';

interface Zone {
  naptr?: Record<string, NaptrRecord[]>;
  srv?: Record<string, SrvRecord[]>;
  a?: Record<string, string[]>;
  aaaa?: Record<string, string[]>;
}

/** In-memory DNS: unknown names fail with ENOTFOUND like node's resolver; counts queries for cache checks. */
class FakeDns implements DnsQueries {
  queries: string[] = [];
  constructor(private readonly zone: Zone) {}
  private answer<T>(type: string, table: Record<string, T[]> | undefined, name: string): Promise<T[]> {
    this.queries.push(`${type} ${name}`);
    const records = table?.[name];
    if (!records) return Promise.reject(Object.assign(new Error(`${type} ${name} not found`), { code: 'ENOTFOUND' }));
    return Promise.resolve(records);
  }
  resolveNaptr(name: string) { return this.answer('NAPTR', this.zone.naptr, name); }
  resolveSrv(name: string) { return this.answer('SRV', this.zone.srv, name); }
  resolve4(name: string, _o: { ttl: true }) {
    return this.answer<RecordWithTtl>('A', mapTtl(this.zone.a), name);
  }
  resolve6(name: string, _o: { ttl: true }) {
    return this.answer<RecordWithTtl>('AAAA', mapTtl(this.zone.aaaa), name);
  }
}
function mapTtl(table: Record<string, string[]> | undefined): Record<string, RecordWithTtl[]> | undefined {
  if (!table) return undefined;
  return Object.fromEntries(Object.entries(table).map(([k, v]) => [k, v.map((address) => ({ address, ttl: 60 }))]));
}
const naptr = (order: number, preference: number, service: string, replacement: string): NaptrRecord =>
  ({ flags: 's', service, regexp: '', replacement, order, preference });
const srv = (priority: number, weight: number, port: number, name: string): SrvRecord => ({ priority, weight, port, name });

function resolverFor(zone: Zone, extra: Partial<ConstructorParameters<typeof SipResolver>[0]> = {}) {
  const fake = new FakeDns(zone);
  return { fake, resolver: new SipResolver({ resolver: fake, hostsLookup: null, random: () => 0, ...extra }) };
}

describe('SipResolver (RFC 3263)', () => {
  it('IP literals need no DNS and use the default ports', async () => {
    const { fake, resolver } = resolverFor({});
    expect(await resolver.resolve({ host: '192.0.2.1' })).toEqual([{ protocol: 'udp', address: '192.0.2.1', port: 5060 }]);
    expect(await resolver.resolve({ host: '[2001:db8::1]', secure: true })).toEqual([{ protocol: 'tls', address: '2001:db8::1', port: 5061 }]);
    expect(await resolver.resolve({ host: '192.0.2.1', port: 5080, transport: 'TCP' })).toEqual([{ protocol: 'tcp', address: '192.0.2.1', port: 5080 }]);
    expect(await resolver.resolve({ host: '192.0.2.1', transport: 'tcp', secure: true })).toEqual([{ protocol: 'tls', address: '192.0.2.1', port: 5061 }]);
    expect(fake.queries).toEqual([]);
  });

  it('refuses transports that cannot be used', async () => {
    const { resolver } = resolverFor({});
    expect(await resolver.resolve({ host: '192.0.2.1', transport: 'udp', secure: true })).toEqual([]);
    expect(await resolver.resolve({ host: '192.0.2.1', transport: 'sctp' })).toEqual([]);
    expect(await resolver.resolve({ host: '192.0.2.1', transport: 'ws' })).toEqual([]);   // we never dial WebSockets
    expect(await resolver.resolve({ host: 'df7jal23ls0d.invalid', transport: 'tcp' })).toEqual([]);   // RFC 6761
  });

  it('maddr replaces the host as TARGET', async () => {
    const { resolver } = resolverFor({});
    expect(await resolver.resolve({ host: 'example.com', maddr: '198.51.100.7', port: 5070 }))
      .toEqual([{ protocol: 'udp', address: '198.51.100.7', port: 5070 }]);
  });

  it('explicit port: A/AAAA only, no NAPTR or SRV', async () => {
    const { fake, resolver } = resolverFor({
      naptr: { 'example.com': [naptr(10, 10, 'SIP+D2T', '_sip._tcp.example.com')] },
      a: { 'example.com': ['192.0.2.10'] }, aaaa: { 'example.com': ['2001:db8::10'] },
    });
    expect(await resolver.resolve({ host: 'example.com', port: 5080 })).toEqual([
      { protocol: 'udp', address: '192.0.2.10', port: 5080 },
      { protocol: 'udp', address: '2001:db8::10', port: 5080 },
    ]);
    expect(fake.queries).toEqual(['A example.com', 'AAAA example.com']);
  });

  it('explicit transport without port: SRV for that transport, then A on the default port', async () => {
    const { resolver } = resolverFor({
      srv: { '_sip._tcp.example.com': [srv(10, 0, 5090, 'sip1.example.com')] },
      a: { 'sip1.example.com': ['192.0.2.21'], 'example.net': ['192.0.2.30'] },
    });
    expect(await resolver.resolve({ host: 'example.com', transport: 'tcp' })).toEqual([{ protocol: 'tcp', address: '192.0.2.21', port: 5090 }]);
    expect(await resolver.resolve({ host: 'example.net', transport: 'tcp' })).toEqual([{ protocol: 'tcp', address: '192.0.2.30', port: 5060 }]);
  });

  it('NAPTR order/preference, filtered to our transports, then SRV priority', async () => {
    const { resolver } = resolverFor({
      naptr: {
        'example.com': [
          naptr(20, 10, 'SIP+D2U', '_sip._udp.example.com'),
          naptr(10, 20, 'SIP+D2T', '_sip._tcp.example.com'),
          naptr(10, 10, 'SIP+D2S', '_sip._sctp.example.com'),   // no SCTP here
          naptr(10, 15, 'SIP+D2W', '_sip._ws.example.com'),     // not dialled
        ],
      },
      srv: {
        '_sip._tcp.example.com': [srv(20, 0, 5060, 'backup.example.com'), srv(10, 0, 5062, 'primary.example.com')],
        '_sip._udp.example.com': [srv(10, 0, 5060, 'primary.example.com')],
      },
      a: { 'primary.example.com': ['192.0.2.1'], 'backup.example.com': ['192.0.2.2'] },
    });
    expect(await resolver.resolve({ host: 'example.com' })).toEqual([
      { protocol: 'tcp', address: '192.0.2.1', port: 5062 },
      { protocol: 'tcp', address: '192.0.2.2', port: 5060 },
      { protocol: 'udp', address: '192.0.2.1', port: 5060 },
    ]);
  });

  it('sips URIs only take SIPS+ NAPTR services and carry the domain as TLS server name', async () => {
    const { resolver } = resolverFor({
      naptr: { 'example.com': [naptr(10, 10, 'SIP+D2U', '_sip._udp.example.com'), naptr(20, 10, 'SIPS+D2T', '_sips._tcp.example.com')] },
      srv: { '_sips._tcp.example.com': [srv(10, 0, 5061, 'tls.example.com')], '_sip._udp.example.com': [srv(10, 0, 5060, 'udp.example.com')] },
      a: { 'tls.example.com': ['192.0.2.5'], 'udp.example.com': ['192.0.2.6'] },
    });
    expect(await resolver.resolve({ host: 'example.com', secure: true }))
      .toEqual([{ protocol: 'tls', address: '192.0.2.5', port: 5061, serverName: 'example.com' }]);
  });

  it('no NAPTR: SRV for udp then tcp; no SRV: A/AAAA with UDP 5060', async () => {
    const { resolver } = resolverFor({
      srv: { '_sip._tcp.example.com': [srv(10, 0, 5070, 'edge.example.com')], '_sip._udp.example.com': [srv(10, 0, 5060, 'edge.example.com')] },
      a: { 'edge.example.com': ['192.0.2.9'], 'plain.example.com': ['192.0.2.99'] },
    });
    expect(await resolver.resolve({ host: 'example.com' })).toEqual([
      { protocol: 'udp', address: '192.0.2.9', port: 5060 },
      { protocol: 'tcp', address: '192.0.2.9', port: 5070 },
    ]);
    expect(await resolver.resolve({ host: 'plain.example.com' })).toEqual([{ protocol: 'udp', address: '192.0.2.99', port: 5060 }]);
    expect(await resolver.resolve({ host: 'nowhere.example.com' })).toEqual([]);
  });

  it('honours the families preference and the transports filter', async () => {
    const { resolver } = resolverFor({ a: { 'h.example.com': ['192.0.2.1'] }, aaaa: { 'h.example.com': ['2001:db8::1'] } },
      { families: [6, 4], transports: ['tcp'] });
    expect(await resolver.resolve({ host: 'h.example.com', port: 5060, transport: 'tcp' })).toEqual([
      { protocol: 'tcp', address: '2001:db8::1', port: 5060 },
      { protocol: 'tcp', address: '192.0.2.1', port: 5060 },
    ]);
    expect(await resolver.resolve({ host: 'h.example.com', port: 5060 })).toEqual([]);   // udp not available
  });

  it('caches answers (including negative ones) and falls back to the hosts lookup', async () => {
    const fake = new FakeDns({ a: { 'c.example.com': ['192.0.2.77'] } });
    const hostsCalls: string[] = [];
    const resolver = new SipResolver({
      resolver: fake,
      hostsLookup: async (name) => { hostsCalls.push(name); return name === 'localhost' ? [{ address: '127.0.0.1', family: 4 }] : []; },
    });
    await resolver.resolve({ host: 'c.example.com', port: 5060 });
    await resolver.resolve({ host: 'c.example.com', port: 5060 });
    expect(fake.queries.filter((q) => q === 'A c.example.com')).toHaveLength(1);
    expect(await resolver.resolve({ host: 'localhost', port: 5080 })).toEqual([{ protocol: 'udp', address: '127.0.0.1', port: 5080 }]);
    await resolver.resolve({ host: 'localhost', port: 5080 });
    expect(hostsCalls).toEqual(['localhost']);
    expect(fake.queries.filter((q) => q === 'A localhost')).toHaveLength(1);
  });

  it('the cache stays bounded', async () => {
    const zone: Zone = { a: {} };
    for (let i = 0; i < 50; i++) zone.a![`h${i}.example.com`] = [`192.0.2.${i}`];
    const fake = new FakeDns(zone);
    const resolver = new SipResolver({ resolver: fake, hostsLookup: null, cacheMaxEntries: 10, families: [4] });
    for (let i = 0; i < 50; i++) await resolver.resolve({ host: `h${i}.example.com`, port: 5060 });
    await resolver.resolve({ host: 'h0.example.com', port: 5060 });   // evicted: queried again
    await resolver.resolve({ host: 'h49.example.com', port: 5060 });  // recent: cached
    expect(fake.queries.filter((q) => q === 'A h0.example.com')).toHaveLength(2);
    expect(fake.queries.filter((q) => q === 'A h49.example.com')).toHaveLength(1);
  });
});

describe('orderSrvRecords (RFC 2782)', () => {
  const records = [srv(20, 0, 1, 'low'), srv(10, 10, 1, 'a'), srv(10, 30, 1, 'b'), srv(10, 0, 1, 'zero')];

  it('sorts by priority; weight-0 records first in the running sum', () => {
    // random 0 -> pick 0: the first entry whose running sum >= 0 is the weight-0 record
    expect(orderSrvRecords(records, () => 0).map((r) => r.name)).toEqual(['zero', 'a', 'b', 'low']);
    // random ~1 -> pick = sum: always the last heaviest entry in the list
    expect(orderSrvRecords(records, () => 0.9999).map((r) => r.name)).toEqual(['b', 'a', 'zero', 'low']);
  });

  it('chooses in proportion to weight', () => {
    let seed = 42;
    const random = () => ((seed = (seed * 1103515245 + 12345) % 2147483648) / 2147483648);
    const firsts: Record<string, number> = {};
    for (let i = 0; i < 4000; i++) {
      const first = orderSrvRecords([srv(1, 10, 1, 'a'), srv(1, 30, 1, 'b')], random)[0].name;
      firsts[first] = (firsts[first] ?? 0) + 1;
    }
    // expected 1:3 (a ~ 11/41 of picks counting the inclusive 0, b ~ 30/41)
    expect(firsts.b / 4000).toBeGreaterThan(0.65);
    expect(firsts.b / 4000).toBeLessThan(0.82);
  });
});
