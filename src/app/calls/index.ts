/** Calls: the B2BUA session, the live-call registry, routing by caller and the per-call rules. */
export * from './failure-mapping.js';
export * from './call-session.js';
export * from './call-registry.js';
export * from './call-rules.js';
export * from './user-calls.js';
export * from './carrier-routing.js';
export * from './call-router.js';
export * from './gateway-monitor.js';
