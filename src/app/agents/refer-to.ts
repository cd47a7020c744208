/**
 * The Refer-To of a REFER from an agent's device (RFC 3515 §2.1): a SIP URI whose user part is the
 * number to transfer to, optionally with a Replaces header in the URI (RFC 3261 §19.1.1 URI
 * headers, RFC 3891 §6.1) naming the dialog to replace: `callid;to-tag=..;from-tag=..`, escaped.
 */
import type { DialogId } from '../calls/call-session.js';

const MAX_REFER_TO = 2048;

export type ReferTarget = { ok: true; number: string; replaces?: DialogId } | { ok: false; reason: string };

export function parseReferTo(header: string | undefined): ReferTarget {
  if (!header) return { ok: false, reason: 'no Refer-To' };
  if (header.length > MAX_REFER_TO) return { ok: false, reason: 'Refer-To too long' };
  const uri = /<([^>]*)>/.exec(header)?.[1] ?? header.trim();
  const match = /^sips?:([^@;?>]+)@[^?]*(?:\?(.*))?$/i.exec(uri);
  if (!match) return { ok: false, reason: 'Refer-To is not a SIP URI with a user part' };
  let number: string;
  try {
    number = decodeURIComponent(match[1]!);
  } catch {
    return { ok: false, reason: 'bad escape in the Refer-To user part' };
  }
  const headers = match[2];
  if (!headers) return { ok: true, number };
  const replacesField = headers.split('&').find((h) => /^replaces=/i.test(h));
  if (!replacesField) return { ok: true, number };
  let value: string;
  try {
    value = decodeURIComponent(replacesField.slice(replacesField.indexOf('=') + 1));
  } catch {
    return { ok: false, reason: 'bad escape in Replaces' };
  }
  // RFC 3891 §6.1: Replaces = callid *(SEMI replaces-param); to-tag and from-tag are required
  const [callId, ...params] = value.split(';').map((p) => p.trim());
  const tags: Record<string, string> = {};
  for (const param of params) {
    const eq = param.indexOf('=');
    if (eq > 0) tags[param.slice(0, eq).toLowerCase()] = param.slice(eq + 1);
  }
  const toTag = tags['to-tag'];
  const fromTag = tags['from-tag'];
  if (!callId || !toTag || !fromTag) return { ok: false, reason: 'Replaces needs a Call-ID, to-tag and from-tag' };
  // the tags as the core sees the replaced dialog: to-tag is ours (local), from-tag the device's
  return { ok: true, number, replaces: { callId, localTag: toTag, remoteTag: fromTag } };
}
