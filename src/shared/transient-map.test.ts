import { describe, expect, it } from 'vitest';
import { measureInGcFixture } from './testing.js';
import { TransientMap } from './transient-map.js';

describe('TransientMap', () => {
  it('gets, sets, replaces and deletes like a Map', () => {
    const map = new TransientMap<string, { n: number }>();
    const one = { n: 1 };
    expect(map.set('a', one)).toBe(map);
    map.set('b', { n: 2 });
    expect(map.size).toBe(2);
    expect(map.get('a')).toBe(one);
    expect(map.has('a')).toBe(true);
    map.set('a', { n: 3 });
    expect(map.get('a')?.n).toBe(3);
    expect(map.size).toBe(2);
    expect(map.delete('a')).toBe(true);
    expect(map.delete('a')).toBe(false);
    expect(map.get('a')).toBeUndefined();
    expect(map.has('a')).toBe(false);
    expect(map.size).toBe(1);
  });

  it('walks a snapshot of its values, which may be deleted from meanwhile', () => {
    const map = new TransientMap<number, number>();
    for (let i = 0; i < 5; i++) map.set(i, i * 10);
    const seen: number[] = [];
    for (const value of map.valuesSnapshot()) {
      seen.push(value);
      map.delete(value / 10);
    }
    expect(seen).toEqual([0, 10, 20, 30, 40]);
    expect(map.size).toBe(0);
    map.set(7, 70);
    map.clear();
    expect(map.size).toBe(0);
    expect(map.get(7)).toBeUndefined();
  });

  // The reason it exists: with a plain Map, V8's replaced hash tables keep a deleted value alive through
  // young-generation GCs until it is promoted. 40 values of ~0.4 MB each go through the map; with a plain Map all
  // of them are promoted (measured 16.7-16.9 MB), with TransientMap about 0.6 MB (the boxes and keys).
  it('lets go of a deleted value at the next young-generation GC, where a plain Map has it promoted', () => {
    const fixture = new URL('./transient-map.gc-fixture.ts', import.meta.url);
    const oldGenerationGrowth = (kind: string): number => measureInGcFixture(fixture, kind);
    const plain = oldGenerationGrowth('plain');
    const transient = oldGenerationGrowth('transient');
    // the hazard is real on this V8 (if a newer V8 fixes it, this line says so and the class can go)
    expect(plain).toBeGreaterThan(4_000_000);
    expect(transient).toBeLessThan(plain / 4);
  }, 30_000);
});
