import { describe, expect, it } from 'vitest';
import { createNumberMasker, maskingApplies, numbersInIdentityHeaders } from './masking.js';

const CUSTOMER = '+442071234567';
const NATIONAL = '2071234567';

/** Every encoding of the customer's number a carrier or PBX might send. */
const ENCODINGS = [
  '+442071234567',
  '00442071234567',
  '442071234567',
  '02071234567',
  '2071234567',
  '+44 20 7123 4567',
  '+44-20-7123-4567',
  '+44.20.7123.4567',
  '+44 (0)20 7123 4567',
  '(020) 7123-4567',
  '020 7123 4567',
  '%2B442071234567',
  '%2b44%2020%207123%204567',
  '+44%2D20%2D7123%2D4567',
];

/**
 * Windows (4+ digits) of the national number that still show once separators and escapes are
 * removed, except windows lying wholly in the `keep` digits the format shows on purpose.
 */
function leakedWindows(text: string, keep: number): string[] {
  const compact = text
    .replace(/%2[0dDeEfF]|%28|%29/g, '')
    .replace(/%3([0-9])/g, '$1')
    .replace(/[\s\-.()/]/g, '');
  const hiddenLength = NATIONAL.length - keep;
  const leaks: string[] = [];
  for (let size = 4; size <= NATIONAL.length; size++) {
    for (let start = 0; start < hiddenLength && start + size <= NATIONAL.length; start++) {
      const window = NATIONAL.slice(start, start + size);
      if (compact.includes(window)) leaks.push(window);
    }
  }
  return leaks;
}

describe('maskingApplies', () => {
  it('masks masked users, not excluded ones, not unmasked ones', () => {
    expect(maskingApplies({ masking: { enabled: true, keepLastDigits: 2 }, maskingExcluded: false })).toBe(true);
    expect(maskingApplies({ masking: { enabled: true, keepLastDigits: 2 }, maskingExcluded: true })).toBe(false);
    expect(maskingApplies({ masking: { enabled: false, keepLastDigits: 2 }, maskingExcluded: false })).toBe(false);
  });
});

