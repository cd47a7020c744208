import { describe, expect, it } from 'vitest';
import { computeHa1 } from './ha1.js';
import { NonceFactory } from './nonce.js';
import {
  DigestAuthenticator,
  computeDigestResponse,
  parseAuthParams,
  parseDigestCredentials,
  type DigestCredentials,
} from './digest.js';

// RFC 7616 §3.9.1
const RFC7616 = {
  username: 'Mufasa',
  realm: 'http-auth@example.org',
  password: 'Circle of Life',
  method: 'GET',
  uri: '/dir/index.html',
  nonce: '7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v',
  nc: '00000001',
  cnonce: 'f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ',
  qop: 'auth',
  opaque: 'FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS',
};

describe('RFC 7616 §3.9.1 test vectors', () => {
  it('SHA-256 response', () => {
    const ha1 = computeHa1('SHA-256', RFC7616.username, RFC7616.realm, RFC7616.password);
    expect(computeDigestResponse('SHA-256', ha1, RFC7616.method, RFC7616)).toBe(
      '753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1',
    );
  });
  it('MD5 response', () => {
    const ha1 = computeHa1('MD5', RFC7616.username, RFC7616.realm, RFC7616.password);
    expect(computeDigestResponse('MD5', ha1, RFC7616.method, RFC7616)).toBe('8ca523f5e9506fed4657c9700eebdbec');
  });
  it('parses the RFC example Authorization header', () => {
    const header = `Digest username="Mufasa",
       realm="http-auth@example.org",
       uri="/dir/index.html",
       algorithm=SHA-256,
       nonce="7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v",
       nc=00000001,
       cnonce="f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ",
       qop=auth,
       response="753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1",
       opaque="FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS"`;
    const parsed = parseDigestCredentials(header, RFC7616.realm);
    expect(parsed.ok).toBe(true);
    if (!parsed.ok) return;
    expect(parsed.credentials).toMatchObject({ username: 'Mufasa', algorithm: 'SHA-256', nc: '00000001', qop: 'auth' });
  });
  it('RFC 2617 §3.5 example (MD5, qop=auth)', () => {
    const ha1 = computeHa1('MD5', 'Mufasa', 'testrealm@host.com', 'Circle Of Life');
    const response = computeDigestResponse('MD5', ha1, 'GET', {
      nonce: 'dcd98b7102dd2f0e8b11d0f600bfb0c093',
      uri: '/dir/index.html',
      qop: 'auth',
      nc: '00000001',
      cnonce: '0a4f113b',
    });
    expect(response).toBe('6629fae49393a05397450978507c4ef1');
  });
});

describe('parseAuthParams', () => {
  it('handles escapes, folded headers and rejects garbage', () => {
    const items = parseAuthParams('Digest realm="a\\"b", nonce=xyz, Digest realm="c"');
    expect(items?.length).toBe(2);
    expect(items?.[0]?.params.get('realm')).toBe('a"b');
    expect(items?.[1]?.params.get('realm')).toBe('c');
    expect(parseAuthParams('Digest realm="unterminated')).toBeNull();
    expect(parseAuthParams('Digest realm="ends in a backslash\\')).toBeNull();
    expect(parseAuthParams('Digest realm="a\\\\", nonce="\\x"')![0]!.params).toEqual(new Map([['realm', 'a\\'], ['nonce', 'x']]));
    expect(parseAuthParams('Digest realm=""')![0]!.params.get('realm')).toBe('');
    expect(parseAuthParams('Digest realm="a", realm="b"')).toBeNull();
    expect(parseAuthParams('Digest realm="a" nonce="b"')).toBeNull();
    expect(parseAuthParams('x'.repeat(5000))).toBeNull();
    expect(parseAuthParams('=oops')).toBeNull();
  });
  it('refuses credentials without required params or with unknown algorithm/qop', () => {
    expect(parseDigestCredentials('Digest username="a", realm="r"', 'r')).toEqual({ ok: false, reason: 'malformed' });
    expect(parseDigestCredentials('Basic dXNlcjpwYXNz', 'r')).toEqual({ ok: false, reason: 'no-digest' });
    const base = 'Digest username="a", realm="r", nonce="n", uri="sip:r", response="x"';
    expect(parseDigestCredentials(`${base}, algorithm=SHA-1`, 'r')).toEqual({ ok: false, reason: 'unsupported-algorithm' });
    expect(parseDigestCredentials(`${base}, qop=auth-int, nc=00000001, cnonce="c"`, 'r')).toEqual({ ok: false, reason: 'unsupported-qop' });
    expect(parseDigestCredentials(`${base}, qop=auth, nc=1, cnonce="c"`, 'r')).toEqual({ ok: false, reason: 'malformed' });
  });
});

