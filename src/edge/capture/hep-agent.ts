/**
 * The edge's SIP capture: every message the transport layer receives (parsed) or sends is
 * encapsulated in HEP3 (hep.ts) and sent over UDP to a capture server (Homer's heplify-server,
 * Kamailio sipcapture), with the Call-ID as correlation id. Fire and forget: a capture server that
 * is down or slow never delays SIP; a message that does not fit one HEP packet is not captured.
 */
import dgram from 'node:dgram';
import { isIPv6 } from 'node:net';
import type { Logger } from 'pino';
import type { Flow } from '../transport/types.js';
import { encodeHep3 } from './hep.js';

export interface HepCaptureOptions {
  /** capture server (IP address) and UDP port */
  host: string;
  port: number;
  /** HEP capture agent id, to tell this instance's captures apart */
  agentId: number;
  /** HEP auth key, when the capture server asks for one */
  password?: string;
  logger?: Logger;
}

export type CaptureDirection = 'received' | 'sent';

export class HepCaptureAgent {
  private readonly socket: dgram.Socket;
  private closed = false;
  private failures = 0;

  constructor(private readonly o: HepCaptureOptions) {
    this.socket = dgram.createSocket(isIPv6(o.host) ? 'udp6' : 'udp4');
    this.socket.on('error', (err) => this.failed(err));
    this.socket.unref();
  }

  /** One SIP message as it crossed `flow` (bytes as on the wire). */
  capture(direction: CaptureDirection, raw: Buffer, flow: Flow, timeMs = Date.now()): void {
    if (this.closed) return;
    const local = { address: flow.localAddress, port: flow.localPort };
    const remote = { address: flow.remoteAddress, port: flow.remotePort };
    const [source, destination] = direction === 'sent' ? [local, remote] : [remote, local];
    const callId = callIdOf(raw);
    const packet = encodeHep3({
      sourceAddress: source.address,
      sourcePort: source.port,
      destinationAddress: destination.address,
      destinationPort: destination.port,
      transport: flow.protocol,
      timeMs,
      captureAgentId: this.o.agentId,
      ...(callId ? { correlationId: callId } : {}),
      ...(this.o.password ? { password: this.o.password } : {}),
      payload: raw,
    });
    if (!packet) return;
    this.socket.send(packet, this.o.port, this.o.host, (err) => {
      if (err) this.failed(err);
    });
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.socket.close();
  }

  private failed(err: Error): void {
    // logged once per 1,000 failures: an unreachable capture server must not flood the log
    if (this.failures++ % 1000 === 0) this.o.logger?.warn({ err: err.message, failures: this.failures }, 'HEP capture send failed');
  }
}

const CALL_ID = /^(?:call-id|i)[ \t]*:[ \t]*([^\r\n]*?)[ \t]*\r?$/im;

/** The Call-ID header's value (RFC 3261 §20.8, compact form `i`), read from the header section only. */
export function callIdOf(raw: Buffer): string | undefined {
  const end = raw.indexOf('\r\n\r\n');
  const head = raw.toString('latin1', 0, end < 0 ? Math.min(raw.length, 8192) : end);
  return CALL_ID.exec(head)?.[1] || undefined;
}
