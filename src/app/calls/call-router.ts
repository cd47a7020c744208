/**
 * The handler of new INVITEs (srf.invite(createCallRouter(deps))). It decides who is calling:
 *
 * 1. a carrier trunk (source address in an inbound trunk's `sources`): the called number (DID)
 *    is routed to a user (404 when not routed), who is called per user-calls.ts with the
 *    customer's number masked when the user is masked;
 * 2. otherwise a user's device, which must prove who it is with digest credentials
 *    (RFC 3261 §22.3: 407 with Proxy-Authenticate, the same nonces and stored HA1s as the
 *    registrar; a wrong password and an unknown user are both 403); the user must be active, on
 *    its connection method's transport and at an allowed address (403 with a reason); then the
 *    rules of call-rules.ts: internal number -> that user; outside number -> manual dial ->
 *    dial plan -> caller ID -> carrier gateways (503 when none can take it).
 *
 * 3. a call to a dial-in access number (from a trunk, or from an authenticated device) is
 *    answered by dialcore itself and runs the ID/PIN login (src/app/dialin).
 *
 * Everything from the network is untrusted: a malformed request gets a 4xx, an internal failure
 * a 500, and nothing here throws past the handler.
 */
import { FORWARD_HEADER, type ForwardedFlow, type InstanceForwarding } from '../cluster/instance-forward.js';
import type { Logger } from 'pino';
import { isScannerUserAgent } from '../registrar/abuse.js';
import { parseDigestCredentials, type DigestAuthenticator, type DigestCredentials } from '../auth/digest.js';
import type { DigestAlgorithm } from '../auth/ha1.js';
import type { NonceCountGuard } from '../auth/nonce-counts.js';
import type { CarrierConfig, RedisCommandSender } from '../carriers/index.js';
import { authFailures } from '../observability/metrics.js';
import { numbersInIdentityHeaders, type MaskStyle } from '../policies/index.js';
import { checkRegisterPolicy } from '../registrar/policies.js';
import { toHeaderRecord } from '../registrar/registrar.js';
import { parseSipUri, sendFinalResponse, type SrfRequest, type SrfResponse } from '../sip/srf.js';
import { requestTransport } from '../sip/request-transport.js';
import { badExtensionHeaders, unsupportedRequired } from '../sip/capabilities.js';
import type { UserRecord } from '../users/types.js';
import type { CallRegistry } from './call-registry.js';
import { decideDialled, outboundCallerHeaders, type CallerPresentation, type DialPlans } from './call-rules.js';
import type { CallPlan } from './call-session.js';
import { carrierTrunkOf, outboundGatewayGroups, routeInboundCall, type GatewayChannels } from './carrier-routing.js';
import { reasonPhrase } from './failure-mapping.js';
import { planUserCall, type BindingLister } from './user-calls.js';
import { uriHost } from '../sip/uri-host.js';

/** The user lookups the router needs (UserStore and UserCache satisfy them). */
export interface CallUserDirectory {
  /** By id, read at call time (an admin change applies to the next call). */
  get(id: string): Promise<UserRecord | null>;
  /** By SIP login (digest username), e.g. the invalidated-on-change UserCache. */
  getByLogin(login: string): Promise<UserRecord | null>;
  getByInternalNumber(number: string): Promise<UserRecord | null>;
}

/** Abuse protection shared with the registrar (AbuseGuard satisfies it). */
export interface CallAbuseGuard {
  isSourceBanned(address: string): boolean;
  recordFailure(sourceAddress: string, userId: string | null): Promise<void>;
}

