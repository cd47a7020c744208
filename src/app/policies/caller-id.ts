/**
 * Caller ID on a user's outbound calls: the called party sees the user's configured Caller ID
 * Name/Number (From display name and user, RFC 3261 §20.20; P-Asserted-Identity, RFC 3325 §9.1),
 * never whatever the device put in its own From.
 *
 * Privacy (RFC 3323): when the device asks for it (`Privacy: id` or `header`) or the call must
 * withhold the number, From becomes `"Anonymous" <sip:anonymous@anonymous.invalid>` (RFC 3323
 * §4.1.1.3), P-Asserted-Identity still carries the real identity for the carrier (trusted
 * network, RFC 3325 §9.3), and `Privacy: id` asks the carrier to strip it before the callee.
 *
 * Transfer CID type: on a transfer leg, the campaign's number or the contact's number.
 */

/** The user's fields this policy reads (names as in the user model). */
export interface CallerIdRules {
  callerIdName: string | null;
  callerIdNumber: string | null;
}

export interface TransferCallerIdRules {
  transferCidType: 'campaign' | 'contact';
}

export interface OutboundIdentityOptions {
  /** Host part of the From / P-Asserted-Identity URIs (the core's or the carrier's domain). */
  domain: string;
  /** Number used when the user has no Caller ID Number (system default); none -> anonymous. */
  defaultNumber?: string | null;
  /** The device's Privacy header value, if any (RFC 3323 §4.2). */
  devicePrivacy?: string;
  /** Withhold the number whatever the device says. */
  withhold?: boolean;
}

export interface OutboundIdentity {
  /** From header value without tag (the stack adds it). */
  from: string;
  /** Set when there is an identity to assert. */
  pAssertedIdentity?: string;
  /** `id` when the identity is withheld from the callee. */
  privacy?: 'id';
  /** The number presented (asserted), for CDRs; undefined when there is none. */
  number?: string;
  displayName?: string;
}

export const ANONYMOUS_FROM = '"Anonymous" <sip:anonymous@anonymous.invalid>';

/**
 * A display name safe to put in a quoted-string (RFC 3261 §25.1): control characters (CR/LF
 * included: no header injection) removed, `"` and `\` escaped, at most 64 characters.
 */
export function quoteDisplayName(name: string): string {
  // eslint-disable-next-line no-control-regex
  const cleaned = name.replace(/[\x00-\x1f\x7f]/g, '').trim().slice(0, 64);
  return `"${cleaned.replace(/["\\]/g, (c) => `\\${c}`)}"`;
}

/** The user part for a telephone number: `+` and digits only, or undefined. */
function telephoneUser(number: string | null | undefined): string | undefined {
  if (!number) return undefined;
  const compact = number.replace(/[-.()\s]/g, '');
  return /^\+?\d{1,20}$/.test(compact) ? compact : undefined;
}

function hostOf(domain: string): string {
  // a domain, IPv4 or [IPv6], optionally :port; anything else is replaced by a safe placeholder
  return /^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+)(:\d{1,5})?$/.test(domain) ? domain : 'invalid';
}

function privacyRequested(value: string | undefined): boolean {
  if (!value) return false;
  return value
    .split(';')
    .map((v) => v.trim().toLowerCase())
    .some((v) => v === 'id' || v === 'header' || v === 'user');
}

/** From and P-Asserted-Identity for a user's outbound call. */
export function outboundIdentity(user: CallerIdRules, options: OutboundIdentityOptions): OutboundIdentity {
  const number = telephoneUser(user.callerIdNumber) ?? telephoneUser(options.defaultNumber);
  const name = user.callerIdName?.trim() ? user.callerIdName : undefined;
  if (!number) return { from: ANONYMOUS_FROM, privacy: 'id' };

  const host = hostOf(options.domain);
  const uri = `sip:${number}@${host};user=phone`; // RFC 3261 §19.1.6
  const nameAddr = `${name ? `${quoteDisplayName(name)} ` : ''}<${uri}>`;
  const withhold = options.withhold === true || privacyRequested(options.devicePrivacy);
  return {
    from: withhold ? ANONYMOUS_FROM : nameAddr,
    pAssertedIdentity: nameAddr,
    ...(withhold ? { privacy: 'id' as const } : {}),
    number,
    displayName: name,
  };
}

/**
 * The number presented on a transfer leg: the campaign's number (`campaign`) or the contact's
 * (`contact`); when the chosen one is unknown, the other, then the user's Caller ID Number.
 */
export function transferCallerNumber(
  user: TransferCallerIdRules & Pick<CallerIdRules, 'callerIdNumber'>,
  numbers: { campaignNumber?: string | null; contactNumber?: string | null },
): string | undefined {
  const campaign = telephoneUser(numbers.campaignNumber);
  const contact = telephoneUser(numbers.contactNumber);
  const own = telephoneUser(user.callerIdNumber);
  return user.transferCidType === 'contact' ? (contact ?? campaign ?? own) : (campaign ?? contact ?? own);
}
