import { describe, expect, it } from 'vitest';
import {
  answerFlags,
  offerFlags,
  planCodecs,
  plainToPlain,
  plainToWebrtcAnswer,
  plainToWebrtcOffer,
  webrtcToPlainAnswer,
  webrtcToPlainOffer,
} from './leg-flags.js';
import { detectLegKind, inspectSdp, isHoldSdp } from './sdp-inspect.js';

const codecs = (...names: string[]) => ({ codecs: names.map((name, i) => ({ payload: 96 + i, name })) });

describe('leg flag sets', () => {
  it('WebRTC side: SAVPF, ICE forced, rtcp-mux required, no SDES, DTLS left at the default role', () => {
    for (const flags of [plainToWebrtcOffer(), plainToWebrtcAnswer()]) {
      expect(flags).toMatchObject({ 'transport-protocol': 'UDP/TLS/RTP/SAVPF', ICE: 'force', 'rtcp-mux': ['require'], SDES: ['off'] });
      expect(flags.DTLS).toBeUndefined();
    }
    expect(plainToWebrtcOffer().flags).toContain('generate mid');
  });

  it('plain side: RTP/AVP, no ICE/DTLS/SDES, rtcp demux, origin and c= replaced', () => {
    for (const flags of [webrtcToPlainOffer(), webrtcToPlainAnswer(), plainToPlain()]) {
      expect(flags).toEqual({
        ICE: 'remove',
        DTLS: 'off',
        SDES: ['off'],
        'transport-protocol': 'RTP/AVP',
        'rtcp-mux': ['demux'],
        replace: ['origin', 'session-connection'],
      });
    }
  });

  it('picks the set by direction and adds extras', () => {
    expect(offerFlags('webrtc', 'plain')).toEqual(webrtcToPlainOffer());
    expect(offerFlags('plain', 'webrtc')).toEqual(plainToWebrtcOffer());
    expect(answerFlags('plain', 'webrtc')).toEqual(plainToWebrtcAnswer());
    expect(answerFlags('webrtc', 'plain')).toEqual(webrtcToPlainAnswer());
    expect(offerFlags('plain', 'plain', { flags: ['inject DTMF'], codec: { mask: ['G729'] } })).toMatchObject({
      flags: ['inject DTMF'],
      codec: { mask: ['G729'] },
    });
  });
});

describe('planCodecs', () => {
  it('nothing to do when every offered codec suits the receiving leg', () => {
    expect(planCodecs(codecs('PCMU', 'PCMA'), 'plain')).toBeUndefined();
    expect(planCodecs(codecs('opus', 'PCMU'), 'webrtc')).toBeUndefined();
  });
  it('masks what the receiving leg cannot use when a codec is shared', () => {
    expect(planCodecs(codecs('opus', 'PCMU', 'PCMA'), 'plain')).toEqual({ mask: ['opus'] });
  });
  it('transcodes (with telephone-event) when no codec is shared', () => {
    expect(planCodecs(codecs('opus'), 'plain')).toEqual({ transcode: ['PCMU', 'PCMA', 'telephone-event'], mask: ['opus'] });
    expect(planCodecs(codecs('G729'), 'webrtc')).toEqual({ transcode: ['opus', 'PCMU', 'PCMA', 'telephone-event'], mask: ['G729'] });
  });
});

describe('inspectSdp', () => {
  const plain = 'v=0\r\no=- 1 1 IN IP4 10.0.0.1\r\ns=-\r\nc=IN IP4 10.0.0.1\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0 8 18 101\r\na=rtpmap:101 telephone-event/8000\r\na=sendonly\r\n';
  it('reads kind, static and dynamic codecs, telephone-event and direction', () => {
    const result = inspectSdp(plain);
    expect(result.ok).toBe(true);
    if (!result.ok) return;
    expect(result.summary).toMatchObject({ kind: 'plain', protocol: 'RTP/AVP', port: 4000, direction: 'sendonly', hasIce: false });
    expect(result.summary.codecs.map((c) => c.name)).toEqual(['PCMU', 'PCMA', 'G729']);
    expect(result.summary.telephoneEvents).toEqual([{ payload: 101, name: 'telephone-event', rate: 8000 }]);
    expect(isHoldSdp(result.summary)).toBe(true);
  });
  it('c=0.0.0.0 is RFC 2543-style hold', () => {
    const result = inspectSdp(plain.replace(/10\.0\.0\.1/g, '0.0.0.0').replace('a=sendonly\r\n', ''));
    expect(result.ok && isHoldSdp(result.summary)).toBe(true);
  });
  it('detects WebRTC by profile or fingerprint', () => {
    expect(detectLegKind(plain.replace('RTP/AVP', 'UDP/TLS/RTP/SAVPF'))).toBe('webrtc');
    expect(detectLegKind(plain.replace('a=sendonly', 'a=fingerprint:sha-256 AA:BB'))).toBe('webrtc');
    expect(detectLegKind(plain)).toBe('plain');
  });
  it('refuses what is not usable SDP', () => {
    expect(inspectSdp('')).toMatchObject({ ok: false });
    expect(inspectSdp('hello')).toMatchObject({ ok: false });
    expect(inspectSdp('v=0\r\nm=video 1 RTP/AVP 96\r\n')).toMatchObject({ ok: false, error: 'SDP has no audio m-line' });
    expect(inspectSdp(`v=0\r\n${'a=x\r\n'.repeat(20_000)}`)).toMatchObject({ ok: false });
    expect(detectLegKind('garbage')).toBeUndefined();
  });
});
