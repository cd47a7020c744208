/**
 * The embedded SIP edge: transport (RFC 3261 section 18), transactions (section 17), dialogs
 * (section 12) and the drachtio protocol listener, wired together. Any drachtio-srf app can connect
 * to it exactly as it would to the C++ drachtio-server.
 */
import { readFileSync } from 'node:fs';
import type { Logger } from 'pino';
import { TransportLayer, type ListenSpec, type TransportLimits } from './transport/index.js';
import { TransactionLayer } from './transaction/index.js';
import { SipResolver } from './dns/index.js';
import { AppServer } from './drachtio/app-server.js';
import { SipController } from './drachtio/controller.js';
import { hostForUri, type LocalAddress } from './drachtio/sip-builders.js';
import { HepCaptureAgent } from './capture/hep-agent.js';

/** Reported to apps at authenticate; srf only pings servers >= v0.8.2. */
export const EDGE_VERSION = 'v0.9.10-dialcore';

export interface EdgeOptions {
  sip: ListenSpec[];
  admin: { host: string; port: number };
  secret: string;
  externalHost?: string;
  tls?: { certFile: string; keyFile: string };
  timers?: { T1?: number; T2?: number; T4?: number };
  limits?: Partial<TransportLimits>;
  /** HEP3 capture of every SIP message sent and received (Homer) */
  hep?: { host: string; port: number; agentId: number; password?: string };
  logger?: Logger;
}

export interface EdgeAddresses {
  sip: ListenSpec[];
  admin: { host: string; port: number };
}

export class Edge {
  private transport?: TransportLayer;
  private transactions?: TransactionLayer;
  private apps?: AppServer;
  private controller?: SipController;
  private capture?: HepCaptureAgent;

  constructor(private readonly opts: EdgeOptions) {}

  async start(): Promise<EdgeAddresses> {
    const { opts } = this;
    const tls = opts.tls ? { cert: readFileSync(opts.tls.certFile), key: readFileSync(opts.tls.keyFile) } : undefined;
    const listen = opts.sip.map((l) => ({ ...l, externalHost: l.externalHost ?? opts.externalHost }));
    this.capture = opts.hep ? new HepCaptureAgent({ ...opts.hep, ...(opts.logger ? { logger: opts.logger } : {}) }) : undefined;
    this.transport = new TransportLayer({ listen, tls, limits: opts.limits, logger: opts.logger, ...(this.capture ? { capture: this.capture } : {}) });
    await this.transport.start();
    const bound = this.transport.boundListeners();
    const locals: LocalAddress[] = bound.map((l) => ({ protocol: l.protocol, host: l.externalHost ?? l.host, port: l.port }));
    const hostports = bound.map((l) => `${l.protocol}/${hostForUri(l.host)}:${l.port}`).join(',');

    this.transactions = new TransactionLayer(this.transport, { ...opts.timers, logger: opts.logger });
    this.apps = new AppServer({ host: opts.admin.host, port: opts.admin.port, secret: opts.secret, version: EDGE_VERSION, hostports: () => hostports, logger: opts.logger });
    this.controller = new SipController({
      transport: this.transport,
      transactions: this.transactions,
      apps: this.apps,
      resolver: new SipResolver({ transports: ['udp', 'tcp', 'tls', 'ws', 'wss'], logger: opts.logger }),
      locals,
      T1: opts.timers?.T1,
      T2: opts.timers?.T2,
      logger: opts.logger,
    });
    let admin: { host: string; port: number };
    try {
      admin = await this.apps.start();
    } catch (err) {
      await this.transport.stop();
      throw err;
    }
    opts.logger?.info({ sip: hostports, admin: `${admin.host}:${admin.port}` }, 'SIP edge listening');
    return { sip: bound, admin };
  }

  /**
   * dialogs, requests handed to apps and not yet answered (server) or sent for apps (client), connected apps, and
   * server transactions alive in the transaction layer (those waiting out timer J / I / L included).
   */
  stats(): { dialogs: number; serverRequests: number; clientRequests: number; apps: number; serverTransactions: number } {
    return {
      ...(this.controller?.stats() ?? { dialogs: 0, serverRequests: 0, clientRequests: 0 }),
      apps: this.apps?.connectedApps ?? 0,
      serverTransactions: this.transactions?.serverTransactionCount ?? 0,
    };
  }

  async stop(): Promise<void> {
    await this.apps?.stop();
    this.transactions?.stop?.();
    await this.transport?.stop();
    this.capture?.close();
  }
}
