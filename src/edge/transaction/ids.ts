import { randomBytes } from 'node:crypto';

/** RFC 3261 8.1.1.7: the branch of a Via we add starts with the magic cookie. */
export const BRANCH_MAGIC_COOKIE = 'z9hG4bK';

/** A new branch: magic cookie + 96 random bits (unique across space and time, 8.1.1.7). */
export function generateBranch(): string {
  return BRANCH_MAGIC_COOKIE + randomBytes(12).toString('base64url');
}

/** A new From/To tag (RFC 3261 19.3: at least 32 bits of randomness). */
export function generateTag(): string {
  return randomBytes(8).toString('hex');
}
