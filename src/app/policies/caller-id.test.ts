import { describe, expect, it } from 'vitest';
import { ANONYMOUS_FROM, outboundIdentity, quoteDisplayName, transferCallerNumber } from './caller-id.js';

describe('outboundIdentity', () => {
  const user = { callerIdName: 'Acme Sales', callerIdNumber: '+442071234567' };

  it("presents the user's Caller ID name and number in From and P-Asserted-Identity", () => {
    expect(outboundIdentity(user, { domain: 'dialcore.example' })).toEqual({
      from: '"Acme Sales" <sip:+442071234567@dialcore.example;user=phone>',
      pAssertedIdentity: '"Acme Sales" <sip:+442071234567@dialcore.example;user=phone>',
      number: '+442071234567',
      displayName: 'Acme Sales',
    });
  });

  it('number without a name', () => {
    expect(outboundIdentity({ callerIdName: null, callerIdNumber: '442071234567' }, { domain: '192.0.2.1:5060' }).from).toBe(
      '<sip:442071234567@192.0.2.1:5060;user=phone>',
    );
  });

  it('falls back to the default number, then to anonymous', () => {
    const none = { callerIdName: 'X', callerIdNumber: null };
    expect(outboundIdentity(none, { domain: 'd', defaultNumber: '+15550001111' }).number).toBe('+15550001111');
    expect(outboundIdentity(none, { domain: 'd' })).toEqual({ from: ANONYMOUS_FROM, privacy: 'id' });
  });

  it('withholds the number from the callee when the device asks for privacy (RFC 3323), asserting it to the carrier', () => {
    for (const devicePrivacy of ['id', 'header; id', 'user']) {
      const identity = outboundIdentity(user, { domain: 'dialcore.example', devicePrivacy });
      expect(identity.from).toBe(ANONYMOUS_FROM);
      expect(identity.privacy).toBe('id');
      expect(identity.pAssertedIdentity).toContain('+442071234567');
    }
    expect(outboundIdentity(user, { domain: 'd', devicePrivacy: 'none' }).privacy).toBeUndefined();
    expect(outboundIdentity(user, { domain: 'd', withhold: true }).from).toBe(ANONYMOUS_FROM);
  });

  it('cannot be used for header injection through the name, number or domain', () => {
    const hostile = { callerIdName: 'Evil"\r\nVia: x\\', callerIdNumber: '+44\r\nX: y' };
    const identity = outboundIdentity(hostile, { domain: 'a.example\r\nX: z', defaultNumber: '+15550001111' });
    expect(identity.from).not.toMatch(/[\r\n]/);
    expect(identity.from).toBe('"Evil\\"Via: x\\\\" <sip:+15550001111@invalid;user=phone>');
    expect(quoteDisplayName('Evil"\r\nVia: x\\')).toBe('"Evil\\"Via: x\\\\"');
  });
});

describe('transferCallerNumber', () => {
  const numbers = { campaignNumber: '+442000000000', contactNumber: '+447700900123' };
  it('campaign or contact number by Transfer CID Type, with fallbacks', () => {
    expect(transferCallerNumber({ transferCidType: 'campaign', callerIdNumber: '+1555' }, numbers)).toBe('+442000000000');
    expect(transferCallerNumber({ transferCidType: 'contact', callerIdNumber: '+1555' }, numbers)).toBe('+447700900123');
    expect(transferCallerNumber({ transferCidType: 'contact', callerIdNumber: '+15550001111' }, { campaignNumber: '+442000000000' })).toBe('+442000000000');
    expect(transferCallerNumber({ transferCidType: 'campaign', callerIdNumber: '+15550001111' }, {})).toBe('+15550001111');
  });
});