describe('NonceFactory', () => {
  const secret = 'a-shared-secret-of-32-bytes-long';
  it('validates its own nonces across instances with the same secret', () => {
    const a = new NonceFactory(secret, 'dialcore', 1000);
    const b = new NonceFactory(secret, 'dialcore', 1000);
    const nonce = a.issue(10_000);
    expect(b.check(nonce, 10_500)).toEqual({ status: 'valid', issuedAt: 10_000 });
    expect(b.check(nonce, 11_001)).toEqual({ status: 'stale', issuedAt: 10_000 });
  });
  it('rejects forged, tampered, foreign-realm and future nonces', () => {
    const a = new NonceFactory(secret, 'dialcore', 1000);
    const nonce = a.issue(10_000);
    const tampered = (nonce[0] === 'A' ? 'B' : 'A') + nonce.slice(1);
    expect(a.check(tampered, 10_000).status).toBe('invalid');
    expect(new NonceFactory('another-secret-of-enough-length', 'dialcore').check(nonce, 10_000).status).toBe('invalid');
    expect(new NonceFactory(secret, 'other-realm').check(nonce, 10_000).status).toBe('invalid');
    expect(a.check(a.issue(100_000), 10_000).status).toBe('invalid');
    expect(a.check('short', 10_000).status).toBe('invalid');
  });
  it('gives every nonce its own 96 random bits, across refills of its random pool', () => {
    const a = new NonceFactory(secret, 'dialcore', 1000);
    const randomParts = new Set<string>();
    for (let i = 0; i < 2000; i++) {
      const nonce = a.issue(10_000); // same time: only the random part tells them apart
      expect(a.check(nonce, 10_000).status).toBe('valid');
      randomParts.add(Buffer.from(nonce, 'base64url').subarray(8, 20).toString('hex'));
    }
    expect(randomParts.size).toBe(2000);
  });
});

