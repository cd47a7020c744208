import { describe, expect, it } from 'vitest';
import { commandFirstKey } from './redis-command-key.js';
import { keys } from './keys.js';

describe('commandFirstKey (Redis Cluster routing)', () => {
  it('scripts route by their first KEYS argument, or anywhere when they name none', () => {
    const user = keys.user('u1');
    expect(commandFirstKey(['EVALSHA', 'abc123', '4', user, keys.bindings('u1'), keys.nonceCount('u1', 'n'), keys.userBan('u1'), '1700000000000'])).toBe(user);
    expect(commandFirstKey(['EVAL', 'return 1', '1', 'dc:dialin-failed-at:id:42', '900000'])).toBe('dc:dialin-failed-at:id:42');
    expect(commandFirstKey(['evalsha', 'abc123', '0', 'not-a-key'])).toBeUndefined();
    expect(commandFirstKey(['EVAL', 'return 1', 'x'])).toBeUndefined();
  });

  it('key commands route by the key after the command name', () => {
    expect(commandFirstKey(['GET', 'dc:login:7401'])).toBe('dc:login:7401');
    expect(commandFirstKey(['HGETALL', keys.bindings('u1')])).toBe(keys.bindings('u1'));
    expect(commandFirstKey(['DEL', keys.userFailures('u1'), keys.userBan('u1')])).toBe(keys.userFailures('u1'));
    expect(commandFirstKey(['ZRANGE', 'dc:users', '-', '+', 'BYLEX', 'LIMIT', '0', '50'])).toBe('dc:users');
    expect(commandFirstKey(['PEXPIRE', 'dc:ipfails:1.2.3.4', '60000', 'NX'])).toBe('dc:ipfails:1.2.3.4');
  });

  it('commands without a key go to any node', () => {
    for (const args of [['PING'], ['PUBLISH', 'dc:events', '{}'], ['SCAN', '0', 'MATCH', 'dc:*'], ['FLUSHALL'], ['ping']]) {
      expect(commandFirstKey(args)).toBeUndefined();
    }
    expect(commandFirstKey([])).toBeUndefined();
  });

  it("a user's keys share one hash tag, so the scripts and DELs that touch several of them stay in one slot", () => {
    // the cluster spec's rule: the slot is hashed from the part between the first '{' and the next '}', when not empty
    const hashTag = (key: string): string => /^[^{]*\{([^}]+)\}/.exec(key)?.[1] ?? key;
    const id = '0b5c1f7e-2a4d-4f3e-9c1a-6d2e8f9a0b1c';
    const userKeys = [keys.user(id), keys.bindings(id), keys.nonceCount(id, 'nonce'), keys.userFailures(id), keys.userBan(id), keys.agentSession(id)];
    expect(userKeys.map(hashTag)).toEqual(userKeys.map(() => `u:${id}`));
  });
});
