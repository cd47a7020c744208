/**
 * RFC 4475 SIP torture tests against the parser. INDEX.tsv says what a compliant element answers; this file
 * pins down which of those answers the *parser* gives (400 / 505 / drop / parse ok), the rest being up to the
 * edge and app (416, 420, 415, 483, 501...).
 *
 * Semantic (3.2 / 3.3) cases the parser accepts on purpose, documented here:
 *  - badbranch: "branch=z9hG4bK" with nothing after is syntactically fine; the transaction layer decides.
 *  - unkscm / novelsc / unksm2: unknown URI schemes parse (the app answers 416 / a registrar 400).
 *  - bext01, invut, regaut01, zeromf, cparam01/02, regescrt, sdp01, bcast: well-formed, decided above the parser.
 * and the ones it rejects with 400 as INDEX asks: insuf (missing headers), multi01 (duplicate single-value
 * headers), mcl01 (conflicting Content-Length; fatal on streams, see parser.test.ts).
 */
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { parseMessage, parseNameAddr, parseUri, parseVia, StreamFramer, type ParseResult } from './index.js';
import { RFC4475_DIR } from '../../../sip-tests/fixtures/shared.js';

const DIR = RFC4475_DIR;
const rows = readFileSync(DIR + 'INDEX.tsv', 'utf8').trim().split('\n').slice(1).map((line) => {
  const [file, section, cls, expected] = line.split('\t');
  return { file, section, cls, expected };
});
const dat = (file: string): Buffer => readFileSync(DIR + file);

function ok(file: string) {
  const r = parseMessage(dat(file));
  if (!r.ok) throw new Error(`${file}: ${r.error}`);
  return r.message;
}

function expectError(r: ParseResult): Extract<ParseResult, { ok: false }> {
  expect(r.ok).toBe(false);
  if (r.ok) throw new Error('parsed');
  return r;
}

/** the semantic cases INDEX wants a 400 for and the parser rejects */
const SEMANTIC_400 = new Set(['insuf.dat', 'multi01.dat', 'mcl01.dat']);

describe('RFC 4475 index', () => {
  it('covers every .dat file in the directory', () => {
    expect(rows.length).toBe(49);
    for (const row of rows) expect(dat(row.file).length).toBeGreaterThan(0);
  });

  for (const row of rows) {
    it(`${row.file} (${row.section} ${row.cls}: ${row.expected})`, () => {
      const r = parseMessage(dat(row.file));
      if (row.cls === 'valid') {
        expect(r.ok, r.ok ? '' : r.error).toBe(true);
      } else if (row.cls === 'invalid') {
        const e = expectError(r);
        if (row.expected.startsWith('drop')) {
          expect(e.status).toBeUndefined();
          expect(e.message).toBeUndefined();
        } else {
          expect(e.status).toBe(row.expected === '505' ? 505 : 400);
          // enough recovered to build the stateless response (RFC 3261 8.2.6.2)
          expect(e.message).toBeDefined();
          const m = e.message!;
          expect(m.isRequest).toBe(true);
          expect(m.get('Via')).toBeDefined();
          expect(m.get('Call-ID')).toBeDefined();
          expect(m.get('CSeq')).toBeDefined();
          expect(m.get('From')).toBeDefined();
        }
      } else if (SEMANTIC_400.has(row.file)) {
        expect(expectError(r).status).toBe(400);
      } else {
        expect(r.ok, r.ok ? '' : r.error).toBe(true);
      }
    });
  }
});

