import { describe, expect, it } from 'vitest';
import {
  canonicalHeaderName, formatNameAddr, formatUri, formatVia, parseCSeq, parseNameAddr, parseUri, parseVia,
  splitHeaderValues,
} from './index.js';
import { getParam, isCallId, isSipDate, parseBoundedInt, quote, unquote } from './grammar.js';

describe('canonicalHeaderName (RFC 3261 7.3.3 compact forms)', () => {
  it('expands compact forms in either case', () => {
    const pairs: Array<[string, string]> = [
      ['i', 'Call-ID'], ['m', 'Contact'], ['e', 'Content-Encoding'], ['l', 'Content-Length'], ['c', 'Content-Type'],
      ['f', 'From'], ['s', 'Subject'], ['k', 'Supported'], ['t', 'To'], ['v', 'Via'], ['o', 'Event'],
      ['u', 'Allow-Events'], ['r', 'Refer-To'], ['b', 'Referred-By'], ['x', 'Session-Expires'], ['y', 'Identity'],
      ['a', 'Accept-Contact'], ['d', 'Request-Disposition'], ['j', 'Reject-Contact'], ['n', 'Identity-Info'],
      ['V', 'Via'], ['I', 'Call-ID'],
    ];
    for (const [compact, long] of pairs) expect(canonicalHeaderName(compact)).toBe(long);
  });

  it('canonicalises long names case-insensitively and keeps unknown names as given', () => {
    expect(canonicalHeaderName('call-id')).toBe('Call-ID');
    expect(canonicalHeaderName('CSEQ')).toBe('CSeq');
    expect(canonicalHeaderName('www-authenticate')).toBe('WWW-Authenticate');
    expect(canonicalHeaderName('proxy-authorization')).toBe('Proxy-Authorization');
    expect(canonicalHeaderName('record-route')).toBe('Record-Route');
    expect(canonicalHeaderName('max-forwards')).toBe('Max-Forwards');
    expect(canonicalHeaderName('rseq')).toBe('RSeq');
    expect(canonicalHeaderName('RACK')).toBe('RAck');
    expect(canonicalHeaderName('p-asserted-identity')).toBe('P-Asserted-Identity');
    expect(canonicalHeaderName('X-Custom-Thing')).toBe('X-Custom-Thing');
    expect(canonicalHeaderName('x-custom-thing')).toBe('x-custom-thing');
  });
});

describe('parseUri / formatUri (RFC 3261 19.1)', () => {
  it('parses a full SIP URI', () => {
    const u = parseUri('sip:alice:secret@Example.COM:5061;transport=TCP;lr;Maddr=239.255.255.1?Subject=hi&Priority=urgent');
    expect(u).toEqual({
      scheme: 'sip', user: 'alice', password: 'secret', host: 'Example.COM', port: 5061,
      params: [['transport', 'TCP'], ['lr', null], ['maddr', '239.255.255.1']],
      headers: [['Subject', 'hi'], ['Priority', 'urgent']],
    });
  });

  it('parses IPv6 references and keeps the brackets', () => {
    expect(parseUri('sips:[2001:db8::10]:5061;transport=tls')).toMatchObject({ scheme: 'sips', host: '[2001:db8::10]', port: 5061 });
    expect(parseUri('sip:bob@[::1]')).toMatchObject({ user: 'bob', host: '[::1]' });
    expect(parseUri('sip:[::1')).toBeNull();
    expect(parseUri('sip:[]')).toBeNull();
  });

  it('keeps %-escapes and ; in the user part', () => {
    expect(parseUri('sip:user;par=u%40example.net@example.com')).toMatchObject({ user: 'user;par=u%40example.net', host: 'example.com', params: [] });
    expect(parseUri('sip:%00%00@host')?.user).toBe('%00%00');
  });

  it('parses tel and unknown schemes', () => {
    expect(parseUri('tel:+1-201-555-0123;phone-context=example.com')).toEqual({
      scheme: 'tel', user: '+1-201-555-0123', host: '', params: [['phone-context', 'example.com']], headers: [],
    });
    expect(parseUri('urn:service:sos')).toEqual({ scheme: 'urn', host: '', params: [], headers: [], opaque: 'service:sos' });
    expect(parseUri('HTTP://www.example.com/a?b')).toMatchObject({ scheme: 'http', opaque: '//www.example.com/a?b' });
  });

  it('rejects malformed URIs', () => {
    for (const bad of [
      '', 'sip', 'sip:', ':foo', '1sip:foo', 'sip:user@', 'sip:@host', 'sip:host:port', 'sip:host:99999',
      'sip:host;', 'sip:host;;lr', 'sip:ho st', 'sip:host?', 'sip:host?novalue', 'sip:<host>', 'sip:a@b@c',
      'tel:', 'mailto:', 'sip:host:', 'sip:host\t',
    ]) expect(parseUri(bad), bad).toBeNull();
  });

  it('round-trips', () => {
    for (const s of [
      'sip:alice@example.com', 'sips:bob:pw@[2001:db8::1]:5061;transport=tls?X=1&Y=2',
      'sip:127.0.0.1:5060;lr', 'tel:+15551234;ext=22', 'soap.beep://192.0.2.103:3002', 'sip:+15551234567@gw;user=phone',
    ]) {
      const u = parseUri(s);
      expect(u, s).not.toBeNull();
      expect(formatUri(u!)).toBe(s);
      expect(parseUri(formatUri(u!))).toEqual(u);
    }
  });
});

