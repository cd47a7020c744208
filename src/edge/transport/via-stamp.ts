import { parseVia, formatVia, type SipMessage } from '../message/index.js';
import { normalizeIp } from './addresses.js';

/**
 * RFC 3261 18.2.1 and RFC 3581 section 4: record where a request really came from in its top Via.
 *  - `received=<source ip>` when the sent-by host differs from the packet's source address;
 *  - `rport=<source port>` when the client asked for it with an empty `rport`; for stream transports it is always
 *    added, as drachtio-server does, so responses and later requests can reuse the connection (RFC 3261 18.2.2).
 * The parsed message's header is edited in place; the raw bytes are left as received.
 * Returns false when there is no usable top Via (the caller treats the request as it is).
 */
export function stampTopVia(message: SipMessage, sourceAddress: string, sourcePort: number, alwaysRport: boolean): boolean {
  const header = message.headers.find((h) => h.name.toLowerCase() === 'via' || h.name === 'v');
  if (!header) return false;
  const via = parseVia(header.value);
  if (!via) return false;
  const source = normalizeIp(sourceAddress);
  if (normalizeIp(via.host) !== source) setParam(via.params, 'received', source);
  const hasRport = via.params.some(([name]) => name === 'rport');
  if (hasRport || alwaysRport) setParam(via.params, 'rport', String(sourcePort));
  header.value = formatVia(via);
  return true;
}

function setParam(params: Array<[string, string | null]>, name: string, value: string): void {
  const existing = params.find(([n]) => n === name);
  if (existing) existing[1] = value;
  else params.push([name, value]);
}
