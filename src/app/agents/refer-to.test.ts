import { describe, expect, it } from 'vitest';
import { parseReferTo } from './refer-to.js';

describe('parseReferTo (RFC 3515 Refer-To, RFC 3891 §6.1 Replaces)', () => {
  it('reads the number of a blind transfer', () => {
    expect(parseReferTo('<sip:%2B442079999999@dialcore.test;user=phone>')).toEqual({ ok: true, number: '+442079999999' });
    expect(parseReferTo('sip:1001@pbx.example')).toEqual({ ok: true, number: '1001' });
  });

  it('reads the replaced dialog with the core as the recipient (to-tag local, from-tag remote)', () => {
    const parsed = parseReferTo('"Target" <sip:+442079999999@dialcore.test?Replaces=abc%40host%3Bto-tag%3Dcore1%3Bfrom-tag%3Dphone2&Require=replaces>');
    expect(parsed).toEqual({ ok: true, number: '+442079999999', replaces: { callId: 'abc@host', localTag: 'core1', remoteTag: 'phone2' } });
  });

  it('refuses what names no dialog or no number', () => {
    expect(parseReferTo(undefined).ok).toBe(false);
    expect(parseReferTo('<tel:+442079999999>').ok).toBe(false);
    expect(parseReferTo('<sip:dialcore.test>').ok).toBe(false);
    expect(parseReferTo('<sip:1@h?Replaces=abc%3Bto-tag%3Dx>').ok).toBe(false); // no from-tag
    expect(parseReferTo('<sip:1@h?Replaces=%3Bto-tag%3Dx%3Bfrom-tag%3Dy>').ok).toBe(false); // no Call-ID
    expect(parseReferTo('<sip:1@h?Replaces=%E0%A4%A>').ok).toBe(false); // bad escape
    expect(parseReferTo(`<sip:1@h?Replaces=${'a'.repeat(3000)}>`).ok).toBe(false);
  });
});
