import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { DialInIvr, type IvrPort, type LoginVerdict, type PromptName } from './ivr.js';
import { DtmfDeduplicator } from '../agents/dtmf-dedup.js';

const PROMPT_MS = 1000;
const TIMING = { firstDigitMs: 10_000, interDigitMs: 5_000, maxDigits: 20, attempts: 3 };

function fakePort(verdicts: (id: string, pin: string) => LoginVerdict) {
  const log: string[] = [];
  const checks: Array<[string, string]> = [];
  const port: IvrPort = {
    async play(prompt: PromptName) {
      log.push(`play ${prompt}`);
      return PROMPT_MS;
    },
    async stopPlaying() {
      log.push('stop');
    },
    async check(id, pin) {
      checks.push([id, pin]);
      return verdicts(id, pin);
    },
  };
  return { port, log, checks };
}

function type(ivr: DialInIvr, digits: string): void {
  for (const d of digits) ivr.digit(d);
}

describe('dial-in IVR', () => {
  beforeEach(() => vi.useFakeTimers());
  afterEach(() => vi.useRealTimers());

  it('welcome, ID, PIN, connected', async () => {
    const { port, log, checks } = fakePort((id, pin) => (id === '4242' && pin === '1234' ? 'ok' : 'invalid'));
    const ivr = new DialInIvr(port, TIMING);
    const outcome = ivr.run();
    await vi.advanceTimersByTimeAsync(2 * PROMPT_MS); // welcome, enter-id
    type(ivr, '4242#');
    await vi.advanceTimersByTimeAsync(PROMPT_MS);
    type(ivr, '1234#');
    await vi.advanceTimersByTimeAsync(2 * PROMPT_MS);
    await expect(outcome).resolves.toEqual({ kind: 'logged-in', id: '4242' });
    expect(log).toEqual(['play welcome', 'play enter-id', 'play enter-pin', 'play connected']);
    expect(checks).toEqual([['4242', '1234']]);
  });

  it('key-ahead: a digit during a prompt stops it; digits typed ahead fill the next entries', async () => {
    const { port, log, checks } = fakePort(() => 'ok');
    const ivr = new DialInIvr(port, TIMING);
    const outcome = ivr.run();
    await vi.advanceTimersByTimeAsync(100); // welcome is playing
    type(ivr, '77#55');
    await vi.advanceTimersByTimeAsync(10);
    type(ivr, '66#');
    await vi.advanceTimersByTimeAsync(2 * PROMPT_MS);
    await expect(outcome).resolves.toEqual({ kind: 'logged-in', id: '77' });
    expect(log).toEqual(['play welcome', 'stop', 'play connected']);
    expect(checks).toEqual([['77', '5566']]);
  });

  it('the PIN is asked even when the ID is empty; three failures end with goodbye', async () => {
    const { port, log, checks } = fakePort(() => 'invalid');
    const ivr = new DialInIvr(port, TIMING);
    const outcome = ivr.run();
    await vi.advanceTimersByTimeAsync(60_000 * 3);
    await expect(outcome).resolves.toEqual({ kind: 'ended', reason: 'attempts' });
    expect(checks).toEqual([['', ''], ['', ''], ['', '']]);
    expect(log.filter((l) => l === 'play enter-pin')).toHaveLength(3);
    expect(log.slice(-2)).toEqual(['play invalid', 'play goodbye']);
  });

  it('first-digit and inter-digit timeouts end an entry', async () => {
    const { port, checks } = fakePort(() => 'ok');
    const ivr = new DialInIvr(port, TIMING);
    const outcome = ivr.run();
    await vi.advanceTimersByTimeAsync(2 * PROMPT_MS);
    type(ivr, '12');
    await vi.advanceTimersByTimeAsync(TIMING.interDigitMs - 100);
    type(ivr, '3'); // restarts the inter-digit timer
    await vi.advanceTimersByTimeAsync(TIMING.interDigitMs + 10); // ID "123" by timeout
    await vi.advanceTimersByTimeAsync(PROMPT_MS + TIMING.firstDigitMs + 10); // PIN: nothing typed
    await vi.advanceTimersByTimeAsync(PROMPT_MS);
    await expect(outcome).resolves.toEqual({ kind: 'logged-in', id: '123' });
    expect(checks).toEqual([['123', '']]);
  });

  it('an entry stops at maxDigits', async () => {
    const { port, checks } = fakePort(() => 'invalid');
    const ivr = new DialInIvr(port, { ...TIMING, attempts: 1 });
    const outcome = ivr.run();
    await vi.advanceTimersByTimeAsync(2 * PROMPT_MS);
    type(ivr, '1'.repeat(25));
    await vi.advanceTimersByTimeAsync(60_000);
    await outcome;
    expect(checks[0]![0]).toBe('1'.repeat(20));
    expect(checks[0]![1]).toBe('1'.repeat(5));
  });

  it('refusals play their own prompt then goodbye', async () => {
    for (const [verdict, prompt, reason] of [
      ['locked', 'locked', 'locked'],
      ['inactive', 'refused-inactive', 'refused'],
      ['wrong-method', 'refused-method', 'refused'],
      ['max-sessions', 'refused-sessions', 'refused'],
    ] as const) {
      const { port, log } = fakePort(() => verdict);
      const ivr = new DialInIvr(port, TIMING);
      const outcome = ivr.run();
      type(ivr, '1#2#');
      await vi.advanceTimersByTimeAsync(10 * PROMPT_MS);
      await expect(outcome).resolves.toEqual({ kind: 'ended', reason });
      expect(log.slice(-2)).toEqual([`play ${prompt}`, 'play goodbye']);
    }
  });

  it('a hang-up ends the run at once, mid-entry', async () => {
    const { port, checks } = fakePort(() => 'ok');
    const ivr = new DialInIvr(port, TIMING);
    const outcome = ivr.run();
    await vi.advanceTimersByTimeAsync(2 * PROMPT_MS);
    type(ivr, '12');
    ivr.cancel();
    await expect(outcome).resolves.toEqual({ kind: 'ended', reason: 'hangup' });
    expect(checks).toEqual([]);
  });

  it('ignores what is not a DTMF digit', async () => {
    const { port, checks } = fakePort(() => 'invalid');
    const ivr = new DialInIvr(port, { ...TIMING, attempts: 1 });
    const outcome = ivr.run();
    for (const junk of ['x', '12', '', '\n', 'E']) ivr.digit(junk);
    type(ivr, '9#8#');
    await vi.advanceTimersByTimeAsync(10 * PROMPT_MS);
    await outcome;
    expect(checks).toEqual([['9', '8']]);
  });
});

