/**
 * Stateless digest nonces (RFC 7616 §3.3, "nonce ... uniquely generated each time a 401 is
 * made"; its contents are implementation-dependent). Ours carries its issue time and is signed
 * with HMAC-SHA-256 under a secret every core instance shares, so any instance validates any
 * nonce without storing it:
 *
 *   base64url( issuedAtMs (8 bytes, big-endian) | random (12 bytes) | HMAC(secret, realm|time|random)[0..16) )
 *
 * An expired but authentic nonce is "stale" (answer 401 with stale=true, RFC 7616 §3.3).
 */
import { createHmac, randomFillSync, timingSafeEqual } from 'node:crypto';

const TIME_BYTES = 8;
/** 96 bits of CSPRNG output per nonce. */
const RANDOM_BYTES = 12;
/** Random bytes fetched from the CSPRNG at once (one call per ~340 nonces instead of one per nonce). */
const RANDOM_POOL_BYTES = RANDOM_BYTES * 341;
const MAC_BYTES = 16;
const NONCE_BYTES = TIME_BYTES + RANDOM_BYTES + MAC_BYTES;
/** Tolerated clock difference between core instances. */
const FUTURE_SKEW_MS = 5_000;

export type NonceCheck =
  | { status: 'valid'; issuedAt: number }
  | { status: 'stale'; issuedAt: number }
  | { status: 'invalid' };

export class NonceFactory {
  private readonly secret: Buffer;
  /** CSPRNG output, refilled in one call when used up; each byte goes into exactly one nonce. */
  private readonly randomPool = Buffer.allocUnsafeSlow(RANDOM_POOL_BYTES);
  private randomOffset = RANDOM_POOL_BYTES;

  constructor(
    secret: string | Buffer,
    private readonly realm: string,
    readonly lifetimeMs: number = 300_000,
  ) {
    this.secret = Buffer.isBuffer(secret) ? secret : Buffer.from(secret, 'utf8');
    if (this.secret.length < 16) throw new Error('nonce secret must be at least 16 bytes');
  }

  issue(now = Date.now()): string {
    const raw = Buffer.allocUnsafe(NONCE_BYTES);
    raw.writeBigUInt64BE(BigInt(Math.max(0, Math.floor(now))), 0);
    if (this.randomOffset + RANDOM_BYTES > RANDOM_POOL_BYTES) {
      randomFillSync(this.randomPool);
      this.randomOffset = 0;
    }
    this.randomPool.copy(raw, TIME_BYTES, this.randomOffset, this.randomOffset + RANDOM_BYTES);
    this.randomOffset += RANDOM_BYTES;
    const body = raw.subarray(0, TIME_BYTES + RANDOM_BYTES);
    this.mac(body).copy(raw, TIME_BYTES + RANDOM_BYTES);
    return raw.toString('base64url');
  }

  check(nonce: string, now = Date.now()): NonceCheck {
    if (nonce.length !== Math.ceil((NONCE_BYTES * 4) / 3) || !/^[A-Za-z0-9_-]+$/.test(nonce)) return { status: 'invalid' };
    const raw = Buffer.from(nonce, 'base64url');
    if (raw.length !== NONCE_BYTES) return { status: 'invalid' };
    const body = raw.subarray(0, TIME_BYTES + RANDOM_BYTES);
    if (!timingSafeEqual(raw.subarray(TIME_BYTES + RANDOM_BYTES), this.mac(body))) return { status: 'invalid' };
    const issuedAt = Number(body.readBigUInt64BE(0));
    if (issuedAt > now + FUTURE_SKEW_MS) return { status: 'invalid' };
    return now - issuedAt > this.lifetimeMs ? { status: 'stale', issuedAt } : { status: 'valid', issuedAt };
  }

  private mac(body: Buffer): Buffer {
    return createHmac('sha256', this.secret).update(this.realm).update('\0').update(body).digest().subarray(0, MAC_BYTES);
  }
}
