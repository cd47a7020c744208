/**
 * The transport a request came in over, as policies need it: `udp`, `tcp`, `tls`, `ws` or `wss`.
 *
 * The SIP server says it in the drachtio `sip` frame (srf's `req.protocol`). The dialcore edge names
 * WebSocket connections `ws`/`wss`; the C++ drachtio-server (0.9.x) reports a ws or wss connection
 * as `tcp`. A WebSocket client's top Via says `SIP/2.0/WS` or `SIP/2.0/WSS` (RFC 7118 section 5.2),
 * so a request reported as tcp with such a Via came over that WebSocket; one reported as tls with a
 * WebSocket Via is `wss` (the server's word decides the encryption when it gives one). A Via alone
 * never turns udp into a WebSocket.
 */
export interface TransportFacts {
  readonly protocol: string;
  get(name: string): string | undefined;
}

const WEBSOCKET_VIA = /^\s*SIP\s*\/\s*2\.0\s*\/\s*(WSS?)\s/i;

export function requestTransport(req: TransportFacts): string {
  const reported = req.protocol.toLowerCase();
  if (reported !== 'tcp' && reported !== 'tls') return reported;
  const via = req.get('via');
  const websocket = typeof via === 'string' ? WEBSOCKET_VIA.exec(via)?.[1] : undefined;
  if (!websocket) return reported;
  return reported === 'tls' ? 'wss' : websocket.toLowerCase();
}
