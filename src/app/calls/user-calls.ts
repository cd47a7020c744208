/**
 * Calls delivered to a user, by connection method (issue 4 item 5):
 *
 * - `webrtc` and `sip-phone`: every live registration rings at once (one fork group, RFC 3261
 *   §16.7); each INVITE goes to the registered Contact as Request-URI, sent through the flow the
 *   REGISTER came from (`proxy` = its source address/port/transport: the NAT binding or the
 *   WebSocket connection, RFC 5626 §5.3 / RFC 7118 §5); no registration -> 480;
 * - `sip-address`: one INVITE to the configured PBX URI, answering its 401/407 with the stored
 *   PBX credentials;
 * - `dial-in`: never called (they call in) -> 480; an inactive user -> 480.
 */
import { flowUri, type Binding } from '../registrar/binding-store.js';
import type { MaskStyle } from '../policies/index.js';
import type { UserRecord } from '../users/types.js';
import type { CallPlan, CallTarget } from './call-session.js';
import { calleeIdentity, type CallerPresentation } from './call-rules.js';
import { deliveryFor, type InstanceForwarding } from '../cluster/instance-forward.js';

export interface BindingLister {
  list(userId: string): Promise<Binding[]>;
}

export interface UserCallOptions {
  bindings: BindingLister;
  /** Host of the From/To URIs the device sees (the core's SIP domain). */
  domain: string;
  maskStyle?: MaskStyle;
  direction: CallPlan['direction'];
  /** Users on the caller's side (an internal call's caller), for kick-off and listings. */
  callerUserIds?: readonly string[];
  /** Several instances: bindings held by another one are reached through it (src/app/cluster). */
  forward?: InstanceForwarding | null;
}

export type UserCallPlan = { ok: true; plan: CallPlan } | { ok: false; status: number; reason: string };

const UNAVAILABLE = { ok: false, status: 480, reason: 'Temporarily Unavailable' } as const;

/**
 * RFC 5626 §5.3: a device registered over several flows (one +sip.instance, several reg-ids) is called
 * once, over its most recently registered flow. (Failing over to its other flows when that one is
 * broken is not done: the call to the device fails.) Bindings without an instance are all called.
 */
export function oneFlowPerInstance<T extends Pick<Binding, 'instanceId' | 'regId' | 'registeredAt'>>(bindings: readonly T[]): T[] {
  const latest = new Map<string, T>();
  for (const b of bindings) {
    if (b.instanceId === null || b.regId === null) continue;
    const seen = latest.get(b.instanceId);
    if (!seen || b.registeredAt > seen.registeredAt) latest.set(b.instanceId, b);
  }
  return bindings.filter((b) => b.instanceId === null || b.regId === null || latest.get(b.instanceId) === b);
}

export async function planUserCall(user: UserRecord, caller: CallerPresentation, options: UserCallOptions): Promise<UserCallPlan> {
  if (!user.active) return UNAVAILABLE;
  const identity = calleeIdentity(user, caller, { domain: options.domain, ...(options.maskStyle ? { maskStyle: options.maskStyle } : {}) });
  const base = {
    direction: options.direction,
    callee: 'user' as const,
    userIds: [...new Set([...(options.callerUserIds ?? []), user.id])],
    ...(identity.masker ? { protectCallee: identity.masker.maskText } : {}),
    summary: { callee: user.id, connectionMethod: user.connectionMethod },
  };
  switch (user.connectionMethod) {
    case 'webrtc':
    case 'sip-phone': {
      let bindings = oneFlowPerInstance(await options.bindings.list(user.id));
      const holders = options.forward ? bindings.map((b) => b.edge).filter((e): e is string => Boolean(e)) : [];
      if (options.forward && holders.length > 0) {
        // registrations held by an instance that is gone are skipped (the flow went with it)
        const alive = await options.forward.heartbeat.alive(holders);
        bindings = bindings.filter((b) => !b.edge || alive.has(b.edge));
      }
      if (bindings.length === 0) return UNAVAILABLE;
      const targets: CallTarget[] = bindings.map((binding) => {
        const delivery = deliveryFor(binding, options.forward ?? null);
        return { uri: binding.contact, proxy: delivery.proxy, headers: { ...identity.headers, ...delivery.headers }, label: `binding:${binding.id}` };
      });
      return { ok: true, plan: { ...base, bLegKind: user.connectionMethod === 'webrtc' ? 'webrtc' : 'plain', groups: [targets] } };
    }
    case 'sip-address': {
      const address = user.sipAddress;
      if (!address) return UNAVAILABLE;
      const target: CallTarget = {
        uri: address.uri,
        headers: { ...identity.headers, To: `<${address.uri}>` },
        label: 'sip-address',
        ...(address.username && address.password ? { auth: { username: address.username, password: address.password } } : {}),
      };
      if (identity.masker) target.headers = identity.masker.maskHeaders(target.headers);
      return { ok: true, plan: { ...base, bLegKind: 'plain', groups: [[target]] } };
    }
    case 'dial-in':
      return UNAVAILABLE;
  }
}
