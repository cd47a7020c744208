import { describe, expect, it } from 'vitest';
import { heapGrowingPercentGiven } from './gc-tuning.js';

describe('GC tuning', () => {
  it("leaves V8's heap growth alone when node was given its own, on the command line or in NODE_OPTIONS", () => {
    expect(heapGrowingPercentGiven([], '')).toBe(false);
    expect(heapGrowingPercentGiven(['--expose-gc', '--max-old-space-size=512'], '--enable-source-maps')).toBe(false);
    expect(heapGrowingPercentGiven(['--heap-growing-percent=50'], '')).toBe(true);
    expect(heapGrowingPercentGiven([], '--enable-source-maps --heap_growing_percent=100')).toBe(true);
    expect(heapGrowingPercentGiven(['--heap-growing-percentage=5'], '')).toBe(false);
  });
});
