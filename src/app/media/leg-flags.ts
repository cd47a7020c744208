/**
 * rtpengine flag sets per leg, as measured against rtpengine 10.5 (shared/reference/
 * media-and-test-peers.md). The flags of an offer or answer describe the SDP rtpengine writes
 * for the side that *receives* it:
 *
 *   A webrtc, B plain:  offer webrtcToPlainOffer,  answer plainToWebrtcAnswer
 *   A plain,  B webrtc: offer plainToWebrtcOffer,  answer webrtcToPlainAnswer
 *   both plain:         plainToPlain both ways;    both webrtc: webrtcToWebrtc both ways
 *
 * WebRTC side (RFC 8827/8834): UDP/TLS/RTP/SAVPF, ICE forced (rtpengine's candidates), DTLS-SRTP
 * at rtpengine's default role (`DTLS: 'passive'` broke a real peer), rtcp-mux required, no SDES.
 * Plain side: RTP/AVP, no ICE, no DTLS, no SDES, RTCP demuxed, origin and c= replaced.
 *
 * Codecs: when the offerer and the receiving side share a codec nothing is transcoded (codecs the
 * receiver cannot use are masked); when they share none, rtpengine transcodes into the receiver's
 * codecs plus telephone-event (RFC 4733), so DTMF keeps flowing.
 */
import type { CodecOptions, NgFlag, NgMediaOptions, ReplaceOption } from './rtpengine.js';
import type { LegKind, SdpSummary } from './sdp-inspect.js';

export interface LegFlagOptions {
  codec?: CodecOptions;
  /** Extra ng flags, e.g. `inject DTMF` (needed in offer and answer to `play DTMF` later). */
  flags?: NgFlag[];
}

/** Audio codecs each kind of leg is given, in preference order (rtpmap names, case-insensitive). */
export interface LegCodecPreferences {
  plain: readonly string[];
  webrtc: readonly string[];
}

export const DEFAULT_LEG_CODECS: LegCodecPreferences = {
  plain: ['PCMU', 'PCMA'],
  webrtc: ['opus', 'PCMU', 'PCMA'],
};

const REPLACE: readonly ReplaceOption[] = ['origin', 'session-connection'];

function plainSide(options: LegFlagOptions): NgMediaOptions {
  return withExtras(
    {
      ICE: 'remove',
      DTLS: 'off',
      SDES: ['off'],
      'transport-protocol': 'RTP/AVP',
      'rtcp-mux': ['demux'],
      replace: [...REPLACE],
    },
    options,
  );
}

function webrtcSide(options: LegFlagOptions, isOffer: boolean): NgMediaOptions {
  return withExtras(
    {
      ICE: 'force',
      SDES: ['off'],
      'transport-protocol': 'UDP/TLS/RTP/SAVPF',
      'rtcp-mux': ['require'],
      replace: [...REPLACE],
      // An offer from a plain leg has no a=mid; browsers want one per m-line (RFC 8843).
      ...(isOffer ? { flags: ['generate mid'] } : {}),
    },
    options,
  );
}

function withExtras(base: NgMediaOptions, options: LegFlagOptions): NgMediaOptions {
  const flags = [...(base.flags ?? []), ...(options.flags ?? [])];
  return {
    ...base,
    ...(flags.length > 0 ? { flags } : {}),
    ...(options.codec ? { codec: options.codec } : {}),
  };
}

/** Offer from a WebRTC caller, written for a plain SIP callee. */
export function webrtcToPlainOffer(options: LegFlagOptions = {}): NgMediaOptions {
  return plainSide(options);
}

/** Answer from the plain callee, written for the WebRTC caller. */
export function plainToWebrtcAnswer(options: LegFlagOptions = {}): NgMediaOptions {
  return webrtcSide(options, false);
}

/** Offer from a plain SIP caller (carrier, SIP phone), written for a WebRTC callee. */
export function plainToWebrtcOffer(options: LegFlagOptions = {}): NgMediaOptions {
  return webrtcSide(options, true);
}

/** Answer from the WebRTC callee, written for the plain caller. */
export function webrtcToPlainAnswer(options: LegFlagOptions = {}): NgMediaOptions {
  return plainSide(options);
}

/** Plain to plain, offer or answer (media anchored, RTP/AVP both sides). */
export function plainToPlain(options: LegFlagOptions = {}): NgMediaOptions {
  return plainSide(options);
}

/** WebRTC to WebRTC, offer or answer. */
export function webrtcToWebrtc(options: LegFlagOptions = {}, isOffer = true): NgMediaOptions {
  return webrtcSide(options, isOffer);
}

/** The offer flags for an offer from `from` written for `to`. */
export function offerFlags(from: LegKind, to: LegKind, options: LegFlagOptions = {}): NgMediaOptions {
  if (from === 'webrtc' && to === 'plain') return webrtcToPlainOffer(options);
  if (from === 'plain' && to === 'webrtc') return plainToWebrtcOffer(options);
  if (from === 'plain') return plainToPlain(options);
  return webrtcToWebrtc(options, true);
}

/** The answer flags for an answer from `answerer` written back for the offerer. */
export function answerFlags(answerer: LegKind, offerer: LegKind, options: LegFlagOptions = {}): NgMediaOptions {
  if (answerer === 'plain' && offerer === 'webrtc') return plainToWebrtcAnswer(options);
  if (answerer === 'webrtc' && offerer === 'plain') return webrtcToPlainAnswer(options);
  if (answerer === 'plain') return plainToPlain(options);
  return webrtcToWebrtc(options, false);
}

/**
 * The `codec` options for an offer going to a leg of kind `toward`: undefined when nothing needs
 * doing; `mask` for offered codecs that leg cannot use when a common codec exists; `transcode`
 * into that leg's codecs (and telephone-event) when none is shared.
 */
export function planCodecs(
  offer: Pick<SdpSummary, 'codecs'>,
  toward: LegKind,
  preferences: LegCodecPreferences = DEFAULT_LEG_CODECS,
): CodecOptions | undefined {
  const accepted = preferences[toward].map((name) => name.toLowerCase());
  const offeredNames = [...new Set(offer.codecs.map((c) => c.name))];
  const usable = offeredNames.filter((name) => accepted.includes(name.toLowerCase()));
  const unusable = offeredNames.filter((name) => !accepted.includes(name.toLowerCase()));
  if (usable.length > 0) return unusable.length > 0 ? { mask: unusable } : undefined;
  return {
    transcode: [...preferences[toward], 'telephone-event'],
    ...(unusable.length > 0 ? { mask: unusable } : {}),
  };
}
