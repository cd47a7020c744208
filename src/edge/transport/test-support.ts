/** Helpers shared by the transport tests (not part of the module's API). */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { TransportLayer } from './transport-layer.js';
import type { InboundMessage } from './types.js';

export function sipRequest(opts: { transport?: string; viaHost?: string; rport?: boolean; branch?: string; callId?: string; body?: string; method?: string } = {}): Buffer {
  const method = opts.method ?? 'OPTIONS';
  const body = opts.body ?? '';
  const via = `SIP/2.0/${opts.transport ?? 'UDP'} ${opts.viaHost ?? '127.0.0.1:5099'}${opts.rport ? ';rport' : ''};branch=${opts.branch ?? 'z9hG4bK-' + Math.random().toString(36).slice(2)}`;
  return Buffer.from([
    `${method} sip:service@127.0.0.1 SIP/2.0`,
    `Via: ${via}`,
    'Max-Forwards: 70',
    'From: <sip:alice@example.com>;tag=a1',
    'To: <sip:service@example.com>',
    `Call-ID: ${opts.callId ?? 'call-' + Math.random().toString(36).slice(2)}`,
    `CSeq: 1 ${method}`,
    'Content-Type: text/plain',
    `Content-Length: ${Buffer.byteLength(body)}`,
    '',
    body,
  ].join('\r\n'));
}

export function sipResponse(callId = 'resp-call'): Buffer {
  return Buffer.from([
    'SIP/2.0 200 OK',
    'Via: SIP/2.0/UDP 127.0.0.1:5099;branch=z9hG4bK-resp',
    'From: <sip:alice@example.com>;tag=a1',
    'To: <sip:service@example.com>;tag=b2',
    `Call-ID: ${callId}`,
    'CSeq: 1 OPTIONS',
    'Content-Length: 0',
    '',
    '',
  ].join('\r\n'));
}

/** resolves with the next `count` inbound messages */
export function nextMessages(tl: TransportLayer, count: number, timeoutMs = 5000): Promise<InboundMessage[]> {
  return new Promise((resolve, reject) => {
    const got: InboundMessage[] = [];
    const timer = setTimeout(() => { tl.off('message', on); reject(new Error(`only ${got.length}/${count} messages`)); }, timeoutMs);
    const on = (m: InboundMessage): void => {
      got.push(m);
      if (got.length === count) { clearTimeout(timer); tl.off('message', on); resolve(got); }
    };
    tl.on('message', on);
  });
}

export async function waitFor(predicate: () => boolean, timeoutMs = 5000, what = 'condition'): Promise<void> {
  const until = Date.now() + timeoutMs;
  while (!predicate()) {
    if (Date.now() > until) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** self-signed certificate for 127.0.0.1 / ::1 / localhost made with the openssl CLI */
export function selfSignedCert(): { cert: string; key: string } {
  const dir = mkdtempSync(join(tmpdir(), 'sip-tls-'));
  try {
    execFileSync('openssl', [
      'req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '1', '-subj', '/CN=localhost',
      '-addext', 'subjectAltName=IP:127.0.0.1,IP:::1,DNS:localhost',
      '-keyout', join(dir, 'key.pem'), '-out', join(dir, 'cert.pem'),
    ], { stdio: 'ignore' });
    return { cert: readFileSync(join(dir, 'cert.pem'), 'utf8'), key: readFileSync(join(dir, 'key.pem'), 'utf8') };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
