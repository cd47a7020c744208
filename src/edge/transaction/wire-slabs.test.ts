import { describe, expect, it } from 'vitest';
import { WireSlabs } from './wire-slabs.js';

describe('WireSlabs', () => {
  it('keeps an exact copy, unaffected by later changes to the original', () => {
    const slabs = new WireSlabs(1024);
    const original = Buffer.from('SIP/2.0 200 OK\r\nContent-Length: 0\r\n\r\n', 'latin1');
    const kept = slabs.keep(original);
    original.fill(0);
    expect(kept.toString('latin1')).toBe('SIP/2.0 200 OK\r\nContent-Length: 0\r\n\r\n');
  });

  it('packs records into one slab and starts another when it is full', () => {
    const slabs = new WireSlabs(160);
    const a = slabs.keep(Buffer.alloc(10, 'a'));
    const b = slabs.keep(Buffer.alloc(10, 'b'));
    expect(b.buffer).toBe(a.buffer);
    expect(b.byteOffset).toBe(a.byteOffset + 10);
    // 16 records of 10 bytes fill the 160-byte slab: the 17th starts a new one
    const many = Array.from({ length: 15 }, (_, i) => slabs.keep(Buffer.alloc(10, String(i % 10))));
    expect(many.at(-1)!.buffer).not.toBe(a.buffer);
    expect(a.toString()).toBe('a'.repeat(10));
    expect(b.toString()).toBe('b'.repeat(10));
    expect(many.map((m) => m.toString()[0]).join('')).toBe('012345678901234');
  });

  it('gives bytes larger than a sixteenth of a slab a buffer of their own', () => {
    const slabs = new WireSlabs(160);
    const small = slabs.keep(Buffer.alloc(5, 's'));
    const large = slabs.keep(Buffer.alloc(11, 'L'));
    expect(large.buffer).not.toBe(small.buffer);
    expect(large.toString()).toBe('L'.repeat(11));
  });
});
