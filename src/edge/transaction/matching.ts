import { detachFromMessage, parseVia, type SipMessage } from '../message/index.js';
import { BRANCH_MAGIC_COOKIE } from './ids.js';

/**
 * RFC 3261 8.1.1.7 / 17.2.3: a branch usable as a transaction id starts with the magic cookie and has something
 * after it. "z9hG4bK" alone (RFC 4475 3.2.1 badbranch.dat) is treated as no usable branch: such requests fall back
 * to RFC 2543 matching instead of being rejected (RFC 4475 allows either; falling back keeps broken UAs working).
 */
export function isRfc3261Branch(branch: string | undefined): branch is string {
  return branch !== undefined && branch.length > BRANCH_MAGIC_COOKIE.length && branch.startsWith(BRANCH_MAGIC_COOKIE);
}

/** Methods whose transaction is found under the INVITE's key: ACK matches the INVITE transaction (17.2.3). */
function keyMethod(method: string): string {
  return method === 'ACK' ? 'INVITE' : method;
}

/**
 * Server transaction key of a request (RFC 3261 17.2.3), or undefined when the request lacks what matching needs
 * (no parsable top Via, and for RFC 2543 requests no Call-ID/CSeq).
 *  - RFC 3261 branch: branch + sent-by + method (ACK -> INVITE).
 *  - otherwise (RFC 2543): Request-URI, From tag, Call-ID, CSeq number, top Via, method (ACK -> INVITE). The To tag
 *    is checked by the caller: an INVITE's To tag against the request, an ACK's against the response's tag.
 * `asMethod` overrides the method, e.g. 'INVITE' to find the transaction a CANCEL targets (9.2).
 */
export function serverTransactionKey(req: SipMessage, asMethod?: string): string | undefined {
  const method = keyMethod(asMethod ?? req.method ?? '');
  const topVia = req.get('Via');
  if (topVia === undefined || method === '') return undefined;
  const branch = req.topViaBranch;
  if (isRfc3261Branch(branch)) {
    const via = parseVia(topVia);
    if (via === null) return undefined;
    // detached: the key outlives the message (completed-transaction table) and must not keep its text alive
    return detachFromMessage(`${branch}|${via.host.toLowerCase()}:${via.port ?? ''}|${method}`);
  }
  const callId = req.callId;
  const cseq = req.cseq;
  if (callId === undefined || cseq === undefined || req.requestUri === undefined) return undefined;
  const normalisedVia = topVia.replace(/\s+/g, '').toLowerCase();
  return detachFromMessage(`2543|${req.requestUri}|${req.fromTag ?? ''}|${callId}|${cseq.seq}|${normalisedVia}|${method}`);
}

/** Client transaction key of a request we send or a response we receive (17.1.3): top Via branch + CSeq method. */
export function clientTransactionKey(branch: string | undefined, cseqMethod: string | undefined): string | undefined {
  if (branch === undefined || branch === '' || cseqMethod === undefined) return undefined;
  return `${branch}|${cseqMethod}`;
}

/** Key used to match an ACK for a 2xx to the INVITE server transaction that sent it (new branch, same dialog). */
export function ackFor2xxKey(callId: string | undefined, cseqSeq: number | undefined, fromTag: string | undefined, toTag: string | undefined): string | undefined {
  if (callId === undefined || cseqSeq === undefined || toTag === undefined) return undefined;
  return `${callId}|${cseqSeq}|${fromTag ?? ''}|${toTag}`;
}
