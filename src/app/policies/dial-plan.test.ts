import { describe, expect, it } from 'vitest';
import { applyDialPlan, resolveUserDialPlan, validateDialPlanConfig, type DialPlanConfig } from './dial-plan.js';

const UK: DialPlanConfig = {
  defaultCountryCode: '44',
  nationalPrefix: '0',
  internationalPrefixes: ['00'],
  nationalNumberLengths: [10],
  minDigits: 11,
  blockedPrefixes: ['449', '1900'],
};

const NANP: DialPlanConfig = {
  defaultCountryCode: '1',
  nationalPrefix: '1',
  internationalPrefixes: ['011'],
  nationalNumberLengths: [10],
  blockedPrefixes: ['1900', '1976'],
};

describe('applyDialPlan: normalisation to E.164', () => {
  it.each([
    ['+44 20 7123 4567', '+442071234567'],
    ['0044 20 7123 4567', '+442071234567'],
    ['020 7123 4567', '+442071234567'],
    ['(020) 7123-4567', '+442071234567'],
    ['+44 (0)20 7123 4567', '+442071234567'],
    ['2071234567', '+442071234567'],
    ['+33 6 12 34 56 78', '+33612345678'],
    ['0033612345678', '+33612345678'],
    ['tel:+44-20-7123-4567', '+442071234567'],
    ['tel:7123-4567;phone-context=+44-20', '+442071234567'],
    ['sip:+44.20.7123.4567@dialcore.example;user=phone', '+442071234567'],
    ['sip:02071234567@dialcore.example', '+442071234567'],
    ['sip:%2B442071234567@dialcore.example', '+442071234567'],
    ['<sip:0044%2020%207123%204567@x>', '+442071234567'],
  ])('UK plan: %s -> %s', (dialled, e164) => {
    expect(applyDialPlan(dialled, UK)).toMatchObject({ ok: true, e164 });
  });

  it.each([
    ['(555) 123-4567', '+15551234567'],
    ['555.123.4567', '+15551234567'],
    ['1 555 123 4567', '+15551234567'],
    ['011 44 20 7123 4567', '+442071234567'],
    ['+1 (555) 123-4567', '+15551234567'],
  ])('NANP plan: %s -> %s', (dialled, e164) => {
    expect(applyDialPlan(dialled, NANP)).toMatchObject({ ok: true, e164 });
  });
});

describe('applyDialPlan: refusals', () => {
  it('484 Address Incomplete for too few digits', () => {
    expect(applyDialPlan('020 7123', UK)).toEqual({ ok: false, status: 484, reason: 'Address Incomplete' });
    expect(applyDialPlan('', UK)).toMatchObject({ ok: false, status: 404 });
    expect(applyDialPlan('---', UK)).toMatchObject({ ok: false, status: 484 });
  });

  it('404 for what is not a number or too long', () => {
    expect(applyDialPlan('alice', UK)).toMatchObject({ ok: false, status: 404 });
    expect(applyDialPlan('sip:alice@example.com', UK)).toMatchObject({ ok: false, status: 404 });
    expect(applyDialPlan('*97', UK)).toMatchObject({ ok: false, status: 404 });
    expect(applyDialPlan('+4420712345678901234', UK)).toMatchObject({ ok: false, status: 404 });
    expect(applyDialPlan('sip:%ZZ@x', UK)).toMatchObject({ ok: false, status: 404 });
    expect(applyDialPlan('9'.repeat(500), UK)).toMatchObject({ ok: false, status: 404 });
    expect(applyDialPlan('123456789012', UK)).toMatchObject({ ok: false, status: 404 }); // no prefix, not national length
  });

  it('403 for blocked premium prefixes in every dialled form', () => {
    for (const dialled of ['09001234567', '+449001234567', '00449001234567']) {
      expect(applyDialPlan(dialled, UK)).toEqual({ ok: false, status: 403, reason: 'Destination Not Allowed' });
    }
    expect(applyDialPlan('1 900 555 1234', NANP)).toMatchObject({ ok: false, status: 403 });
    expect(applyDialPlan('(900) 555-1234', NANP)).toMatchObject({ ok: false, status: 403 });
  });

  it('403 outside the allowed prefixes', () => {
    const ukOnly: DialPlanConfig = { ...UK, allowedPrefixes: ['44'] };
    expect(applyDialPlan('020 7123 4567', ukOnly)).toMatchObject({ ok: true });
    expect(applyDialPlan('+33 6 12 34 56 78', ukOnly)).toEqual({ ok: false, status: 403, reason: 'Destination Not Allowed' });
  });
});

