import dns from 'node:dns';
import { isIP } from 'node:net';
import type { NaptrRecord, SrvRecord, RecordWithTtl } from 'node:dns';
import type { Logger } from 'pino';
import { parseUri, type SipUri } from '../message/index.js';
import type { SendTarget, TransportProtocol } from '../transport/index.js';
import { orderSrvRecords } from './srv-order.js';
import { TtlCache } from './ttl-cache.js';

/** The part of node:dns/promises Resolver used here (injectable: tests pass a fake). */
export interface DnsQueries {
  resolveNaptr(hostname: string): Promise<NaptrRecord[]>;
  resolveSrv(hostname: string): Promise<SrvRecord[]>;
  resolve4(hostname: string, options: { ttl: true }): Promise<RecordWithTtl[]>;
  resolve6(hostname: string, options: { ttl: true }): Promise<RecordWithTtl[]>;
}

/** Fallback for names DNS does not know (/etc/hosts, e.g. "localhost"); default dns.promises.lookup. */
export type HostsLookup = (hostname: string) => Promise<Array<{ address: string; family: number }>>;

export interface SipResolverOptions {
  resolver?: DnsQueries;
  hostsLookup?: HostsLookup | null;
  /** transports we can send over; default udp, tcp, tls (we never dial WebSockets) */
  transports?: TransportProtocol[];
  /** address families wanted, in preference order; default [4, 6] */
  families?: Array<4 | 6>;
  cacheMaxEntries?: number;         // default 2000
  /** node reports no TTL for NAPTR/SRV: how long to keep them (default 300 s) */
  recordTtlSeconds?: number;
  negativeTtlSeconds?: number;      // default 30: NXDOMAIN / no data
  maxTtlSeconds?: number;           // default 3600
  random?: () => number;
  logger?: Logger;
}

/** Inputs when the caller already split the URI (RFC 3263 section 4: TARGET, port, transport, sips). */
export interface ResolveInput {
  host: string;                     // domain or IP literal (IPv6 with or without brackets)
  port?: number;
  transport?: string;               // URI transport param: udp, tcp, tls, sctp, ws, wss
  secure?: boolean;                 // sips URI
  maddr?: string;
}

const DEFAULT_PORT: Record<TransportProtocol, number> = { udp: 5060, tcp: 5060, tls: 5061, ws: 80, wss: 443 };

/** RFC 3263 4.1 NAPTR services (RFC 7118 section 9 adds D2W). */
const NAPTR_SERVICES: Record<string, { protocol: TransportProtocol; secure: boolean }> = {
  'sip+d2u': { protocol: 'udp', secure: false },
  'sip+d2t': { protocol: 'tcp', secure: false },
  'sips+d2t': { protocol: 'tls', secure: true },
  'sip+d2w': { protocol: 'ws', secure: false },
  'sips+d2w': { protocol: 'wss', secure: true },
};

/** RFC 3263 4.1 SRV fallback when there are no usable NAPTR records: "_sip" for SIP URIs, "_sips" for SIPS. */
const SRV_PREFIX: Record<TransportProtocol, string> = {
  udp: '_sip._udp.', tcp: '_sip._tcp.', tls: '_sips._tcp.', ws: '_sip._ws.', wss: '_sips._ws.',
};

const NEGATIVE_CODES = new Set(['ENODATA', 'ENOTFOUND', 'NXDOMAIN', 'ENONAME']);

type Address = { address: string; family: 4 | 6 };

/**
 * RFC 3263 "Locating SIP Servers": SIP URI -> ordered list of targets to try (failover in list order).
 * An empty list means nothing could be found (the caller answers 503 / 404). Never throws for DNS failures.
 */
export class SipResolver {
  private readonly queries: DnsQueries;
  private readonly hostsLookup: HostsLookup | null;
  private readonly transports: ReadonlySet<TransportProtocol>;
  private readonly families: Array<4 | 6>;
  private readonly cache: TtlCache<unknown[]>;
  private readonly inflight = new Map<string, Promise<unknown[]>>();
  private readonly random: () => number;
  private readonly log: Logger | undefined;
  private readonly recordTtlMs: number;
  private readonly negativeTtlMs: number;
  private readonly maxTtlMs: number;

  constructor(options: SipResolverOptions = {}) {
    this.queries = options.resolver ?? new dns.promises.Resolver({ timeout: 2000, tries: 2 });
    this.hostsLookup = options.hostsLookup === undefined
      ? (hostname) => dns.promises.lookup(hostname, { all: true })
      : options.hostsLookup;
    this.transports = new Set(options.transports ?? ['udp', 'tcp', 'tls']);
    this.families = options.families ?? [4, 6];
    this.cache = new TtlCache(options.cacheMaxEntries ?? 2000);
    this.random = options.random ?? Math.random;
    this.log = options.logger;
    this.recordTtlMs = (options.recordTtlSeconds ?? 300) * 1000;
    this.negativeTtlMs = (options.negativeTtlSeconds ?? 30) * 1000;
    this.maxTtlMs = (options.maxTtlSeconds ?? 3600) * 1000;
  }

