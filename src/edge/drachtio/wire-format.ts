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

/** HH:MM:SS.micro, like the C++ server's stack time. */
export function stackTime(date = new Date()): string {
  const p2 = (n: number) => (n < 10 ? '0' : '') + n;
  const ms = date.getMilliseconds();
  return `${p2(date.getHours())}:${p2(date.getMinutes())}:${p2(date.getSeconds())}.${String(ms * 1000).padStart(6, '0')}`;
}

function metaFields(meta: WireMeta): string {
  return `${meta.source}|${meta.bytes}|${meta.protocol}|${meta.address}|${meta.port}|${stackTime()}`;
}

export function newMsgId(): string {
  return randomUUID();
}

/** `<uuid>|sip|<meta>|<txnId>|<dialogId>|[<recvAddr>|<recvPort>|]` CRLF <SIP message> */
export function sipEvent(meta: WireMeta, transactionId: string, dialogId: string, sip: string): string {
  let line = `${newMsgId()}|sip|${metaFields(meta)}|${transactionId}|${dialogId}|`;
  if (meta.receivedOn) line += `${meta.receivedOn.address}|${meta.receivedOn.port}|`;
  return line + CRLF + sip;
}

/**
 * Echo of a request the app asked us to send (capture: no dialog id field):
 * `<uuid>|response|<appMsgId>|OK|<meta>|<txnId>|Msg sent:|` CRLF <SIP as sent>
 */
export function sentRequestEcho(appMsgId: string, meta: WireMeta, transactionId: string, sip: string): string {
  return `${newMsgId()}|response|${appMsgId}|OK|${metaFields(meta)}|${transactionId}|Msg sent:|${CRLF}${sip}`;
}

/**
 * Echo of a response the app asked us to send; srf reads the dialog id from it:
 * `<uuid>|response|<appMsgId>|OK|<meta>|<txnId>|<dialogId>||Msg sent:|` CRLF <SIP as sent>
 */
export function sentResponseEcho(appMsgId: string, meta: WireMeta, transactionId: string, dialogId: string, sip: string): string {
  return `${newMsgId()}|response|${appMsgId}|OK|${metaFields(meta)}|${transactionId}|${dialogId}||Msg sent:|${CRLF}${sip}`;
}

/** `<uuid>|response|<appMsgId>|<OK|NO|NOK>[|<fields>...]` */
export function apiResponse(appMsgId: string, status: 'OK' | 'NO' | 'NOK', ...fields: string[]): string {
  return [newMsgId(), 'response', appMsgId, status, ...fields].join('|');
}
