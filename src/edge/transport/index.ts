/**
 * SIP transports (RFC 3261 section 18, RFC 3581, RFC 7118 WebSocket).
 *
 * CONTRACT (the transaction layer and the drachtio controller code against this):
 *
 *   const tl = new TransportLayer({ listen: [{protocol:'udp', host:'127.0.0.1', port:5060}, ...], tls, limits, logger });
 *   await tl.start();            // binds all; rejects with a clear error naming the spec that failed
 *   tl.boundListeners()          // ListenSpec[] with real ports (port 0 -> the one the OS chose)
 *   tl.on('message', (m: InboundMessage) => ...)      // one per well-formed message
 *   tl.on('malformed', (m: MalformedInbound) => ...)  // parse failure of a request that could be answered (400/505...)
 *   tl.on('flow-closed', (flow: Flow) => ...)         // a TCP/TLS/WS connection went away
 *   await tl.send(buf, target)   // -> SentInfo; rejects on failure (no route, connection refused...)
 *   await tl.stop()
 *   tl.getFlow(id) / tl.closeFlow(id) / tl.flowCount(protocol?)   // e.g. close a kicked user's WebSocket
 *   tl.listenerFor(protocol, family?)                              // ListenSpec to advertise in Via/Contact
 *
 * Sending rules:
 *   - target.flowId set and that connection still open: send on it (connection reuse, RFC 3261 18.2.2, RFC 5923-ish,
 *     RFC 7118: WS clients are only reachable over their own connection).
 *   - else for tcp/tls: reuse any open connection to address:port, else connect (with a timeout).
 *   - ws/wss without a live flow: reject (we never dial out over WebSocket).
 *   - udp: send from the UDP listener whose address family matches (the first one otherwise).
 *
 * Limits: max message size, max connections total and per source IP, idle timeout for connections with no
 * complete message, max buffered bytes per connection, WS max frame size; all bounded.
 */
export { TransportLayer, type TransportEvents } from './transport-layer.js';
export { DEFAULT_TRANSPORT_LIMITS } from './limits.js';
export { parseListenSpec, formatListenSpec, isTransportProtocol } from './listen-spec.js';
export type { TransportProtocol, ListenSpec, Flow, InboundMessage, MalformedInbound, SendTarget, SentInfo, TransportLimits, TransportOptions } from './types.js';
