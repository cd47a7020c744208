import type { TransportLimits } from './types.js';

export const DEFAULT_TRANSPORT_LIMITS: Readonly<TransportLimits> = Object.freeze({
  maxMessageBytes: 65535,
  maxHeaderCount: 128,
  maxConnections: 10000,
  maxConnectionsPerIp: 1000,
  incompleteMessageTimeoutMs: 10000,
  idleConnectionTimeoutMs: 600000,
  connectTimeoutMs: 5000,
  wsMaxPayloadBytes: 65535,
  maxWriteQueueBytes: 1024 * 1024,
  wsPingIntervalMs: 30000,
  udpSocketBufferBytes: 4 * 1024 * 1024,
});

/** Defaults for anything not given; non-finite or negative values are replaced by the default. */
export function resolveLimits(partial: Partial<TransportLimits> | undefined): TransportLimits {
  const limits: TransportLimits = { ...DEFAULT_TRANSPORT_LIMITS };
  if (!partial) return limits;
  for (const key of Object.keys(limits) as Array<keyof TransportLimits>) {
    const value = partial[key];
    if (typeof value === 'number' && Number.isFinite(value) && value >= 0) limits[key] = value;
  }
  return limits;
}