export interface CallRouterDeps {
  calls: CallRegistry;
  users: CallUserDirectory;
  bindings: BindingLister;
  auth: DigestAuthenticator;
  /** nonce-count replay check for INVITE credentials (RFC 7616 §3.4), shared with the registrar's counts */
  nonceCounts: NonceCountGuard;
  abuse?: CallAbuseGuard;
  carriers: CarrierConfig;
  channels: GatewayChannels;
  /** DID lookups for trunks with didLookup redis / table-then-redis. */
  redis?: RedisCommandSender;
  dialPlans: DialPlans;
  /** Host of the URIs the devices see (From/To of delivered calls). */
  domain: string;
  voicemailNumbers?: readonly string[];
  /** System default Caller ID Number for users without one (none: anonymous). */
  defaultCallerNumber?: string | null;
  maskStyle?: MaskStyle;
  /** An inbound DID call to an agent with a ready session is bridged into it (true: handled). */
  agentSessions?: {
    deliverInbound(user: UserRecord, req: SrfRequest, res: SrfResponse, callerNumber: string | undefined, customerNumbers: readonly string[]): Promise<boolean>;
    /** The user's agent session and live calls, counted against maxSessions for a new device call. */
    sessionsOf?(userId: string): number;
    /**
     * The number a device call of the user presents while their agent session holds a customer
     * (the consultation of an attended transfer by REFER, transferCidType); undefined otherwise.
     */
    consultationCallerNumber?(userId: string): string | undefined;
  };
  /** Dial-in access numbers (src/app/dialin): answered with the ID/PIN login, from trunks and devices. */
  dialIn?: {
    isAccessNumber(dialled: string | undefined): boolean;
    /** Answers and runs the login to its end; never throws. */
    answer(req: SrfRequest, res: SrfResponse, callerNumber: string | undefined): Promise<void>;
  };
  /**
   * Several instances (src/app/cluster): bindings held by another instance are reached through it,
   * and an INVITE another instance forwarded (valid X-Dialcore-Forward) is relayed to its flow.
   */
  forward?: (InstanceForwarding & { relay(req: SrfRequest, res: SrfResponse, flow: ForwardedFlow): Promise<void> }) | null;
  logger?: Logger;
}

const HA1_FIELD: Record<DigestAlgorithm, 'ha1Md5' | 'ha1Sha256' | 'ha1Sha512_256'> = {
  MD5: 'ha1Md5',
  'SHA-256': 'ha1Sha256',
  'SHA-512-256': 'ha1Sha512_256',
};

type Authentication = { ok: true; user: UserRecord } | { ok: false; status: number; reason: string; headers?: Record<string, string> };

