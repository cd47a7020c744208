/**
 * SIP message model, parser and serialiser (RFC 3261 section 7, 20, 25).
 *
 * CONTRACT (other layers code against this; keep it stable):
 *  - parseMessage(buf)       one datagram / one framed message -> ParseResult
 *  - StreamFramer            TCP/TLS byte stream -> messages (framing by Content-Length, RFC 3261 18.3)
 *  - SipMessage              ordered header list; header names are stored in canonical
 *                            long form ("Via", "Call-ID", "CSeq"...); compact forms are expanded on parse;
 *                            multi-valued headers (Via, Route, Record-Route, Contact...) are split
 *                            into one entry per value on parse (top value first)
 *  - serialise()             Buffer; Content-Length always rewritten from body length
 *  - header grammars         parseVia, parseNameAddr, parseUri, parseCSeq, splitHeaderValues
 *
 * Additions since the first contract:
 *  - parseMessage(buf, limits, { requireMandatoryHeaders: false }) / new StreamFramer(limits, options): accept
 *    skeletal messages without Via/From/To/Call-ID/CSeq (what a drachtio app sends; the edge completes them)
 *  - SipMessage.request(method, uri) / SipMessage.response(status, reason), msg.startLine,
 *    lazy msg.fromAddr / msg.toAddr (NameAddr) and msg.topVia (Via), memoised until the header text changes
 *  - SipUri.opaque for unknown schemes (absoluteURI); tel: keeps the number in `user`
 *  - getParam(params, name), parseHeaderParams, quote/unquote, isToken, isCallId, parseBoundedInt
 *  - detachFromMessage(s): a flat copy of a string cut from a message, for keys kept long after it
 *  - ParseResult.verbatim (a request received exactly in serialised form) + verbatimBytes(message, verbatim): its
 *    wire bytes without re-serialising, the (edited) top Via spliced in
 *
 * Parse outcome summary: malformed requests => { ok:false, status: 400 | 505, message: partial } (answer
 * statelessly); malformed responses and non-SIP bytes => { ok:false } without status (drop); on streams a framing
 * problem (missing / negative / multiple Content-Length, oversize) => { fatal } (close the connection).
 */
export { SipMessage, type SipHeader } from './sip-message.js';
export { detachFromMessage } from './detach.js';
export {
  parseMessage, StreamFramer, type ParseResult, type ParseLimits, DEFAULT_PARSE_LIMITS, type ParseOptions,
  type VerbatimRequest, verbatimBytes,
} from './parser.js';
export {
  parseVia, formatVia, parseNameAddr, formatNameAddr, parseUri, formatUri, parseCSeq, splitHeaderValues,
  canonicalHeaderName, type Via, type NameAddr, type SipUri,
  // additions (stable too): generic params, quoting, scalar grammars
  type Params, getParam, parseHeaderParams, quote, unquote, isToken, isCallId, parseBoundedInt, MAX_UINT32,
  isKnownHeaderName, LIST_HEADERS,
} from './grammar.js';
