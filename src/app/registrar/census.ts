/**
 * Keeps the dialcore_registrations gauge (by transport and connection method) current: every
 * `intervalMs` it reads the census buckets the BindingStore maintains in Redis (see
 * binding-store.ts): cluster-wide truth at a cost independent of the number of bindings.
 */
import { registrationsGauge } from '../observability/metrics.js';
import type { Logger } from '../observability/logger.js';
import type { BindingStore } from './binding-store.js';

export class RegistrationCensus {
  private timer: NodeJS.Timeout | null = null;

  constructor(
    private readonly bindings: BindingStore,
    private readonly intervalMs = 15_000,
    private readonly log?: Logger,
    /** the longest a binding can live (the registrar's max expires), ms */
    private readonly horizonMs = 3_600_000,
  ) {}

  start(): void {
    if (this.timer) return;
    void this.refresh();
    this.timer = setInterval(() => void this.refresh(), this.intervalMs);
    this.timer.unref();
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
  }

  async refresh(now = Date.now()): Promise<void> {
    try {
      const counts = await this.bindings.census(now, this.horizonMs);
      registrationsGauge.reset();
      for (const [label, count] of counts) {
        const [transport = 'unknown', method = 'unknown'] = label.split('|');
        registrationsGauge.set({ transport, method }, count);
      }
    } catch (err) {
      this.log?.warn({ err }, 'registration census failed');
    }
  }
}
