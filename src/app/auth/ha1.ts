/**
 * Digest HA1 (RFC 7616 §3.4.2): H(username ":" realm ":" password), hex, for each algorithm we
 * accept. Only these hashes are stored, never the password.
 */
import { hash } from 'node:crypto';

export const DIGEST_ALGORITHMS = ['SHA-256', 'MD5', 'SHA-512-256'] as const;
export type DigestAlgorithm = (typeof DIGEST_ALGORITHMS)[number];

/**
 * The challenges offered unless configured otherwise, most preferred first (RFC 8760 2.4 lets the server order
 * them). MD5 first: many phones, and SIPp, answer only the first challenge and know only MD5; devices that do
 * SHA-256 still find it offered. `registrar.digestAlgorithms` changes the order or narrows the list.
 */
/**
 * Challenges offered unless configured (registrar.digestAlgorithms): MD5 alone, as Kamailio, Asterisk
 * and FreeSWITCH do by default. RFC 8760 §2.4 lets a server offer one challenge per algorithm and
 * asks clients to use the topmost they support, but JsSIP 3.x (the common webphone library) keeps
 * only the LAST WWW-Authenticate of a response and gives up when that one is not MD5, while SIPp and
 * many phones answer only the first: with MD5 and SHA-256 offered, one of the two always fails.
 */
export const DEFAULT_DIGEST_ALGORITHMS: readonly DigestAlgorithm[] = ['MD5'];

const NODE_HASH: Record<DigestAlgorithm, string> = {
  MD5: 'md5',
  'SHA-256': 'sha256',
  'SHA-512-256': 'sha512-256',
};

/** Hex digest H(data) for a digest algorithm (RFC 7616 §3.2, RFC 8760 §2). One-shot: no Hash object per call. */
export function digestHash(algorithm: DigestAlgorithm, data: string): string {
  return hash(NODE_HASH[algorithm], data, 'hex');
}

export function computeHa1(algorithm: DigestAlgorithm, username: string, realm: string, password: string): string {
  return digestHash(algorithm, `${username}:${realm}:${password}`);
}

/** Parses an `algorithm` parameter value; undefined (absent) means MD5 (RFC 7616 §3.3). */
export function parseAlgorithm(value: string | undefined): DigestAlgorithm | null {
  if (value === undefined) return 'MD5';
  const upper = value.toUpperCase();
  return (DIGEST_ALGORITHMS as readonly string[]).includes(upper) ? (upper as DigestAlgorithm) : null;
}
