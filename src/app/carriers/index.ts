/** Carriers: outbound gateways and inbound trunks (config, validation, routing). */
export * from './carriers.js';
