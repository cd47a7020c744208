/**
 * RFC 3263 "Locating SIP Servers" for outbound requests: SIP URI -> ordered SendTargets (NAPTR -> SRV -> A/AAAA,
 * RFC 2782 weighting), with a bounded TTL cache. The resolver is injectable (node:dns/promises Resolver shape).
 *
 *   const sipDns = new SipResolver({ transports: ['udp', 'tcp', 'tls'] });
 *   const targets = await sipDns.resolveUri('sip:alice@example.com');   // [] when nothing found
 *   const targets2 = await sipDns.resolve({ host: 'example.com', port: 5080, transport: 'tcp' });
 */
export { SipResolver, type SipResolverOptions, type ResolveInput, type DnsQueries, type HostsLookup } from './sip-resolver.js';
export { orderSrvRecords } from './srv-order.js';
