import { describe, expect, it } from 'vitest';
import { validateCarrierConfig } from '../carriers/index.js';
import { validateDialPlanConfig } from '../policies/index.js';
import type { Binding } from '../registrar/binding-store.js';
import type { UserRecord } from '../users/types.js';
import { calleeIdentity, decideDialled, outboundCallerHeaders } from './call-rules.js';
import { customerPresentation } from './call-router.js';
import { GatewayChannels, calledNumber, gatewayRequestUri, outboundGatewayGroups } from './carrier-routing.js';
import { bestFailure, isFailoverStatus, mapFailureToCaller } from './failure-mapping.js';
import { oneFlowPerInstance, planUserCall } from './user-calls.js';
import { flowUri } from '../registrar/binding-store.js';

function user(fields: Partial<UserRecord> = {}): UserRecord {
  return {
    id: 'u1', username: 'Ann', displayName: null, active: true, connectionMethod: 'sip-phone', login: '1001',
    allowedAddresses: [], maxSessions: 0, sessionTimeoutSeconds: 43_200, manualDial: true, restrictManualCalls: false,
    threeWay: true, transfer: true, callerIdName: null, callerIdNumber: null, transferCidType: 'campaign',
    masking: { enabled: false, keepLastDigits: 4 }, maskingExcluded: false, dialPlan: null, internalNumber: null,
    language: null, callConnectAnnouncement: false, hangupBeep: false, recordDirectCalls: false, credentials: null, sipAddress: null, dialIn: null, createdAt: '', updatedAt: '', version: 1,
    ...fields,
  };
}

const plan = validateDialPlanConfig({ defaultCountryCode: '44', minDigits: 11, blockedPrefixes: ['449'] });
if (!plan.ok) throw new Error('bad plan');
const rules = { dialPlans: { plans: {}, defaultPlan: plan.plan } };

function request(headers: Record<string, string>, uri = 'sip:442071234567@192.0.2.1') {
  const lower = Object.fromEntries(Object.entries(headers).map(([k, v]) => [k.toLowerCase(), v]));
  return { uri, get: (name: string) => lower[name.toLowerCase()] };
}

describe('failure mapping', () => {
  it('passes busy/decline, hides transport and server trouble', () => {
    expect(mapFailureToCaller(486, 'user')).toBe(486);
    expect(mapFailureToCaller(603, 'user')).toBe(603);
    expect(mapFailureToCaller(500, 'user')).toBe(480);
    expect(mapFailureToCaller(408, 'user')).toBe(480);
    expect(mapFailureToCaller(404, 'user')).toBe(480);
    expect(mapFailureToCaller(404, 'carrier')).toBe(404);
    expect(mapFailureToCaller(408, 'carrier')).toBe(480);
    expect(mapFailureToCaller(502, 'carrier')).toBe(503);
    expect(mapFailureToCaller(407, 'carrier')).toBe(503);
    expect(mapFailureToCaller(606, 'carrier')).toBe(488);
  });

  it('picks the best fork response (RFC 3261 §16.7)', () => {
    expect(bestFailure([500, 486, 408])).toBe(486);
    expect(bestFailure([500, 603, 486])).toBe(603);
    expect(bestFailure([503, 480])).toBe(480);
    expect(bestFailure([])).toBe(480);
  });

  it('fails over on timeouts and server errors only', () => {
    expect(isFailoverStatus(503)).toBe(true);
    expect(isFailoverStatus(408)).toBe(true);
    expect(isFailoverStatus(486)).toBe(false);
    expect(isFailoverStatus(404)).toBe(false);
  });
});

