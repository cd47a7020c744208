/**
 * Fuzz-ish robustness: random mutations, random bytes and truncations of valid messages must never throw, never
 * hit the parser's internal safety net ("unparseable ..."), and always give a well-shaped result. Messages that do
 * parse must survive serialise + parse again. Seeded PRNG, so a failure is reproducible.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import {
  parseMessage, parseNameAddr, parseUri, parseVia, parseCSeq, splitHeaderValues, StreamFramer, type ParseResult,
} from './index.js';
import { RFC4475_DIR } from '../../../sip-tests/fixtures/shared.js';

function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const DIR = RFC4475_DIR;
const seeds: Buffer[] = readdirSync(DIR).filter((f) => f.endsWith('.dat')).map((f) => readFileSync(DIR + f));
const INTERESTING = ['\r\n', '\r\n ', ':', ';', ',', '"', '\\', '<', '>', '@', '[', ']', '%', '=', ' ', '\t', '\0',
  'Content-Length: ', 'Via: ', 'SIP/2.0', '4294967296', '-1', '\r\n\r\n', 'l: 9999', 'ÿ', '大'];

function checkShape(r: ParseResult): void {
  if (r.ok) {
    expect(r.message).toBeDefined();
    // what parsed must serialise and parse again (the serialiser never produces something we reject)
    const again = parseMessage(r.message.serialise(), undefined, { requireMandatoryHeaders: false });
    if (!again.ok) throw new Error(`re-parse failed: ${again.error}\n${r.message.serialise().toString('latin1')}`);
    expect(Buffer.compare(again.message.body, r.message.body)).toBe(0);
    // accessors never throw
    void r.message.callId; void r.message.fromTag; void r.message.toTag; void r.message.cseq; void r.message.topViaBranch;
  } else {
    expect(typeof r.error).toBe('string');
    expect(r.error).not.toMatch(/unparseable/);
    if (r.status !== undefined) {
      expect([400, 505]).toContain(r.status);
      expect(r.message).toBeDefined();
    }
  }
}

function mutate(rand: () => number, input: Buffer): Buffer {
  let buf = Buffer.from(input);
  const edits = 1 + Math.floor(rand() * 6);
  for (let e = 0; e < edits; e++) {
    const pos = Math.floor(rand() * (buf.length + 1));
    const kind = rand();
    if (kind < 0.25 && buf.length > 0) {
      buf[Math.min(pos, buf.length - 1)] = Math.floor(rand() * 256);                         // flip a byte
    } else if (kind < 0.45) {
      const cut = Math.floor(rand() * 20);
      buf = Buffer.concat([buf.subarray(0, pos), buf.subarray(pos + cut)]);                  // delete a run
    } else if (kind < 0.8) {
      const token = INTERESTING[Math.floor(rand() * INTERESTING.length)];
      buf = Buffer.concat([buf.subarray(0, pos), Buffer.from(token), buf.subarray(pos)]);   // insert a token
    } else {
      const len = Math.floor(rand() * 40);
      const from = Math.floor(rand() * Math.max(1, buf.length - len));
      buf = Buffer.concat([buf.subarray(0, pos), buf.subarray(from, from + len), buf.subarray(pos)]);  // duplicate
    }
  }
  return buf;
}

describe('fuzz', () => {
  it('10k random mutations of valid and invalid messages', () => {
    const rand = mulberry32(4475);
    for (let i = 0; i < 10000; i++) {
      const seed = seeds[i % seeds.length];
      const input = mutate(rand, seed);
      let r: ParseResult;
      try {
        r = parseMessage(input);
      } catch (err) {
        throw new Error(`threw on iteration ${i}: ${String(err)}`);
      }
      try {
        checkShape(r);
      } catch (err) {
        throw new Error(`iteration ${i}: ${String(err)}\ninput: ${JSON.stringify(input.toString('latin1'))}`);
      }
    }
  });

  it('5k random byte strings (binary and SIP-ish alphabet)', () => {
    const rand = mulberry32(3261);
    const alphabet = Buffer.from('SIP/2.0 INVITE sip:@;,<>"\\\r\n\t:=%[]0123456789abcXYZ-.');
    for (let i = 0; i < 5000; i++) {
      const len = Math.floor(rand() * 600);
      const buf = Buffer.alloc(len);
      const sipish = rand() < 0.6;
      for (let k = 0; k < len; k++) buf[k] = sipish ? alphabet[Math.floor(rand() * alphabet.length)] : Math.floor(rand() * 256);
      const r = parseMessage(buf);
      checkShape(r);
      // the header grammars on their own
      const text = buf.toString('utf8');
      for (const fn of [parseUri, parseNameAddr, parseVia, parseCSeq, splitHeaderValues]) expect(() => fn(text)).not.toThrow();
    }
  });

  it('every truncation of every torture message', () => {
    let count = 0;
    for (const seed of seeds) {
      const step = Math.max(1, Math.floor(seed.length / 120));
      for (let n = 0; n <= seed.length; n += step) {
        checkShape(parseMessage(seed.subarray(0, n)));
        count++;
      }
    }
    expect(count).toBeGreaterThan(4000);
  });

  it('stream framer on random chunkings of mutated streams never throws and stays bounded', () => {
    const rand = mulberry32(5626);
    for (let i = 0; i < 1500; i++) {
      const parts: Buffer[] = [];
      const n = 1 + Math.floor(rand() * 4);
      for (let k = 0; k < n; k++) {
        const seed = seeds[Math.floor(rand() * seeds.length)];
        parts.push(rand() < 0.5 ? seed : mutate(rand, seed));
        if (rand() < 0.2) parts.push(Buffer.from('\r\n\r\n'));
      }
      const stream = Buffer.concat(parts);
      const framer = new StreamFramer({ maxMessageBytes: 4096 });
      let pos = 0;
      while (pos < stream.length) {
        const size = 1 + Math.floor(rand() * 300);
        const out = framer.push(stream.subarray(pos, pos + size));
        for (const r of out) {
          if ('fatal' in r) expect(r.fatal).not.toMatch(/unparseable/);
          else if ('ok' in r) checkShape(r);
        }
        expect(framer.pendingBytes).toBeLessThanOrEqual(4096 + 300);
        pos += size;
      }
    }
  });
});
