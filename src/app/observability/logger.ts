/**
 * pino logger factory. Secrets never reach a log line: any field named like a credential is
 * censored at every nesting depth we log (top level and up to three levels down).
 */
import { pino, type Logger, type LoggerOptions } from 'pino';

export type { Logger } from 'pino';

const SECRET_FIELDS = [
  'password',
  'newPassword',
  'pin',
  'pinHash',
  'ha1',
  'ha1Md5',
  'ha1Sha256',
  'ha1Sha512_256',
  'token',
  'authorization',
  'Authorization',
  'proxy-authorization',
  'Proxy-Authorization',
  'secret',
] as const;

/** pino redact paths for SECRET_FIELDS at depth 0..3 (pino wildcards match exactly one level). */
export const redactPaths: string[] = SECRET_FIELDS.flatMap((field) => {
  const key = /^[A-Za-z_$][\w$]*$/.test(field) ? field : `["${field}"]`;
  const join = (prefix: string): string => (key.startsWith('[') ? `${prefix}${key}` : `${prefix}.${key}`);
  return [key, join('*'), join('*.*'), join('*.*.*')];
});

export interface LoggerFactoryOptions {
  name?: string;
  level?: string;
  /** Where lines go; defaults to stdout. Tests pass a stream to inspect output. */
  destination?: NodeJS.WritableStream;
}

export function createLogger(options: LoggerFactoryOptions = {}): Logger {
  const config: LoggerOptions = {
    name: options.name ?? 'dialcore',
    level: options.level ?? process.env.DIALCORE_LOG_LEVEL ?? 'info',
    redact: { paths: redactPaths, censor: '[redacted]' },
  };
  return options.destination ? pino(config, options.destination as pino.DestinationStream) : pino(config);
}
