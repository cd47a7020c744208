/**
 * The registrar (RFC 3261 §10.3) with digest authentication (RFC 7616/8760) and the per-user
 * rules. `handleRegister` decides; `createRegistrar` is the thin drachtio-srf adapter.
 *
 * Order of checks: scanner User-Agent and banned source are dropped without a response; syntax
 * (400); credentials (401 challenge when missing/stale, 403 when wrong; unknown users look
 * exactly like wrong passwords); digest username = login = To user (403); user rules (403 with
 * a reason phrase); expiry limits (423); then one Redis script applies the bindings (nc replay,
 * user ban, max sessions, session timeout) and the 200 lists every current contact.
 *
 * Cost on the hot path: a cached user lookup, HMAC + two hashes, one EVALSHA; each header read
 * once (from srf's already-parsed header record when there is one).
 */
import { parseDigestCredentials, type DigestAuthenticator, type DigestCredentials } from '../auth/digest.js';
import type { DigestAlgorithm } from '../auth/ha1.js';
import { authFailures, registerOutcomes } from '../observability/metrics.js';
import type { Logger } from '../observability/logger.js';
import type { DigestCredentials as StoredCredentials, Registrant } from '../users/types.js';
import { LOGIN_PATTERN } from '../users/validation.js';
import { isScannerUserAgent, type AbuseGuard } from './abuse.js';
import { bindingIdFor, type BindingChange, type BindingStore, type RegisteredContact } from './binding-store.js';
import { requestTransport } from '../sip/request-transport.js';
import { sendFinalResponse, type FinalResponder } from '../sip/srf.js';
import { aorUser, formatParamValue, instanceId, parseContacts, parseCSeq, parseDeltaSeconds } from './headers.js';
import { checkRegisterPolicy, grantExpires, type ExpiresLimits } from './policies.js';

/** What the registrar reads from a request (drachtio-srf's SrfRequest satisfies it). */
export interface RegisterRequest {
  readonly method: string;
  readonly uri: string;
  readonly source_address: string;
  readonly source_port: string | number;
  readonly protocol: string;
  readonly receivedOn?: string;
  /** srf's parsed headers: lower-case names, compact forms expanded; read instead of get() when present. */
  readonly headers?: Readonly<Record<string, string | undefined>>;
  get(name: string): string | undefined;
}

/** One header of the request by lower-case name (srf's get() searches every header name per call). */
function header(req: RegisterRequest, name: string): string | undefined {
  const headers = req.headers;
  if (headers !== undefined && headers !== null && typeof headers === 'object') {
    const value = headers[name];
    return typeof value === 'string' ? value : undefined;
  }
  return req.get(name);
}

/** Where the registrar gets users from (UserCache). */
export interface RegistrantSource {
  getRegistrant(login: string, now?: number): Promise<Registrant | null>;
  /** Re-read from Redis, bypassing any cached copy. */
  refreshRegistrant(login: string, now?: number): Promise<Registrant | null>;
}

/** What the registrar needs of a response (drachtio-srf's SrfResponse satisfies it). */
export type RegisterResponse = FinalResponder;

/** A decided reply; `null` from handleRegister means drop silently. */
export interface RegisterReply {
  status: number;
  reason: string;
  /** In order; a name may repeat (one WWW-Authenticate per algorithm). */
  headers: Array<[string, string]>;
  /** For logs and metrics: which rule decided. */
  outcome: string;
  userId?: string;
  bindings?: RegisteredContact[];
}

export interface RegistrarDeps extends Partial<ExpiresLimits> {
  users: RegistrantSource;
  bindings: BindingStore;
  auth: DigestAuthenticator;
  abuse: AbuseGuard;
  log?: Logger;
  now?: () => number;
  /** This instance's SIP address, recorded in each binding so other instances reach its flows through it. */
  instanceAddress?: string;
  /** told about all of the user's bindings after every successful REGISTER (e.g. to track their flows) */
  onRegistered?: (bindings: RegisteredContact[], userId: string) => void;
}

const HA1_FIELD: Record<DigestAlgorithm, keyof Omit<StoredCredentials, 'realm'>> = {
  MD5: 'ha1Md5',
  'SHA-256': 'ha1Sha256',
  'SHA-512-256': 'ha1Sha512_256',
};

function reply(status: number, reason: string, outcome: string, headers: Array<[string, string]> = []): RegisterReply {
  return { status, reason, headers, outcome };
}

export class Registrar {
  private readonly limits: ExpiresLimits;
  private readonly now: () => number;

  constructor(private readonly deps: RegistrarDeps) {
    this.limits = {
      minExpires: deps.minExpires ?? 60,
      maxExpires: deps.maxExpires ?? 3600,
      defaultExpires: deps.defaultExpires ?? 3600,
    };
    if (this.limits.minExpires > this.limits.maxExpires) throw new Error('minExpires > maxExpires');
    this.now = deps.now ?? Date.now;
  }

  private challenge(outcome: string, stale = false): RegisterReply {
    return reply(
      401,
      'Unauthorized',
      outcome,
      this.deps.auth.challenges({ stale, now: this.now() }).map((value) => ['WWW-Authenticate', value] as [string, string]),
    );
  }

