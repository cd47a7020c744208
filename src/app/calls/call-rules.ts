/**
 * The per-call rules of shared/product/what-the-core-enforces.md, applied with the pure policies of
 * src/app/policies to a user record read at call time (the user cache drops a record the moment
 * any instance publishes `user-changed`, so an admin change applies to the next call everywhere):
 *
 * - a call from a user's device: manual dial (403 with a reason) -> outbound dial plan (E.164 or
 *   a refusal) -> caller ID (From + P-Asserted-Identity from the user's settings, RFC 3325, never
 *   the device's own From);
 * - a call delivered to a user: the caller identity shown to the device, with the customer's
 *   number masked when the user is masked and not excluded. The B-leg headers are built here from
 *   scratch (nothing of the A leg's request is copied), and every value is run through the masker
 *   once more, so no form of the number (From, To, P-Asserted-Identity, Remote-Party-ID, Diversion,
 *   History-Info, display names) reaches the device.
 */
import {
  applyDialPlan,
  checkManualDial,
  classifyDialled,
  createNumberMasker,
  maskingApplies,
  outboundIdentity,
  quoteDisplayName,
  resolveUserDialPlan,
  type DialPlanConfig,
  type MaskStyle,
  type NumberMasker,
} from '../policies/index.js';
import type { UserRecord } from '../users/types.js';
import type { SipHeaders } from '../sip/srf.js';

export interface DialPlans {
  /** Named plans users may refer to (`dialPlan: { name }`). */
  plans: Readonly<Record<string, DialPlanConfig>>;
  /** The plan of users without one (and of dangling names). */
  defaultPlan: DialPlanConfig;
}

export interface OutboundRulesContext {
  dialPlans: DialPlans;
  /** Voicemail access numbers as dialled (allowed whatever the manual-dial privilege). */
  voicemailNumbers?: readonly string[];
}

export type DialledDecision =
  /** Another user's internal number or virtual extension: call that user. */
  | { kind: 'internal'; number: string }
  /** An outside number allowed by every rule: route it to a carrier. */
  | { kind: 'outside'; e164: string }
  /** Feature codes and voicemail: never leave the system (served elsewhere). */
  | { kind: 'service'; destination: 'feature-code' | 'voicemail' }
  | { kind: 'refused'; status: number; reason: string };

/**
 * What a device's call to `dialled` may become: manual dial check, then the dial plan.
 * `internalNumber` is the dialled digits when they are another user's internal number (the
 * caller looked it up), else undefined.
 */
export function decideDialled(
  user: Pick<UserRecord, 'manualDial' | 'restrictManualCalls' | 'dialPlan'>,
  dialled: string,
  internalNumber: string | undefined,
  context: OutboundRulesContext,
): DialledDecision {
  const destination = classifyDialled(dialled, {
    isInternalNumber: (digits) => digits === internalNumber,
    voicemailNumbers: context.voicemailNumbers,
  });
  const manual = checkManualDial(user, destination);
  if (!manual.allowed) return { kind: 'refused', status: manual.status, reason: manual.reason };
  if (destination === 'internal') return { kind: 'internal', number: internalNumber! };
  if (destination !== 'outside') return { kind: 'service', destination };
  const { plan, userRules } = resolveUserDialPlan(user.dialPlan, context.dialPlans.plans, context.dialPlans.defaultPlan);
  const result = applyDialPlan(dialled, plan, userRules);
  if (!result.ok) return { kind: 'refused', status: result.status, reason: result.reason };
  return { kind: 'outside', e164: result.e164 };
}

/**
 * From, P-Asserted-Identity and Privacy for a user's outbound call toward a carrier whose domain
 * is `domain`: built from the user's Caller ID settings only (the device's From is ignored; its
 * Privacy header is honoured, RFC 3323).
 */
export function outboundCallerHeaders(
  user: Pick<UserRecord, 'callerIdName' | 'callerIdNumber'>,
  options: { domain: string; devicePrivacy?: string; defaultNumber?: string | null },
): SipHeaders {
  const identity = outboundIdentity(user, {
    domain: options.domain,
    ...(options.devicePrivacy !== undefined ? { devicePrivacy: options.devicePrivacy } : {}),
    ...(options.defaultNumber !== undefined ? { defaultNumber: options.defaultNumber } : {}),
  });
  const headers: SipHeaders = { From: identity.from };
  if (identity.pAssertedIdentity) headers['P-Asserted-Identity'] = identity.pAssertedIdentity;
  if (identity.privacy) headers.Privacy = identity.privacy;
  return headers;
}

/** Who is calling, as the core learnt it (unmasked). */
export interface CallerPresentation {
  /** Number or user part to show (E.164, national, or a login for internal calls). */
  number?: string;
  displayName?: string;
  /** Numbers to hide from a masked callee (every form the customer's number arrived in). */
  customerNumbers: readonly string[];
}

export interface CalleeIdentity {
  /** From and To of the B-leg INVITE (nothing else identifies the caller). */
  headers: SipHeaders;
  /** Set when masking applies: run over every text the device can read (SDP included). */
  masker?: NumberMasker;
}

const SAFE_USER = /^[A-Za-z0-9+._-]{1,64}$/;

/**
 * The identity headers a user's device gets on a call delivered to it: From shows the caller
 * (masked when `maskingApplies(user)`), To shows the user's own address of record.
 */
export function calleeIdentity(
  callee: Pick<UserRecord, 'login' | 'masking' | 'maskingExcluded'>,
  caller: CallerPresentation,
  options: { domain: string; maskStyle?: MaskStyle },
): CalleeIdentity {
  const masker =
    maskingApplies(callee) && caller.customerNumbers.length > 0
      ? createNumberMasker(caller.customerNumbers, callee.masking.keepLastDigits, options.maskStyle)
      : undefined;
  const show = (text: string): string => (masker ? masker.maskText(text) : text);
  const shownNumber = caller.number !== undefined ? show(caller.number) : undefined;
  const user = shownNumber !== undefined && SAFE_USER.test(shownNumber) ? shownNumber : 'anonymous';
  const host = user === 'anonymous' ? 'anonymous.invalid' : options.domain;
  const name = caller.displayName?.trim() ? show(caller.displayName) : undefined;
  const from = `${name ? `${quoteDisplayName(name)} ` : ''}<sip:${user}@${host}>`;
  const to = `<sip:${callee.login}@${options.domain}>`;
  const headers: SipHeaders = { From: from, To: to };
  // belt and braces: whatever a header ended up holding, mask it again
  return { headers: masker ? masker.maskHeaders(headers) : headers, ...(masker ? { masker } : {}) };
}
