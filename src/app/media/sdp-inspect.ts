/**
 * What dialcore needs to know about an SDP body (RFC 4566 / RFC 8866) before asking rtpengine
 * to rewrite it: which kind of leg sent it (WebRTC or plain RTP), the audio codecs it offers,
 * its telephone-event (RFC 4733) payload types, and its direction (hold, RFC 3264 §8.4).
 *
 * SDP bodies come from the network: size is bounded, parse failures are results, never throws.
 */
import { parse as parseSdp, type SessionDescription } from 'sdp-transform';

export type LegKind = 'webrtc' | 'plain';
export type MediaDirection = 'sendrecv' | 'sendonly' | 'recvonly' | 'inactive';

export interface SdpCodec {
  payload: number;
  /** As in rtpmap (`PCMU`, `opus`, `telephone-event`); static payload types are named per RFC 3551. */
  name: string;
  rate?: number;
}

export interface SdpSummary {
  kind: LegKind;
  /** Transport protocol of the first audio m-line (`RTP/AVP`, `UDP/TLS/RTP/SAVPF`, ...). */
  protocol: string;
  port: number;
  /** Audio codecs in preference order, telephone-event excluded. */
  codecs: SdpCodec[];
  /** telephone-event payloads (RFC 4733), one per clock rate offered. */
  telephoneEvents: SdpCodec[];
  /** Direction of the audio stream (media level, else session level, else sendrecv). */
  direction: MediaDirection;
  /** RFC 3264 §8.4 old-style hold: connection address 0.0.0.0. */
  zeroConnection: boolean;
  hasIce: boolean;
  hasFingerprint: boolean;
}

export type SdpInspection = { ok: true; summary: SdpSummary } | { ok: false; error: string };

/** Bodies larger than this are refused before parsing. */
export const MAX_SDP_BYTES = 64 * 1024;

/** RFC 3551 §6 static audio payload types (no rtpmap needed). */
const STATIC_AUDIO_PAYLOADS: Readonly<Record<number, { name: string; rate: number }>> = {
  0: { name: 'PCMU', rate: 8000 },
  3: { name: 'GSM', rate: 8000 },
  4: { name: 'G723', rate: 8000 },
  8: { name: 'PCMA', rate: 8000 },
  9: { name: 'G722', rate: 8000 },
  18: { name: 'G729', rate: 8000 },
};

const DIRECTIONS: readonly MediaDirection[] = ['sendrecv', 'sendonly', 'recvonly', 'inactive'];

function asDirection(value: unknown): MediaDirection | undefined {
  return DIRECTIONS.find((d) => d === value);
}

export function inspectSdp(sdp: string): SdpInspection {
  if (typeof sdp !== 'string' || sdp.length === 0) return { ok: false, error: 'empty SDP' };
  if (Buffer.byteLength(sdp, 'utf8') > MAX_SDP_BYTES) return { ok: false, error: `SDP larger than ${MAX_SDP_BYTES} bytes` };
  if (!/^v=0\r?\n/.test(sdp)) return { ok: false, error: 'SDP does not start with v=0' };
  let parsed: SessionDescription;
  try {
    parsed = parseSdp(sdp);
  } catch (err) {
    return { ok: false, error: `unparseable SDP: ${err instanceof Error ? err.message : String(err)}` };
  }
  const media = Array.isArray(parsed.media) ? parsed.media : [];
  const audio = media.find((m) => m.type === 'audio' && typeof m.port === 'number');
  if (!audio) return { ok: false, error: 'SDP has no audio m-line' };
  if (typeof audio.protocol !== 'string' || audio.protocol.length === 0) return { ok: false, error: 'audio m-line has no protocol' };

  const rtpmap = new Map<number, { name: string; rate?: number }>();
  for (const entry of audio.rtp ?? []) {
    if (typeof entry.payload === 'number' && typeof entry.codec === 'string') {
      rtpmap.set(entry.payload, { name: entry.codec, rate: entry.rate });
    }
  }
  const codecs: SdpCodec[] = [];
  const telephoneEvents: SdpCodec[] = [];
  for (const token of String(audio.payloads ?? '').split(/\s+/)) {
    if (!/^\d{1,3}$/.test(token)) continue;
    const payload = Number(token);
    const mapped = rtpmap.get(payload) ?? STATIC_AUDIO_PAYLOADS[payload];
    if (!mapped) continue;
    const codec: SdpCodec = { payload, name: mapped.name, rate: mapped.rate };
    if (mapped.name.toLowerCase() === 'telephone-event') telephoneEvents.push(codec);
    else codecs.push(codec);
  }

  const protocol = audio.protocol;
  const hasFingerprint = Boolean(audio.fingerprint ?? parsed.fingerprint);
  const hasIce = Boolean(audio.iceUfrag ?? parsed.iceUfrag) || (audio.candidates?.length ?? 0) > 0;
  // WebRTC media is always secure AVPF (RFC 8834 §5): UDP/TLS/RTP/SAVPF, or a DTLS fingerprint.
  const kind: LegKind = /SAVPF$/i.test(protocol) || hasFingerprint ? 'webrtc' : 'plain';
  const connection = audio.connection?.ip ?? parsed.connection?.ip;
  return {
    ok: true,
    summary: {
      kind,
      protocol,
      port: audio.port,
      codecs,
      telephoneEvents,
      direction: asDirection(audio.direction) ?? asDirection(parsed.direction) ?? 'sendrecv',
      zeroConnection: connection === '0.0.0.0' && !hasIce,
      hasIce,
      hasFingerprint,
    },
  };
}

/** `webrtc` for UDP/TLS/RTP/SAVPF or a DTLS fingerprint, else `plain`; undefined when not an SDP with audio. */
export function detectLegKind(sdp: string): LegKind | undefined {
  const inspection = inspectSdp(sdp);
  return inspection.ok ? inspection.summary.kind : undefined;
}

/** True when the SDP puts the other side on hold (sendonly/inactive, or c=0.0.0.0 per RFC 3264 §8.4). */
export function isHoldSdp(summary: SdpSummary): boolean {
  return summary.direction === 'sendonly' || summary.direction === 'inactive' || summary.zeroConnection;
}
