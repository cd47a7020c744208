import { describe, expect, it } from 'vitest';
import {
  didRedisKey,
  isInboundCarrierSource,
  lookupDidInRedis,
  normaliseDid,
  pickOutboundGateway,
  rankOutboundGateways,
  resolveInboundDid,
  routeDid,
  validateCarrierConfig,
  type CarrierConfig,
  type GatewayState,
} from './carriers.js';

function valid(raw: unknown): CarrierConfig {
  const result = validateCarrierConfig(raw);
  if (!result.ok) throw new Error(JSON.stringify(result.errors));
  return result.config;
}

const config = valid({
  outboundGateways: [
    { name: 'uk-primary', uri: 'sip:gw1.carrier.example:5070;transport=tcp', username: 'acct1', password: 's3cret!', prefixes: ['44'], priority: 10, maxChannels: 2 },
    { name: 'uk-backup', host: '192.0.2.20', prefixes: ['+44'], priority: 20 },
    { name: 'uk-mobile', host: 'mobile.carrier.example', transport: 'tls', prefixes: ['447'], priority: 50 },
    { name: 'world', host: '2001:db8::5'.includes(':') ? '[2001:db8::5]' : '', priority: 100 },
    { name: 'us-pattern', host: 'us.carrier.example', patterns: ['^\\+1[2-9]\\d{9}$'], priority: 5, optionsIntervalSeconds: 0 },
  ],
  inboundTrunks: [
    { name: 'carrier-a', sources: ['192.0.2.0/28', '2001:db8:a::/48'], dids: { '+44 20 7123 4567': 'user-1', '442071234568': 'user-2' } },
    { name: 'carrier-b', sources: ['198.51.100.7'], didLookup: 'redis', defaultCountryCode: '44' },
  ],
});

describe('validateCarrierConfig', () => {
  it('normalises gateways (uri, default ports, transport, prefixes without +)', () => {
    const [primary, backup, mobile, world, us] = config.outboundGateways;
    expect(primary).toMatchObject({ host: 'gw1.carrier.example', port: 5070, transport: 'tcp', uri: 'sip:gw1.carrier.example:5070;transport=tcp', username: 'acct1', password: 's3cret!', maxChannels: 2 });
    expect(backup).toMatchObject({ uri: 'sip:192.0.2.20:5060', transport: 'udp', prefixes: ['44'], optionsIntervalSeconds: 30 });
    expect(mobile).toMatchObject({ uri: 'sips:mobile.carrier.example:5061;transport=tls' });
    expect(world).toMatchObject({ host: '[2001:db8::5]', prefixes: [], patterns: [] });
    expect(us).toMatchObject({ optionsIntervalSeconds: 0, patterns: ['^\\+1[2-9]\\d{9}$'] });
    expect(config.inboundTrunks[0]!.dids).toEqual({ '442071234567': 'user-1', '442071234568': 'user-2' });
    expect(config.inboundTrunks[0]!.didLookup).toBe('table');
    expect(config.inboundTrunks[1]!.didLookup).toBe('redis');
  });

  it('names every bad field and never echoes a password', () => {
    const result = validateCarrierConfig({
      outboundGateways: [
        { name: 'bad name!', host: 'gw..', port: 70000, transport: 'sctp', password: 'hunter2', prefixes: ['44', 'x1'], patterns: ['('], maxChannels: -1 },
        { name: 'dup', host: 'a.example' },
        { name: 'dup', host: 'b.example' },
        { name: 'both', uri: 'sip:a.example', host: 'b.example' },
      ],
      inboundTrunks: [{ name: 't', sources: [] }, { name: 'u', sources: ['10.0.0.0/33', 'nope'], dids: { abc: 'user-1', '+4420': 'bad id!' }, didLookup: 'dns' }],
      extra: true,
    });
    expect(result.ok).toBe(false);
    if (result.ok) return;
    const fields = result.errors.map((e) => e.field);
    expect(fields).toEqual(
      expect.arrayContaining([
        'carriers.extra',
        'carriers.outboundGateways[0].name',
        'carriers.outboundGateways[0].host',
        'carriers.outboundGateways[0].port',
        'carriers.outboundGateways[0].transport',
        'carriers.outboundGateways[0].username',
        'carriers.outboundGateways[0].prefixes[1]',
        'carriers.outboundGateways[0].patterns[0]',
        'carriers.outboundGateways[0].maxChannels',
        'carriers.outboundGateways[2].name',
        'carriers.outboundGateways[3].host',
        'carriers.inboundTrunks[0].sources',
        'carriers.inboundTrunks[1].sources[0]',
        'carriers.inboundTrunks[1].sources[1]',
        'carriers.inboundTrunks[1].dids["abc"]',
        'carriers.inboundTrunks[1].dids["+4420"]',
        'carriers.inboundTrunks[1].didLookup',
      ]),
    );
    expect(JSON.stringify(result.errors)).not.toContain('hunter2');
  });
});