describe('DigestAuthenticator round trip', () => {
  const realm = 'dialcore.test';
  const auth = new DigestAuthenticator({ realm, secret: 'test-secret-test-secret', nonceLifetimeSeconds: 30, algorithms: ['MD5', 'SHA-256'] });
  const login = '1001';
  const password = 'correct horse';
  const uri = 'sip:dialcore.test';

  function answer(challenge: string, algorithm: 'MD5' | 'SHA-256', pw = password, nc = '00000001'): DigestCredentials {
    const items = parseAuthParams(challenge)!;
    const nonce = items[0]!.params.get('nonce')!;
    const ha1 = computeHa1(algorithm, login, realm, pw);
    const c = { nonce, uri, qop: 'auth', nc, cnonce: 'abc123' };
    const response = computeDigestResponse(algorithm, ha1, 'REGISTER', c);
    const header = `Digest username="${login}", realm="${realm}", nonce="${nonce}", uri="${uri}", algorithm=${algorithm}, qop=auth, nc=${nc}, cnonce="abc123", response="${response}"`;
    const parsed = parseDigestCredentials(header, realm);
    if (!parsed.ok) throw new Error(parsed.reason);
    return parsed.credentials;
  }

  it('offers MD5 alone by default (JsSIP reads only the last challenge, SIPp only the first)', () => {
    const challenges = new DigestAuthenticator({ realm, secret: 'test-secret-test-secret' }).challenges();
    expect(challenges).toHaveLength(1);
    expect(challenges[0]).toContain('algorithm=MD5');
  });

  it('offers MD5 then SHA-256 when configured so, qop=auth, one nonce', () => {
    const [md5, sha] = auth.challenges();
    expect(md5).toMatch(/^Digest realm="dialcore.test", nonce="[\w-]+", algorithm=MD5, qop="auth"$/);
    expect(sha).toMatch(/^Digest realm="dialcore.test", nonce="[\w-]+", algorithm=SHA-256, qop="auth"$/);
    expect(new DigestAuthenticator({ realm, secret: 'test-secret-test-secret', algorithms: ['SHA-256', 'MD5'] }).challenges()[0]).toContain('algorithm=SHA-256');
    expect(parseAuthParams(sha!)![0]!.params.get('nonce')).toBe(parseAuthParams(md5!)![0]!.params.get('nonce'));
    expect(auth.challenges({ stale: true })[0]).toContain('stale=true');
  });

  for (const algorithm of ['SHA-256', 'MD5'] as const) {
    it(`accepts a correct ${algorithm} answer and refuses a wrong password`, () => {
      const ha1 = computeHa1(algorithm, login, realm, password);
      const good = answer(auth.challenges()[algorithm === 'MD5' ? 1 : 0]!, algorithm);
      expect(auth.verify(good, { method: 'REGISTER', uri }, ha1)).toMatchObject({ outcome: 'ok', nc: 1 });
      const bad = answer(auth.challenges()[0]!, algorithm, 'wrong');
      expect(auth.verify(bad, { method: 'REGISTER', uri }, ha1)).toEqual({ outcome: 'forbidden', reason: 'wrong-response' });
      expect(auth.verify(good, { method: 'REGISTER', uri }, null)).toEqual({ outcome: 'forbidden', reason: 'wrong-response' });
    });
  }

  it('stale nonce with a valid response => challenge stale=true; uri mismatch => 400; wrong realm => challenge', () => {
    const ha1 = computeHa1('SHA-256', login, realm, password);
    const old = answer(auth.challenges({ now: Date.now() - 60_000 })[0]!, 'SHA-256');
    expect(auth.verify(old, { method: 'REGISTER', uri }, ha1)).toEqual({ outcome: 'challenge', stale: true, reason: 'stale-nonce' });
    const good = answer(auth.challenges()[0]!, 'SHA-256');
    expect(auth.verify(good, { method: 'REGISTER', uri: 'sip:elsewhere.test' }, ha1)).toEqual({ outcome: 'bad-request', reason: 'uri-mismatch' });
    expect(auth.verify({ ...good, realm: 'x' }, { method: 'REGISTER', uri }, ha1)).toMatchObject({ outcome: 'challenge', stale: false });
    expect(auth.verify({ ...good, nonce: 'forged' }, { method: 'REGISTER', uri }, ha1)).toMatchObject({ outcome: 'challenge', reason: 'bad-nonce' });
  });

  it('the digest uri identifies the Request-URI by scheme, user, host and port (default port implied); parameters do not count', () => {
    const ha1 = computeHa1('MD5', login, realm, password);
    const nonce = parseAuthParams(auth.challenges()[0]!)![0]!.params.get('nonce')!;
    const credentialsFor = (digestUri: string, nc: string): DigestCredentials => {
      const c = { nonce, uri: digestUri, qop: 'auth', nc, cnonce: 'c1' };
      const response = computeDigestResponse('MD5', ha1, 'INVITE', c);
      const parsed = parseDigestCredentials(`Digest username="${login}", realm="${realm}", nonce="${nonce}", uri="${digestUri}", algorithm=MD5, qop=auth, nc=${nc}, cnonce="c1", response="${response}"`, realm);
      if (!parsed.ok) throw new Error(parsed.reason);
      return parsed.credentials;
    };
    const same: Array<[string, string]> = [
      ['sip:+4420@dialcore.test', 'sip:+4420@dialcore.test:5060'],
      ['sip:+4420@DialCore.test;transport=tcp', 'sip:+4420@dialcore.test'],
      ['sips:agent@[2001:db8::1]:5061', 'sips:agent@[2001:DB8::1]'],
      ['sip:dialcore.test', 'sip:dialcore.test;transport=udp?x=y'],
    ];
    for (const [digestUri, requestUri] of same) {
      expect(auth.verify(credentialsFor(digestUri, '00000001'), { method: 'INVITE', uri: requestUri }, ha1), `${digestUri} ~ ${requestUri}`).toMatchObject({ outcome: 'ok' });
    }
    const different: Array<[string, string]> = [
      ['sip:+4420@dialcore.test', 'sip:+4499@dialcore.test'],
      ['sip:+4420@dialcore.test', 'sip:+4420@other.test'],
      ['sip:+4420@dialcore.test:5070', 'sip:+4420@dialcore.test'],
      ['sip:+4420@dialcore.test', 'sips:+4420@dialcore.test'],
      ['not a uri', 'sip:dialcore.test'],
    ];
    for (const [digestUri, requestUri] of different) {
      expect(auth.verify(credentialsFor(digestUri, '00000001'), { method: 'INVITE', uri: requestUri }, ha1), `${digestUri} vs ${requestUri}`)
        .toEqual({ outcome: 'bad-request', reason: 'uri-mismatch' });
    }
  });
});
