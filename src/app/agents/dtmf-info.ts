/**
 * DTMF carried in SIP INFO (RFC 2976 INFO; body types as phones send them):
 *
 *   Content-Type: application/dtmf-relay      Content-Type: application/dtmf
 *   Signal=5                                  5
 *   Duration=160
 *
 * Returns the digit (0-9, *, #, A-D) or undefined for anything else. Bodies from the network are
 * bounded and never throw.
 */
const DIGIT = /^[0-9*#A-D]$/;

export function parseInfoDtmf(contentType: string | undefined, body: string | undefined): string | undefined {
  if (!contentType || !body || body.length > 512) return undefined;
  const type = contentType.split(';')[0]!.trim().toLowerCase();
  let digit: string | undefined;
  if (type === 'application/dtmf-relay') {
    digit = /^\s*signal\s*=\s*(\S+)\s*$/im.exec(body)?.[1];
  } else if (type === 'application/dtmf') {
    digit = body.trim();
  }
  if (digit === undefined) return undefined;
  // some phones send events as numbers (RFC 4733 §3.2: 10 = *, 11 = #)
  if (digit === '10') digit = '*';
  else if (digit === '11') digit = '#';
  digit = digit.toUpperCase();
  return DIGIT.test(digit) ? digit : undefined;
}
