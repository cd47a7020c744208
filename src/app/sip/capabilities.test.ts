import { describe, expect, it } from 'vitest';
import { CALL_ALLOW, CALL_METHODS, allowHeader, badExtensionHeaders, supportedHeader, unsupportedRequired } from './capabilities.js';

const req = (headers: Record<string, string>) => ({ get: (name: string) => headers[name] });

describe('capabilities', () => {
  it('Allow names only handled methods; a feature adds its own', () => {
    expect(allowHeader()).toBe('OPTIONS, REGISTER');
    expect(CALL_ALLOW).toBe('OPTIONS, REGISTER, INVITE, ACK, CANCEL, BYE, UPDATE');
    expect(allowHeader([...CALL_METHODS, 'REFER', 'INFO', 'INVITE'])).toBe('OPTIONS, REGISTER, INVITE, ACK, CANCEL, BYE, UPDATE, REFER, INFO');
    for (const notBuilt of ['PRACK', 'MESSAGE', 'NOTIFY', 'SUBSCRIBE', 'REFER', 'INFO']) expect(CALL_ALLOW).not.toContain(notBuilt);
  });

  it('Supported: timer only (RFC 3262 100rel is not implemented)', () => {
    expect(supportedHeader()).toBe('timer');
  });

  it('RFC 3261 §8.2.2.3: Require tags not implemented are named for the 420', () => {
    expect(unsupportedRequired(req({ Require: '100rel' }))).toEqual(['100rel']);
    expect(unsupportedRequired(req({ Require: 'timer, 100rel,  Replaces,100REL' }))).toEqual(['100rel', 'replaces']);
    expect(unsupportedRequired(req({ Require: 'timer' }))).toEqual([]);
    expect(unsupportedRequired(req({ 'Proxy-Require': 'foo' }))).toEqual([]); // for proxies (§20.29)
    expect(unsupportedRequired(req({}))).toEqual([]);
    expect(badExtensionHeaders(['100rel', 'replaces'])).toEqual({ Unsupported: '100rel, replaces' });
  });
});
