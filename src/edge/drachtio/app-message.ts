/**
 * Messages that drachtio apps hand us are often skeletal (a request line and Content-Length, or a
 * response with a few headers): not valid RFC 3261 messages yet. They are read with the network
 * parser in its skeletal mode (no mandatory headers), then completed by the controller the way
 * drachtio-server does it.
 */
import { parseMessage, type SipMessage } from '../message/index.js';

export class AppMessageError extends Error {}

export function readAppMessage(text: string): SipMessage {
  const result = parseMessage(Buffer.from(text, 'utf8'), { maxMessageBytes: 99_999 }, { requireMandatoryHeaders: false });
  if (!result.ok) throw new AppMessageError(`bad message from app: ${result.error}`);
  return result.message;
}