describe('RFC 4475 3.1.1 valid messages, details', () => {
  it('wsinv: folding, LWS around separators, compact names, leading zeros', () => {
    const m = ok('wsinv.dat');
    expect(m.method).toBe('INVITE');
    expect(m.requestUri).toBe('sip:vivekg@chair-dnrc.example.com;unknownparam');
    expect(m.get('NewFangledHeader')).toBe('newfangled value continued newfangled value');
    expect(m.get('newfangledheader')).toBe('newfangled value continued newfangled value');
    expect(m.get('UnknownHeaderWithUnusualValue')).toBe(';;,,;;,;');
    expect(m.get('Subject')).toBe('');
    expect(m.get('s')).toBe('');
    expect(m.cseq).toEqual({ seq: 9, method: 'INVITE' });
    expect(m.get('Max-Forwards')).toBe('0068');
    expect(m.toTag).toBe('1918181833n');
    expect(m.fromTag).toBe('98asjd8');
    expect(m.fromAddr?.displayName).toBe('J Rosenberg \\"');
    const vias = m.getAll('Via').map((v) => parseVia(v));
    expect(vias.map((v) => [v?.transport, v?.host])).toEqual([
      ['UDP', '192.0.2.2'], ['TCP', 'spindle.example.com'], ['UDP', '192.168.255.111'],
    ]);
    expect(vias.map((v) => v?.protocol)).toEqual(['SIP/2.0', 'SIP/2.0', 'SIP/2.0']);
    expect(m.topViaBranch).toBe('390skdjuw');
    expect(parseVia(m.getAll('Via')[2])?.params).toEqual([['branch', 'z9hG4bK30239']]);
    const contact = parseNameAddr(m.get('Contact')!);
    expect(contact?.displayName).toBe('Quoted string ""');
    expect(contact?.params).toEqual([['newparam', 'newvalue'], ['secondparam', null], ['q', '0.33']]);
    expect(m.getAll('Route')).toEqual(['<sip:services.example.com;lr;unknownwith=value;unknown-no-value>']);
    expect(m.body.length).toBe(150);
    expect(m.headers.map((h) => h.name)).toContain('Call-ID');
    expect(m.headers.map((h) => h.name)).toContain('To');
    expect(m.headers.map((h) => h.name)).not.toContain('TO');
  });

  it('intmeth: token method, unusual Request-URI, quoted-pairs of control characters, UTF-8', () => {
    const m = ok('intmeth.dat');
    expect(m.method).toBe("!interesting-Method0123456789_*+`.%indeed'~");
    const ruri = parseUri(m.requestUri!);
    expect(ruri?.user).toBe("1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*");
    expect(ruri?.password).toBe("&it+has=1,weird!*pas$wo~d_too.(doesn't-it)");
    expect(ruri?.host).toBe('example.com');
    expect(m.toAddr?.displayName).toBe('BEL:\x07 NUL:\x00 DEL:\x7f');
    expect(m.fromAddr?.displayName).toBe("token1~` token2'+_ token3*%!.-");
    expect(m.fromTag).toBe("_token~1'+`*%!-.");
    expect(m.fromAddr?.params[0]).toEqual(["fromparam''~+*_!.-%", '"работающий"']);
    expect(m.callId).toBe('intmeth.word%ZK-!.*_+\'@word`~)(><:\\/"][?}{');
    expect(m.get("extensionHeader-!.%*+_`'~")).toBe('\uFEFF大停電');
    expect(m.cseq?.method).toBe(m.method);
  });

  it('esc01: %-escapes kept as received', () => {
    const m = ok('esc01.dat');
    expect(m.requestUri).toBe('sip:sips%3Auser%40example.com@example.net');
    expect(parseUri(m.requestUri!)?.user).toBe('sips%3Auser%40example.com');
    expect(m.toAddr?.uri.user).toBe('%75se%72');
    expect(m.fromAddr?.uri.user).toBe('I%20have%20spaces');
    const contact = parseNameAddr(m.get('Contact')!);
    expect(contact?.uri.user).toBe('cal%6Cer');
    expect(contact?.uri.params).toEqual([['%6c%72', null], ['n%61me', 'v%61lue%25%34%31']]);
  });

  it('escnull: two distinct contacts, users not truncated at %00', () => {
    const m = ok('escnull.dat');
    const contacts = m.getAll('Contact');
    expect(contacts).toEqual(['<sip:%00@host5.example.com>', '<sip:%00%00@host5.example.com>']);
    expect(contacts.map((c) => parseNameAddr(c)?.uri.user)).toEqual(['%00', '%00%00']);
    expect(m.toAddr?.uri.user).toBe('null-%00-null');
    expect(m.get('l')).toBe('0');
  });

  it('esc02: RE%47IST%45R is not REGISTER, C%6Fntact is not Contact', () => {
    const m = ok('esc02.dat');
    expect(m.method).toBe('RE%47IST%45R');
    expect(m.getAll('Contact')).toEqual(['<sip:alias1@host1.example.com>', '<sip:alias3@host3.example.com>']);
    expect(m.get('C%6Fntact')).toBe('<sip:alias2@host2.example.com>');
    expect(m.toAddr?.displayName).toBe('%Z%45');
    expect(m.topViaBranch).toBe('z9hG4bK209%fzsnel234');
  });

  it('lwsdisp: no LWS between display name and <', () => {
    const m = ok('lwsdisp.dat');
    expect(m.fromAddr?.displayName).toBe('caller');
    expect(m.fromAddr?.uri.user).toBe('caller');
    expect(m.fromTag).toBe('323');
  });

  it('longreq: long values and 34 Via values under every spelling of Via', () => {
    const m = ok('longreq.dat');
    const vias = m.getAll('Via');
    expect(vias.length).toBe(34);
    expect(vias[0]).toBe('SIP/2.0/TCP sip33.example.com');
    expect(vias[33]).toContain('host.example.com;received=192.0.2.5;branch=verylong');
    expect(vias.every((v) => parseVia(v) !== null)).toBe(true);
    expect(m.headers.filter((h) => h.name === 'Via').length).toBe(34);
    expect(m.toAddr?.uri.port).toBe(6000);
    expect(m.fromTag?.length).toBeGreaterThan(100);
    expect(m.get('F')).toBe(m.get('From'));
    expect(m.body.length).toBe(150);
  });

  it('dblreq: the first message is taken, trailing octets ignored', () => {
    const m = ok('dblreq.dat');
    expect(m.method).toBe('REGISTER');
    expect(m.body.length).toBe(0);
    expect(m.callId).toBe('dblreq.0ha0isndaksdj99sdfafnl3lk233412');
    expect(m.get('Call-ID')).toBe(m.get('i'));
  });

  it('semiuri: user part is "user;par=u%40example.net", Accept folded list split', () => {
    const m = ok('semiuri.dat');
    const uri = parseUri(m.requestUri!);
    expect(uri?.user).toBe('user;par=u%40example.net');
    expect(uri?.host).toBe('example.com');
    expect(uri?.params).toEqual([]);
    expect(m.getAll('Accept')).toEqual([
      'application/sdp', 'application/pkcs7-mime', 'multipart/mixed', 'multipart/signed', 'message/sip', 'message/sipfrag',
    ]);
  });

  it('transports: known and unknown transports', () => {
    const m = ok('transports.dat');
    expect(m.getAll('Via').map((v) => parseVia(v)?.transport)).toEqual(['UDP', 'SCTP', 'TLS', 'UNKNOWN', 'TCP']);
    expect(m.callId).toBe('transports.kijh4akdnaqjkwendsasfdj');
  });

  it('mpart01: binary body preserved byte for byte', () => {
    const raw = dat('mpart01.dat');
    const m = ok('mpart01.dat');
    expect(m.body.length).toBe(553);
    const bodyStart = raw.indexOf('\r\n\r\n') + 4;
    expect(Buffer.compare(m.body, raw.subarray(bodyStart, bodyStart + 553))).toBe(0);
    expect(m.body.includes(0)).toBe(true);
    // serialise keeps the body bytes too
    const again = parseMessage(m.serialise());
    expect(again.ok && Buffer.compare(again.message.body, m.body)).toBe(0);
    // and so does the stream framer, byte by byte
    const framer = new StreamFramer();
    const results = [];
    for (let i = 0; i < raw.length; i++) results.push(...framer.push(raw.subarray(i, i + 1)));
    expect(results.length).toBe(1);
    const first = results[0];
    expect('ok' in first && first.ok && Buffer.compare(first.message.body, m.body)).toBe(0);
  });

  it('unreason / noreason: unusual and empty reason phrases', () => {
    const u = ok('unreason.dat');
    expect(u.status).toBe(200);
    expect(u.reason).toBe('= 2**3 * 5**2 но сто девяносто девять - простое');
    const n = ok('noreason.dat');
    expect(n.status).toBe(100);
    expect(n.reason).toBe('');
  });

  it('inv2543: no Content-Length on a datagram means the body is the rest', () => {
    const raw = dat('inv2543.dat');
    const m = ok('inv2543.dat');
    expect(m.body.toString()).toBe(raw.subarray(raw.indexOf('\r\n\r\n') + 4).toString());
    expect(m.topViaBranch).toBeUndefined();
    expect(m.fromTag).toBeUndefined();
    expect(m.has('Max-Forwards')).toBe(false);
  });
});

