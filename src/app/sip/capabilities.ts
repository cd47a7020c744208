/**
 * What the dialcore app implements, for the Allow, Supported and Require headers it sends and the
 * Require headers it accepts: the one home of these lists. Never name a method or option tag here
 * before it is handled end to end (RFC 3261 §20.5 Allow, §20.37 Supported, §8.2.2.3 Require).
 *
 * Methods: a feature lists the methods it handles in its `CallFeature.methods` (src/app/core.ts),
 * so the Allow of out-of-dialog OPTIONS names them; inside its own dialogs it sends
 * `allowHeader([...its methods])` (an agent session taking REFER and INFO adds them there).
 */
import type { SipMethod, SrfRequest } from './srf.js';

/** Methods every dialcore app handles: OPTIONS (keep-alive, capabilities) and REGISTER (src/app/registrar). */
export const CORE_METHODS: readonly SipMethod[] = ['OPTIONS', 'REGISTER'];

/**
 * Methods the calls feature (src/app/calls) handles: INVITE/ACK/CANCEL/BYE, and UPDATE inside
 * confirmed call dialogs (RFC 3311, call-session.ts). Not PRACK (no RFC 3262), nor
 * INFO/MESSAGE/NOTIFY/REFER/SUBSCRIBE.
 */
export const CALL_METHODS: readonly SipMethod[] = ['INVITE', 'ACK', 'CANCEL', 'BYE', 'UPDATE'];

/**
 * Methods an agent-session leg handles (src/app/agents/sip-leg.ts): re-INVITE, BYE, INFO (DTMF,
 * RFC 2976 / application/dtmf-relay) and REFER (RFC 3515 blind transfer; the NOTIFYs are ours).
 */
export const AGENT_LEG_METHODS: readonly SipMethod[] = ['INVITE', 'ACK', 'CANCEL', 'BYE', 'INFO', 'REFER'];

/** Other legs the agent service places or answers (customers, transfer targets): no REFER. */
export const CUSTOMER_LEG_METHODS: readonly SipMethod[] = ['INVITE', 'ACK', 'CANCEL', 'BYE', 'INFO'];

/** The Allow header value: the core's methods plus those the features handle (deduplicated, in order). */
export function allowHeader(extra: readonly SipMethod[] = []): string {
  return [...new Set([...CORE_METHODS, ...extra])].join(', ');
}

/** Allow inside a call's dialogs (the INVITEs, 200s and UPDATEs of src/app/calls). */
export const CALL_ALLOW = allowHeader(CALL_METHODS);

/**
 * Option tags implemented: `timer` (RFC 4028 session timers on both legs of a call,
 * src/app/calls/session-timer.ts). Not `100rel` (RFC 3262: provisionals are sent unreliably, a
 * `Require: 100rel` INVITE gets 420), not `replaces`, `path`, `outbound`, `gruu`.
 */
export const SUPPORTED_OPTION_TAGS: readonly string[] = ['timer'];

/** The Supported header value. */
export function supportedHeader(): string {
  return SUPPORTED_OPTION_TAGS.join(', ');
}

/** Comma-separated option tags of every `name` header of a request (case-insensitive, RFC 3261 §19.2). */
export function optionTagsOf(req: Pick<SrfRequest, 'get'>, name: 'Require' | 'Proxy-Require' | 'Supported'): string[] {
  const value = req.get(name);
  if (!value) return [];
  return value
    .split(',')
    .map((tag) => tag.trim().toLowerCase())
    .filter((tag) => tag.length > 0);
}

/**
 * RFC 3261 §8.2.2.3: the option tags of the request's Require that are not implemented; the request
 * is answered 420 (Bad Extension) with them in Unsupported (see `badExtensionHeaders`). Proxy-Require
 * is for proxies (§20.29) and is not looked at by a UAS.
 */
export function unsupportedRequired(req: Pick<SrfRequest, 'get'>): string[] {
  return [...new Set(optionTagsOf(req, 'Require').filter((tag) => !SUPPORTED_OPTION_TAGS.includes(tag)))];
}

/** Headers of the 420 answering a request whose Require names `unsupported` tags. */
export function badExtensionHeaders(unsupported: readonly string[]): Record<string, string> {
  return { Unsupported: unsupported.join(', ') };
}
