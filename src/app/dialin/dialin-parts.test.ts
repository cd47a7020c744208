/**
 * The dial-in parts around the IVR, on a real Redis and the real espeak-ng/sox: rtpengine DTMF
 * datagrams parsed and routed to the instance that owns the call, lockout counting, prompt files.
 */
import { createSocket } from 'node:dgram';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { useTestRedis, waitFor, type TestRedis } from '../users/testing.js';
import { DtmfEventRouter, parseDtmfLog, type RtpengineDtmfEvent } from './dtmf-events.js';
import { DialInLockouts } from './lockout.js';
import { DialInPrompts, promptLanguage } from './prompts.js';
import { PROMPT_NAMES } from './ivr.js';

let redis: TestRedis;
useTestRedis((started) => (redis = started));

describe('rtpengine DTMF log datagrams', () => {
  it('parses what rtpengine sends, refuses anything else', () => {
    const datagram = '{"callid":"dc-1","source_tag":"abc","tags":["abc","def"],"type":"DTMF","timestamp":1,"source_ip":"127.0.0.1","event":11,"duration":160,"volume":10}';
    expect(parseDtmfLog(datagram)).toEqual({ callId: 'dc-1', sourceTag: 'abc', digit: '#', durationMs: 160 });
    expect(parseDtmfLog('{"callid":"dc-1","source_tag":"a","event":10}')?.digit).toBe('*');
    expect(parseDtmfLog('{"callid":"dc-1","source_tag":"a","event":15}')?.digit).toBe('D');
    for (const bad of ['', 'not json', '[]', 'null', '{"callid":"x","source_tag":"a","event":16}', '{"callid":"x","source_tag":"a","event":1.5}',
      '{"callid":"","source_tag":"a","event":1}', '{"callid":"x","source_tag":"a","event":1,"type":"other"}', `{"callid":"${'x'.repeat(300)}","source_tag":"a","event":1}`,
      `{"callid":"x","source_tag":"a","event":1,"pad":"${'x'.repeat(5000)}"}`]) {
      expect(parseDtmfLog(bad), bad.slice(0, 60)).toBeNull();
    }
  });

  it('an event received by one instance reaches the instance that owns the call', async () => {
    const [a, b] = [new DtmfEventRouter(await redis.connect(), 'instance-a'), new DtmfEventRouter(await redis.connect(), 'instance-b')];
    await a.start({ host: '127.0.0.1', port: 0 }); // receives rtpengine's datagrams
    await b.start(null); // owns the call
    const got: RtpengineDtmfEvent[] = [];
    await b.listen('dc-owned-by-b', (event) => got.push(event));
    const sender = createSocket('udp4');
    const send = (text: string) => new Promise<void>((resolve) => sender.send(text, a.address()!.port, '127.0.0.1', () => resolve()));
    try {
      await send('{"callid":"dc-owned-by-b","source_tag":"t","event":7,"duration":100}');
      await send('{"callid":"dc-nobody","source_tag":"t","event":1,"duration":100}');
      await waitFor(() => got.length === 1);
      expect(got[0]).toMatchObject({ callId: 'dc-owned-by-b', digit: '7' });
      await b.unlisten('dc-owned-by-b');
      expect(await (await redis.connect()).send(['KEYS', 'dc:dialin-call:*'])).toEqual([]);
    } finally {
      sender.close();
      await a.stop();
      await b.stop();
    }
  });
});

