/**
 * Answers an incoming INVITE as a leg of its own (dial-in, an inbound DID call bridged into an
 * agent session): the caller's offer goes to rtpengine from the external side, the internal side
 * answers parked (media/parked-sdp.ts), and the 200 OK carries rtpengine's answer (RFC 3264 §6).
 */
import { randomUUID } from 'node:crypto';
import type { Logger } from 'pino';
import { detectLegKind, parkedSdp, type MediaSessionRegistry } from '../media/index.js';
import type { SipHeaders, SipMethod, Srf, SrfRequest, SrfResponse } from '../sip/srf.js';
import { CUSTOMER_LEG_METHODS, allowHeader } from '../sip/capabilities.js';
import { SipLeg } from './sip-leg.js';

export class AnswerFailure extends Error {
  constructor(readonly status: number, message: string) {
    super(message);
  }
}

export interface AnswerOptions {
  srf: Srf;
  media: MediaSessionRegistry;
  req: SrfRequest;
  res: SrfResponse;
  injectDtmf?: boolean;
  headers?: SipHeaders;
  /** The methods this leg handles, for Allow (capabilities.ts); default the customer-leg set. */
  methods?: readonly SipMethod[];
  logger?: Logger;
}

export async function answerLeg(options: AnswerOptions): Promise<SipLeg> {
  const { req, res } = options;
  const offer = req.body;
  if (!offer) {
    res.send(488, 'Not Acceptable Here');
    throw new AnswerFailure(488, 'INVITE without SDP');
  }
  const kind = detectLegKind(offer) ?? (/^wss?$/i.test(req.protocol) ? 'webrtc' : 'plain');
  const media = options.media.create({ callId: `dc-${randomUUID()}`, injectDtmf: options.injectDtmf ?? false });
  let internalSdp: string;
  let toCaller: string;
  try {
    internalSdp = await media.offer(offer, kind, 'plain');
    toCaller = await media.answer(parkedSdp());
  } catch (err) {
    await media.delete();
    res.send(488, 'Not Acceptable Here');
    throw new AnswerFailure(488, err instanceof Error ? err.message : String(err));
  }
  try {
    const headers = { Allow: allowHeader(options.methods ?? CUSTOMER_LEG_METHODS), ...options.headers };
    const dialog = await options.srf.createUAS(req, res, { localSdp: toCaller, headers });
    return new SipLeg({ dialog, media, externalSide: 'a', kind, internalSdp, peerSdp: offer, ...(options.logger ? { logger: options.logger } : {}) });
  } catch (err) {
    await media.delete();
    throw new AnswerFailure(500, err instanceof Error ? err.message : String(err));
  }
}
