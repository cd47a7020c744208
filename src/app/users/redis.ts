/**
 * The thin Redis surface every state module here uses: raw commands (node-redis pipelines
 * commands issued in the same tick onto one socket write, so `Promise.all` of several sends is
 * one round trip), Lua scripts by SHA with EVAL fallback, and pub/sub on a duplicated
 * connection. Each command's latency lands in dialcore_redis_command_duration_seconds.
 */
import { createHash } from 'node:crypto';
import { redisCommandDuration } from '../observability/metrics.js';

/** The part of a node-redis v5+/v6 client we use (a `createClient()` result satisfies it). */
export interface NodeRedisClient {
  sendCommand(args: string[]): Promise<unknown>;
  duplicate(): NodeRedisSubscriber;
}

export interface NodeRedisSubscriber {
  connect(): Promise<unknown>;
  subscribe(channel: string, listener: (message: string, channel: string) => void): Promise<unknown>;
  close?: () => Promise<unknown>;
  quit?: () => Promise<unknown>;
  on(event: 'error' | 'ready', listener: (...args: unknown[]) => void): unknown;
}

export class Redis {
  constructor(readonly client: NodeRedisClient) {}

  /** Sends one command; the reply as node-redis returns it (strings, numbers, arrays, null). */
  async send(args: string[], label?: string): Promise<unknown> {
    const stop = redisCommandDuration.startTimer({ command: label ?? (args[0] ?? '?').toUpperCase() });
    try {
      return await this.client.sendCommand(args);
    } finally {
      stop();
    }
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