describe('call rules', () => {
  it('manual dial, then the dial plan', () => {
    expect(decideDialled(user({ manualDial: false }), '02071234567', undefined, rules)).toEqual({ kind: 'refused', status: 403, reason: 'Manual Dial Not Allowed' });
    expect(decideDialled(user({ restrictManualCalls: true }), '02071234567', undefined, rules)).toMatchObject({ kind: 'refused', status: 403 });
    expect(decideDialled(user(), '02071234567', undefined, rules)).toEqual({ kind: 'outside', e164: '+442071234567' });
    expect(decideDialled(user(), '09001234567', undefined, rules)).toMatchObject({ kind: 'refused', status: 403 });
    expect(decideDialled(user(), '0207', undefined, rules)).toMatchObject({ kind: 'refused', status: 484 });
    expect(decideDialled(user({ manualDial: false }), '2002', '2002', rules)).toEqual({ kind: 'internal', number: '2002' });
    expect(decideDialled(user({ manualDial: false }), '*97', undefined, rules)).toEqual({ kind: 'service', destination: 'feature-code' });
    expect(decideDialled(user({ dialPlan: { rules: [{ pattern: '^0?7', action: 'deny' }] } }), '07700900123', undefined, rules)).toMatchObject({ kind: 'refused' });
  });

  it('caller ID comes from the user, the device may only ask for privacy', () => {
    expect(outboundCallerHeaders(user({ callerIdName: 'Acme', callerIdNumber: '+441130000001' }), { domain: 'gw.example' })).toEqual({
      From: '"Acme" <sip:+441130000001@gw.example;user=phone>',
      'P-Asserted-Identity': '"Acme" <sip:+441130000001@gw.example;user=phone>',
    });
    const withheld = outboundCallerHeaders(user({ callerIdNumber: '+441130000001' }), { domain: 'gw.example', devicePrivacy: 'id' });
    expect(withheld.From).toContain('anonymous');
    expect(withheld.Privacy).toBe('id');
    expect(outboundCallerHeaders(user(), { domain: 'gw.example' }).From).toContain('anonymous');
  });

  it('masks the caller for a masked user, not for an excluded one', () => {
    const caller = { number: '+447700900123', displayName: '07700 900123', customerNumbers: ['+447700900123'] };
    const masked = calleeIdentity(user({ masking: { enabled: true, keepLastDigits: 2 } }), caller, { domain: 'core.example' });
    expect(masked.headers.From).toBe('"XXXXXXXXXX23" <sip:XXXXXXXXXX23@core.example>');
    expect(masked.headers.To).toBe('<sip:1001@core.example>');
    expect(masked.masker?.maskText('o=07700900123 1 1 IN IP4 10.0.0.1')).toBe('o=XXXXXXXXXX23 1 1 IN IP4 10.0.0.1');
    const excluded = calleeIdentity(user({ masking: { enabled: true, keepLastDigits: 2 }, maskingExcluded: true }), caller, { domain: 'core.example' });
    expect(excluded.headers.From).toBe('"07700 900123" <sip:+447700900123@core.example>');
    expect(excluded.masker).toBeUndefined();
    const hostile = calleeIdentity(user(), { number: 'a"b<c>', displayName: 'x"\r\nVia: evil', customerNumbers: [] }, { domain: 'core.example' });
    expect(hostile.headers.From).toBe('"x\\"Via: evil" <sip:anonymous@anonymous.invalid>');
  });
});

describe('calls to a user', () => {
  const binding = (id: string, transport: string, address = '198.51.100.7'): Binding => ({
    id, userId: 'u1', contact: `sip:1001@10.0.0.${id.length};transport=${transport}`, params: {}, instanceId: null, regId: null,
    callId: 'c', cseq: 1, flow: { address, port: 40000, transport, receivedOn: null }, userAgent: null, connectionMethod: 'sip-phone',
    firstRegisteredAt: 0, registeredAt: 0, expiresAt: Date.now() + 60_000,
  });
  const caller = { number: '+447700900123', customerNumbers: ['+447700900123'] };
  const options = (bindings: Binding[]) => ({ bindings: { list: async () => bindings }, domain: 'core.example', direction: 'inbound' as const });

  it('forks to every registration through its flow', async () => {
    const planned = await planUserCall(user(), caller, options([binding('a', 'udp'), binding('bb', 'tcp', '2001:db8::1')]));
    expect(planned.ok).toBe(true);
    if (!planned.ok) return;
    expect(planned.plan.groups).toHaveLength(1);
    expect(planned.plan.groups[0]!.map((t) => t.proxy)).toEqual(['sip:198.51.100.7:40000;transport=udp', 'sip:[2001:db8::1]:40000;transport=tcp']);
    expect(planned.plan.bLegKind).toBe('plain');
    const webrtc = await planUserCall(user({ connectionMethod: 'webrtc' }), caller, options([binding('a', 'wss')]));
    expect(webrtc.ok && webrtc.plan.bLegKind).toBe('webrtc');
  });

  it('480 when unregistered, inactive or dial-in', async () => {
    expect(await planUserCall(user(), caller, options([]))).toMatchObject({ ok: false, status: 480 });
    expect(await planUserCall(user({ active: false }), caller, options([binding('a', 'udp')]))).toMatchObject({ ok: false, status: 480 });
    expect(await planUserCall(user({ connectionMethod: 'dial-in' }), caller, options([binding('a', 'udp')]))).toMatchObject({ ok: false, status: 480 });
  });

  it('calls a sip-address user at the PBX with the stored credentials', async () => {
    const planned = await planUserCall(
      user({ connectionMethod: 'sip-address', sipAddress: { uri: 'sip:200@pbx.example', username: 'dc', password: 'pw' } }),
      caller, options([]),
    );
    expect(planned.ok).toBe(true);
    if (!planned.ok) return;
    expect(planned.plan.groups).toEqual([[expect.objectContaining({ uri: 'sip:200@pbx.example', auth: { username: 'dc', password: 'pw' } })]]);
  });

  it('formats flows', () => {
    expect(flowUri({ address: '203.0.113.9', port: 5062, transport: 'WSS' })).toBe('sip:203.0.113.9:5062;transport=wss');
  });
});

