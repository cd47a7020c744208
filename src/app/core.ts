/**
 * The dialcore core: a drachtio-srf app. It talks to a SIP server (our edge or the C++
 * drachtio-server) only through drachtio-srf. Features plug in as request handlers.
 *
 * Skeleton policy (until a feature claims a method):
 *  - OPTIONS out of dialog: 200 with Allow/Accept/Supported (keep-alives from phones and trunks, RFC 3261 11.2)
 *  - methods nobody handles are not routed, so the SIP server answers them (503 / 501 / 405 with Allow)
 */
import type { Logger } from 'pino';
import { connectSrf, createSrf, type Srf, type SrfRequest, type SrfResponse, type RequestHandler } from './sip/srf.js';

export const ALLOW = 'INVITE, ACK, BYE, CANCEL, OPTIONS, INFO, UPDATE, PRACK, REGISTER, MESSAGE, NOTIFY, REFER';

export interface CoreOptions {
  drachtio: { host: string; port: number; secret: string };
  logger: Logger;
}

export interface CoreFeatures {
  register?: RequestHandler;
  invite?: RequestHandler;
}

export interface RunningCore {
  srf: Srf;
  hostport: string;
  stop(): Promise<void>;
}

/** RFC 3261 11.2: capabilities in answer to OPTIONS. */
export function answerOptions(req: SrfRequest, res: SrfResponse): void {
  res.send(200, {
    headers: {
      Allow: ALLOW,
      Accept: 'application/sdp',
      'Accept-Encoding': 'identity',
      'Accept-Language': 'en',
      Supported: 'replaces, timer, path, outbound',
    },
  });
}

export async function startCore(opts: CoreOptions, features: CoreFeatures = {}): Promise<RunningCore> {
  const srf = createSrf();
  srf.options(answerOptions);
  if (features.register) srf.register(features.register);
  if (features.invite) srf.invite(features.invite);
  const { hostport } = await connectSrf(srf, {
    host: opts.drachtio.host,
    port: opts.drachtio.port,
    secret: opts.drachtio.secret,
    enablePing: true,
    pingInterval: 10_000,
  });
  opts.logger.info({ drachtio: `${opts.drachtio.host}:${opts.drachtio.port}`, hostport }, 'core connected to SIP server');
  return {
    srf,
    hostport,
    async stop() {
      srf.disconnect();
    },
  };
}
