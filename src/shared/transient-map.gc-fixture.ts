/**
 * Run by transient-map.test.ts as `node --expose-gc --import tsx <this> plain|transient`: a long-lived map (its
 * hash table already in the old generation) holds a large young value across rehashes caused by other entries
 * coming and going, then the value is deleted; only young-generation GCs run. Prints how much the old generation
 * grew, in bytes (what the value and its graph cost when something keeps them alive through the scavenges).
 */
import { getHeapSpaceStatistics } from 'node:v8';
import { TransientMap } from './transient-map.js';

type Gc = (options?: { type: 'minor' | 'major' }) => void;
const gc = (globalThis as { gc?: Gc }).gc;
if (gc === undefined) throw new Error('run with node --expose-gc');

const kind = process.argv[2];
const map: { set(k: string, v: object): unknown; delete(k: string): unknown } = kind === 'plain' ? new Map<string, object>() : new TransientMap<string, object>();
map.set('warm-up', {});
gc();
gc();
map.delete('warm-up');

const oldSpaceUsed = (): number => getHeapSpaceStatistics().find((s) => s.space_name === 'old_space')?.space_used_size ?? 0;
const before = oldSpaceUsed();
for (let round = 0; round < 40; round++) {
  map.set('request', Array.from({ length: 10_000 }, (_, i) => ({ i })));
  for (let i = 0; i < 300; i++) {
    map.set(`other-${i}`, {});
    map.delete(`other-${i}`);
  }
  map.delete('request');
  gc({ type: 'minor' });
  gc({ type: 'minor' });
}
process.stdout.write(`${oldSpaceUsed() - before}\n`);
