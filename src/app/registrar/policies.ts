/**
 * The per-user rules a REGISTER must satisfy once its credentials are proven
 * (../shared/product/what-the-core-enforces.md), as pure functions.
 */
import { compileAllowList, type AllowList } from '../users/ip-allow-list.js';
import type { ConnectionMethod, Registrant } from '../users/types.js';

/** The part of a user the REGISTER rules read (a Registrant or a full UserRecord). */
export type RegisterRulesSubject = Pick<Registrant, 'active' | 'connectionMethod' | 'allowedAddresses'>;

export type PolicyVerdict = { allowed: true } | { allowed: false; status: 403; reason: string; rule: string };

const TRANSPORTS_BY_METHOD: Record<ConnectionMethod, readonly string[]> = {
  'sip-phone': ['udp', 'tcp', 'tls'],
  webrtc: ['ws', 'wss'],
  // These users never register: the core calls their SIP address, or they dial in.
  'sip-address': [],
  'dial-in': [],
};

export function transportAllowed(method: ConnectionMethod, transport: string): boolean {
  return TRANSPORTS_BY_METHOD[method].includes(transport.toLowerCase());
}

const allowListCache = new WeakMap<RegisterRulesSubject, AllowList>();

/** The user's compiled allow-list (compiled once per cached record). */
export function allowListOf(user: RegisterRulesSubject): AllowList {
  let list = allowListCache.get(user);
  if (!list) {
    list = compileAllowList(user.allowedAddresses);
    allowListCache.set(user, list);
  }
  return list;
}

/** Active, registering connection method over the right transport, from an allowed address. */
export function checkRegisterPolicy(user: RegisterRulesSubject, request: { transport: string; sourceAddress: string }): PolicyVerdict {
  if (!user.active) return { allowed: false, status: 403, reason: 'User Inactive', rule: 'inactive' };
  if (!transportAllowed(user.connectionMethod, request.transport)) {
    return { allowed: false, status: 403, reason: 'Connection Method Not Allowed', rule: 'connection-method' };
  }
  if (!allowListOf(user).allows(request.sourceAddress)) {
    return { allowed: false, status: 403, reason: 'Source Address Not Allowed', rule: 'allow-list' };
  }
  return { allowed: true };
}

export interface ExpiresLimits {
  minExpires: number;
  maxExpires: number;
  defaultExpires: number;
}

export type ExpiresGrant = { ok: true; seconds: number } | { ok: false; tooBrief: true };

/**
 * RFC 3261 §10.3 step 7: the contact's expires param, else the Expires header, else the
 * default; shorter than min (but not 0) is refused with 423, longer than max is shortened.
 */
export function grantExpires(param: number | null, header: number | null, limits: ExpiresLimits): ExpiresGrant {
  const requested = param ?? header ?? limits.defaultExpires;
  if (requested === 0) return { ok: true, seconds: 0 };
  if (requested < limits.minExpires) return { ok: false, tooBrief: true };
  return { ok: true, seconds: Math.min(requested, limits.maxExpires) };
}
