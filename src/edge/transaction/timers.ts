import type { TransactionTimers } from './types.js';

/** RFC 3261 table 4 defaults. */
export const DEFAULT_TIMERS: Readonly<TransactionTimers> = Object.freeze({ T1: 500, T2: 4000, T4: 5000 });
/** RFC 3261 17.1.1.2: timer D is at least 32 s for unreliable transports. */
export const DEFAULT_TIMER_D_MS = 32_000;

/**
 * Named one-shot timers owned by one transaction: starting a name replaces its previous timer, clearAll() is
 * called on termination so no timer outlives its transaction.
 */
export class TimerSet<Name extends string> {
  private readonly handles = new Map<Name, NodeJS.Timeout>();

  start(name: Name, ms: number, fire: () => void): void {
    this.stop(name);
    const handle = setTimeout(() => {
      this.handles.delete(name);
      fire();
    }, ms);
    handle.unref?.();
    this.handles.set(name, handle);
  }

  stop(name: Name): void {
    const handle = this.handles.get(name);
    if (handle !== undefined) {
      clearTimeout(handle);
      this.handles.delete(name);
    }
  }

  isRunning(name: Name): boolean {
    return this.handles.has(name);
  }

  clearAll(): void {
    for (const handle of this.handles.values()) clearTimeout(handle);
    this.handles.clear();
  }
}