describe('parseNameAddr / formatNameAddr (RFC 3261 20.10, 25.1)', () => {
  it('parses quoted display names with escapes', () => {
    const n = parseNameAddr('"Bob \\"the\\" Builder \\\\ Jr" <sip:bob@example.com>;tag=abc;expires=60');
    expect(n?.displayName).toBe('Bob "the" Builder \\ Jr');
    expect(n?.params).toEqual([['tag', 'abc'], ['expires', '60']]);
    expect(n?.rawUri).toBe('sip:bob@example.com');
  });

  it('parses unquoted display names and no LWS before <', () => {
    expect(parseNameAddr('Bob Smith <sip:bob@example.com>')?.displayName).toBe('Bob Smith');
    expect(parseNameAddr('caller<sip:caller@example.com>;tag=323')).toMatchObject({ displayName: 'caller', params: [['tag', '323']] });
    expect(parseNameAddr('<sip:a@b>')?.displayName).toBeUndefined();
    expect(parseNameAddr('"" <sip:a@b>')?.displayName).toBe('');
  });

  it('addr-spec form: params after ; are header params', () => {
    const n = parseNameAddr('sip:+19725552222@gw1.example.net;unknownparam;tag=x');
    expect(n?.uri.params).toEqual([]);
    expect(n?.params).toEqual([['unknownparam', null], ['tag', 'x']]);
    expect(parseNameAddr('sip:a@b ;  tag = 1')?.params).toEqual([['tag', '1']]);
  });

  it('angle form keeps URI params inside the URI', () => {
    const n = parseNameAddr('<sip:a@b;transport=tcp;lr>;tag=9');
    expect(n?.uri.params).toEqual([['transport', 'tcp'], ['lr', null]]);
    expect(n?.params).toEqual([['tag', '9']]);
  });

  it('quoted param values keep their quotes', () => {
    const n = parseNameAddr('<sip:a@b;ob>;+sip.instance="<urn:uuid:00000000-0000-1000-8000-AABBCCDDEEFF>";reg-id=1');
    expect(getParam(n!.params, '+sip.instance')).toBe('"<urn:uuid:00000000-0000-1000-8000-AABBCCDDEEFF>"');
    expect(getParam(n!.params, 'reg-id')).toBe('1');
  });

  it('rejects malformed values', () => {
    for (const bad of [
      '"Mr. J. User <sip:j.user@example.com>',        // quotbal
      '"Watson, Thomas" < sip:t.watson@example.org >', // badaspec
      'Bell, Alexander <sip:a.g.bell@example.com>;tag=43', // baddn
      'sip:user@example.com?Route=%3Csip:sip.example.com%3E', // regbadct
      '"Joe" <sip:joe@example.org>;;;;',               // badinv01
      '<sip:a@b', '<>', '', '   ', 'sip:a@b;tag=', '<sip:a@b> junk', '"x" sip:a@b',
    ]) expect(parseNameAddr(bad), bad).toBeNull();
  });

  it('round-trips through formatNameAddr', () => {
    for (const s of [
      '"Alice" <sip:alice@example.com>;tag=1928301774',
      '<sip:bob@192.0.2.4:5070;transport=tcp>;expires=3600;q=0.7',
      '"Quote \\" and \\\\ backslash" <sips:x@[::1]>',
      '<tel:+15551234>',
    ]) {
      const n = parseNameAddr(s)!;
      expect(formatNameAddr(n)).toBe(s);
      expect(parseNameAddr(formatNameAddr(n))).toEqual(n);
    }
    // control characters survive as quoted-pairs
    const ctl = parseNameAddr('"BEL:\\\x07 NUL:\\\x00" <sip:a@b>')!;
    expect(ctl.displayName).toBe('BEL:\x07 NUL:\x00');
    expect(parseNameAddr(formatNameAddr(ctl))?.displayName).toBe('BEL:\x07 NUL:\x00');
    // unquoted display names come back quoted
    expect(formatNameAddr(parseNameAddr('Bob <sip:b@c>')!)).toBe('"Bob" <sip:b@c>');
  });
});