  /** Resolve a SIP/SIPS URI (string or parsed). Non-SIP schemes and unparseable URIs resolve to []. */
  async resolveUri(uri: string | SipUri): Promise<SendTarget[]> {
    const parsed = typeof uri === 'string' ? parseUri(uri) : uri;
    if (!parsed) return [];
    const scheme = parsed.scheme.toLowerCase();
    if (scheme !== 'sip' && scheme !== 'sips') return [];
    const param = (name: string): string | undefined => {
      const found = parsed.params.find(([n]) => n === name);
      return found && found[1] !== null ? found[1] : undefined;
    };
    return this.resolve({ host: parsed.host, port: parsed.port, transport: param('transport'), secure: scheme === 'sips', maddr: param('maddr') });
  }

  async resolve(input: ResolveInput): Promise<SendTarget[]> {
    const secure = input.secure === true;
    // RFC 3263 4: maddr overrides the host as TARGET
    const target = stripBrackets((input.maddr ?? input.host).trim()).toLowerCase().replace(/\.$/, '');
    if (!target || target.endsWith('.invalid') || target === 'invalid') return [];   // RFC 6761 6.4 (WS clients' Via/Contact hosts)
    const explicitProtocol = input.transport !== undefined ? transportFromParam(input.transport, secure) : undefined;
    if (explicitProtocol === null) return [];   // e.g. sips with transport=udp, or sctp
    const port = input.port;
    // domain for TLS certificate checks (RFC 5922 4): the URI host, not SRV targets
    const serverName = isIpLiteral(target) ? undefined : stripBrackets(input.host).toLowerCase();

    // RFC 3263 4.1/4.2: numeric TARGET -> no DNS at all
    if (isIpLiteral(target)) {
      const protocol = explicitProtocol ?? (secure ? 'tls' : 'udp');
      if (!this.transports.has(protocol)) return [];
      return [{ protocol, address: target, port: port ?? DEFAULT_PORT[protocol] }];
    }
    // explicit port -> A/AAAA only
    if (port !== undefined) {
      const protocol = explicitProtocol ?? (secure ? 'tls' : 'udp');
      if (!this.transports.has(protocol)) return [];
      return this.hostTargets(target, protocol, port, serverName);
    }
    // explicit transport -> SRV for it, then A/AAAA on the default port
    if (explicitProtocol) {
      if (!this.transports.has(explicitProtocol)) return [];
      const viaSrv = await this.srvTargets(SRV_PREFIX[explicitProtocol] + target, explicitProtocol, serverName);
      return viaSrv.length > 0 ? viaSrv : this.hostTargets(target, explicitProtocol, DEFAULT_PORT[explicitProtocol], serverName);
    }
    // NAPTR (RFC 3263 4.1), filtered to the services we can use
    const naptr = (await this.lookup<NaptrRecord>('NAPTR', target, () => this.queries.resolveNaptr(target)))
      .map((record) => ({ record, service: NAPTR_SERVICES[record.service.toLowerCase()] }))
      .filter(({ record, service }) => service !== undefined && record.flags.toLowerCase() === 's' && record.replacement
        && this.transports.has(service.protocol) && (!secure || service.secure))
      .sort((a, b) => a.record.order - b.record.order || a.record.preference - b.record.preference);
    const results: SendTarget[] = [];
    for (const { record, service } of naptr) {
      results.push(...await this.srvTargets(record.replacement, service.protocol, serverName));
    }
    if (results.length > 0) return dedupe(results);
    // no usable NAPTR: SRV for each transport we support, in our order of preference
    const srvProtocols: TransportProtocol[] = (secure ? ['tls'] : ['udp', 'tcp']).filter((p) => this.transports.has(p as TransportProtocol)) as TransportProtocol[];
    for (const protocol of srvProtocols) results.push(...await this.srvTargets(SRV_PREFIX[protocol] + target, protocol, serverName));
    if (results.length > 0) return dedupe(results);
    // RFC 3263 4.2: no SRV -> A/AAAA, UDP for sip, TLS for sips
    const fallback: TransportProtocol = secure ? 'tls' : 'udp';
    const fallbackProtocol = this.transports.has(fallback) ? fallback : srvProtocols[0];
    if (!fallbackProtocol) return [];
    return this.hostTargets(target, fallbackProtocol, DEFAULT_PORT[fallbackProtocol], serverName);
  }

  clearCache(): void {
    this.cache.clear();
  }

