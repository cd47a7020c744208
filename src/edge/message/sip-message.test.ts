import { describe, expect, it } from 'vitest';
import { parseMessage, SipMessage } from './index.js';

const INVITE = [
  'INVITE sip:bob@biloxi.example.com SIP/2.0',
  'Via: SIP/2.0/TCP client.atlanta.example.com:5060;branch=z9hG4bK74bf9',
  'Via: SIP/2.0/UDP proxy.example.com;branch=z9hG4bKother',
  'Max-Forwards: 70',
  'From: Alice <sip:alice@atlanta.example.com>;tag=9fxced76sl',
  'To: Bob <sip:bob@biloxi.example.com>',
  'Call-ID: 3848276298220188511@atlanta.example.com',
  'CSeq: 2 INVITE',
  'Content-Length: 4',
  'Contact: <sip:alice@client.atlanta.example.com;transport=tcp>',
  'Content-Type: text/plain',
  '',
  'abcd',
].join('\r\n');

function parsed(text = INVITE): SipMessage {
  const r = parseMessage(Buffer.from(text));
  if (!r.ok) throw new Error(r.error);
  return r.message;
}

describe('SipMessage accessors', () => {
  it('get / getAll / has with long, compact and odd-case names', () => {
    const m = parsed();
    expect(m.get('via')).toBe('SIP/2.0/TCP client.atlanta.example.com:5060;branch=z9hG4bK74bf9');
    expect(m.get('v')).toBe(m.get('Via'));
    expect(m.getAll('V')).toHaveLength(2);
    expect(m.get('i')).toBe('3848276298220188511@atlanta.example.com');
    expect(m.get('CALL-ID')).toBe(m.callId);
    expect(m.has('m')).toBe(true);
    expect(m.has('Route')).toBe(false);
    expect(m.get('Route')).toBeUndefined();
    expect(m.getAll('Route')).toEqual([]);
  });

  it('lazy parsed values', () => {
    const m = parsed();
    expect(m.callId).toBe('3848276298220188511@atlanta.example.com');
    expect(m.fromTag).toBe('9fxced76sl');
    expect(m.toTag).toBeUndefined();
    expect(m.cseq).toEqual({ seq: 2, method: 'INVITE' });
    expect(m.topViaBranch).toBe('z9hG4bK74bf9');
    expect(m.topVia?.host).toBe('client.atlanta.example.com');
    expect(m.fromAddr?.displayName).toBe('Alice');
  });

  it('lazy values follow edits of the headers', () => {
    const m = parsed();
    expect(m.toTag).toBeUndefined();
    m.set('To', 'Bob <sip:bob@biloxi.example.com>;tag=8321234356');
    expect(m.toTag).toBe('8321234356');
    m.headers.find((h) => h.name === 'CSeq')!.value = '3 INVITE';
    expect(m.cseq?.seq).toBe(3);
    m.prepend('Via', 'SIP/2.0/UDP edge.example.com;branch=z9hG4bKnew');
    expect(m.topViaBranch).toBe('z9hG4bKnew');
    m.set('From', 'garbage <');
    expect(m.fromTag).toBeUndefined();
    m.remove('Call-ID');
    expect(m.callId).toBeUndefined();
  });
});

describe('SipMessage editing', () => {
  it('set replaces all occurrences at the position of the first', () => {
    const m = parsed();
    m.set('Via', 'SIP/2.0/UDP only.example.com;branch=z9hG4bK1');
    expect(m.getAll('Via')).toEqual(['SIP/2.0/UDP only.example.com;branch=z9hG4bK1']);
    expect(m.headers[0].name).toBe('Via');
    m.set('v', ['SIP/2.0/UDP a;branch=z9hG4bKa', 'SIP/2.0/UDP b;branch=z9hG4bKb']);
    expect(m.headers.slice(0, 2).map((h) => h.value)).toEqual(['SIP/2.0/UDP a;branch=z9hG4bKa', 'SIP/2.0/UDP b;branch=z9hG4bKb']);
    m.set('x-new', 'appended');
    expect(m.headers[m.headers.length - 1]).toEqual({ name: 'x-new', value: 'appended' });
  });

  it('append / prepend / remove use canonical names', () => {
    const m = new SipMessage();
    m.method = 'OPTIONS';
    m.requestUri = 'sip:x@y';
    m.append('v', 'SIP/2.0/UDP a;branch=z9hG4bK1');
    m.append('call-id', 'abc');
    m.prepend('Via', 'SIP/2.0/UDP b;branch=z9hG4bK2');
    m.prepend('Record-Route', '<sip:rr;lr>');
    expect(m.headers).toEqual([
      { name: 'Record-Route', value: '<sip:rr;lr>' },
      { name: 'Via', value: 'SIP/2.0/UDP b;branch=z9hG4bK2' },
      { name: 'Via', value: 'SIP/2.0/UDP a;branch=z9hG4bK1' },
      { name: 'Call-ID', value: 'abc' },
    ]);
    m.remove('v');
    expect(m.has('Via')).toBe(false);
    expect(m.headers.length).toBe(2);
  });

  it('clone is deep', () => {
    const m = parsed();
    const c = m.clone();
    c.set('To', 'x <sip:x@y>;tag=1');
    c.body[0] = 0x7a;
    c.requestUri = 'sip:other@host';
    expect(m.get('To')).toBe('Bob <sip:bob@biloxi.example.com>');
    expect(m.body.toString()).toBe('abcd');
    expect(m.requestUri).toBe('sip:bob@biloxi.example.com');
    expect(c.toTag).toBe('1');
    expect(c.isRequest).toBe(true);
  });
});

