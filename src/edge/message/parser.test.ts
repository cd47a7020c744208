import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { parseMessage, StreamFramer, type ParseResult } from './index.js';
import { CAPTURES_DIR } from '../../../sip-tests/fixtures/shared.js';

const CAPTURES = CAPTURES_DIR;

function sip(lines: string[], body = ''): Buffer {
  return Buffer.from(lines.join('\r\n') + '\r\n\r\n' + body);
}

const OPTIONS_LINES = [
  'OPTIONS sip:options@127.0.0.1:5080 SIP/2.0',
  'Via: SIP/2.0/UDP 127.0.0.1;rport;branch=z9hG4bK5Se4ry2rmc9rS',
  'Max-Forwards: 70',
  'From: <sip:127.0.0.1:5060>;tag=3DtvKQF17XpKj',
  'To: <sip:options@127.0.0.1:5080>',
  'Call-ID: c4f0b40c-6239-1240-93b1-8ad9172b04af',
  'CSeq: 123184750 OPTIONS',
  'Content-Length: 0',
];
const OPTIONS = sip(OPTIONS_LINES);

function invite(body: string): Buffer {
  return sip([
    'INVITE sip:callee@127.0.0.1:5080;transport=tcp SIP/2.0',
    'Via: SIP/2.0/TCP 127.0.0.1;branch=z9hG4bK627vtSKvHNZBN',
    'Max-Forwards: 70',
    'From: <sip:127.0.0.1:5060;transport=tcp>;tag=4pKNNj0446c6D',
    'To: <sip:callee@127.0.0.1:5080>',
    'Call-ID: c4f26cc5-6239-1240-93b1-8ad9172b04af',
    'CSeq: 123184750 INVITE',
    'Content-Type: application/sdp',
    `Content-Length: ${Buffer.byteLength(body)}`,
  ], body);
}

function okMessage(r: ParseResult | { fatal: string } | { keepalive: true }) {
  if (!('ok' in r) || !r.ok) throw new Error(`not a message: ${JSON.stringify(r)}`);
  return r.message;
}

function error(r: ParseResult) {
  if (r.ok) throw new Error('parsed ok');
  return r;
}

