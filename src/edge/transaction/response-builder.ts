import { SipMessage } from '../message/index.js';
import { generateTag } from './ids.js';

/** Default reason phrases: RFC 3261 section 21 plus the extensions a UA meets in practice. */
const REASON_PHRASES: Readonly<Record<number, string>> = {
  100: 'Trying', 180: 'Ringing', 181: 'Call Is Being Forwarded', 182: 'Queued', 183: 'Session Progress',
  199: 'Early Dialog Terminated',
  200: 'OK', 202: 'Accepted', 204: 'No Notification',
  300: 'Multiple Choices', 301: 'Moved Permanently', 302: 'Moved Temporarily', 305: 'Use Proxy', 380: 'Alternative Service',
  400: 'Bad Request', 401: 'Unauthorized', 402: 'Payment Required', 403: 'Forbidden', 404: 'Not Found',
  405: 'Method Not Allowed', 406: 'Not Acceptable', 407: 'Proxy Authentication Required', 408: 'Request Timeout',
  410: 'Gone', 412: 'Conditional Request Failed', 413: 'Request Entity Too Large', 414: 'Request-URI Too Long',
  415: 'Unsupported Media Type', 416: 'Unsupported URI Scheme', 417: 'Unknown Resource-Priority', 420: 'Bad Extension',
  421: 'Extension Required', 422: 'Session Interval Too Small', 423: 'Interval Too Brief', 428: 'Use Identity Header',
  429: 'Provide Referrer Identity', 430: 'Flow Failed', 433: 'Anonymity Disallowed', 436: 'Bad Identity-Info',
  437: 'Unsupported Certificate', 438: 'Invalid Identity Header', 439: 'First Hop Lacks Outbound Support',
  440: 'Max-Breadth Exceeded', 469: 'Bad Info Package', 470: 'Consent Needed',
  480: 'Temporarily Unavailable', 481: 'Call/Transaction Does Not Exist', 482: 'Loop Detected', 483: 'Too Many Hops',
  484: 'Address Incomplete', 485: 'Ambiguous', 486: 'Busy Here', 487: 'Request Terminated', 488: 'Not Acceptable Here',
  489: 'Bad Event', 491: 'Request Pending', 493: 'Undecipherable', 494: 'Security Agreement Required',
  500: 'Server Internal Error', 501: 'Not Implemented', 502: 'Bad Gateway', 503: 'Service Unavailable',
  504: 'Server Time-out', 505: 'Version Not Supported', 513: 'Message Too Large', 580: 'Precondition Failure',
  600: 'Busy Everywhere', 603: 'Decline', 604: 'Does Not Exist Anywhere', 606: 'Not Acceptable', 607: 'Unwanted',
};

/** The standard reason phrase for a status, or a class-generic one for unknown codes. */
export function reasonPhrase(status: number): string {
  const known = REASON_PHRASES[status];
  if (known !== undefined) return known;
  if (status < 200) return 'Session Progress';
  if (status < 300) return 'OK';
  if (status < 400) return 'Redirection';
  if (status < 500) return 'Client Error';
  if (status < 600) return 'Server Error';
  return 'Global Failure';
}

export interface BuildResponseOptions {
  /**
   * To tag to add when the request's To has none (RFC 3261 8.2.6.2): a string, or true for a random one.
   * Ignored for 100 Trying, which never carries a tag it invented.
   */
  toTag?: string | true;
}

/**
 * A response to `req` per RFC 3261 8.2.6: Via values (all, in order), From, To, Call-ID and CSeq copied;
 * Timestamp copied into a 100 (8.2.6.1). Content-Length is written on serialise. Callers add Contact etc.
 */
export function buildResponse(req: SipMessage, status: number, reason?: string, options: BuildResponseOptions = {}): SipMessage {
  const res = new SipMessage();
  res.status = status;
  res.reason = reason ?? reasonPhrase(status);
  for (const via of req.getAll('Via')) res.append('Via', via);
  for (const name of ['From', 'To', 'Call-ID', 'CSeq'] as const) {
    const value = req.get(name);
    if (value !== undefined) res.append(name, value);
  }
  if (status === 100) {
    const timestamp = req.get('Timestamp');
    if (timestamp !== undefined) res.append('Timestamp', timestamp);
  } else if (options.toTag !== undefined && req.toTag === undefined) {
    const to = res.get('To');
    if (to !== undefined) res.set('To', `${to};tag=${options.toTag === true ? generateTag() : options.toTag}`);
  }
  return res;
}
