/**
 * Bindings registered over a connection (WebSocket, TCP, TLS) live only as long as it
 * (RFC 7118 section 5, RFC 5626 flows): when the SIP server reports the connection closed,
 * the bindings that came over it are removed. Each core instance remembers the flows of the
 * REGISTERs it handled; the flow-closed notice goes to every instance connected to that edge.
 */
import type { BindingStore, RegisteredContact } from './binding-store.js';
import type { Logger } from '../observability/logger.js';

const CONNECTION_TRANSPORTS = new Set(['ws', 'wss', 'tcp', 'tls']);

export function flowKey(transport: string, address: string, port: number): string {
  return `${transport.toLowerCase()}|${address}|${port}`;
}

export class FlowBindings {
  /** flow -> "userId\nbindingId" entries; bounded: the oldest flows are forgotten first */
  private readonly byFlow = new Map<string, Set<string>>();

  constructor(private readonly bindings: BindingStore, private readonly maxFlows = 200_000, private readonly log?: Logger) {}

  get size(): number {
    return this.byFlow.size;
  }

  /** Remember the connection flows of a user's current bindings (after a successful REGISTER). */
  track(bindings: ReadonlyArray<Pick<RegisteredContact, 'id' | 'userId' | 'flow'>>): void {
    for (const b of bindings) {
      if (!CONNECTION_TRANSPORTS.has(b.flow.transport.toLowerCase())) continue;
      const key = flowKey(b.flow.transport, b.flow.address, b.flow.port);
      let set = this.byFlow.get(key);
      if (!set) {
        if (this.byFlow.size >= this.maxFlows) {
          const oldest = this.byFlow.keys().next().value;
          if (oldest !== undefined) this.byFlow.delete(oldest);
        }
        set = new Set();
        this.byFlow.set(key, set);
      }
      set.add(`${b.userId}\n${b.id}`);
    }
  }

  /** The connection flows a user's devices registered over (for closing them on a kick). */
  flowsOf(userId: string): Array<{ transport: string; address: string; port: number }> {
    const out: Array<{ transport: string; address: string; port: number }> = [];
    for (const [key, entries] of this.byFlow) {
      for (const entry of entries) {
        if (entry.split('\n')[0] !== userId) continue;
        const [transport, address, port] = key.split('|');
        out.push({ transport, address, port: Number(port) });
        break;
      }
    }
    return out;
  }

  /** The connection is gone: remove the bindings that came over it. Returns how many were removed. */
  async flowClosed(transport: string, address: string, port: number): Promise<number> {
    const keys = [flowKey(transport, address, port)];
    // a WSS connection may be named ws in URIs (RFC 7118 5.2): try both
    if (transport === 'ws') keys.push(flowKey('wss', address, port));
    if (transport === 'wss') keys.push(flowKey('ws', address, port));
    let removed = 0;
    for (const key of keys) {
      const entries = this.byFlow.get(key);
      if (!entries) continue;
      this.byFlow.delete(key);
      for (const entry of entries) {
        const [userId, bindingId] = entry.split('\n');
        const current = await this.bindings.list(userId);
        const binding = current.find((b) => b.id === bindingId);
        // only if the binding still rides on this very flow (it may have re-registered over a new one)
        if (binding && flowKey(binding.flow.transport, binding.flow.address, binding.flow.port) === key) {
          if (await this.bindings.remove(userId, bindingId)) removed++;
        }
      }
    }
    if (removed) this.log?.info({ transport, address, port, removed }, 'connection closed: bindings removed');
    return removed;
  }
}
