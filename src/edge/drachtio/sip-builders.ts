/**
 * Small builders the controller uses to complete messages the way drachtio-server does:
 * Call-IDs, initial CSeqs, our Via / Contact for a transport, `localhost` substitution.
 */
import { randomUUID } from 'node:crypto';
import { randomUint32 } from '../transaction/ids.js';
import type { TransportProtocol } from '../transport/index.js';

export function generateCallId(): string {
  return randomUUID();
}

/** A random initial CSeq below 2^31 (RFC 3261 8.1.1.5). */
export function generateCSeq(): number {
  return 1 + (randomUint32() & 0x7ffffff);
}

const DEFAULT_PORT: Record<TransportProtocol, number> = { udp: 5060, tcp: 5060, tls: 5061, ws: 80, wss: 443 };

export interface LocalAddress {
  protocol: TransportProtocol;
  host: string;
  port: number;
}

export function hostForUri(host: string): string {
  return host.includes(':') && !host.startsWith('[') ? `[${host}]` : host;
}

/** `host[:port]`, leaving out the transport's default port like the C++ server does */
export function sentBy(local: LocalAddress): string {
  const host = hostForUri(local.host);
  return local.port === DEFAULT_PORT[local.protocol] ? host : `${host}:${local.port}`;
}

/** RFC 3261 8.1.1.7 / RFC 3581: rport is requested on UDP. */
export function viaFor(local: LocalAddress, branch: string): string {
  const rport = local.protocol === 'udp' ? ';rport' : '';
  return `SIP/2.0/${local.protocol.toUpperCase()} ${sentBy(local)}${rport};branch=${branch}`;
}

/** The URI `transport` parameter for a transport: RFC 7118 section 5.2 defines only "ws", for WS and WSS alike. */
export function uriTransportParam(protocol: TransportProtocol): string {
  if (protocol === 'udp') return '';
  return `;transport=${protocol === 'wss' ? 'ws' : protocol}`;
}

/** `sip:host:port[;transport=x]` for our listener (scheme sips for tls/wss would be stricter; drachtio uses sip). */
export function localUri(local: LocalAddress, user?: string): string {
  const transport = uriTransportParam(local.protocol);
  return `sip:${user ? user + '@' : ''}${hostForUri(local.host)}:${local.port}${transport}`;
}

export function contactFor(local: LocalAddress, user?: string): string {
  return `<${localUri(local, user)}>`;
}

/** drachtio-server replaces `localhost` in From/To/Contact/P-Asserted-Identity with its real host:port. */
export function replaceLocalhost(value: string, local: LocalAddress): string {
  if (!value.includes('localhost')) return value;
  return value.replace(/@localhost(?![\w.-])(:\d+)?/g, `@${hostForUri(local.host)}:${local.port}`)
    .replace(/sip:localhost(?![\w.-])(:\d+)?/g, `sip:${hostForUri(local.host)}:${local.port}`);
}

/**
 * An app's Contact naming `localhost`: our real address, plus the transport parameter so the
 * peer sends in-dialog requests over the same transport (a WebSocket client can't be reached otherwise).
 */
export function localizeContact(value: string, local: LocalAddress): string {
  if (!value.includes('localhost')) return value;
  const replaced = replaceLocalhost(value, local);
  const param = uriTransportParam(local.protocol);
  if (!param || /;transport=/i.test(replaced)) return replaced;
  const close = replaced.indexOf('>');
  return close === -1 ? replaced + param : replaced.slice(0, close) + param + replaced.slice(close);
}

/** RFC 3261 7.4.1: a body needs a Content-Type; drachtio-server supplies application/sdp when the app gave none. */
export function ensureContentType(msg: { body: Buffer; has(name: string): boolean; append(name: string, value: string): unknown }): void {
  if (msg.body.length > 0 && !msg.has('Content-Type')) msg.append('Content-Type', 'application/sdp');
}