  private async srvTargets(name: string, protocol: TransportProtocol, serverName: string | undefined): Promise<SendTarget[]> {
    const records = (await this.lookup<SrvRecord>('SRV', name, () => this.queries.resolveSrv(name)))
      .filter((r) => r.name && r.name !== '.' && Number.isInteger(r.port) && r.port > 0 && r.port < 65536);
    const targets: SendTarget[] = [];
    for (const record of orderSrvRecords(records, this.random)) {
      targets.push(...await this.hostTargets(record.name.replace(/\.$/, ''), protocol, record.port, serverName));
    }
    return targets;
  }

  private async hostTargets(host: string, protocol: TransportProtocol, port: number, serverName: string | undefined): Promise<SendTarget[]> {
    const addresses = await this.addresses(host);
    return addresses.map(({ address }) => withServerName({ protocol, address, port }, protocol, serverName));
  }

  /** A and AAAA in family preference order; /etc/hosts style lookup when DNS has neither. */
  private async addresses(host: string): Promise<Address[]> {
    if (isIpLiteral(host)) return [{ address: host, family: isIP(host) === 6 ? 6 : 4 }];
    const found: Address[] = [];
    for (const family of this.families) {
      const records = family === 4
        ? await this.lookup<RecordWithTtl>('A', host, () => this.queries.resolve4(host, { ttl: true }))
        : await this.lookup<RecordWithTtl>('AAAA', host, () => this.queries.resolve6(host, { ttl: true }));
      for (const record of records) found.push({ address: record.address, family });
    }
    if (found.length > 0 || !this.hostsLookup) return found;
    const hostsLookup = this.hostsLookup;
    const fromHosts = await this.lookup<Address>('hosts', host, async () => (await hostsLookup(host))
      .filter((a): a is Address => (a.family === 4 || a.family === 6) && this.families.includes(a.family)));
    return [...fromHosts].sort((a, b) => this.families.indexOf(a.family) - this.families.indexOf(b.family));
  }

  /** Cached, de-duplicated query; failures give [] (negative answers are cached, transient errors are not). */
  private async lookup<T>(type: string, name: string, query: () => Promise<T[]>): Promise<T[]> {
    const key = `${type} ${name}`;
    const cached = this.cache.get(key);
    if (cached) return cached as T[];
    const running = this.inflight.get(key);
    if (running) return (await running) as T[];
    const attempt = (async (): Promise<T[]> => {
      try {
        const records = await query();
        this.cache.set(key, records, this.ttlFor(records));
        return records;
      } catch (err) {
        const code = typeof err === 'object' && err !== null && 'code' in err ? String((err as { code: unknown }).code) : '';
        if (NEGATIVE_CODES.has(code)) this.cache.set(key, [], this.negativeTtlMs);
        else this.log?.debug({ type, name, err: err instanceof Error ? err.message : String(err) }, 'dns query failed');
        return [];
      }
    })();
    this.inflight.set(key, attempt);
    try {
      return await attempt;
    } finally {
      this.inflight.delete(key);
    }
  }

  private ttlFor(records: unknown[]): number {
    if (records.length === 0) return this.negativeTtlMs;
    let ttlMs = this.recordTtlMs;
    const ttls = records.map((r) => (typeof r === 'object' && r !== null && 'ttl' in r && typeof r.ttl === 'number' ? r.ttl * 1000 : undefined))
      .filter((t): t is number => t !== undefined);
    if (ttls.length > 0) ttlMs = Math.min(...ttls);
    return Math.max(1000, Math.min(this.maxTtlMs, ttlMs));
  }
}

/** URI transport param -> our protocol; null when it cannot be used (RFC 3261 26.2: sips never over UDP). */
function transportFromParam(transport: string, secure: boolean): TransportProtocol | null {
  switch (transport.toLowerCase()) {
    case 'udp': return secure ? null : 'udp';
    case 'tcp': return secure ? 'tls' : 'tcp';
    case 'tls': return 'tls';
    case 'ws': return secure ? 'wss' : 'ws';
    case 'wss': return 'wss';
    default: return null;
  }
}

function withServerName(target: SendTarget, protocol: TransportProtocol, serverName: string | undefined): SendTarget {
  return serverName && (protocol === 'tls' || protocol === 'wss') ? { ...target, serverName } : target;
}

function dedupe(targets: SendTarget[]): SendTarget[] {
  const seen = new Set<string>();
  return targets.filter((t) => {
    const key = `${t.protocol}|${t.address}|${t.port}`;
    if (seen.has(key)) return false;
    seen.add(key);
    return true;
  });
}

function stripBrackets(host: string): string {
  return host.startsWith('[') && host.endsWith(']') ? host.slice(1, -1) : host;
}

function isIpLiteral(host: string): boolean {
  return isIP(host) !== 0;
}
