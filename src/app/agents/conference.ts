/**
 * 3-way calls: the legs' internal sides are pointed at participants of a real audio mixer
 * (rtpengine 10.5 cannot mix). `join` puts the legs in one room and returns the function that
 * takes them out again (each leg is parked; the caller re-bridges whom it wants).
 */
import type { SipLeg } from './sip-leg.js';

export interface ConferenceBridge {
  join(legs: readonly SipLeg[]): Promise<() => Promise<void>>;
}
