import { describe, expect, it } from 'vitest';
import { checkManualDial, classifyDialled, type ManualDialRules } from './manual-dial.js';

const internal = new Set(['2001', '350']);
const classifier = { isInternalNumber: (digits: string) => internal.has(digits), voicemailNumbers: ['8500', '*97'] };

describe('classifyDialled', () => {
  it.each([
    ['sip:+442071234567@dialcore.example', 'outside'],
    ['02071234567', 'outside'],
    ['tel:+1-555-123-4567', 'outside'],
    ['sip:2001@dialcore.example', 'internal'],
    ['350', 'internal'],
    ['sip:3500@dialcore.example', 'outside'],
    ['sip:*97@dialcore.example', 'voicemail'],
    ['8500', 'voicemail'],
    ['*72', 'feature-code'],
    ['sip:%2A72@dialcore.example', 'feature-code'],
    ['#31#', 'feature-code'],
    ['sip:alice@example.com', 'outside'],
    ['', 'outside'],
  ] as const)('%s is %s', (dialled, kind) => {
    expect(classifyDialled(dialled, classifier)).toBe(kind);
  });

  it('a +-prefixed number is never internal', () => {
    expect(classifyDialled('+2001', classifier)).toBe('outside');
  });
});

describe('checkManualDial', () => {
  const refused = { allowed: false, status: 403, reason: 'Manual Dial Not Allowed' };
  const cases: [ManualDialRules, boolean][] = [
    [{ manualDial: true, restrictManualCalls: false }, true],
    [{ manualDial: true, restrictManualCalls: true }, false],
    [{ manualDial: false, restrictManualCalls: false }, false],
    [{ manualDial: false, restrictManualCalls: true }, false],
  ];

  it.each(cases)('outside number with %o -> allowed %s', (rules, allowed) => {
    expect(checkManualDial(rules, 'outside')).toEqual(allowed ? { allowed: true } : refused);
  });

  it('internal numbers, feature codes and voicemail are allowed whatever the privilege', () => {
    const none = { manualDial: false, restrictManualCalls: true };
    for (const kind of ['internal', 'feature-code', 'voicemail'] as const) {
      expect(checkManualDial(none, kind)).toEqual({ allowed: true });
    }
  });
});
