/**
 * The text forms of the drachtio protocol lines the server sends (drachtio-server
 * SipMsgData_t::toMessageFormat, BaseClient::sendSipMessageToClient / sendApiResponseToClient).
 * Field order matters: drachtio-srf reads them by position (lib/drachtio-agent.js _onMsg).
 */
import { randomUUID } from 'node:crypto';

export const CRLF = '\r\n';

/** Metadata of a SIP message as it crossed the network. */
export interface WireMeta {
  source: 'network' | 'application';
  bytes: number;
  protocol: string;
  address: string;
  port: number;
  /** the local listener it was received on (network requests only) */
  receivedOn?: { address: string; port: number };
}

let stackTimeAt = -1;
let stackTimeText = '';

/** Now as HH:MM:SS.micro, like the C++ server's stack time; formatted once per millisecond (every message carries one). */
function stackTime(): string {
  const now = Date.now();
  if (now !== stackTimeAt) {
    const date = new Date(now);
    const p2 = (n: number) => (n < 10 ? '0' : '') + n;
    stackTimeAt = now;
    stackTimeText = `${p2(date.getHours())}:${p2(date.getMinutes())}:${p2(date.getSeconds())}.${String(date.getMilliseconds() * 1000).padStart(6, '0')}`;
  }
  return stackTimeText;
}

/** `source|bytes|protocol|address|port|time`: where a message came from or went, as drachtio reports it. */
export function metaFieldsOf(meta: WireMeta): string {
  return `${meta.source}|${meta.bytes}|${meta.protocol}|${meta.address}|${meta.port}|${stackTime()}`;
}

/** Unique within this process and across its restarts: a random prefix per process, then a counter. */
const msgIdPrefix = randomUUID().slice(0, 19);
let msgIdCounter = 0;

/** An id for a message or transaction on the wire (the C++ server uses UUIDs; srf only keys maps by them). */
export function newMsgId(): string {
  msgIdCounter++;
  return msgIdPrefix + msgIdCounter.toString(16).padStart(16, '0');
}

/**
 * The first line of a frame carrying a SIP message; the frame is that line, CRLF, the SIP message
 * (AppConnection.sendSip). Network message to the app:
 * `<uuid>|sip|<meta>|<txnId>|<dialogId>|[<recvAddr>|<recvPort>|]`
 */
export function sipEventHead(meta: WireMeta, transactionId: string, dialogId: string): string {
  const line = `${newMsgId()}|sip|${metaFieldsOf(meta)}|${transactionId}|${dialogId}|`;
  return meta.receivedOn ? `${line}${meta.receivedOn.address}|${meta.receivedOn.port}|` : line;
}

/**
 * Echo of a request the app asked us to send (capture: no dialog id field):
 * `<uuid>|response|<appMsgId>|OK|<meta>|<txnId>|Msg sent:|`, then the SIP as sent
 */
export function sentRequestEchoHead(appMsgId: string, meta: WireMeta, transactionId: string): string {
  return `${newMsgId()}|response|${appMsgId}|OK|${metaFieldsOf(meta)}|${transactionId}|Msg sent:|`;
}

/**
 * Echo of a response the app asked us to send; srf reads the dialog id from it:
 * `<uuid>|response|<appMsgId>|OK|<meta>|<txnId>|<dialogId>||Msg sent:|`, then the SIP as sent
 */
export function sentResponseEchoHead(appMsgId: string, meta: WireMeta, transactionId: string, dialogId: string): string {
  return `${newMsgId()}|response|${appMsgId}|OK|${metaFieldsOf(meta)}|${transactionId}|${dialogId}||Msg sent:|`;
}

/** `<uuid>|response|<appMsgId>|<OK|NO|NOK>[|<fields>...]` */
export function apiResponse(appMsgId: string, status: 'OK' | 'NO' | 'NOK', ...fields: string[]): string {
  return [newMsgId(), 'response', appMsgId, status, ...fields].join('|');
}
