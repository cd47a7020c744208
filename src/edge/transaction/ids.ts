import { randomFillSync } from 'node:crypto';

/** RFC 3261 8.1.1.7: the branch of a Via we add starts with the magic cookie. */
export const BRANCH_MAGIC_COOKIE = 'z9hG4bK';

/**
 * Cryptographically random bytes, drawn from a pool refilled 4 KiB at a time: one randomFillSync call per ~400
 * tags instead of one per tag (the per-call overhead, not the entropy, is what costs on the hot path).
 */
const POOL_BYTES = 4096;
const pool = Buffer.allocUnsafeSlow(POOL_BYTES);
let poolOffset = POOL_BYTES;

function takeRandom(bytes: number): { buf: Buffer; start: number } {
  if (poolOffset + bytes > POOL_BYTES) {
    randomFillSync(pool);
    poolOffset = 0;
  }
  const start = poolOffset;
  poolOffset += bytes;
  return { buf: pool, start };
}

/** `bytes` random bytes as lower-case hex. */
export function randomHex(bytes: number): string {
  const { buf, start } = takeRandom(bytes);
  return buf.toString('hex', start, start + bytes);
}

/** `bytes` random bytes as base64url (no padding). */
export function randomBase64Url(bytes: number): string {
  const { buf, start } = takeRandom(bytes);
  return buf.toString('base64url', start, start + bytes);
}

/** A random unsigned 32-bit integer. */
export function randomUint32(): number {
  const { buf, start } = takeRandom(4);
  return buf.readUInt32BE(start);
}

/** A new branch: magic cookie + 96 random bits (unique across space and time, 8.1.1.7). */
export function generateBranch(): string {
  return BRANCH_MAGIC_COOKIE + randomBase64Url(12);
}

/** A new From/To tag (RFC 3261 19.3: at least 32 bits of randomness; this has 64). */
export function generateTag(): string {
  return randomHex(8);
}
