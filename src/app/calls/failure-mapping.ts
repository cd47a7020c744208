/**
 * What the caller (A leg) is told when the callee side (B leg) fails, and which fork's failure
 * wins. Only standard reason phrases go to A: the far end's reason phrase, Warning or Reason
 * headers never cross the B2BUA (they may name internal hosts, accounts or the customer).
 */

/** Who the B leg was: a user's device/PBX (`user`) or a carrier gateway (`carrier`). */
export type CalleeKind = 'user' | 'carrier';

/** RFC 3261 §21 reason phrases for the statuses the B2BUA sends itself. */
export const REASON_PHRASES: Readonly<Record<number, string>> = {
  180: 'Ringing',
  183: 'Session Progress',
  200: 'OK',
  400: 'Bad Request',
  403: 'Forbidden',
  404: 'Not Found',
  408: 'Request Timeout',
  410: 'Gone',
  420: 'Bad Extension',
  422: 'Session Interval Too Small',
  480: 'Temporarily Unavailable',
  481: 'Call/Transaction Does Not Exist',
  482: 'Loop Detected',
  484: 'Address Incomplete',
  485: 'Ambiguous',
  486: 'Busy Here',
  487: 'Request Terminated',
  488: 'Not Acceptable Here',
  491: 'Request Pending',
  500: 'Server Internal Error',
  503: 'Service Unavailable',
  600: 'Busy Everywhere',
  603: 'Decline',
  606: 'Not Acceptable',
};

export function reasonPhrase(status: number): string {
  return REASON_PHRASES[status] ?? (status >= 600 ? 'Decline' : status >= 500 ? 'Server Internal Error' : 'Temporarily Unavailable');
}

/** Statuses whose meaning the caller should get as is (busy, declined, number problems). */
const USER_PASS_THROUGH = new Set([486, 600, 603]);
const CARRIER_PASS_THROUGH = new Set([403, 404, 410, 480, 484, 485, 486, 600, 603]);

/**
 * The status sent to A for a final failure from B (RFC 3261 §16.7 step 6 spirit: the caller
 * learns busy/decline/bad number; transport trouble, timeouts, server errors and auth problems
 * become 480 for a user's device and 503 for a carrier).
 */
export function mapFailureToCaller(status: number, callee: CalleeKind): number {
  if (status === 488 || status === 606) return 488;
  if (callee === 'user') return USER_PASS_THROUGH.has(status) ? status : 480;
  if (CARRIER_PASS_THROUGH.has(status)) return status;
  if (status === 408) return 480;
  if (status >= 500 || status === 401 || status === 407) return 503;
  return 480;
}

/** Carrier failover (to the next gateway) on a timeout or server error, RFC 3263 §4.3 spirit. */
export function isFailoverStatus(status: number): boolean {
  return status === 408 || (status >= 500 && status < 600);
}

/**
 * The best of several forks' final failures (RFC 3261 §16.7 step 6): a 6xx wins; then 486 (the
 * user is busy somewhere); then the lowest class (4xx before 5xx), first received first.
 */
export function bestFailure(statuses: readonly number[]): number {
  if (statuses.length === 0) return 480;
  const global = statuses.find((s) => s >= 600);
  if (global !== undefined) return global;
  if (statuses.includes(486)) return 486;
  let best = statuses[0]!;
  for (const status of statuses) if (Math.floor(status / 100) < Math.floor(best / 100)) best = status;
  return best;
}