describe('RFC 4475 3.1.2 invalid messages, details', () => {
  it('badvers gives 505 with a usable partial message', () => {
    const e = expectError(parseMessage(dat('badvers.dat')));
    expect(e.status).toBe(505);
    expect(e.message?.method).toBe('OPTIONS');
    expect(e.message?.callId).toBe('badvers.31417@c.example.com');
  });

  it('baddn is rejected for its display name, not only for the missing empty line', () => {
    const raw = Buffer.concat([dat('baddn.dat'), Buffer.from('\r\n')]);
    const e = expectError(parseMessage(raw));
    expect(e.status).toBe(400);
    expect(e.error).toMatch(/From/);
  });

  it('scalar02: each overlarge value alone is a 400', () => {
    const base = dat('scalar02.dat').toString('latin1');
    const fixed = base.replace('Max-Forwards: 300', 'Max-Forwards: 255')
      .replace('36893488147419103232 REGISTER', '4294967295 REGISTER')
      .replace(/Expires: 1\d+/, 'Expires: 4294967295')
      .replace('expires=280297596632815', 'expires=4294967295');
    expect(parseMessage(Buffer.from(fixed, 'latin1')).ok).toBe(true);
    const broken: Array<[string, string, RegExp]> = [
      ['Max-Forwards: 255', 'Max-Forwards: 300', /Max-Forwards/],
      ['4294967295 REGISTER', '36893488147419103232 REGISTER', /CSeq/],
      ['4294967295 REGISTER', '4294967296 REGISTER', /CSeq/],
      ['Expires: 4294967295', 'Expires: 4294967296', /Expires/],
      ['expires=4294967295', 'expires=280297596632815', /expires/],
    ];
    for (const [from, to, error] of broken) {
      const e = expectError(parseMessage(Buffer.from(fixed.replace(from, to), 'latin1')));
      expect(e.status).toBe(400);
      expect(e.error).toMatch(error);
    }
  });

  it('scalarlg and bigcode responses are dropped (no status, no message)', () => {
    for (const f of ['scalarlg.dat', 'bigcode.dat']) {
      const e = expectError(parseMessage(dat(f)));
      expect(e.status).toBeUndefined();
    }
  });

  it('clerr: Content-Length beyond the datagram is a 400; on a stream the framer waits', () => {
    expect(expectError(parseMessage(dat('clerr.dat'))).status).toBe(400);
    const framer = new StreamFramer();
    expect(framer.push(dat('clerr.dat'))).toEqual([]);
    expect(framer.pendingBytes).toBe(dat('clerr.dat').length);
  });

  it('ncl and mcl01 are 400 on datagrams and fatal on streams', () => {
    for (const f of ['ncl.dat', 'mcl01.dat']) {
      expect(expectError(parseMessage(dat(f))).status).toBe(400);
      const out = new StreamFramer().push(dat(f));
      expect(out.length).toBe(1);
      expect('fatal' in out[0]).toBe(true);
    }
  });

  it('mismatch01/02: CSeq method differs from the request method', () => {
    for (const f of ['mismatch01.dat', 'mismatch02.dat']) {
      const e = expectError(parseMessage(dat(f)));
      expect(e.status).toBe(400);
      expect(e.error).toMatch(/CSeq/);
    }
  });

  it('multi01 and insuf keep what they have for the 400', () => {
    const multi = expectError(parseMessage(dat('multi01.dat')));
    expect(multi.message?.getAll('Call-ID').length).toBe(2);
    const insuf = expectError(parseMessage(dat('insuf.dat')));
    expect(insuf.error).toMatch(/missing/);
    expect(insuf.message?.get('Via')).toBe('SIP/2.0/UDP 192.0.2.95;branch=z9hG4bKkdj.insuf');
  });
});

