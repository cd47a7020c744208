/** Media: rtpengine pool, per-leg flag sets, SDP inspection, per-call media sessions. */
export * from './rtpengine.js';
export * from './leg-flags.js';
export * from './sdp-inspect.js';
export * from './media-session.js';
export * from './parked-sdp.js';
