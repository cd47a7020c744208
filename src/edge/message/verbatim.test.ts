/** ParseResult.verbatim + verbatimBytes: the received bytes, top Via spliced, must equal what serialise() writes. */
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { parseMessage, StreamFramer, verbatimBytes, type ParseResult } from './index.js';
import { RFC4475_DIR } from '../../../sip-tests/fixtures/shared.js';

const CANONICAL = [
  'REGISTER sip:example.com SIP/2.0',
  'Via: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bK-1;rport',
  'Via: SIP/2.0/UDP 10.0.0.2:5060;branch=z9hG4bK-0',
  'From: <sip:alice@example.com>;tag=1',
  'To: <sip:alice@example.com>',
  'Call-ID: abc@10.0.0.1',
  'CSeq: 1 REGISTER',
  'Contact: <sip:alice@10.0.0.1:5060>',
  'Max-Forwards: 70',
  'Content-Length: 4',
  '',
  'body',
].join('\r\n');

/** the splice after editing the top Via the way the transport does must equal the re-serialised message */
function checkSplice(result: ParseResult): boolean {
  if (!result.ok || result.verbatim === undefined) return false;
  const via = result.message.headers.find((h) => h.name === 'Via');
  if (via) via.value += ';received=192.0.2.1;rport=5999';
  expect(verbatimBytes(result.message, result.verbatim)?.toString('latin1')).toBe(result.message.serialise().toString('latin1'));
  return true;
}

describe('verbatim requests', () => {
  it('reuses a canonical datagram, the edited top Via spliced in, trailing bytes beyond Content-Length cut', () => {
    const result = parseMessage(Buffer.from('\r\n' + CANONICAL + 'junk'));
    expect(checkSplice(result)).toBe(true);
  });

  it('reuses a canonical message from a stream', () => {
    const [result] = new StreamFramer().push(Buffer.from(CANONICAL));
    expect(checkSplice(result as ParseResult)).toBe(true);
  });

  it.each([
    ['compact name', CANONICAL.replace('Call-ID:', 'i:')],
    ['lower-case name', CANONICAL.replace('CSeq:', 'cseq:')],
    ['no space after colon', CANONICAL.replace('To: ', 'To:')],
    ['two spaces after colon', CANONICAL.replace('To: ', 'To:  ')],
    ['space before colon', CANONICAL.replace('To: ', 'To : ')],
    ['trailing space', CANONICAL.replace('Max-Forwards: 70', 'Max-Forwards: 70 ')],
    ['folded line', CANONICAL.replace('Max-Forwards: 70', 'Max-Forwards:\r\n 70')],
    ['comma list', CANONICAL.replace('Contact: <sip:alice@10.0.0.1:5060>', 'Contact: <sip:a@h>, <sip:b@h>')],
    ['bare LF lines', CANONICAL.replace(/\r\n/g, '\n')],
    ['Content-Length with a leading zero', CANONICAL.replace('Content-Length: 4', 'Content-Length: 04')],
    ['lower-case version', CANONICAL.replace('SIP/2.0\r\nVia', 'sip/2.0\r\nVia')],
    ['no Content-Length', CANONICAL.replace('Content-Length: 4\r\n', '')],
    ['non-ASCII header', CANONICAL.replace('From: <', 'From: "Zoë" <')],
  ])('falls back to serialising for a %s', (_name, text) => {
    const result = parseMessage(Buffer.from(text));
    expect(result.ok).toBe(true);
    if (result.ok) expect(result.verbatim).toBeUndefined();
  });

  it('is disabled once a header is added or removed', () => {
    const result = parseMessage(Buffer.from(CANONICAL));
    if (!result.ok || !result.verbatim) throw new Error('expected a verbatim request');
    result.message.append('X-Extra', '1');
    expect(verbatimBytes(result.message, result.verbatim)).toBeUndefined();
  });

  it('matches serialise() for every RFC 4475 message it accepts as verbatim', () => {
    let spliced = 0;
    for (const file of readdirSync(RFC4475_DIR).filter((f) => f.endsWith('.dat'))) {
      const bytes = readFileSync(join(RFC4475_DIR, file));
      if (checkSplice(parseMessage(bytes))) spliced++;
      const [streamed] = new StreamFramer().push(bytes);
      if (streamed && 'ok' in streamed) checkSplice(streamed);
    }
    expect(spliced).toBeGreaterThanOrEqual(0);
  });
});