describe('parseMessage: datagrams (RFC 3261 18.3)', () => {
  it('parses a request', () => {
    const m = okMessage(parseMessage(OPTIONS));
    expect(m.method).toBe('OPTIONS');
    expect(m.requestUri).toBe('sip:options@127.0.0.1:5080');
    expect(m.headers.length).toBe(7);
  });

  it('ignores leading CRLFs; a datagram of only CRLFs is an error without status', () => {
    expect(okMessage(parseMessage(Buffer.concat([Buffer.from('\r\n\r\n'), OPTIONS]))).method).toBe('OPTIONS');
    const ka = error(parseMessage(Buffer.from('\r\n\r\n')));
    expect(ka.status).toBeUndefined();
    expect(error(parseMessage(Buffer.alloc(0))).status).toBeUndefined();
  });

  it('accepts bare LF line endings', () => {
    const m = okMessage(parseMessage(Buffer.from(OPTIONS_LINES.join('\n') + '\n\n')));
    expect(m.cseq?.method).toBe('OPTIONS');
    const withBody = okMessage(parseMessage(Buffer.from(OPTIONS_LINES.slice(0, -1).join('\n') + '\nContent-Length: 3\n\nabc')));
    expect(withBody.body.toString()).toBe('abc');
  });

  it('takes exactly Content-Length bytes of body, ignores the rest; rejects a short datagram', () => {
    const m = okMessage(parseMessage(Buffer.concat([invite('v=0\r\n'), Buffer.from('garbage')])));
    expect(m.body.toString()).toBe('v=0\r\n');
    const short = invite('v=0\r\n').subarray(0, -2);
    const e = error(parseMessage(short));
    expect(e.status).toBe(400);
    expect(e.message?.callId).toBe('c4f26cc5-6239-1240-93b1-8ad9172b04af');
  });

  it('without Content-Length the body is the rest of the datagram', () => {
    const lines = OPTIONS_LINES.slice(0, -1);
    expect(okMessage(parseMessage(sip(lines, 'xyz'))).body.toString()).toBe('xyz');
  });

  it('rejects malformed Content-Length values', () => {
    for (const cl of ['-1', 'abc', '1 2', '99999999999', '']) {
      const lines = [...OPTIONS_LINES.slice(0, -1), `Content-Length: ${cl}`];
      expect(error(parseMessage(sip(lines))).status, cl).toBe(400);
    }
  });

  it('a malformed request gets 400 and the partial message; a malformed response has neither', () => {
    const bad = sip([...OPTIONS_LINES.slice(0, 2), 'this line has no colon', ...OPTIONS_LINES.slice(2)]);
    const e = error(parseMessage(bad));
    expect(e.status).toBe(400);
    expect(e.message?.get('To')).toBe('<sip:options@127.0.0.1:5080>');
    expect(e.message?.cseq?.seq).toBe(123184750);
    const response = sip(['SIP/2.0 200 OK', ...OPTIONS_LINES.slice(1, 2), 'bad header', ...OPTIONS_LINES.slice(2)]);
    const r = error(parseMessage(response));
    expect(r.status).toBeUndefined();
    expect(r.message).toBeUndefined();
  });

  it('missing mandatory headers: 400 unless the caller allows skeletal messages', () => {
    const skeletal = Buffer.from('OPTIONS sip:options@127.0.0.1:5080 SIP/2.0\r\nContent-Length: 0\r\n\r\n');
    expect(error(parseMessage(skeletal)).error).toMatch(/missing Via/);
    expect(okMessage(parseMessage(skeletal, undefined, { requireMandatoryHeaders: false })).method).toBe('OPTIONS');
    // even skeletal messages must not carry duplicates or bad values
    const dup = Buffer.from('OPTIONS sip:a@b SIP/2.0\r\nCall-ID: a\r\nCall-ID: b\r\n\r\n');
    expect(error(parseMessage(dup, undefined, { requireMandatoryHeaders: false })).error).toMatch(/Call-ID/);
  });

  it('status lines', () => {
    const base = OPTIONS_LINES.slice(1);
    expect(okMessage(parseMessage(sip(['SIP/2.0 180 Ringing', ...base]))).reason).toBe('Ringing');
    expect(okMessage(parseMessage(sip(['SIP/2.0 486 Busy Here', ...base]))).status).toBe(486);
    for (const line of ['SIP/2.0 700 Weird', 'SIP/2.0 099 Low', 'SIP/2.0 20 OK', 'SIP/2.0 2000 OK', 'SIP/3.0 200 OK', 'SIP/2.0 abc OK', 'SIP/2.0']) {
      const e = error(parseMessage(sip([line, ...base])));
      expect(e.status, line).toBeUndefined();
    }
  });

  it('request lines', () => {
    const rest = OPTIONS_LINES.slice(1);
    expect(error(parseMessage(sip(['OPTIONS sip:a@b SIP/2.1', ...rest]))).status).toBe(505);
    expect(error(parseMessage(sip(['OPTIONS sip:a@b SIP/3.0', ...rest]))).status).toBe(505);
    for (const line of [
      'OPTIONS sip:a@b', 'OPTIONS  sip:a@b SIP/2.0', 'OPTIONS sip:a@b SIP/2.0 ', 'OPTIONS <sip:a@b> SIP/2.0',
      'OPTIONS sip:a@b?Route=x SIP/2.0', 'OPTIONS sip: SIP/2.0', 'OPTIONS sip:a@b HTTP/1.1', 'OPT,IONS sip:a@b SIP/2.0',
    ]) {
      expect(error(parseMessage(sip([line, ...rest]))).status, line).toBe(400);
    }
    // binary garbage is not answered
    expect(error(parseMessage(Buffer.from([0x16, 0x03, 0x01, 0x00, 0x0d, 0x0a, 0x0d, 0x0a]))).status).toBeUndefined();
  });

  it('validates single-value headers and scalar ranges', () => {
    const cases: Array<[string, string]> = [
      ['Max-Forwards: 256', 'Max-Forwards'], ['Max-Forwards: x', 'Max-Forwards'], ['Max-Forwards: 70', 'multiple'],
      ['CSeq: 1 OPTIONS', 'multiple'], ['Call-ID: other', 'multiple'], ['To: <sip:x@y>', 'multiple'],
      ['Expires: 4294967296', 'Expires'], ['RSeq: x', 'RSeq'], ['RAck: 1 x INVITE', 'RAck'],
      ['Contact: <sip:a@b>;expires=9999999999', 'expires'], ['Contact: sip:a@b?x=y', 'Contact'],
      ['Date: Fri, 01 Jan 2010 16:00:00 EST', 'Date'], ['Contact: <sip:a@b>, , <sip:c@d>', 'empty element'],
      ['Route: <sip:a@b;lr>,', 'empty element'],
    ];
    for (const [line, message] of cases) {
      const e = error(parseMessage(sip([...OPTIONS_LINES.slice(0, -1), line, 'Content-Length: 0'])));
      expect(e.status, line).toBe(400);
      expect(e.error, line).toContain(message);
    }
    const fine = ['Expires: Thu, 01 Dec 1994 16:00:00 GMT', 'Contact: *', 'RSeq: 1', 'RAck: 776656 1 INVITE', 'Supported: 100rel, , timer', 'Allow:'];
    for (const line of fine) {
      expect(parseMessage(sip([...OPTIONS_LINES.slice(0, -1), line, 'Content-Length: 0'])).ok, line).toBe(true);
    }
    const supported = okMessage(parseMessage(sip([...OPTIONS_LINES.slice(0, -1), 'Supported: 100rel, , timer', 'l: 0'])));
    expect(supported.getAll('k')).toEqual(['100rel', 'timer']);
  });

  it('responses with bad scalars are dropped', () => {
    const base = ['SIP/2.0 503 Service Unavailable', ...OPTIONS_LINES.slice(1, -1)];
    for (const line of ['Retry-After: 99999999999', 'Warning: 1812 overture "x"', 'CSeq: 99999999999 OPTIONS']) {
      const e = error(parseMessage(sip([...base, line, 'Content-Length: 0'])));
      expect(e.status, line).toBeUndefined();
    }
    expect(parseMessage(sip([...base, 'Retry-After: 18000;duration=3600', 'Warning: 301 isi.edu "Incompatible"', 'Content-Length: 0'])).ok).toBe(true);
  });

  it('IPv6 Via and URIs', () => {
    const m = okMessage(parseMessage(sip([
      'OPTIONS sip:bob@[2001:db8::20]:5060 SIP/2.0',
      'Via: SIP/2.0/UDP [2001:db8::9:1]:5070;branch=z9hG4bKas3-111;rport',
      'From: <sip:alice@[2001:db8::9:1]>;tag=1',
      'To: <sip:bob@[2001:db8::20]>',
      'Call-ID: 6@[2001:db8::9:1]',
      'CSeq: 1 OPTIONS',
      'Content-Length: 0',
    ])));
    expect(m.topVia).toMatchObject({ host: '[2001:db8::9:1]', port: 5070 });
    expect(m.toAddr?.uri.host).toBe('[2001:db8::20]');
  });

  it('enforces limits', () => {
    expect(error(parseMessage(OPTIONS, { maxMessageBytes: 100 })).error).toMatch(/too large/);
    const many = [...OPTIONS_LINES.slice(0, -1), ...Array.from({ length: 20 }, (_, i) => `X-H${i}: ${i}`), 'Content-Length: 0'];
    const e = error(parseMessage(sip(many), { maxHeaderCount: 16 }));
    expect(e.error).toMatch(/too many headers/);
    expect(e.status).toBe(400);
    expect(e.message?.get('Via')).toBeDefined();
    const long = sip([...OPTIONS_LINES.slice(0, -1), `Subject: ${'x'.repeat(300)}`, 'Content-Length: 0']);
    expect(error(parseMessage(long, { maxLineLength: 200 })).error).toMatch(/too long/);
    const folded = sip([...OPTIONS_LINES.slice(0, -1), 'Subject: a', ...Array.from({ length: 50 }, () => ` ${'y'.repeat(10)}`), 'Content-Length: 0']);
    expect(error(parseMessage(folded, { maxLineLength: 200 })).error).toMatch(/too long/);
    expect(parseMessage(long).ok).toBe(true);
  });

  it('a header section without the empty line is a 400', () => {
    const e = error(parseMessage(Buffer.from(OPTIONS_LINES.join('\r\n') + '\r\n')));
    expect(e.status).toBe(400);
    expect(e.message?.callId).toBe('c4f0b40c-6239-1240-93b1-8ad9172b04af');
  });
});