describe('createNumberMasker', () => {
  const masker = createNumberMasker([CUSTOMER], 2);

  it.each(ENCODINGS)('masks %s, keeping only the last two digits', (encoding) => {
    const masked = masker.maskText(`x${encoding}y`);
    // a separator before the first digit (the `(` of `(020)`) may stay
    expect(masked).toMatch(/^x\(?XXXXXXXXXX67y$/);
    expect(masker.reveals(masked)).toBe(false);
    expect(leakedWindows(masked, 2)).toEqual([]);
  });

  it('masks every identity header in every form, and leaves routing headers alone', () => {
    const headers: Record<string, string> = {
      From: '"+44 20 7123 4567" <sip:+442071234567@carrier.example;user=phone>;tag=abc123',
      To: '<sip:02071234567@dialcore.example>',
      'P-Asserted-Identity': '"Customer 020 7123 4567" <tel:+44-20-7123-4567>, <sip:%2B442071234567@carrier.example;user=phone>',
      'Remote-Party-ID': '"0044 20 7123 4567" <sip:00442071234567@10.0.0.1>;party=calling;screen=yes;privacy=off',
      Diversion: '<tel:+442071234567;phone-context=+44>;reason=unconditional;counter=1',
      'History-Info': '<sip:442071234567@pbx.example?Reason=SIP%3Bcause%3D302>;index=1, <sip:agent@dialcore.example>;index=1.1',
      'P-Preferred-Identity': '<sip:+44(0)2071234567@carrier.example>',
      'X-Original-Caller': 'sip:+442071234567@x;isup-oli=62;rn=+442071234567',
      Contact: '<sip:b2bua-7f3a@192.0.2.10:5060>',
      Via: 'SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bK2071234567',
      'Call-ID': 'abc-2071234567@b2bua',
    };
    const masked = masker.maskHeaders(headers);
    for (const name of ['From', 'To', 'P-Asserted-Identity', 'Remote-Party-ID', 'Diversion', 'History-Info', 'P-Preferred-Identity', 'X-Original-Caller']) {
      expect(masker.reveals(masked[name]!), `${name}: ${masked[name]}`).toBe(false);
      expect(leakedWindows(masked[name]!, 2), `${name}: ${masked[name]}`).toEqual([]);
      expect(masked[name]).toContain('XXXXXXXXXX67');
    }
    expect(masked.From).toBe('"XXXXXXXXXX67" <sip:XXXXXXXXXX67@carrier.example;user=phone>;tag=abc123');
    expect(masked.Diversion).toBe('<tel:XXXXXXXXXX67;phone-context=+44>;reason=unconditional;counter=1');
    // routing state the B2BUA owns is untouched
    expect(masked.Contact).toBe(headers.Contact);
    expect(masked.Via).toBe(headers.Via);
    expect(masked['Call-ID']).toBe(headers['Call-ID']);
    // the other header text survives
    expect(masked['History-Info']).toContain('Reason=SIP%3Bcause%3D302>;index=1, <sip:agent@dialcore.example>;index=1.1');
    expect(masked['Remote-Party-ID']).toContain(';party=calling;screen=yes;privacy=off');
  });

  it('masks multi-valued headers given as arrays', () => {
    const masked = masker.maskHeaders({ Diversion: ['<sip:+442071234567@a>', '<sip:02071234567@b>'] });
    expect(masked.Diversion).toEqual(['<sip:XXXXXXXXXX67@a>', '<sip:XXXXXXXXXX67@b>']);
  });

  it('uses a fixed text when configured', () => {
    const anonymous = createNumberMasker([CUSTOMER], 2, { fixedText: 'Anonymous' });
    expect(anonymous.maskText('"+44 20 7123 4567" <sip:+442071234567@c>')).toBe('"Anonymous" <sip:Anonymous@c>');
  });

  it('keepLastDigits 0 hides every digit; a huge keep still hides at least four national digits', () => {
    expect(createNumberMasker([CUSTOMER], 0).maskText('+442071234567')).toBe('XXXXXXXXXXXX');
    const capped = createNumberMasker([CUSTOMER], 20).maskText('+442071234567');
    expect(capped).toBe('XXXXXX234567');
    expect(capped).not.toContain('2071');
  });

  it('masks several numbers of the same call (From differs from P-Asserted-Identity)', () => {
    const both = createNumberMasker(['+442071234567', '+33612345678'], 2);
    const masked = both.maskText('<sip:+33 6 12 34 56 78@a>, <sip:+442071234567@b>');
    expect(masked).toBe('<sip:XXXXXXXXX78@a>, <sip:XXXXXXXXXX67@b>');
  });

  it('masks national-format customer numbers given a default country code', () => {
    const national = createNumberMasker(['020 7123 4567'], 2, { defaultCountryCode: '44' });
    expect(national.maskText('sip:+442071234567@x')).toBe('sip:XXXXXXXXXX67@x');
    expect(national.maskText('sip:02071234567@x')).toBe('sip:XXXXXXXXXX67@x');
  });

  it('masks a JSON event payload deeply (strings, keys, numbers) without touching other data', () => {
    const payload = {
      event: 'call.ringing',
      callId: 'c-1',
      from: { uri: 'sip:+442071234567@carrier', display: '+44 20 7123 4567' },
      numbers: ['02071234567', 442071234567],
      history: [{ target: 'tel:+44-20-7123-4567' }],
      byNumber: { '+442071234567': 'seen' },
      agent: 'alice',
      durationMs: 1200,
    };
    const masked = masker.maskPayload(payload);
    const text = JSON.stringify(masked);
    expect(masker.reveals(text)).toBe(false);
    expect(leakedWindows(text, 2)).toEqual([]);
    expect(masked).toMatchObject({ event: 'call.ringing', callId: 'c-1', agent: 'alice', durationMs: 1200 });
    expect(JSON.stringify(payload)).toContain('442071234567'); // input untouched
  });

  it('is bounded on a cyclic or very deep payload', () => {
    const cyclic: Record<string, unknown> = { number: '+442071234567' };
    cyclic.self = cyclic;
    const masked = JSON.stringify(masker.maskPayload(cyclic));
    expect(masked).toContain('[masked: too deep]');
    expect(masker.reveals(masked)).toBe(false);
  });

  it('an unusable customer number masks nothing rather than everything', () => {
    const none = createNumberMasker(['', '12', 'anonymous'], 2);
    expect(none.maskText('sip:+442071234567@x')).toBe('sip:+442071234567@x');
  });
});

describe('numbersInIdentityHeaders', () => {
  it('finds the numbers in From, P-Asserted-Identity, Remote-Party-ID and display names', () => {
    const numbers = numbersInIdentityHeaders({
      From: '"+44 20 7123 4567" <sip:+442071234567@carrier;user=phone>;tag=1',
      'P-Asserted-Identity': '<tel:+33-6-12-34-56-78>',
      'Remote-Party-ID': '<sip:%2B4915112345678@gw>;party=calling',
      Contact: '<sip:+15550000000@gw>',
      To: '<sip:agent@dialcore>',
    });
    expect(numbers).toEqual(expect.arrayContaining(['+442071234567', '+33612345678', '+4915112345678']));
    expect(numbers).not.toContain('+15550000000'); // Contact is not an identity header
  });
});