describe('dial-in lockouts', () => {
  it('counts failures per ID and per caller number, locks at the limit, lists and clears', async () => {
    const lockouts = new DialInLockouts(await redis.connect(), { failures: 3, windowSeconds: 60 });
    await lockouts.recordFailure('1234', '+447700900001');
    await lockouts.recordFailure('1234', '+447700900002');
    expect(await lockouts.isLocked('1234', null)).toBe(false);
    await lockouts.recordFailure('1234', null);
    expect(await lockouts.isLocked('1234', null)).toBe(true);
    expect(await lockouts.isLocked('9999', '+447700900001')).toBe(false);
    const listed = await lockouts.list();
    expect(listed).toEqual([{ kind: 'id', value: '1234', failures: 3, expiresInSeconds: expect.any(Number) }]);
    expect(listed[0]!.expiresInSeconds).toBeGreaterThan(50);
    expect(await lockouts.clear('id', '1234')).toBe(true);
    expect(await lockouts.isLocked('1234', null)).toBe(false);
    expect(await lockouts.clear('id', '1234')).toBe(false);
    expect(await lockouts.clear('caller', 'a*b?[')).toBe(false); // not a value a key is made of
  });

  it('the window slides: failures count while they are younger than the window, not from a fixed start', async () => {
    const client = await redis.connect();
    const lockouts = new DialInLockouts(client, { failures: 3, windowSeconds: 2 });
    const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
    await lockouts.recordFailure('5150', null); // t = 0
    await sleep(1200);
    await lockouts.recordFailure('5150', null); // t = 1.2 s
    await lockouts.recordFailure('5150', null);
    expect(await lockouts.isLocked('5150', null), 'three failures within 2 s').toBe(true);
    expect((await lockouts.list())[0]).toMatchObject({ kind: 'id', value: '5150', failures: 3, expiresInSeconds: 1 });
    await sleep(1000); // t = 2.2 s: the first failure left the window, two remain
    expect(await lockouts.isLocked('5150', null)).toBe(false);
    expect(await lockouts.list()).toEqual([]);
    // a fixed window from the first failure would have restarted at t = 2 s with one failure here
    await lockouts.recordFailure('5150', null);
    expect(await lockouts.isLocked('5150', null), 'three failures within the last 2 s').toBe(true);
    // bounded: no more entries than the limit are kept, and the set expires with the window
    for (let i = 0; i < 20; i++) await lockouts.recordFailure('5150', null);
    const key = 'dc:dialin-failed-at:id:5150';
    expect(await client.send(['ZCARD', key])).toBe(3);
    const ttl = Number(await client.send(['PTTL', key]));
    expect(ttl).toBeGreaterThan(0);
    expect(ttl).toBeLessThanOrEqual(2000);
    await sleep(2100);
    expect(await client.send(['EXISTS', key])).toBe(0);
  });
});

describe('dial-in prompts', () => {
  const hasSpeech = (() => {
    try {
      execFileSync('espeak-ng', ['--version']);
      execFileSync('sox', ['--version']);
      return true;
    } catch {
      return false;
    }
  })();

  it.skipIf(!hasSpeech)('speaks every prompt into 8 kHz 16-bit mono WAV files, per language', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'dialcore-prompts-test-'));
    try {
      const prompts = await DialInPrompts.create(dir, 'en');
      for (const name of PROMPT_NAMES) {
        const file = prompts.file(name);
        const wav = readFileSync(file.path);
        expect(wav.toString('ascii', 0, 4)).toBe('RIFF');
        expect([wav.readUInt16LE(22), wav.readUInt32LE(24), wav.readUInt16LE(34)], name).toEqual([1, 8000, 16]);
        expect(file.durationMs, name).toBeGreaterThan(300);
      }
      // another language: the default is played until it is made
      expect(prompts.file('welcome', 'fr-FR').path).toMatch(/en-welcome/);
      await prompts.ensure('fr');
      expect(prompts.file('welcome', 'fr-FR').path).toMatch(/fr-welcome/);
      expect(promptLanguage('xx')).toBeNull();
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('tone prompts when speech is off', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'dialcore-prompts-test-'));
    try {
      const prompts = await DialInPrompts.create(dir, 'en', undefined, 'tones');
      expect(prompts.file('goodbye').path).toMatch(/tones-goodbye/);
      expect(prompts.file('goodbye').durationMs).toBeGreaterThan(300);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