describe('StreamFramer (RFC 3261 18.3, RFC 5626 4.4.1)', () => {
  const twoMessages = Buffer.concat([invite('v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\n'), OPTIONS]);

  it('frames a message pushed byte by byte', () => {
    const framer = new StreamFramer();
    const out: Array<ParseResult | { fatal: string } | { keepalive: true }> = [];
    for (let i = 0; i < twoMessages.length; i++) {
      out.push(...framer.push(twoMessages.subarray(i, i + 1)));
      if (i < twoMessages.length - 1 && out.length === 0) expect(framer.pendingBytes).toBe(i + 1);
    }
    expect(out.length).toBe(2);
    expect(okMessage(out[0]).body.toString()).toBe('v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\n');
    expect(okMessage(out[1]).method).toBe('OPTIONS');
    expect(framer.pendingBytes).toBe(0);
  });

  it('frames many messages in one chunk and across arbitrary splits', () => {
    const all = Buffer.concat(Array.from({ length: 25 }, (_, i) => (i % 2 ? OPTIONS : invite(`body-${i}`))));
    const one = new StreamFramer().push(all);
    expect(one.length).toBe(25);
    expect(one.every((r) => 'ok' in r && r.ok)).toBe(true);
    expect(okMessage(one[24]).body.toString()).toBe('body-24');
    for (const size of [3, 7, 64, 333, 1000]) {
      const framer = new StreamFramer();
      const out = [];
      for (let i = 0; i < all.length; i += size) out.push(...framer.push(all.subarray(i, i + size)));
      expect(out.length, String(size)).toBe(25);
      expect(okMessage(out[10]).body.toString()).toBe('body-10');
    }
  });

  it('reports double-CRLF pings and skips single-CRLF pongs', () => {
    const framer = new StreamFramer();
    expect(framer.push(Buffer.from('\r\n\r\n'))).toEqual([{ keepalive: true }]);
    expect(framer.push(Buffer.from('\r\n'))).toEqual([]);            // not yet known: ping or pong
    expect(framer.push(Buffer.from('\r\n'))).toEqual([{ keepalive: true }]);
    expect(framer.push(Buffer.from('\r\n'))).toEqual([]);
    const out = framer.push(OPTIONS);                                   // the pending CRLF was a pong
    expect(out.length).toBe(1);
    expect(okMessage(out[0]).method).toBe('OPTIONS');
    const mixed = new StreamFramer().push(Buffer.concat([Buffer.from('\r\n\r\n\r\n\r\n'), OPTIONS, Buffer.from('\r\n\r\n')]));
    expect(mixed.map((r) => ('keepalive' in r ? 'ka' : 'msg'))).toEqual(['ka', 'ka', 'msg', 'ka']);
  });

  it('a framable but malformed request is an error result, the connection stays usable', () => {
    const bad = sip(['OPTIONS sip:a@b SIP/2.0', 'Via: SIP/2.0/TCP h;branch=z9hG4bK1', 'Content-Length: 0']);
    const framer = new StreamFramer();
    const out = framer.push(Buffer.concat([bad, OPTIONS]));
    expect(out.length).toBe(2);
    const first = out[0];
    expect('ok' in first && !first.ok && first.status).toBe(400);
    expect(okMessage(out[1]).method).toBe('OPTIONS');
  });

  it('fatal: missing, negative, garbage or multiple Content-Length', () => {
    const noLength = sip(OPTIONS_LINES.slice(0, -1));
    for (const [label, buf] of [
      ['missing', noLength],
      ['negative', sip([...OPTIONS_LINES.slice(0, -1), 'Content-Length: -999'])],
      ['garbage', sip([...OPTIONS_LINES.slice(0, -1), 'Content-Length: 1x'])],
      ['multiple', sip([...OPTIONS_LINES.slice(0, -1), 'Content-Length: 13', 'l: 5'])],
      ['http', Buffer.from('GET / HTTP/1.1\r\nHost: x\r\n\r\n')],
    ] as const) {
      const framer = new StreamFramer();
      const out = framer.push(buf);
      expect(out.length, label).toBe(1);
      expect('fatal' in out[0], label).toBe(true);
      // once failed, the framer stays failed
      expect('fatal' in framer.push(OPTIONS)[0]).toBe(true);
    }
  });

  it('fatal: oversize header section or declared body', () => {
    const framer = new StreamFramer({ maxMessageBytes: 2000 });
    expect(framer.push(Buffer.from('OPTIONS sip:a@b SIP/2.0\r\n' + 'X: y\r\n'.repeat(200))).map((r) => 'fatal' in r)).toEqual([]);
    expect(framer.push(Buffer.from('X: y\r\n'.repeat(200))).map((r) => 'fatal' in r)).toEqual([true]);
    const big = new StreamFramer({ maxMessageBytes: 2000 }).push(sip([...OPTIONS_LINES.slice(0, -1), 'Content-Length: 5000']));
    expect('fatal' in big[0]).toBe(true);
  });

  it('body bytes are copied, not shared with the pushed chunk', () => {
    const buf = Buffer.from(invite('abc'));
    const out = new StreamFramer().push(buf);
    buf.fill(0);
    expect(okMessage(out[0]).body.toString()).toBe('abc');
  });
});