export function createCallRouter(deps: CallRouterDeps): (req: SrfRequest, res: SrfResponse) => void {
  const log = deps.logger;

  const reply = (res: SrfResponse, status: number, reason = reasonPhrase(status), headers?: Record<string, string>): void => {
    try {
      sendFinalResponse(res, status, reason, headers ?? {});
    } catch (err) {
      log?.debug({ err: err instanceof Error ? err.message : String(err), status }, 'INVITE response not sent');
    }
  };

  const challenge = (stale = false): Authentication => ({
    ok: false,
    status: 407,
    reason: 'Proxy Authentication Required',
    headers: toHeaderRecord(deps.auth.challenges({ stale }).map((value) => ['Proxy-Authenticate', value] as [string, string])),
  });

  const ha1For = (user: UserRecord | null, credentials: DigestCredentials): string | null => {
    if (!user?.credentials || user.login !== credentials.username || user.credentials.realm !== deps.auth.realm) return null;
    return user.credentials[HA1_FIELD[credentials.algorithm]] || null;
  };

  /** RFC 3261 §22.3: a device's INVITE carries Proxy-Authorization for our realm. */
  const authenticate = async (req: SrfRequest): Promise<Authentication> => {
    const header = req.get('Proxy-Authorization') ?? req.get('Authorization');
    if (!header) return challenge();
    const parsed = parseDigestCredentials(header, deps.auth.realm);
    if (!parsed.ok) return parsed.reason === 'malformed' ? { ok: false, status: 400, reason: 'Bad Authorization' } : challenge();
    const credentials = parsed.credentials;
    const user = /^[A-Za-z0-9][A-Za-z0-9._+-]{0,63}$/.test(credentials.username) ? await deps.users.getByLogin(credentials.username) : null;
    const verdict = deps.auth.verify(credentials, { method: 'INVITE', uri: req.uri }, ha1For(user, credentials));
    switch (verdict.outcome) {
      case 'challenge':
        return challenge(verdict.stale);
      case 'bad-request':
        return { ok: false, status: 400, reason: 'Bad Authorization' };
      case 'forbidden':
        await deps.abuse?.recordFailure(req.source_address, user?.id ?? null);
        return { ok: false, status: 403, reason: 'Forbidden' };
      case 'ok':
        break;
    }
    if (!user) return { ok: false, status: 403, reason: 'Forbidden' };
    // a replayed Proxy-Authorization (same nonce, nc not above the last one seen) gets a fresh challenge
    if (!(await deps.nonceCounts.claim(user.id, credentials.nonce, verdict.nc))) {
      authFailures.inc({ reason: 'nc-replay' });
      return challenge();
    }
    const policy = checkRegisterPolicy(user, { transport: requestTransport(req), sourceAddress: req.source_address });
    if (!policy.allowed) return { ok: false, status: policy.status, reason: policy.reason };
    return { ok: true, user };
  };

  /** A call from a carrier trunk to a DID. */
  const inboundPlan = async (req: SrfRequest, res: SrfResponse, trunk: NonNullable<ReturnType<typeof carrierTrunkOf>>): Promise<CallPlan | { status: number; reason?: string } | { handled: true }> => {
    const route = await routeInboundCall(req, trunk, deps.redis);
    if (!route) return { status: 404 };
    const user = await deps.users.get(route.userId);
    if (!user) return { status: 404 };
    const caller = customerPresentation(req);
    if (user.active && (await deps.agentSessions?.deliverInbound(user, req, res, caller.number, caller.customerNumbers))) return { handled: true };
    const planned = await planUserCall(user, caller, { bindings: deps.bindings, domain: deps.domain, direction: 'inbound', forward: deps.forward ?? null, ...(deps.maskStyle ? { maskStyle: deps.maskStyle } : {}) });
    if (!planned.ok) return { status: planned.status, reason: planned.reason };
    planned.plan.summary = { ...planned.plan.summary, trunk: trunk.name };
    return planned.plan;
  };

  /** A call from an authenticated user's device. */
  const devicePlan = async (req: SrfRequest, user: UserRecord): Promise<CallPlan | { status: number; reason?: string }> => {
    if (user.maxSessions > 0 && (deps.agentSessions?.sessionsOf?.(user.id) ?? 0) >= user.maxSessions) {
      return { status: 403, reason: 'Session Limit Reached' };
    }
    const dialled = dialledOf(req);
    if (!dialled) return { status: 404 };
    const internalUser = /^\d{2,10}$/.test(dialled) ? await deps.users.getByInternalNumber(dialled) : null;
    const decision = decideDialled(user, dialled, internalUser && internalUser.id !== user.id ? dialled : undefined, {
      dialPlans: deps.dialPlans,
      ...(deps.voicemailNumbers ? { voicemailNumbers: deps.voicemailNumbers } : {}),
    });
    switch (decision.kind) {
      case 'refused':
        return { status: decision.status, reason: decision.reason };
      case 'service':
        return { status: 404 }; // feature codes and voicemail are served by a later issue
      case 'internal': {
        const caller: CallerPresentation = {
          number: user.internalNumber ?? user.login,
          displayName: user.displayName ?? user.username,
          customerNumbers: [],
        };
        const planned = await planUserCall(internalUser!, caller, {
          bindings: deps.bindings, domain: deps.domain, direction: 'internal', callerUserIds: [user.id], forward: deps.forward ?? null,
        });
        return planned.ok ? planned.plan : { status: planned.status, reason: planned.reason };
      }
      case 'outside': {
        const devicePrivacy = req.get('Privacy');
        const consultationNumber = deps.agentSessions?.consultationCallerNumber?.(user.id);
        const caller = consultationNumber ? { callerIdName: user.callerIdName, callerIdNumber: consultationNumber } : user;
        const groups = outboundGatewayGroups(decision.e164, deps.carriers, deps.channels, (gateway) =>
          outboundCallerHeaders(caller, {
            domain: uriHost(gateway.host),
            ...(devicePrivacy !== undefined ? { devicePrivacy } : {}),
            ...(deps.defaultCallerNumber !== undefined ? { defaultNumber: deps.defaultCallerNumber } : {}),
          }),
        );
        if (groups.length === 0) return { status: 503 };
        return {
          direction: 'outbound', callee: 'carrier', bLegKind: 'plain', groups, userIds: [user.id],
          summary: { caller: user.id },
        };
      }
    }
  };

  return (req, res) => {
    let canceled = false;
    req.on('cancel', () => {
      canceled = true; // the edge answered 487; nothing more to send
    });
    const route = async (): Promise<void> => {
      if (deps.forward) {
        // another instance's call to a registration whose flow is held here
        const flow = deps.forward.signer.verify(req.get(FORWARD_HEADER));
        if (flow) return deps.forward.relay(req, res, flow);
      }
      // scanners and banned sources get no answer at all, as at the registrar (they then assume nothing listens)
      if (isScannerUserAgent(req.get('User-Agent')) || deps.abuse?.isSourceBanned(req.source_address)) return;
      // RFC 3261 §8.2.2.3: an extension the caller requires and we do not implement (100rel: RFC 3262)
      const unsupported = unsupportedRequired(req);
      if (unsupported.length > 0) return reply(res, 420, 'Bad Extension', badExtensionHeaders(unsupported));
      if (deps.calls.full) return reply(res, 503, 'Service Unavailable', { 'Retry-After': '5' });
      const trunk = carrierTrunkOf(req, deps.carriers);
      const toAccessNumber = deps.dialIn?.isAccessNumber(dialledOf(req)) ?? false;
      let plan: CallPlan | { status: number; reason?: string } | { handled: true };
      if (trunk) {
        if (toAccessNumber) return void deps.dialIn!.answer(req, res, customerPresentation(req).number);
        plan = await inboundPlan(req, res, trunk);
      } else {
        const auth = await authenticate(req);
        if (!auth.ok) return canceled ? undefined : reply(res, auth.status, auth.reason, auth.headers);
        // a registered user calling an access number (an agent testing from a desk phone)
        if (toAccessNumber) return void deps.dialIn!.answer(req, res, auth.user.internalNumber ?? auth.user.login);
        plan = await devicePlan(req, auth.user);
      }
      if ('handled' in plan || canceled) return;
      if ('status' in plan) {
        log?.info({ status: plan.status, reason: plan.reason, callId: req.get('Call-ID') }, 'INVITE refused');
        return reply(res, plan.status, plan.reason ?? reasonPhrase(plan.status));
      }
      deps.calls.start(req, res, plan);
    };
    route().catch((err: unknown) => {
      log?.error({ err: err instanceof Error ? err.message : String(err) }, 'INVITE routing failed');
      if (!canceled) reply(res, 500, 'Server Internal Error', { 'Retry-After': '5' });
    });
  };
}

