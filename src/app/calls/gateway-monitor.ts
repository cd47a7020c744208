/**
 * Carrier gateway health by OPTIONS pings (RFC 3261 11; what Kamailio's dispatcher does): a
 * gateway that answers is up; one that times out (408), refuses the connection (503 from the
 * server) or answers 5xx/6xx `failuresBeforeDown` times in a row is marked down, so calls skip
 * it (rankOutboundGateways reads GatewayChannels.health) until it answers again.
 */
import type { Logger } from 'pino';
import type { OutboundGateway } from '../carriers/index.js';
import type { Srf } from '../sip/srf.js';
import { optionsProbe } from '../sip/options-probe.js';
import { gatewayUri, type GatewayChannels } from './carrier-routing.js';

export interface GatewayMonitorOptions {
  /** a probe with no final response within this counts as a failure (default 5 s) */
  timeoutMs?: number;
  /** consecutive failures that mark a gateway down (default 2) */
  failuresBeforeDown?: number;
  logger?: Logger;
}

/** 2xx-4xx mean the gateway's SIP stack is alive; 408, 5xx and 6xx, or silence, don't. */
export function probeSucceeded(status: number): boolean {
  return status >= 200 && status < 500 && status !== 408;
}

export class GatewayMonitor {
  private readonly timers: NodeJS.Timeout[] = [];
  private readonly failures = new Map<string, number>();
  private stopped = false;

  constructor(
    private readonly srf: Srf,
    private readonly gateways: readonly OutboundGateway[],
    private readonly channels: GatewayChannels,
    private readonly opts: GatewayMonitorOptions = {},
  ) {}

  start(): void {
    for (const gateway of this.gateways) {
      if (!gateway.optionsIntervalSeconds) continue;
      const timer = setInterval(() => void this.probe(gateway), gateway.optionsIntervalSeconds * 1000);
      timer.unref();
      this.timers.push(timer);
      void this.probe(gateway);
    }
  }

  stop(): void {
    this.stopped = true;
    for (const t of this.timers) clearInterval(t);
    this.timers.length = 0;
  }

  /** One OPTIONS to the gateway; resolves with the final status (0: no answer in time). */
  async probe(gateway: OutboundGateway): Promise<number> {
    const status = await optionsProbe(this.srf, gatewayUri(gateway), this.opts.timeoutMs ?? 5000);
    if (this.stopped) return status;
    this.record(gateway, probeSucceeded(status), status);
    return status;
  }

  private record(gateway: OutboundGateway, ok: boolean, status: number): void {
    const wasUp = this.channels.health.get(gateway.name)?.up ?? true;
    if (ok) {
      this.failures.set(gateway.name, 0);
      if (!wasUp) this.opts.logger?.info({ gateway: gateway.name, status }, 'gateway answers OPTIONS again: up');
      this.channels.setUp(gateway.name, true);
      return;
    }
    const failures = (this.failures.get(gateway.name) ?? 0) + 1;
    this.failures.set(gateway.name, failures);
    if (failures >= (this.opts.failuresBeforeDown ?? 2)) {
      if (wasUp) this.opts.logger?.warn({ gateway: gateway.name, status, failures }, 'gateway fails OPTIONS: down');
      this.channels.setUp(gateway.name, false);
    }
  }
}