describe('parseVia / formatVia (RFC 3261 20.42)', () => {
  it('parses rport with and without value, received, branch', () => {
    const v = parseVia('SIP/2.0/UDP 192.0.2.1:5060;rport;branch=z9hG4bK776asdhds;received=10.0.0.1');
    expect(v).toEqual({
      protocol: 'SIP/2.0', transport: 'UDP', host: '192.0.2.1', port: 5060,
      params: [['rport', null], ['branch', 'z9hG4bK776asdhds'], ['received', '10.0.0.1']],
    });
    expect(parseVia('SIP/2.0/TCP h;rport=5070')?.params).toEqual([['rport', '5070']]);
  });

  it('parses IPv6 hosts and IPv6 received values', () => {
    const v = parseVia('SIP/2.0/TLS [2001:db8::9:1]:5061;branch=z9hG4bKx;received=2001:db8::9:255');
    expect(v?.host).toBe('[2001:db8::9:1]');
    expect(v?.port).toBe(5061);
    expect(getParam(v!.params, 'received')).toBe('2001:db8::9:255');
  });

  it('tolerates LWS around separators and lower-case transports', () => {
    const v = parseVia('SIP  / 2.0  / tcp     spindle.example.com   ;   branch  =   z9hG4bK9ikj8');
    expect(v).toMatchObject({ protocol: 'SIP/2.0', transport: 'TCP', host: 'spindle.example.com', params: [['branch', 'z9hG4bK9ikj8']] });
    expect(parseVia('SIP/2.0/WSS df7jal23ls0d.invalid;branch=z9hG4bKx')?.transport).toBe('WSS');
    expect(parseVia('SIP/2.0/UNKNOWN t4.example.com')?.transport).toBe('UNKNOWN');
  });

  it('rejects malformed Vias', () => {
    for (const bad of [
      '', 'SIP/2.0', 'SIP/2.0/UDP', 'SIP/2.0/UDP192.0.2.1', 'SIP/2.0/UDP 192.0.2.15;;', 'SIP//UDP host',
      'SIP/2.0/UDP host:99999', 'SIP/2.0/UDP host:', 'SIP/2.0/UDP host;branch=', 'SIP/2.0/UDP [::1',
      'SIP/2.0/UDP host junk',
    ]) expect(parseVia(bad), bad).toBeNull();
  });

  it('round-trips', () => {
    for (const s of [
      'SIP/2.0/UDP 127.0.0.1;rport;branch=z9hG4bK5Se4ry2rmc9rS',
      'SIP/2.0/TCP [::1]:5080;branch=z9hG4bKabc;received=::1;rport=5555',
      'SIP/2.0/WS abc.invalid;branch=z9hG4bK1;alias',
    ]) {
      const v = parseVia(s)!;
      expect(formatVia(v)).toBe(s);
      expect(parseVia(formatVia(v))).toEqual(v);
    }
  });
});

describe('parseCSeq (RFC 3261 20.16)', () => {
  it('parses number and method', () => {
    expect(parseCSeq('4711 INVITE')).toEqual({ seq: 4711, method: 'INVITE' });
    expect(parseCSeq('0009   INVITE')).toEqual({ seq: 9, method: 'INVITE' });
    expect(parseCSeq('4294967295 ACK')).toEqual({ seq: 4294967295, method: 'ACK' });
  });
  it('rejects overlarge, non-numeric or incomplete values', () => {
    for (const bad of ['4294967296 INVITE', '36893488147419103232 REGISTER', 'x INVITE', '1', 'INVITE', '1INVITE', '1 INV ITE', '-1 BYE', '']) {
      expect(parseCSeq(bad), bad).toBeNull();
    }
  });
});

describe('splitHeaderValues (RFC 3261 7.3.1)', () => {
  it('splits on top-level commas only', () => {
    expect(splitHeaderValues('INVITE, ACK ,BYE')).toEqual(['INVITE', 'ACK', 'BYE']);
    expect(splitHeaderValues('"Doe, John" <sip:j@d>;q=1, <sip:k@d;x=a,b>')).toEqual(['"Doe, John" <sip:j@d>;q=1', '<sip:k@d;x=a,b>']);
    expect(splitHeaderValues('"a \\", b" <sip:x@y>, <sip:z@w>')).toEqual(['"a \\", b" <sip:x@y>', '<sip:z@w>']);
    expect(splitHeaderValues('SIP/2.0/UDP 192.0.2.15;;,;,,')).toEqual(['SIP/2.0/UDP 192.0.2.15;;', ';', '', '']);
    expect(splitHeaderValues('single')).toEqual(['single']);
  });
});

describe('small scalar grammars', () => {
  it('parseBoundedInt', () => {
    expect(parseBoundedInt('0068', 255)).toBe(68);
    expect(parseBoundedInt('256', 255)).toBeUndefined();
    expect(parseBoundedInt('00000000000000000001')).toBe(1);
    expect(parseBoundedInt('99999999999')).toBeUndefined();
    expect(parseBoundedInt('-1')).toBeUndefined();
    expect(parseBoundedInt('')).toBeUndefined();
  });
  it('isCallId, isSipDate, quote/unquote', () => {
    expect(isCallId('a84b4c76e66710@pc33.atlanta.com')).toBe(true);
    expect(isCallId('a b')).toBe(false);
    expect(isCallId('a,b')).toBe(false);
    expect(isCallId('a@b@c')).toBe(false);
    expect(isSipDate('Sat, 13 Nov 2010 23:29:00 GMT')).toBe(true);
    expect(isSipDate('Fri, 01 Jan 2010 16:00:00 EST')).toBe(false);
    expect(unquote(quote('a "b" \\ c'))).toBe('a "b" \\ c');
    expect(quote('line\r\nbreak')).toBe('"linebreak"');
  });
});
