import { describe, expect, it } from 'vitest';
import { buildResponse, reasonPhrase } from './response-builder.js';
import { generateBranch, generateTag } from './ids.js';
import { makeRequest } from './test-support.js';

describe('buildResponse (RFC 3261 8.2.6)', () => {
  const req = makeRequest({ method: 'INVITE', branch: 'z9hG4bK-b1' })
    .prepend('Via', 'SIP/2.0/UDP proxy.example.com;branch=z9hG4bK-proxy')
    .append('Timestamp', '54')
    .append('Contact', '<sip:alice@127.0.0.2>');

  it('copies every Via in order, From, To, Call-ID and CSeq, nothing else', () => {
    const res = buildResponse(req, 180);
    expect(res.status).toBe(180);
    expect(res.reason).toBe('Ringing');
    expect(res.getAll('Via')).toEqual(req.getAll('Via'));
    expect(res.get('From')).toBe(req.get('From'));
    expect(res.get('To')).toBe(req.get('To'));
    expect(res.get('Call-ID')).toBe(req.get('Call-ID'));
    expect(res.get('CSeq')).toBe('1 INVITE');
    expect(res.has('Contact')).toBe(false);
    expect(res.has('Timestamp')).toBe(false);
  });

  it('adds a To tag when asked and none is present; copies Timestamp into 100 without tagging it', () => {
    expect(buildResponse(req, 200, 'Fine', { toTag: 'abc' }).toTag).toBe('abc');
    expect(buildResponse(req, 200, undefined, { toTag: true }).toTag).toMatch(/^[0-9a-f]{16}$/);
    expect(buildResponse(req, 200, 'Fine').reason).toBe('Fine');
    const inDialog = makeRequest({ method: 'BYE', toTag: 'existing' });
    expect(buildResponse(inDialog, 200, undefined, { toTag: 'new' }).toTag).toBe('existing');
    const trying = buildResponse(req, 100, undefined, { toTag: 'x' });
    expect(trying.toTag).toBeUndefined();
    expect(trying.get('Timestamp')).toBe('54');
  });

  it('tags an addr-spec To (no angle brackets) as a header parameter', () => {
    const r = makeRequest({ method: 'INVITE', branch: null }).set('To', 'sip:+16505552222@ss1.example.net;user=phone');
    const res = buildResponse(r, 486, undefined, { toTag: 'tt' });
    expect(res.get('To')).toBe('sip:+16505552222@ss1.example.net;user=phone;tag=tt');
    expect(res.toTag).toBe('tt');
  });

  it('knows the standard reason phrases and falls back per class', () => {
    expect(reasonPhrase(487)).toBe('Request Terminated');
    expect(reasonPhrase(481)).toBe('Call/Transaction Does Not Exist');
    expect(reasonPhrase(499)).toBe('Client Error');
    expect(reasonPhrase(699)).toBe('Global Failure');
  });
});

describe('ids', () => {
  it('generates unique magic-cookie branches and tags', () => {
    const branches = new Set(Array.from({ length: 1000 }, generateBranch));
    expect(branches.size).toBe(1000);
    for (const b of branches) expect(b).toMatch(/^z9hG4bK[A-Za-z0-9_-]{16}$/);
    expect(generateTag()).not.toBe(generateTag());
  });
});
