/**
 * The thin Redis surface every state module here uses: raw commands (node-redis pipelines
 * commands issued in the same tick onto one socket write, so `Promise.all` of several sends is
 * one round trip), Lua scripts by SHA with EVAL fallback, and pub/sub on a duplicated
 * connection. Each command's latency lands in dialcore_redis_command_duration_seconds.
 *
 * Commands are sent with node-redis's per-command timeout off (`{ timeout: 0 }`): node-redis 6
 * otherwise arms a timer-backed AbortSignal (AbortSignal.timeout, 5 s default) for every
 * command, a measurable cost on the REGISTER hot path. A lost connection still fails the
 * pending commands (node-redis rejects its queue when the socket goes); a Redis that hangs
 * with the socket open is bounded by the client's `commandsQueueMaxLength`, set where the
 * client is created.
 */
import { createHash } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import { redisCommandDuration } from '../observability/metrics.js';

/** Per-command options for node-redis: no timer-backed AbortSignal per command (see above). */
const COMMAND_OPTIONS = Object.freeze({ timeout: 0 });

/** One connection's command surface (a node-redis client, or one node of a cluster). */
export interface NodeRedisCommandClient {
  sendCommand(args: string[], options?: { timeout?: number }): Promise<unknown>;
}

/** The part of a node-redis v5+/v6 client we use (a `createClient()` result satisfies it). */
export interface NodeRedisClient extends NodeRedisCommandClient {
  duplicate(): NodeRedisSubscriber;
  /**
   * Redis Cluster only: a client for each master. Keys are spread over the masters, so what
   * looks at all keys (SCAN) or at Redis's health (PING) visits each. Absent: one server (or
   * the Sentinel group's master) holds every key.
   */
  masters?(): Promise<NodeRedisCommandClient[]>;
}

type DurationObserver = { observe(seconds: number): void };

export interface NodeRedisSubscriber {
  connect(): Promise<unknown>;
  subscribe(channel: string, listener: (message: string, channel: string) => void): Promise<unknown>;
  close?: () => Promise<unknown>;
  quit?: () => Promise<unknown>;
  on(event: 'error' | 'ready', listener: (...args: unknown[]) => void): unknown;
}

export class Redis {
  /** Histogram children by command label (prom-client hashes the labels on every observe otherwise). */
  private readonly durations = new Map<string, DurationObserver>();

  constructor(readonly client: NodeRedisClient) {}

  /** Sends one command; the reply as node-redis returns it (strings, numbers, arrays, null). */
  send(args: string[], label?: string): Promise<unknown> {
    return this.sendTo(this.client, args, label);
  }

  /** Keys matching a SCAN MATCH pattern, from every master of a cluster. A pattern, not a listing: SCAN may yield a key twice. */
  async *scanKeys(pattern: string): AsyncGenerator<string> {
    for (const node of await this.nodes()) {
      let cursor = '0';
      do {
        const reply = await this.sendTo(node, ['SCAN', cursor, 'MATCH', pattern, 'COUNT', '500']);
        const [next, found] = Array.isArray(reply) ? reply : [];
        cursor = stringReply(next) ?? '0';
        for (const raw of Array.isArray(found) ? found : []) {
          const key = stringReply(raw);
          if (key !== null) yield key;
        }
      } while (cursor !== '0');
    }
  }

  /** True when Redis answers PING: every master of a cluster, since each holds a share of the keys. */
  async ping(): Promise<boolean> {
    const nodes = await this.nodes();
    const replies = await Promise.all(nodes.map((node) => this.sendTo(node, ['PING'])));
    return nodes.length > 0 && replies.every((reply) => reply === 'PONG');
  }

  private async nodes(): Promise<NodeRedisCommandClient[]> {
    return this.client.masters ? this.client.masters() : [this.client];
  }

  private sendTo(node: NodeRedisCommandClient, args: string[], label?: string): Promise<unknown> {
    const observer = this.durationOf(label ?? args[0] ?? '?');
    const started = performance.now();
    let sent: Promise<unknown>;
    try {
      sent = node.sendCommand(args, COMMAND_OPTIONS);
    } catch (err) {
      return Promise.reject(err instanceof Error ? err : new Error(String(err)));
    }
    return sent.then(
      (reply) => {
        observer.observe((performance.now() - started) / 1000);
        return reply;
      },
      (err: unknown) => {
        observer.observe((performance.now() - started) / 1000);
        throw err;
      },
    );
  }

  private durationOf(label: string): DurationObserver {
    let observer = this.durations.get(label);
    if (!observer) {
      // labels come from our own code (command names, script names): a small, fixed set
      observer = redisCommandDuration.labels({ command: label.toUpperCase() });
      this.durations.set(label, observer);
    }
    return observer;
  }

  /** Runs a Lua script by SHA; loads it with EVAL when the server does not know it yet. */
  async runScript(script: LuaScript, keys: string[], args: string[]): Promise<unknown> {
    const tail = [String(keys.length), ...keys, ...args];
    try {
      return await this.send(['EVALSHA', script.sha, ...tail], script.name);
    } catch (err) {
      if (!(err instanceof Error) || !err.message.startsWith('NOSCRIPT')) throw err;
      return this.send(['EVAL', script.source, ...tail], script.name);
    }
  }

  async publish(channel: string, message: string): Promise<void> {
    await this.send(['PUBLISH', channel, message]);
  }

  /**
   * Subscribes on a dedicated connection. `onResubscribed` runs each time the connection comes
   * back (messages may have been missed meanwhile: callers drop caches there).
   */
  async subscribe(
    channel: string,
    listener: (message: string) => void,
    onResubscribed?: () => void,
  ): Promise<{ close(): Promise<void> }> {
    const subscriber = this.client.duplicate();
    subscriber.on('error', () => {
      /* reconnects by itself; a listener keeps node from crashing on 'error' */
    });
    let first = true;
    subscriber.on('ready', () => {
      if (first) first = false;
      else onResubscribed?.();
    });
    await subscriber.connect();
    await subscriber.subscribe(channel, (message) => listener(message));
    return {
      async close() {
        if (subscriber.close) await subscriber.close();
        else if (subscriber.quit) await subscriber.quit();
      },
    };
  }
}

export class LuaScript {
  readonly sha: string;
  constructor(
    readonly name: string,
    readonly source: string,
  ) {
    this.sha = createHash('sha1').update(source).digest('hex');
  }
}

/** HGETALL replies come back as a flat array (RESP2) or an object (RESP3): one shape out. */
export function hashReply(reply: unknown): Record<string, string> {
  const out: Record<string, string> = {};
  if (Array.isArray(reply)) {
    for (let i = 0; i + 1 < reply.length; i += 2) out[String(reply[i])] = String(reply[i + 1]);
  } else if (reply instanceof Map) {
    for (const [k, v] of reply) out[String(k)] = String(v);
  } else if (reply !== null && typeof reply === 'object') {
    for (const [k, v] of Object.entries(reply)) out[k] = String(v);
  }
  return out;
}

export function stringReply(reply: unknown): string | null {
  if (reply === null || reply === undefined) return null;
  if (typeof reply === 'string') return reply;
  if (Buffer.isBuffer(reply)) return reply.toString('utf8');
  if (typeof reply === 'number') return String(reply);
  return null;
}

export function numberReply(reply: unknown): number {
  if (typeof reply === 'number') return reply;
  const text = stringReply(reply);
  const n = text === null ? Number.NaN : Number(text);
  return Number.isFinite(n) ? n : 0;
}
