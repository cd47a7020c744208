import { SipMessage } from '../message/index.js';

/** Headers copied from the INVITE into both the CANCEL (9.1) and the ACK for a non-2xx final (17.1.1.3). */
function baseFromInvite(invite: SipMessage, method: 'ACK' | 'CANCEL', to: string | undefined): SipMessage {
  const req = new SipMessage();
  req.method = method;
  req.requestUri = invite.requestUri;
  const topVia = invite.get('Via');
  if (topVia !== undefined) req.append('Via', topVia);
  const from = invite.get('From');
  if (from !== undefined) req.append('From', from);
  if (to !== undefined) req.append('To', to);
  const callId = invite.get('Call-ID');
  if (callId !== undefined) req.append('Call-ID', callId);
  const cseq = invite.cseq;
  if (cseq !== undefined) req.append('CSeq', `${cseq.seq} ${method}`);
  for (const route of invite.getAll('Route')) req.append('Route', route);
  req.append('Max-Forwards', '70');
  return req;
}

/**
 * RFC 3261 17.1.1.3: the ACK for a 300-699 final: Request-URI, Call-ID, From, top Via (same branch) and Route of the
 * INVITE, To of the response (with its tag), CSeq number of the INVITE with method ACK, no body.
 */
export function buildNon2xxAck(invite: SipMessage, response: SipMessage): SipMessage {
  return baseFromInvite(invite, 'ACK', response.get('To') ?? invite.get('To'));
}

/**
 * RFC 3261 9.1: CANCEL with the INVITE's Request-URI, Call-ID, To, From, CSeq number (method CANCEL), a single Via
 * equal to the INVITE's top Via (same branch) and the same Route header fields.
 */
export function buildCancel(invite: SipMessage, extra?: SipMessage): SipMessage {
  const cancel = baseFromInvite(invite, 'CANCEL', invite.get('To'));
  // anything else the TU put on its CANCEL (e.g. Reason, RFC 3326) is kept; the 9.1 fields always come from the INVITE
  for (const header of extra?.headers ?? []) {
    if (!CANCEL_FIELDS_FROM_INVITE.has(header.name.toLowerCase())) cancel.append(header.name, header.value);
  }
  return cancel;
}

const CANCEL_FIELDS_FROM_INVITE = new Set(['via', 'from', 'to', 'call-id', 'cseq', 'route', 'max-forwards', 'content-length']);