  /** Decides the reply to a REGISTER (null: drop without answering). Never throws for bad input. */
  async handle(req: RegisterRequest, retried = false): Promise<RegisterReply | null> {
    const now = this.now();
    const source = req.source_address;
    const userAgent = header(req, 'user-agent');
    if (isScannerUserAgent(userAgent) || this.deps.abuse.isSourceBanned(source, now)) return null;

    const toUser = aorUser(header(req, 'to'));
    const callId = header(req, 'call-id');
    const cseq = parseCSeq(header(req, 'cseq'));
    if (!toUser || !callId || callId.length > 256 || !cseq || cseq.method !== 'REGISTER') return reply(400, 'Bad Request', 'malformed');
    const contacts = parseContacts(header(req, 'contact'));
    if (!contacts) return reply(400, 'Invalid Contact', 'malformed-contact');
    const expiresText = header(req, 'expires');
    const expiresHeader = parseDeltaSeconds(expiresText);
    if (expiresText !== undefined && expiresHeader === null) return reply(400, 'Invalid Expires', 'malformed-expires');
    // RFC 3261 §10.3 step 6: `*` only with Expires: 0.
    if (contacts.wildcard && expiresHeader !== 0) return reply(400, 'Invalid Wildcard Contact', 'malformed-wildcard');

    const authorization = header(req, 'authorization');
    if (!authorization) return this.challenge('no-credentials');
    const parsed = parseDigestCredentials(authorization, this.deps.auth.realm);
    if (!parsed.ok) {
      if (parsed.reason === 'malformed') return reply(400, 'Bad Authorization', 'malformed-credentials');
      return this.challenge(parsed.reason);
    }
    const credentials = parsed.credentials;

    const user = LOGIN_PATTERN.test(credentials.username)
      ? await (retried ? this.deps.users.refreshRegistrant(credentials.username, now) : this.deps.users.getRegistrant(credentials.username, now))
      : null;
    const verdict = this.deps.auth.verify(credentials, { method: 'REGISTER', uri: req.uri }, this.ha1For(user, credentials), now);
    switch (verdict.outcome) {
      case 'challenge':
        if (verdict.reason !== 'stale-nonce') authFailures.inc({ reason: verdict.reason });
        return this.challenge(verdict.reason, verdict.stale);
      case 'bad-request':
        authFailures.inc({ reason: verdict.reason });
        return reply(400, 'Bad Request', verdict.reason);
      case 'forbidden':
        authFailures.inc({ reason: user ? 'wrong-password' : 'unknown-user' });
        await this.deps.abuse.recordFailure(source, user?.id ?? null, now);
        return reply(403, 'Forbidden', user ? 'wrong-password' : 'unknown-user');
      case 'ok':
        break;
    }
    // Authentic from here on (ha1For returned null without a user, so `user` is set).
    if (!user) return reply(403, 'Forbidden', 'unknown-user');
    if (toUser !== credentials.username) {
      authFailures.inc({ reason: 'to-mismatch' });
      return reply(403, 'Forbidden', 'to-mismatch');
    }

    const transport = requestTransport({ protocol: req.protocol, get: (name) => header(req, name) });
    const policy = checkRegisterPolicy(user, { transport, sourceAddress: source });
    if (!policy.allowed) {
      const refused = reply(policy.status, policy.reason, policy.rule);
      refused.userId = user.id;
      return refused;
    }

    const changes: BindingChange[] = [];
    if (!contacts.wildcard) {
      for (const contact of contacts.contacts) {
        const paramText = contact.params.get('expires');
        const param = paramText === undefined ? null : parseDeltaSeconds(paramText);
        if (paramText !== undefined && param === null) return reply(400, 'Invalid Expires', 'malformed-expires');
        const grant = grantExpires(param, expiresHeader, this.limits);
        if (!grant.ok) {
          return reply(423, 'Interval Too Brief', 'interval-too-brief', [['Min-Expires', String(this.limits.minExpires)]]);
        }
        const instance = instanceId(contact.params);
        const regId = contact.params.get('reg-id') ?? null;
        const params: Record<string, string | null> = {};
        for (const [name, value] of contact.params) if (name !== 'expires') params[name] = value;
        changes.push({
          expires: grant.seconds,
          binding: {
            id: bindingIdFor(contact.uri, instance, regId),
            userId: user.id,
            contact: contact.uri,
            params,
            instanceId: instance,
            regId,
            callId,
            cseq: cseq.seq,
            flow: {
              address: source,
              port: Number(req.source_port) || 0,
              transport,
              receivedOn: req.receivedOn ?? null,
            },
            edge: this.deps.instanceAddress ?? null,
            userAgent: userAgent?.slice(0, 256) ?? null,
            connectionMethod: user.connectionMethod,
          },
        });
      }
    }

    const result = await this.deps.bindings.apply({
      userId: user.id,
      userVersion: user.version,
      nonce: credentials.nonce,
      nc: verdict.nc,
      nonceTtlMs: this.deps.auth.nonces.lifetimeMs,
      maxSessions: user.maxSessions,
      sessionTimeoutMs: user.sessionTimeoutSeconds * 1000,
      minExpiresMs: this.limits.minExpires * 1000,
      removeAll: contacts.wildcard,
      changes,
      now,
    });
    switch (result.status) {
      case 'stale-user':
        // The cached record is older than Redis: re-read and decide again, once.
        if (!retried) return this.handle(req, true);
        return reply(500, 'Server Internal Error', 'stale-user', [['Retry-After', '1']]);
      case 'gone':
        return reply(403, 'Forbidden', 'unknown-user');
      case 'banned':
        return reply(403, 'Forbidden', 'user-banned');
      case 'replay':
        authFailures.inc({ reason: 'nc-replay' });
        await this.deps.abuse.recordFailure(source, user.id, now);
        return this.challenge('nc-replay');
      case 'too-many':
        return { ...reply(403, 'Too Many Sessions', 'max-sessions'), userId: user.id };
      case 'session-over':
        return this.challenge('session-timeout', true);
      case 'out-of-order':
        return reply(500, 'Out Of Order Request', 'out-of-order', [['Retry-After', '1']]);
      case 'ok': {
        const headers: Array<[string, string]> = result.bindings.map((b) => ['Contact', formatContact(b, now)]);
        if (usesOutbound(header(req, 'supported'), changes)) headers.push(['Require', 'outbound']);
        headers.push(['Date', new Date(now).toUTCString()]);
        return { status: 200, reason: 'OK', headers, outcome: 'ok', userId: user.id, bindings: result.bindings };
      }
    }
  }

