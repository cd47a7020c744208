/**
 * Which key a Redis command is about, for routing it to the master of that key's slot in a
 * Redis Cluster (https://redis.io/docs/latest/operate/oss_and_stack/reference/cluster-spec/#key-distribution-model).
 * Every command the core sends names at most one slot: several keys of one command share the
 * user's hash tag `{u:<id>}` (keys.ts), so the first key decides.
 */

/** Commands that name no key: any node answers them (PUBLISH reaches every node's subscribers). */
const KEYLESS = new Set(['PING', 'PUBLISH', 'SCAN', 'FLUSHALL', 'FLUSHDB', 'TIME', 'INFO', 'ROLE', 'CLUSTER', 'SCRIPT', 'DBSIZE', 'KEYS']);

/** Scripts: `EVAL script numkeys key... arg...` (also EVALSHA and the _RO forms). */
const SCRIPT_RUNNERS = new Set(['EVAL', 'EVALSHA', 'EVAL_RO', 'EVALSHA_RO']);

/** The key a command's slot is taken from; undefined for a command that names none. */
export function commandFirstKey(args: readonly string[]): string | undefined {
  const name = args[0]?.toUpperCase();
  if (name === undefined || KEYLESS.has(name)) return undefined;
  if (SCRIPT_RUNNERS.has(name)) {
    const numkeys = Number(args[2]);
    return Number.isInteger(numkeys) && numkeys > 0 ? args[3] : undefined;
  }
  // every other command the core sends (GET, SET, DEL, HSET, ZADD, INCR, PEXPIRE, ...) names its key first
  return args[1];
}
