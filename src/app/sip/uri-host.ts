/** RFC 3261 25.1: an IPv6 address in a SIP URI (or host:port) is written in brackets. */
export function uriHost(host: string): string {
  return host.includes(':') && !host.startsWith('[') ? `[${host}]` : host;
}