describe('pickOutboundGateway', () => {
  const gateways = config.outboundGateways;

  it('prefers the longest matching prefix, then priority', () => {
    expect(pickOutboundGateway('+447700900123', gateways)?.name).toBe('uk-mobile');
    expect(pickOutboundGateway('+442071234567', gateways)?.name).toBe('uk-primary');
    expect(rankOutboundGateways('+442071234567', gateways).map((g) => g.name)).toEqual(['uk-primary', 'uk-backup', 'world']);
    expect(pickOutboundGateway('+33612345678', gateways)?.name).toBe('world');
  });

  it('matches patterns against +E.164', () => {
    expect(pickOutboundGateway('+15551234567', gateways)?.name).toBe('us-pattern');
    expect(pickOutboundGateway('+15551234567', gateways.filter((g) => g.name !== 'world' && g.name !== 'us-pattern'))).toBeUndefined();
  });

  it('skips gateways that are down or at their channel limit', () => {
    const health = new Map<string, GatewayState>([['uk-primary', { up: true, activeChannels: 2 }]]);
    expect(pickOutboundGateway('+442071234567', gateways, health)?.name).toBe('uk-backup');
    health.set('uk-primary', { up: true, activeChannels: 1 });
    expect(pickOutboundGateway('+442071234567', gateways, health)?.name).toBe('uk-primary');
    health.set('uk-primary', { up: false, activeChannels: 0 });
    health.set('uk-backup', { up: false, activeChannels: 0 });
    health.set('world', { up: false, activeChannels: 0 });
    expect(pickOutboundGateway('+442071234567', gateways, health)).toBeUndefined();
  });

  it('refuses garbage numbers', () => {
    expect(pickOutboundGateway('+44abc', gateways)).toBeUndefined();
    expect(pickOutboundGateway('', gateways)).toBeUndefined();
  });
});

describe('isInboundCarrierSource', () => {
  const trunks = config.inboundTrunks;
  it.each([
    ['192.0.2.1', 'carrier-a'],
    ['192.0.2.15', 'carrier-a'],
    ['::ffff:192.0.2.3', 'carrier-a'],
    ['2001:db8:a:1::9', 'carrier-a'],
    ['198.51.100.7', 'carrier-b'],
  ])('%s belongs to %s', (ip, name) => {
    expect(isInboundCarrierSource(ip, trunks)?.name).toBe(name);
  });

  it.each(['192.0.2.16', '198.51.100.8', '2001:db8:b::1', '127.0.0.1', 'not-an-ip', ''])('%s is not a carrier', (ip) => {
    expect(isInboundCarrierSource(ip, trunks)).toBeUndefined();
  });

  it('a trunk without sources accepts nobody', () => {
    expect(isInboundCarrierSource('10.0.0.1', [{ name: 'x', sources: [], dids: {}, didLookup: 'table' }])).toBeUndefined();
  });
});

describe('DID routing', () => {
  const table = config.inboundTrunks[0]!.dids;

  it('routes a DID in any carrier format to its user', () => {
    for (const did of ['+442071234567', '442071234567', '00442071234567', 'sip:+44-20-7123-4567@core;user=phone', 'tel:+442071234567']) {
      expect(routeDid(did, table)).toBe('user-1');
    }
    expect(routeDid('02071234568', table, '44')).toBe('user-2');
    expect(routeDid('02071234568', table)).toBeUndefined();
    expect(routeDid('+449999999999', table)).toBeUndefined();
    expect(routeDid('constructor', table)).toBeUndefined();
    expect(routeDid('__proto__', table)).toBeUndefined();
  });

  it('normaliseDid', () => {
    expect(normaliseDid('+1 (555) 123-4567')).toBe('15551234567');
    expect(normaliseDid('*97')).toBeUndefined();
  });

  it('looks DIDs up in Redis at dc:did:<digits>', async () => {
    const store = new Map([[didRedisKey('442071230000'), 'user-9'], [didRedisKey('442071230001'), 'bad id with spaces']]);
    const asked: string[][] = [];
    const redis = {
      send: async (args: string[]) => {
        asked.push(args);
        return store.get(args[1]!) ?? null;
      },
    };
    expect(didRedisKey('442071230000')).toBe('dc:did:442071230000');
    expect(await lookupDidInRedis(redis, '+44 20 7123 0000')).toBe('user-9');
    expect(asked[0]).toEqual(['GET', 'dc:did:442071230000']);
    expect(await lookupDidInRedis(redis, '+442071230001')).toBeUndefined();
    expect(await lookupDidInRedis(redis, 'garbage')).toBeUndefined();
    expect(asked).toHaveLength(2); // garbage never reaches Redis

    const [tableTrunk, redisTrunk] = config.inboundTrunks;
    expect(await resolveInboundDid(redisTrunk!, '02071230000', redis)).toBe('user-9');
    expect(await resolveInboundDid(tableTrunk!, '+442071234567', redis)).toBe('user-1');
    expect(await resolveInboundDid(tableTrunk!, '+442071230000', redis)).toBeUndefined();
    expect(await resolveInboundDid({ ...tableTrunk!, didLookup: 'table-then-redis' }, '+442071230000', redis)).toBe('user-9');
  });
});
