/**
 * Places an outgoing leg (dialcore is the UAC) with media anchored on a fresh rtpengine call
 * whose internal side starts parked:
 *
 *   offer(parked SDP) -> INVITE to each target of a group at once (RFC 3261 §16.7 parallel
 *   forking: a user's registrations) -> first 2xx wins, the other forks are CANCELed (§9.1) and a
 *   2xx that crossed the CANCEL is BYEd -> answer(peer SDP) gives the internal side's SDP.
 *
 * Groups are tried in order (gateway failover) when a group failed with 408/5xx or sent nothing
 * within `noResponseFailoverMs`. The caller may abort (API hang-up while ringing): every fork
 * is canceled and the rtpengine call deleted.
 */
import { randomUUID } from 'node:crypto';
import type { Logger } from 'pino';
import { parkedSdp, type LegKind, type MediaSessionRegistry } from '../media/index.js';
import { isSipFailure, type Dialog, type SipMethod, type Srf, type SrfRequest } from '../sip/srf.js';
import { CUSTOMER_LEG_METHODS, allowHeader } from '../sip/capabilities.js';
import type { CallTarget } from '../calls/call-session.js';
import { bestFailure, isFailoverStatus } from '../calls/failure-mapping.js';
import { SipLeg } from './sip-leg.js';

export class DialFailure extends Error {
  constructor(
    readonly status: number,
    readonly reason: 'rejected' | 'no-answer' | 'aborted' | 'media-failure',
  ) {
    super(`dial failed: ${reason} (${status})`);
  }
}

export interface DialOptions {
  srf: Srf;
  media: MediaSessionRegistry;
  groups: CallTarget[][];
  /** What the targets speak (webrtc for browsers). */
  kind: LegKind;
  /** Allow `play DTMF` toward this leg. */
  injectDtmf?: boolean;
  ringTimeoutMs: number;
  noResponseFailoverMs?: number;
  signal?: AbortSignal;
  /** The methods this leg handles, for Allow (capabilities.ts); default the customer-leg set. */
  methods?: readonly SipMethod[];
  /** First 18x from any fork. */
  onRinging?: () => void;
  logger?: Logger;
}

interface Fork {
  target: CallTarget;
  request?: SrfRequest;
  settled: boolean;
  responded: boolean;
}

export async function dialLeg(options: DialOptions): Promise<{ leg: SipLeg; target: CallTarget }> {
  const media = options.media.create({ callId: `dc-${randomUUID()}`, injectDtmf: options.injectDtmf ?? false });
  let offer: string;
  try {
    offer = await media.offer(parkedSdp(), 'plain', options.kind);
  } catch {
    await media.delete();
    throw new DialFailure(503, 'media-failure');
  }
  const deadline = Date.now() + options.ringTimeoutMs;
  const failures: number[] = [];
  let ringing = false;
  const allow = allowHeader(options.methods ?? CUSTOMER_LEG_METHODS);
  for (const group of options.groups) {
    if (options.signal?.aborted) break;
    const outcome = await dialGroup(group, offer, deadline, () => {
      if (!ringing) {
        ringing = true;
        options.onRinging?.();
      }
    });
    if ('dialog' in outcome) {
      try {
        const internalSdp = await media.answer(outcome.dialog.remote.sdp);
        const leg = new SipLeg({
          dialog: outcome.dialog, media, externalSide: 'b', kind: options.kind, internalSdp, peerSdp: outcome.dialog.remote.sdp,
          ...(options.logger ? { logger: options.logger } : {}),
        });
        return { leg, target: outcome.target };
      } catch {
        await outcome.dialog.destroy().catch(() => undefined);
        await media.delete();
        throw new DialFailure(488, 'media-failure');
      }
    }
    if ('aborted' in outcome) break;
    failures.push(outcome.failed);
    if (!isFailoverStatus(outcome.failed) && !outcome.noResponse) break;
  }
  await media.delete();
  if (options.signal?.aborted) throw new DialFailure(487, 'aborted');
  if (Date.now() >= deadline) throw new DialFailure(408, 'no-answer');
  const status = failures.length ? bestFailure(failures) : 480;
  throw new DialFailure(status, status === 408 || status === 480 ? 'no-answer' : 'rejected');

  function dialGroup(
    targets: CallTarget[],
    sdp: string,
    until: number,
    ring: () => void,
  ): Promise<{ dialog: Dialog; target: CallTarget } | { failed: number; noResponse?: boolean } | { aborted: true }> {
    return new Promise((resolve) => {
      const forks: Fork[] = targets.map((target) => ({ target, settled: false, responded: false }));
      let done = false;
      const statuses: number[] = [];
      const cancelOthers = (winner?: Fork): void => {
        for (const fork of forks) if (fork !== winner && !fork.settled && fork.request) fork.request.cancel();
      };
      const finish = (result: Parameters<typeof resolve>[0]): void => {
        if (done) return;
        done = true;
        clearTimeout(ringTimer);
        clearTimeout(silenceTimer);
        options.signal?.removeEventListener('abort', onAbort);
        resolve(result);
      };
      const onAbort = (): void => {
        cancelOthers();
        finish({ aborted: true });
      };
      options.signal?.addEventListener('abort', onAbort, { once: true });
      const ringTimer = setTimeout(() => {
        cancelOthers();
        finish({ failed: 408 });
      }, Math.max(0, until - Date.now()));
      const silenceTimer = setTimeout(() => {
        if (forks.every((f) => !f.responded)) {
          cancelOthers();
          finish({ failed: 408, noResponse: true });
        }
      }, options.noResponseFailoverMs ?? 5_000);
      for (const fork of forks) {
        const { target } = fork;
        options.srf
          .createUAC(
            target.uri,
            { headers: { Allow: allow, ...target.headers }, localSdp: sdp, ...(target.proxy ? { proxy: target.proxy } : {}), ...(target.auth ? { auth: target.auth } : {}) },
            {
              cbRequest: (_err, req) => {
                fork.request = req;
                if (done) req.cancel();
              },
              cbProvisional: (res) => {
                fork.responded = true;
                if (res.status >= 180) ring();
              },
            },
          )
          .then((dialog) => {
            fork.settled = true;
            if (done) {
              // a 2xx that crossed our CANCEL (RFC 3261 §9.1): ACKed by srf, ended here
              void dialog.destroy().catch(() => undefined);
              return;
            }
            cancelOthers(fork);
            finish({ dialog, target });
          })
          .catch((err: unknown) => {
            fork.settled = true;
            fork.responded = true;
            statuses.push(isSipFailure(err) ? err.status : 500);
            if (forks.every((f) => f.settled)) finish({ failed: bestFailure(statuses) });
          });
      }
    });
  }
}
