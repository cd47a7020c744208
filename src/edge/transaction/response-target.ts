import type { InboundMessage, SendTarget } from '../transport/index.js';

export function isReliableProtocol(protocol: SendTarget['protocol']): boolean {
  return protocol !== 'udp';
}

/**
 * Where responses to a request go, RFC 3261 18.2.2 with RFC 3581:
 *  - reliable transports: the connection the request arrived on (flowId); should it have closed, the transport
 *    reconnects to the source IP and the Via sent-by port;
 *  - UDP with rport: the source IP and port (NAT friendly);
 *  - UDP without rport: the source IP ("received") and the Via sent-by port (default 5060).
 * maddr is deliberately ignored: answering to an address named by the packet would make us a reflector.
 */
export function responseTarget(inbound: Pick<InboundMessage, 'message' | 'flow'>): SendTarget {
  const { flow } = inbound;
  // the message's memoised parse (the transaction key already read the branch from it)
  const via = inbound.message.topVia ?? null;
  const defaultPort = flow.protocol === 'tls' || flow.protocol === 'wss' ? 5061 : 5060;
  const sentByPort = via?.port ?? defaultPort;
  if (isReliableProtocol(flow.protocol)) {
    return { protocol: flow.protocol, address: flow.remoteAddress, port: sentByPort, flowId: flow.id };
  }
  const hasRport = via?.params.some(([name]) => name === 'rport') ?? false;
  if (hasRport || via === null || sentByPort === flow.remotePort) {
    return { protocol: flow.protocol, address: flow.remoteAddress, port: flow.remotePort, flowId: flow.id };
  }
  return { protocol: flow.protocol, address: flow.remoteAddress, port: sentByPort };
}