/**
 * What the device dialled: the Request-URI user part, else the To user part (a device that
 * sends its INVITE to the core's own address), percent-decoded and bounded.
 */
function dialledOf(req: Pick<SrfRequest, 'uri' | 'get'>): string | undefined {
  const user = parseSipUri(req.uri)?.user ?? /<?(?:sips?|tel):([^@;>?\s]+)@/i.exec(req.get('To') ?? '')?.[1];
  if (!user || user.length > 64) return undefined;
  try {
    return decodeURIComponent(user);
  } catch {
    return undefined;
  }
}

/** The customer (carrier caller) as the INVITE presents them: PAI first, else From (RFC 3325 §9.1). */
export function customerPresentation(req: Pick<SrfRequest, 'get'>): CallerPresentation {
  const identity: Record<string, string | undefined> = {};
  for (const name of ['From', 'P-Asserted-Identity', 'P-Preferred-Identity', 'Remote-Party-ID', 'Diversion', 'History-Info']) {
    identity[name.toLowerCase()] = req.get(name);
  }
  const customerNumbers = numbersInIdentityHeaders(identity);
  const pai = identity['p-asserted-identity'];
  const from = identity.from ?? '';
  const userOf = (value: string | undefined): string | undefined => {
    const match = value ? /<?(?:sips?|tel):([^@;>?\s]+)/i.exec(value) : null;
    if (!match) return undefined;
    try {
      return decodeURIComponent(match[1]!);
    } catch {
      return undefined;
    }
  };
  const number = userOf(pai) ?? userOf(from);
  const display = /^\s*"((?:[^"\\]|\\.)*)"/.exec(from)?.[1]?.replace(/\\(.)/g, '$1') ?? /^\s*([^<"]+?)\s*</.exec(from)?.[1];
  const numbers = new Set(customerNumbers);
  if (number && /^\+?[\d\-.() ]{4,24}$/.test(number)) numbers.add(number);
  return {
    ...(number ? { number } : {}),
    ...(display ? { displayName: display } : {}),
    customerNumbers: [...numbers],
  };
}
