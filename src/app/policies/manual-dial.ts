/**
 * Manual dial: may a call placed from a user's own device (webphone or SIP phone) reach an
 * outside number? Only with the Manual Dial privilege and without "Restrict Manual Calls"
 * (what-the-core-enforces.md); otherwise 403 Forbidden (RFC 3261 §21.4.3) with the reason
 * "Manual Dial Not Allowed". Incoming, campaign and click-to-connect calls are not manual calls
 * and never come through here.
 *
 * Destinations that stay inside the system are not manual outbound calls and are allowed
 * whatever the privilege (docs/media.md "Manual dial"):
 *   - internal numbers / virtual extensions of other users (`internal`),
 *   - feature codes: anything starting with `*` or `#` (`feature-code`),
 *   - the configured voicemail access numbers (`voicemail`).
 * Everything else (a number that would go to a carrier) is `outside`.
 */
import { cleanNumber, dialledNumberText } from './phone-number.js';

/** The user's fields this policy reads (names as in the user model). */
export interface ManualDialRules {
  manualDial: boolean;
  restrictManualCalls: boolean;
}

export type DialledDestination = 'outside' | 'internal' | 'feature-code' | 'voicemail';

export type ManualDialDecision = { allowed: true } | { allowed: false; status: 403; reason: 'Manual Dial Not Allowed' };

export interface DestinationClassifier {
  /** True when the digits are another user's internal number (looked up by the caller). */
  isInternalNumber(digits: string): boolean;
  /** Voicemail access numbers, as dialled (e.g. "*97", "8500"). */
  voicemailNumbers?: readonly string[];
}

/** What kind of destination the dialled URI/number is. */
export function classifyDialled(dialled: string, classifier: DestinationClassifier): DialledDestination {
  const text = dialledNumberText(dialled)?.trim();
  if (text === undefined) return 'outside';
  const compact = text.replace(/[-.()\s]/g, '');
  if ((classifier.voicemailNumbers ?? []).includes(compact)) return 'voicemail';
  if (/^[*#][\d*#]*$/.test(compact)) return 'feature-code';
  const cleaned = cleanNumber(compact);
  if (cleaned.ok && !cleaned.value.startsWith('+') && classifier.isInternalNumber(cleaned.value)) return 'internal';
  return 'outside';
}

export function checkManualDial(user: ManualDialRules, destination: DialledDestination): ManualDialDecision {
  if (destination !== 'outside') return { allowed: true };
  if (user.manualDial && !user.restrictManualCalls) return { allowed: true };
  return { allowed: false, status: 403, reason: 'Manual Dial Not Allowed' };
}
