import { EventEmitter } from 'node:events';
import { randomUUID } from 'node:crypto';
import { emitSafely, type TransactionServices } from './services.js';
import { TimerSet } from './timers.js';
import type { CompletedTransaction } from './completed-table.js';

/** The one event every transaction emits: it reached Terminated (17.1.1.2, 17.1.2.2, 17.2.1, 17.2.2). */
export interface TerminatedEvent {
  terminated: [];
}

/**
 * Life cycle shared by client (17.1) and server (17.2) transactions: the state, timers, the switch to a compact
 * completed record kept by the layer, and termination. Client and server bases differ only in which of the layer's
 * tables they leave (see leaveLayer()).
 */
export abstract class TransactionBase<Events extends TerminatedEvent & Record<keyof Events, unknown[]>, State extends string> extends EventEmitter<Events> {
  readonly id = randomUUID();
  protected readonly timers = new TimerSet<string>();
  private stateValue: State | 'terminated';
  /** set once the layer keeps only a compact record of this transaction (see the subclasses' compact()) */
  protected completedEntry: CompletedTransaction | undefined;

  constructor(
    protected readonly services: TransactionServices,
    /** key in the layer's client (17.1.3) or server (17.2.3) table */
    readonly key: string,
    initialState: State,
  ) {
    super();
    this.stateValue = initialState;
  }

  /** 'terminated' once the compact record the layer kept in its place has expired */
  get state(): State | 'terminated' {
    return this.completedEntry?.expired === true ? 'terminated' : this.stateValue;
  }

  set state(state: State) {
    this.stateValue = state;
  }

  /** Not terminated and not yet replaced by a compact record. */
  protected canCompact(): boolean {
    return this.stateValue !== 'terminated' && this.completedEntry === undefined;
  }

  /** Whether a TU listens for any of `events`: then the compact record must report its expiry back here. */
  protected observed(...events: (keyof Events & string)[]): boolean {
    const emitter = this as EventEmitter;
    return events.some((event) => emitter.listenerCount(event) > 0);
  }

  /** Wait `ms` in the current state then terminate; 0 (reliable transports) terminates now. */
  protected terminateAfter(ms: number): void {
    if (this.state === 'terminated') return;
    if (ms <= 0) this.terminate();
    else this.timers.start('terminate', ms, () => this.terminate());
  }

  /** The compact record expired (or was evicted): end the way terminate() does. */
  protected finishCompacted(): void {
    if (this.stateValue === 'terminated') return;
    this.stateValue = 'terminated';
    this.onTerminated();
    this.emitTerminated();
  }

  terminate(): void {
    if (this.state === 'terminated') return;
    this.stateValue = 'terminated';
    this.timers.clearAll();
    this.onTerminated();
    this.leaveLayer(this.completedEntry);
    this.emitTerminated();
  }

  /** Drop this transaction from the layer: its compact record if it has one, else its live table entry. */
  protected abstract leaveLayer(completedEntry: CompletedTransaction | undefined): void;

  protected onTerminated(): void {}

  private emitTerminated(): void {
    const emitter = this as EventEmitter<TerminatedEvent>;
    emitSafely(this.services, () => emitter.emit('terminated'), 'terminated');
  }
}
