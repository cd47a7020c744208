/** Out-of-dialog OPTIONS as a health probe (carrier gateways, customer PBXs, NAT keep-alive of phones). */
import type { SipHeaders, Srf, SrfRequest } from './srf.js';

/**
 * One OPTIONS to `uri` (RFC 3261 §11), sent through `proxy` when given; resolves with the final status,
 * 0 when none came within `timeoutMs`, 503 when the server could not send it.
 */
export function optionsProbe(srf: Srf, uri: string, timeoutMs: number, options: { proxy?: string; headers?: SipHeaders } = {}): Promise<number> {
  return new Promise<number>((resolve) => {
    const timer = setTimeout(() => resolve(0), timeoutMs);
    const done = (status: number): void => {
      clearTimeout(timer);
      resolve(status);
    };
    try {
      // callback form: the response listener is attached before the next frame is read
      srf.request(uri, { method: 'OPTIONS', ...(options.proxy ? { proxy: options.proxy } : {}), ...(options.headers ? { headers: options.headers } : {}) },
        (err: Error | null, req?: SrfRequest) => {
          if (err || !req) return done(503);
          req.on('response', (res) => {
            if (res.status >= 200) done(res.status);
          });
        });
    } catch {
      done(503);
    }
  });
}