  /** The stored HA1 for the credentials' algorithm, or null (unknown user, wrong login case, other realm). */
  private ha1For(user: Registrant | null, credentials: DigestCredentials): string | null {
    if (!user?.credentials || user.login !== credentials.username) return null;
    if (user.credentials.realm !== this.deps.auth.realm) return null;
    return user.credentials[HA1_FIELD[credentials.algorithm]] || null;
  }
}

/**
 * RFC 5626 §6: a REGISTER that supports outbound and registers flows (each Contact with +sip.instance and
 * reg-id) gets `Require: outbound` in its 2xx. The registrar is its own edge proxy here: each such binding
 * is kept per (instance, reg-id) and reached through the flow it registered over (calls use the most recent
 * flow of an instance, user-calls.ts), UDP flows are kept alive with STUN (the edge answers Binding
 * requests) and connection flows with CRLF pings.
 */
function usesOutbound(supported: string | undefined, changes: readonly BindingChange[]): boolean {
  if (!supported || !supported.split(',').some((tag) => tag.trim().toLowerCase() === 'outbound')) return false;
  const added = changes.filter((c) => c.expires > 0);
  return added.length > 0 && added.every((c) => c.binding.instanceId !== null && c.binding.regId !== null);
}

/** One Contact value of the 200, with its remaining lifetime (RFC 3261 §10.3 step 8). */
function formatContact(binding: RegisteredContact, now: number): string {
  const remaining = Math.max(0, Math.round((binding.expiresAt - now) / 1000));
  let text = `<${binding.contact}>`;
  for (const [name, value] of Object.entries(binding.params)) {
    text += value === null ? `;${name}` : `;${name}=${name === '+sip.instance' ? `"${value.replace(/(["\\])/g, '\\$1')}"` : formatParamValue(value)}`;
  }
  return `${text};expires=${remaining}`;
}

/**
 * drachtio-srf adapter: `srf.register(createRegistrar(deps))`. Repeated header names are sent as
 * separate header lines.
 */
export function createRegistrar(deps: RegistrarDeps): (req: RegisterRequest, res: RegisterResponse) => void {
  const registrar = new Registrar(deps);
  return (req, res) => {
    registrar.handle(req).then(
      (decided) => {
        if (!decided) {
          registerOutcomes.inc({ status: 'dropped' });
          return;
        }
        registerOutcomes.inc({ status: String(decided.status) });
        if (decided.status === 200 && decided.bindings && decided.userId) deps.onRegistered?.(decided.bindings, decided.userId);
        if (decided.status >= 400 && decided.status !== 401) {
          deps.log?.info({ source: req.source_address, status: decided.status, outcome: decided.outcome, userId: decided.userId }, 'REGISTER refused');
        }
        sendFinalResponse(res, decided.status, decided.reason, toHeaderRecord(decided.headers));
      },
      (err: unknown) => {
        registerOutcomes.inc({ status: '500' });
        deps.log?.error({ err }, 'REGISTER handling failed');
        try {
          sendFinalResponse(res, 500, 'Server Internal Error', { 'Retry-After': '5' });
        } catch {
          // the response may already be gone
        }
      },
    );
  };
}

/** drachtio-srf headers are a name -> value record: repeated names become extra header lines. */
export function toHeaderRecord(headers: Array<[string, string]>): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [name, value] of headers) {
    const clean = value.replace(/[\r\n]+/g, ' ');
    if (name in out) {
      out[name] = name.toLowerCase() === 'contact' ? `${out[name]}, ${clean}` : `${out[name]}\r\n${name}: ${clean}`;
    } else out[name] = clean;
  }
  return out;
}
