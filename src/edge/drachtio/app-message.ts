/**
 * Messages that drachtio apps hand us are often skeletal (a request line and Content-Length, or a
 * response with a few headers): they are not valid RFC 3261 messages yet, so they are read with
 * this lenient reader rather than the network parser, then completed by the controller the way
 * drachtio-server does it.
 */
import { SipMessage, canonicalHeaderName } from '../message/index.js';

export class AppMessageError extends Error {}

const MAX_APP_MESSAGE_BYTES = 99_999;

export function readAppMessage(text: string): SipMessage {
  if (text.length > MAX_APP_MESSAGE_BYTES) throw new AppMessageError('message too large');
  let headEnd = text.indexOf('\r\n\r\n');
  let bodyStart = headEnd + 4;
  if (headEnd === -1) {
    headEnd = text.length;
    bodyStart = text.length;
  }
  const lines = text.slice(0, headEnd).split('\r\n');
  const startLine = lines[0] ?? '';
  const msg = new SipMessage();
  if (startLine.startsWith('SIP/')) {
    const m = /^SIP\/2\.0 (\d{3})(?: (.*))?$/.exec(startLine);
    if (!m) throw new AppMessageError(`bad status line: ${startLine.slice(0, 80)}`);
    msg.status = Number(m[1]);
    msg.reason = m[2] ?? '';
  } else {
    const m = /^([A-Za-z]+) (\S+) SIP\/2\.0$/.exec(startLine);
    if (!m) throw new AppMessageError(`bad request line: ${startLine.slice(0, 80)}`);
    msg.method = m[1].toUpperCase();
    msg.requestUri = m[2];
  }
  for (let i = 1; i < lines.length; i++) {
    let line = lines[i];
    // unfold continuation lines (RFC 3261 7.3.1)
    while (i + 1 < lines.length && (lines[i + 1].startsWith(' ') || lines[i + 1].startsWith('\t'))) {
      line += ' ' + lines[++i].trim();
    }
    if (line === '') continue;
    const colon = line.indexOf(':');
    if (colon <= 0) throw new AppMessageError(`bad header line: ${line.slice(0, 80)}`);
    const name = canonicalHeaderName(line.slice(0, colon).trim());
    msg.headers.push({ name, value: line.slice(colon + 1).trim() });
  }
  const body = text.slice(bodyStart);
  msg.body = Buffer.from(body, 'utf8');
  return msg;
}