describe('SipMessage.serialise (RFC 3261 7, 20.14)', () => {
  it('writes start line, headers in order, recomputed Content-Length in place, body', () => {
    const m = parsed();
    m.body = Buffer.from('hello world');
    const text = m.serialise().toString();
    const lines = text.split('\r\n');
    expect(lines[0]).toBe('INVITE sip:bob@biloxi.example.com SIP/2.0');
    expect(lines[8]).toBe('Content-Length: 11');
    expect(lines[9]).toBe('Contact: <sip:alice@client.atlanta.example.com;transport=tcp>');
    expect(text.endsWith('\r\n\r\nhello world')).toBe(true);
    const again = parseMessage(m.serialise());
    expect(again.ok && again.message.body.toString()).toBe('hello world');
  });

  it('adds Content-Length last when absent and drops duplicates', () => {
    const m = SipMessage.response(200, 'OK');
    m.append('Via', 'SIP/2.0/UDP a;branch=z9hG4bK1');
    m.append('Content-Length', '99');
    m.append('Content-Length', '98');
    m.append('To', '<sip:a@b>;tag=x');
    expect(m.serialise().toString()).toBe(
      'SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP a;branch=z9hG4bK1\r\nContent-Length: 0\r\nTo: <sip:a@b>;tag=x\r\n\r\n',
    );
    const r = SipMessage.request('BYE', 'sip:b@c');
    r.append('Call-ID', 'x');
    expect(r.toString()).toBe('BYE sip:b@c SIP/2.0\r\nCall-ID: x\r\nContent-Length: 0\r\n\r\n');
  });

  it('writes canonical names for compact input and cannot be made to inject lines', () => {
    const m = parseMessage(Buffer.from('OPTIONS sip:a@b SIP/2.0\r\nv: SIP/2.0/UDP h;branch=z9hG4bK1\r\nf: <sip:c@d>;tag=1\r\nt: <sip:a@b>\r\ni: id1\r\nCSeq: 1 OPTIONS\r\nl: 0\r\n\r\n'));
    expect(m.ok).toBe(true);
    if (!m.ok) return;
    const text = m.message.toString();
    expect(text).toContain('\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nFrom: <sip:c@d>;tag=1\r\nTo: <sip:a@b>\r\nCall-ID: id1\r\n');
    m.message.set('Subject', 'evil\r\nVia: SIP/2.0/UDP attacker');
    const back = parseMessage(m.message.serialise());
    expect(back.ok && back.message.getAll('Via').length).toBe(1);
  });

  it('multi-byte header text and binary bodies are counted in bytes', () => {
    const m = SipMessage.request('MESSAGE', 'sip:a@b');
    m.append('Subject', 'Grüße 大停電');
    m.body = Buffer.from([0, 1, 2, 0xff, 0x0d, 0x0a, 0x0d, 0x0a, 9]);
    const wire = m.serialise();
    const back = parseMessage(wire, undefined, { requireMandatoryHeaders: false });
    expect(back.ok).toBe(true);
    if (!back.ok) return;
    expect(back.message.get('Subject')).toBe('Grüße 大停電');
    expect(Buffer.compare(back.message.body, m.body)).toBe(0);
    expect(back.message.get('Content-Length')).toBe('9');
  });

  it('empty reason phrase keeps the SP (RFC 3261 7.2)', () => {
    expect(SipMessage.response(100, '').startLine).toBe('SIP/2.0 100 ');
  });
});
