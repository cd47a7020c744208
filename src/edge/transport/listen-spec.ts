import { isIP } from 'node:net';
import { stripBrackets, hostPort } from './addresses.js';
import type { ListenSpec, TransportProtocol } from './types.js';

const PROTOCOLS: ReadonlySet<string> = new Set<TransportProtocol>(['udp', 'tcp', 'tls', 'ws', 'wss']);

export function isTransportProtocol(value: string): value is TransportProtocol {
  return PROTOCOLS.has(value);
}

/**
 * "proto:host:port" -> ListenSpec. IPv6 hosts may be bracketed ("udp:[::1]:5060") or not ("udp:::1:5060": the
 * port is after the last colon). An optional "/externalHost" suffix sets the advertised address
 * ("udp:0.0.0.0:5060/203.0.113.7"). Throws on a bad spec (configuration input, not network input).
 */
export function parseListenSpec(spec: string): ListenSpec {
  const [bindPart, externalHost] = spec.trim().split('/', 2);
  const firstColon = bindPart.indexOf(':');
  const lastColon = bindPart.lastIndexOf(':');
  const protocol = bindPart.slice(0, firstColon).toLowerCase();
  const host = stripBrackets(bindPart.slice(firstColon + 1, lastColon));
  const portText = bindPart.slice(lastColon + 1);
  const port = Number(portText);
  if (firstColon <= 0 || lastColon <= firstColon || !isTransportProtocol(protocol)) {
    throw new Error(`invalid listen spec "${spec}": expected proto:host:port with proto one of udp,tcp,tls,ws,wss`);
  }
  if (!isIP(host)) throw new Error(`invalid listen spec "${spec}": host must be an IP literal`);
  if (!/^\d+$/.test(portText) || port > 65535) throw new Error(`invalid listen spec "${spec}": bad port`);
  return externalHost ? { protocol, host, port, externalHost } : { protocol, host, port };
}

export function formatListenSpec(spec: ListenSpec): string {
  return `${spec.protocol}:${hostPort(spec.host, spec.port)}`;
}
