/** Call policies: pure functions deciding what a call may do and what each side sees. */
export * from './phone-number.js';
export * from './manual-dial.js';
export * from './dial-plan.js';
export * from './caller-id.js';
export * from './masking.js';
