import { isIP, isIPv6 } from 'node:net';

/** "[::1]" -> "::1"; anything else unchanged. */
export function stripBrackets(host: string): string {
  return host.startsWith('[') && host.endsWith(']') ? host.slice(1, -1) : host;
}

/**
 * Canonical form of a peer address as the OS reports it: IPv4-mapped IPv6 ("::ffff:10.0.0.1", seen on dual-stack
 * sockets) becomes the IPv4 address, IPv6 is lower-cased, brackets are removed.
 */
export function normalizeIp(address: string): string {
  const bare = stripBrackets(address).toLowerCase();
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/.exec(bare);
  return mapped ? mapped[1] : bare;
}

export function ipFamily(address: string): 4 | 6 | 0 {
  const family = isIP(stripBrackets(address));
  return family === 4 || family === 6 ? family : 0;
}

/** "host:port" with IPv6 bracketed, for logs and keys. */
export function hostPort(address: string, port: number): string {
  return isIPv6(address) ? `[${address}]:${port}` : `${address}:${port}`;
}

export function isWildcardAddress(address: string): boolean {
  return address === '0.0.0.0' || address === '::';
}