describe('DTMF de-duplication', () => {
  it('counts a press sent two ways once, and real repeated presses each time', () => {
    let now = 0;
    const dedup = new DtmfDeduplicator({ windowMs: 400, sameSourceMs: 60, now: () => now });
    expect(dedup.accept('5', 'info')).toBe(true);
    now = 150;
    expect(dedup.accept('5', 'rfc4733')).toBe(false); // same press, second way
    now = 700;
    expect(dedup.accept('5', 'rfc4733')).toBe(true); // a new press
    now = 720;
    expect(dedup.accept('5', 'rfc4733')).toBe(false); // reported twice by the engine
    now = 900;
    expect(dedup.accept('5', 'rfc4733')).toBe(true); // same source, a real second press
    now = 910;
    expect(dedup.accept('6', 'info')).toBe(true); // another digit always counts
  });

  it('defaults: rtpengine\'s second report of an RFC 4733 event (20-41 ms later, measured) is dropped, a key pressed again 220 ms later is not', () => {
    let now = 0;
    const dedup = new DtmfDeduplicator({ now: () => now });
    expect(dedup.accept('1', 'rfc4733')).toBe(true);
    now = 41;
    expect(dedup.accept('1', 'rfc4733')).toBe(false);
    now = 220;
    expect(dedup.accept('1', 'rfc4733')).toBe(true);
    now = 260;
    expect(dedup.accept('1', 'rfc4733')).toBe(false);
  });
});
