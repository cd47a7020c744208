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
import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';

const TIME_BYTES = 8;
const RANDOM_BYTES = 12;
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

  constructor(
    secret: string | Buffer,
    private readonly realm: string,
    readonly lifetimeMs: number = 300_000,
  ) {
    this.secret = Buffer.isBuffer(secret) ? secret : Buffer.from(secret, 'utf8');
    if (this.secret.length < 16) throw new Error('nonce secret must be at least 16 bytes');
  }

  issue(now = Date.now()): string {
    const body = Buffer.alloc(TIME_BYTES + RANDOM_BYTES);
    body.writeBigUInt64BE(BigInt(Math.max(0, Math.floor(now))), 0);
    randomBytes(RANDOM_BYTES).copy(body, TIME_BYTES);
    return Buffer.concat([body, this.mac(body)]).toString('base64url');
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