describe('carrier routing', () => {
  const config = validateCarrierConfig({
    outboundGateways: [
      { name: 'a', host: 'gw-a.example', prefixes: ['44'], priority: 1, username: 'u', password: 'p', maxChannels: 1 },
      { name: 'b', host: '[2001:db8::5]', port: 5070, priority: 2 },
    ],
    inboundTrunks: [],
  });
  if (!config.ok) throw new Error(JSON.stringify(config.errors));

  it('one fork group per gateway, best first, with credentials; channels limit the choice', () => {
    const channels = new GatewayChannels();
    const groups = outboundGatewayGroups('+442071234567', config.config, channels, () => ({ From: '<sip:x@y>' }));
    expect(groups.map((g) => g[0]!.uri)).toEqual(['sip:+442071234567@gw-a.example:5060;transport=udp', 'sip:+442071234567@[2001:db8::5]:5070;transport=udp']);
    expect(groups[0]![0]!.auth).toEqual({ username: 'u', password: 'p' });
    const release = groups[0]![0]!.onConnected!();
    expect(channels.active('a')).toBe(1);
    expect(outboundGatewayGroups('+442071234567', config.config, channels, () => ({})).map((g) => g[0]!.label)).toEqual(['gateway:b']);
    release();
    release();
    expect(channels.active('a')).toBe(0);
  });

  it('TLS gateways get sips:', () => {
    expect(gatewayRequestUri({ ...config.config.outboundGateways[0]!, transport: 'tls', port: 5061 }, '442071234567')).toBe('sips:+442071234567@gw-a.example:5061;transport=tls');
  });

  it('reads the DID from the Request-URI, else To', () => {
    expect(calledNumber(request({}, 'sip:+442071234567@192.0.2.1'))).toBe('+442071234567');
    expect(calledNumber(request({ To: '<tel:+44-20-7123-4567>' }, 'sip:192.0.2.1'))).toBe('+44-20-7123-4567');
  });

  it('collects the customer\'s numbers from every identity header', () => {
    const presented = customerPresentation(request({
      From: '"John Smith" <sip:07700900123@carrier.example>;tag=1',
      'P-Asserted-Identity': '<tel:+447700900123>',
      'Remote-Party-ID': '<sip:7700900123@carrier.example>;party=calling',
    }));
    expect(presented.number).toBe('+447700900123');
    expect(presented.displayName).toBe('John Smith');
    expect(presented.customerNumbers).toEqual(expect.arrayContaining(['07700900123', '+447700900123', '7700900123']));
  });
});

describe('oneFlowPerInstance (RFC 5626 §5.3)', () => {
  it('keeps the most recent flow of each outbound instance and every other binding', () => {
    const b = (id: string, instanceId: string | null, regId: string | null, registeredAt: number) => ({ id, instanceId, regId, registeredAt });
    const bindings = [b('a1', 'urn:a', '1', 10), b('a2', 'urn:a', '2', 20), b('x', null, null, 5), b('c', 'urn:c', null, 1), b('d1', 'urn:d', '1', 30)];
    expect(oneFlowPerInstance(bindings).map((x) => x.id)).toEqual(['a2', 'x', 'c', 'd1']);
  });
});