describe('RFC 4475 3.3 semantic cases the parser accepts', () => {
  it('unknown schemes parse (the app answers 416)', () => {
    expect(parseUri(ok('unkscm.dat').requestUri!)).toEqual({
      scheme: 'nobodyknowsthisscheme', host: '', params: [], headers: [], opaque: 'totallyopaquecontent',
    });
    expect(parseUri(ok('novelsc.dat').requestUri!)?.scheme).toBe('soap.beep');
    const m = ok('unksm2.dat');
    expect(m.toAddr?.uri.scheme).toBe('isbn');
    expect(m.fromAddr?.uri.scheme).toBe('http');
    expect(parseNameAddr(m.get('Contact')!)?.uri).toMatchObject({ scheme: 'name', opaque: 'John_Smith' });
  });

  it('cparam01 / cparam02: contact-param vs url-param', () => {
    const c1 = parseNameAddr(ok('cparam01.dat').get('Contact')!);
    expect(c1?.params).toEqual([['unknownparam', null]]);
    expect(c1?.uri.params).toEqual([]);
    const c2 = parseNameAddr(ok('cparam02.dat').get('Contact')!);
    expect(c2?.params).toEqual([]);
    expect(c2?.uri.params).toEqual([['unknownparam', null]]);
  });

  it('regescrt: escaped Route header kept in the Contact URI', () => {
    const c = parseNameAddr(ok('regescrt.dat').get('m')!);
    expect(c?.uri.headers).toEqual([['Route', '%3Csip:sip.example.com%3E']]);
  });

  it('bext01 / badbranch / zeromf / regaut01 values are available to the layers above', () => {
    expect(ok('bext01.dat').getAll('Require')).toEqual(['nothingSupportsThis', 'nothingSupportsThisEither']);
    expect(ok('bext01.dat').getAll('Proxy-Require')).toEqual(['noProxiesSupportThis', 'norDoAnyProxiesSupportThis']);
    expect(ok('badbranch.dat').topViaBranch).toBe('z9hG4bK');
    expect(ok('zeromf.dat').get('Max-Forwards')).toBe('0');
    expect(ok('regaut01.dat').get('Authorization')).toBe('NoOneKnowsThisScheme opaque-data=here');
  });
});