describe('applyDialPlan: ordered rules', () => {
  const plan: DialPlanConfig = {
    ...UK,
    rules: [
      { prefix: '9', strip: 1, action: 'allow' }, // "9 for an outside line"
      { pattern: '^(\\+44|0044|0)118', action: 'deny', status: 403, reason: 'Premium Not Allowed' },
      { pattern: '^\\+?(0044|44|0)7', action: 'allow', minLength: 11 },
      { pattern: '^5(\\d{3})$', replacement: '+44207123$1', action: 'allow' },
    ],
  };

  it('applies the first matching rule: strip, deny, length, regex rewrite', () => {
    expect(applyDialPlan('9 020 7123 4567', plan)).toMatchObject({ ok: true, e164: '+442071234567', rule: 0 });
    expect(applyDialPlan('0118 123 4567', plan)).toEqual({ ok: false, status: 403, reason: 'Premium Not Allowed' });
    expect(applyDialPlan('07700 900', plan)).toEqual({ ok: false, status: 484, reason: 'Address Incomplete' });
    expect(applyDialPlan('07700 900123', plan)).toMatchObject({ ok: true, e164: '+447700900123', rule: 2 });
    expect(applyDialPlan('5345', plan)).toMatchObject({ ok: true, e164: '+44207123345', rule: 3 });
  });

  it('global blocked prefixes still apply after an allow rule', () => {
    expect(applyDialPlan('9 0900 123 4567', plan)).toMatchObject({ ok: false, status: 403 });
  });

  it("user inline rules (the user model's { pattern, replacement, action }) come first", () => {
    const userRules = [{ pattern: '^\\+?(0044|44|0)7', action: 'deny' as const }];
    expect(applyDialPlan('07700 900123', plan, userRules)).toEqual({ ok: false, status: 403, reason: 'Destination Not Allowed' });
    expect(applyDialPlan('020 7123 4567', plan, userRules)).toMatchObject({ ok: true });
  });

  it('a deny-all rule at the end makes an allow-list', () => {
    const allowList: DialPlanConfig = {
      ...UK,
      rules: [
        { pattern: '^(\\+44|0044|0)[1-3]', action: 'allow' },
        { pattern: '.*', action: 'deny' },
      ],
    };
    expect(applyDialPlan('020 7123 4567', allowList)).toMatchObject({ ok: true });
    expect(applyDialPlan('07700 900123', allowList)).toMatchObject({ ok: false, status: 403 });
  });
});

describe('resolveUserDialPlan', () => {
  const plans = { uk: UK, nanp: NANP };
  it('picks a named plan, inline rules on the default plan, or the default', () => {
    expect(resolveUserDialPlan({ name: 'nanp' }, plans, UK)).toEqual({ plan: NANP, userRules: [] });
    expect(resolveUserDialPlan({ name: 'missing' }, plans, UK)).toEqual({ plan: UK, userRules: [] });
    expect(resolveUserDialPlan({ name: '__proto__' }, plans, UK)).toEqual({ plan: UK, userRules: [] });
    const rules = [{ pattern: '^0', action: 'allow' as const }];
    expect(resolveUserDialPlan({ rules }, plans, UK)).toEqual({ plan: UK, userRules: rules });
    expect(resolveUserDialPlan(null, plans, UK)).toEqual({ plan: UK, userRules: [] });
  });
});

describe('validateDialPlanConfig', () => {
  it('accepts a full plan', () => {
    expect(validateDialPlanConfig({ ...UK, rules: [{ prefix: '9', strip: 1, action: 'allow' }] })).toMatchObject({ ok: true });
  });

  it('names every bad field', () => {
    const result = validateDialPlanConfig({
      defaultCountryCode: '044',
      nationalPrefix: 'x',
      blockedPrefixes: ['1900', 'premium'],
      minDigits: 0,
      colour: 'blue',
      rules: [{ pattern: '(', action: 'allow' }, { prefix: '9', pattern: '^9', action: 'maybe' }, { action: 'deny' }],
    });
    expect(result.ok).toBe(false);
    const fields = result.ok ? [] : result.errors.map((e) => e.field);
    expect(fields).toEqual(
      expect.arrayContaining([
        'dialPlan.defaultCountryCode',
        'dialPlan.nationalPrefix',
        'dialPlan.blockedPrefixes[1]',
        'dialPlan.minDigits',
        'dialPlan.colour',
        'dialPlan.rules[0].pattern',
        'dialPlan.rules[1]',
        'dialPlan.rules[1].action',
        'dialPlan.rules[2]',
      ]),
    );
  });
});