/** drachtio frames are `<byte length>#<payload>`; the payload's first line is the command, the rest is SIP */
function drachtioFrames(log: Buffer): Array<{ command: string; sip: Buffer }> {
  const frames: Array<{ command: string; sip: Buffer }> = [];
  let i = 0;
  while (i < log.length) {
    const hash = log.indexOf('#', i);
    if (hash < 0) break;
    let start = hash;
    while (start > i && log[start - 1] >= 0x30 && log[start - 1] <= 0x39) start--;
    if (start === hash) { i = hash + 1; continue; }
    const length = Number(log.toString('latin1', start, hash));
    const payload = log.subarray(hash + 1, hash + 1 + length);
    const crlf = payload.indexOf('\r\n');
    frames.push({
      command: payload.toString('utf8', 0, crlf < 0 ? payload.length : crlf),
      sip: crlf < 0 ? Buffer.alloc(0) : payload.subarray(crlf + 2),
    });
    i = hash + 1 + length;
  }
  return frames;
}

describe('drachtio wire captures', () => {
  for (const file of ['uac-side.log', 'uas-side.log']) {
    it(`parses every SIP message in ${file}`, () => {
      const frames = drachtioFrames(readFileSync(CAPTURES + file));
      expect(frames.length).toBeGreaterThan(10);
      let parsedCount = 0;
      for (const frame of frames) {
        if (frame.sip.length === 0) continue;
        const tokens = frame.command.split('|');
        // skeletal requests from the app (`sip|<txn>|<dialog>`) are completed by the server
        const fromApp = tokens[1] === 'sip' && tokens[2] !== 'network';
        const r = parseMessage(frame.sip, undefined, { requireMandatoryHeaders: !fromApp });
        expect(r.ok, `${frame.command}: ${r.ok ? '' : r.error}`).toBe(true);
        if (!r.ok) continue;
        parsedCount++;
        if (tokens[2] === 'network') {
          // `sip|network|<bytes>|...`: the byte count is the message as received, before the server stamped
          // received/rport into the top Via (RFC 3581), so the delivered text is the same or slightly longer
          expect(frame.sip.length - Number(tokens[3])).toBeGreaterThanOrEqual(0);
          expect(frame.sip.length - Number(tokens[3])).toBeLessThan(40);
          expect(r.message.callId).toBeDefined();
          expect(r.message.cseq).toBeDefined();
        }
        // serialising a parsed full message and parsing it again is stable
        const again = parseMessage(r.message.serialise(), undefined, { requireMandatoryHeaders: !fromApp });
        expect(again.ok && again.message.serialise().equals(r.message.serialise())).toBe(true);
      }
      expect(parsedCount).toBeGreaterThanOrEqual(8);
    });
  }

  it('captured INVITE details', () => {
    const frames = drachtioFrames(readFileSync(CAPTURES + 'uas-side.log'));
    const inviteFrame = frames.find((f) => f.command.includes('|sip|network|') && f.sip.toString().startsWith('INVITE'));
    const m = okMessage(parseMessage(inviteFrame!.sip));
    expect(m.topVia?.transport).toBe('TCP');
    expect(m.get('Content-Type')).toBe('application/sdp');
    expect(m.body.length).toBe(Number(m.get('Content-Length')));
  });
});
