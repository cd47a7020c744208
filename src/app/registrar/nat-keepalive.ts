/**
 * NAT keep-alive for UDP registrations, as Kamailio's nathelper does with `natping_interval` and
 * `sipping_method=OPTIONS`: every interval the core sends an OPTIONS (RFC 3261 §11) to each UDP
 * binding registered through this instance, through the flow its REGISTER came from (the NAT
 * mapping), which keeps that mapping open. Any final response except 408 and 503 shows the phone is
 * there (a 404 or 405 from it counts too); a binding whose phone misses `missesBeforeDrop` pings in a row
 * is removed, so calls stop ringing a phone that is gone (until it registers again).
 *
 * Connection flows (TCP, TLS, WS) are not pinged: the phone keeps them open (RFC 5626 §4.4.1 CRLF
 * keep-alives, answered by the edge) and bindings end with the connection (flow-bindings.ts).
 * Each instance pings the bindings it registered (like nathelper's local usrloc); a phone that
 * re-registers through another instance is pinged by both until this instance's entry expires.
 */
import type { Logger } from '../observability/logger.js';
import { natKeepalivePings, natKeepaliveDrops } from '../observability/metrics.js';
import type { Srf } from '../sip/srf.js';
import { optionsProbe } from '../sip/options-probe.js';
import { forEachConcurrently } from '../../shared/concurrency.js';
import { flowUri, type BindingStore, type RegisteredContact } from './binding-store.js';

export interface NatKeepaliveOptions {
  /** Time between two pings of a binding. */
  intervalMs: number;
  /** Consecutive unanswered pings that remove a binding (default 3). */
  missesBeforeDrop?: number;
  /** A ping without a final response within this is a miss (default the smaller of 5 s and half the interval). */
  timeoutMs?: number;
  /** Pings in flight at once (default 200). */
  maxInFlight?: number;
  /** Most bindings tracked; the oldest are forgotten first (default 200,000). */
  maxTracked?: number;
  /** Host of the From URI of the pings (the registrar's domain). */
  fromHost: string;
  log?: Logger;
}

interface Tracked {
  userId: string;
  bindingId: string;
  contact: string;
  flow: RegisteredContact['flow'];
  expiresAt: number;
  misses: number;
}

/**
 * 408 is what a transaction that timed out ends with (RFC 3261 §17.1.2.2) and 503 what the server answers
 * when it could not send; any other final answer comes from the phone.
 */
export function pingAnswered(status: number): boolean {
  return status >= 200 && status !== 408 && status !== 503;
}

export class NatKeepalive {
  /** userId -> its UDP bindings; Map order = last registration order, for forgetting the oldest user first */
  private readonly tracked = new Map<string, Tracked[]>();
  private count = 0;
  private timer: NodeJS.Timeout | null = null;
  private running = false;
  private stopped = false;
  private readonly missesBeforeDrop: number;
  private readonly timeoutMs: number;
  private readonly maxInFlight: number;
  private readonly maxTracked: number;

  constructor(private readonly srf: Srf, private readonly bindings: BindingStore, private readonly options: NatKeepaliveOptions) {
    if (!(options.intervalMs > 0)) throw new RangeError('intervalMs must be positive');
    this.missesBeforeDrop = options.missesBeforeDrop ?? 3;
    this.timeoutMs = options.timeoutMs ?? Math.min(5000, options.intervalMs / 2);
    this.maxInFlight = options.maxInFlight ?? 200;
    this.maxTracked = options.maxTracked ?? 200_000;
  }

  get size(): number {
    return this.count;
  }

  /** After a successful REGISTER of `userId`: `current` is all of the user's bindings now (the 200's Contacts). */
  track(userId: string, current: ReadonlyArray<RegisteredContact>): void {
    this.forgetUser(userId);
    const udp = current.filter((binding) => binding.flow.transport.toLowerCase() === 'udp');
    if (udp.length === 0) return;
    while (this.count + udp.length > this.maxTracked && this.tracked.size > 0) {
      const oldest = this.tracked.keys().next().value;
      if (oldest === undefined) break;
      this.forgetUser(oldest);
    }
    this.tracked.set(userId, udp.map((binding) => ({
      userId, bindingId: binding.id, contact: binding.contact, flow: binding.flow, expiresAt: binding.expiresAt, misses: 0,
    })));
    this.count += udp.length;
  }

  private forgetUser(userId: string): void {
    const entries = this.tracked.get(userId);
    if (!entries) return;
    this.count -= entries.length;
    this.tracked.delete(userId);
  }

  private forget(entry: Tracked): void {
    const entries = this.tracked.get(entry.userId);
    const i = entries ? entries.indexOf(entry) : -1;
    if (!entries || i < 0) return;
    entries.splice(i, 1);
    this.count--;
    if (entries.length === 0) this.tracked.delete(entry.userId);
  }

  start(): void {
    if (this.timer) return;
    this.timer = setInterval(() => void this.pingAll(), this.options.intervalMs);
    this.timer.unref();
  }

  stop(): void {
    this.stopped = true;
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    this.tracked.clear();
    this.count = 0;
  }

  /** One round: pings every live tracked binding (at most maxInFlight at once); a round still running skips the tick. */
  async pingAll(now = Date.now()): Promise<void> {
    if (this.running) return;
    this.running = true;
    try {
      const due: Tracked[] = [];
      for (const entries of [...this.tracked.values()]) {
        for (const entry of [...entries]) {
          if (entry.expiresAt <= now) this.forget(entry);
          else due.push(entry);
        }
      }
      await forEachConcurrently(due, this.maxInFlight, (entry) => this.pingOne(entry), () => this.stopped);
    } finally {
      this.running = false;
    }
  }

  private async pingOne(entry: Tracked): Promise<void> {
    const status = await this.probe(entry);
    if (pingAnswered(status)) {
      natKeepalivePings.inc({ result: 'answered' });
      entry.misses = 0;
      return;
    }
    natKeepalivePings.inc({ result: 'missed' });
    entry.misses++;
    if (entry.misses < this.missesBeforeDrop) return;
    this.forget(entry);
    // only if the binding is still the one pinged (the phone may have registered again over another flow)
    const binding = (await this.bindings.list(entry.userId)).find((b) => b.id === entry.bindingId);
    if (!binding || flowUri(binding.flow) !== flowUri(entry.flow)) return;
    if (await this.bindings.remove(entry.userId, entry.bindingId)) {
      natKeepaliveDrops.inc();
      this.options.log?.info({ userId: entry.userId, bindingId: entry.bindingId, flow: flowUri(entry.flow), misses: entry.misses }, 'phone stopped answering keep-alive OPTIONS: binding removed');
    }
  }

  /** One OPTIONS to the binding's contact through its flow; the final status, 0 for none within timeoutMs. */
  private probe(entry: Tracked): Promise<number> {
    return optionsProbe(this.srf, entry.contact, this.timeoutMs, {
      proxy: flowUri(entry.flow),
      headers: { From: `<sip:keepalive@${this.options.fromHost}>`, To: `<${entry.contact}>`, 'Max-Forwards': '1' },
    });
  }
}
