/**
 * The SDP of a leg's *internal* side while it is connected to nothing (an agent between customer
 * calls, a customer on hold, an IVR caller).
 *
 * Every SIP leg dialcore terminates has its own rtpengine call with two monologues: the external
 * one (the phone, browser, PBX or carrier) and the internal one, which dialcore points at another
 * leg's internal side (a bridge), at a mixer participant (3-way), or at this parked address.
 * Re-pointing the internal side is an rtpengine re-offer (RFC 3264 §8) that never changes the
 * external side's ports, so the peer is not re-INVITEd.
 *
 * Parked media goes to the discard port (RFC 863) on loopback: nothing listens there, nothing
 * comes back. Codecs are the internal side's fixed set (PCMU, PCMA, RFC 4733 telephone-event), so
 * every internal side of every leg can talk to every other without renegotiation.
 */
import { randomInt } from 'node:crypto';

export const INTERNAL_CODECS = ['PCMU', 'PCMA'] as const;
export const INTERNAL_TELEPHONE_EVENT_PT = 101;

/** A sendrecv RTP/AVP audio SDP pointing at `address:port` (RFC 4566), PCMU/PCMA/telephone-event. */
export function internalSdp(address: string, port: number, sessionName = 'dialcore'): string {
  const id = randomInt(1, 2 ** 31);
  return [
    'v=0',
    `o=- ${id} 1 IN IP4 ${address}`,
    `s=${sessionName}`,
    `c=IN IP4 ${address}`,
    't=0 0',
    `m=audio ${port} RTP/AVP 0 8 ${INTERNAL_TELEPHONE_EVENT_PT}`,
    'a=rtpmap:0 PCMU/8000',
    'a=rtpmap:8 PCMA/8000',
    `a=rtpmap:${INTERNAL_TELEPHONE_EVENT_PT} telephone-event/8000`,
    `a=fmtp:${INTERNAL_TELEPHONE_EVENT_PT} 0-16`,
    'a=ptime:20',
    'a=sendrecv',
    '',
  ].join('\r\n');
}

/**
 * A mixer participant's RTP address (Janus AudioBridge, agents/conference.ts) as the SDP a leg's
 * internal side is pointed at: one G.711 codec, the one the participant was joined with, and no
 * telephone-event (the mixer decodes every packet it gets as audio).
 */
export function mixerParticipantSdp(address: string, port: number, codec: (typeof INTERNAL_CODECS)[number]): string {
  const pt = codec === 'PCMU' ? 0 : 8;
  const id = randomInt(1, 2 ** 31);
  return [
    'v=0',
    `o=- ${id} 1 IN IP4 ${address}`,
    's=dialcore mixer',
    `c=IN IP4 ${address}`,
    't=0 0',
    `m=audio ${port} RTP/AVP ${pt}`,
    `a=rtpmap:${pt} ${codec}/8000`,
    'a=ptime:20',
    'a=sendrecv',
    '',
  ].join('\r\n');
}

/** The parked internal side: loopback discard port. */
export function parkedSdp(): string {
  return internalSdp('127.0.0.1', 9, 'dialcore parked');
}
