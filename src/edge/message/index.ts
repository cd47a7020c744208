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
 */
export { SipMessage, type SipHeader } from './sip-message.js';
export { parseMessage, StreamFramer, type ParseResult, type ParseLimits, DEFAULT_PARSE_LIMITS } from './parser.js';
export {
  parseVia, formatVia, parseNameAddr, formatNameAddr, parseUri, formatUri, parseCSeq, splitHeaderValues,
  canonicalHeaderName, type Via, type NameAddr, type SipUri,
} from './grammar.js';
