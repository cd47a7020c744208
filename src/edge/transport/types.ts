import type { SipMessage, VerbatimRequest } from '../message/index.js';

export type TransportProtocol = 'udp' | 'tcp' | 'tls' | 'ws' | 'wss';

export interface ListenSpec {
  protocol: TransportProtocol;
  host: string;           // IP literal to bind (IPv6 without brackets)
  port: number;           // 0 = any
  /** address to advertise in Via/Contact/Record-Route when different from host (e.g. public IP) */
  externalHost?: string;
}

/** A connection or (for UDP) a local socket + remote address pair. */
export interface Flow {
  /** unique id for connection-oriented flows; for UDP: `udp:<localHost>:<localPort>:<remoteHost>:<remotePort>` */
  id: string;
  protocol: TransportProtocol;
  remoteAddress: string;   // IP (no brackets)
  remotePort: number;
  localAddress: string;
  localPort: number;
  /** the listener that accepted the flow, or for outbound connections / UDP sends the listener of that
   *  protocol and address family (use its port / externalHost when building Via and Contact) */
  listener?: ListenSpec;
  /** true for connections we dialled out (tcp/tls); false for accepted ones and UDP */
  outbound?: boolean;
}

export interface InboundMessage {
  message: SipMessage;
  raw: Buffer;
  flow: Flow;
  receivedAt: number;     // Date.now()
  /** a request received in exactly its serialised form: verbatimBytes() gives its bytes without re-serialising */
  verbatim?: VerbatimRequest;
}

export interface MalformedInbound {
  error: string;
  /** response status to send (400, 505, ...) */
  status: number;
  /** partially parsed request, enough to build a stateless response */
  message: SipMessage;
  flow: Flow;
}

export interface SendTarget {
  protocol: TransportProtocol;
  address: string;        // IP literal (DNS is resolved before the transport)
  port: number;
  flowId?: string;
  /** tls/wss: the SIP domain to present as SNI and to verify the peer certificate against (RFC 5922);
   *  defaults to the IP address */
  serverName?: string;
}

export interface SentInfo {
  flow: Flow;
  bytes: number;
}

export interface TransportLimits {
  maxMessageBytes: number;          // default 65535
  maxHeaderCount: number;           // default 128
  maxConnections: number;           // default 10000 total stream connections
  maxConnectionsPerIp: number;      // default 1000 (loopback tests open thousands: keep configurable)
  incompleteMessageTimeoutMs: number; // default 10000: a connection that buffers a partial message this long is closed
  idleConnectionTimeoutMs: number;  // default 600000 with no traffic at all
  connectTimeoutMs: number;         // default 5000 for outbound tcp/tls connect
  wsMaxPayloadBytes: number;        // default 65535
  maxWriteQueueBytes: number;       // default 1 MiB queued for a slow reader before its connection is destroyed
  wsPingIntervalMs: number;         // default 30000: ping every WS peer; no pong by the next round => closed
  /** default 4 MiB: SO_RCVBUF / SO_SNDBUF of UDP listeners (Linux caps it at net.core.rmem_max / wmem_max). The
   *  kernel's 208 KiB default overflows within a few ms of event-loop pause at a few thousand datagrams/s. */
  udpSocketBufferBytes: number;
}

export interface TransportOptions {
  listen: ListenSpec[];
  /** rejectUnauthorized (default true) applies to outbound TLS connections we dial */
  tls?: { cert: string | Buffer; key: string | Buffer; ca?: string | Buffer; rejectUnauthorized?: boolean };
  limits?: Partial<TransportLimits>;
  logger?: import('pino').Logger;
  /** Told of every SIP message received (before parsing's outcome matters) and sent, e.g. HEP capture. */
  capture?: MessageCapture;
}

export interface MessageCapture {
  capture(direction: 'received' | 'sent', raw: Buffer, flow: Flow): void;
}
