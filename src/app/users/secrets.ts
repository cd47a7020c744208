/**
 * Secrets of the user model: generated passwords and dial-in PIN hashes (scrypt, RFC 7914).
 * SIP passwords are not hashed here: they become digest HA1s (../auth/ha1.ts).
 */
import { randomBytes, randomInt, scrypt, scryptSync, timingSafeEqual } from 'node:crypto';

const PASSWORD_ALPHABET = 'ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz23456789';

/** A strong random password (default 20 chars from a 57-symbol alphabet, about 116 bits). */
export function generatePassword(length = 20): string {
  let out = '';
  for (let i = 0; i < length; i++) out += PASSWORD_ALPHABET[randomInt(PASSWORD_ALPHABET.length)];
  return out;
}

const SCRYPT_N = 16_384;
const SCRYPT_R = 8;
const SCRYPT_P = 1;
const SCRYPT_KEYLEN = 32;

export function hashPin(pin: string): string {
  const salt = randomBytes(16);
  const hash = scryptSync(pin, salt, SCRYPT_KEYLEN, { N: SCRYPT_N, r: SCRYPT_R, p: SCRYPT_P });
  return ['scrypt', SCRYPT_N, SCRYPT_R, SCRYPT_P, salt.toString('base64'), hash.toString('base64')].join('$');
}

interface ParsedPinHash {
  salt: Buffer;
  expected: Buffer;
  options: { N: number; r: number; p: number; maxmem: number };
}

function parsePinHash(stored: string): ParsedPinHash | null {
  const parts = stored.split('$');
  if (parts.length !== 6 || parts[0] !== 'scrypt') return null;
  const [n, r, p] = [Number(parts[1]), Number(parts[2]), Number(parts[3])];
  if (![n, r, p].every((x) => Number.isInteger(x) && x > 0) || n > 1 << 20) return null;
  const salt = Buffer.from(parts[4] ?? '', 'base64');
  const expected = Buffer.from(parts[5] ?? '', 'base64');
  if (expected.length === 0) return null;
  return { salt, expected, options: { N: n, r, p, maxmem: 256 * n * r + 1024 * 1024 } };
}

export function verifyPin(pin: string, stored: string): boolean {
  const parsed = parsePinHash(stored);
  if (!parsed) return false;
  const actual = scryptSync(pin, parsed.salt, parsed.expected.length, parsed.options);
  return timingSafeEqual(actual, parsed.expected);
}

/** verifyPin on libuv's thread pool: many dial-in logins at once do not stall the event loop. */
export function verifyPinAsync(pin: string, stored: string): Promise<boolean> {
  const parsed = parsePinHash(stored);
  if (!parsed) return Promise.resolve(false);
  return new Promise((resolve) => {
    scrypt(pin, parsed.salt, parsed.expected.length, parsed.options, (err, actual) => {
      resolve(!err && timingSafeEqual(actual, parsed.expected));
    });
  });
}
