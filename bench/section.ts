/**
 * The contract between bench/run.ts and a bench section (edge, and later registrar, b2bua...).
 * A section starts what it measures, drives it with bounded load, prints its own table and
 * returns a JSON-serialisable result that run.ts writes to .run/bench-<section>.json.
 */
export interface BenchOptions {
  /** CI mode: the whole section must finish in about 30 s */
  quick: boolean;
}

export interface BenchSection {
  readonly name: string;
  readonly description: string;
  run(options: BenchOptions): Promise<BenchSectionResult>;
}

export interface BenchSectionResult {
  /** every target met */
  passed: boolean;
  /** anything JSON-serialisable: what was measured */
  [key: string]: unknown;
}

/** Polls `check` every 50 ms; false when it is still not true after `timeoutMs`. */
export async function waitFor(check: () => boolean, timeoutMs: number): Promise<boolean> {
  const start = Date.now();
  while (!check()) {
    if (Date.now() - start > timeoutMs) return false;
    await new Promise((r) => setTimeout(r, 50));
  }
  return true;
}

/** Nearest-rank percentile `p` (0-100) of `values` (any order); NaN when there are none. */
export function percentile(values: readonly number[], p: number): number {
  if (values.length === 0) return Number.NaN;
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))]!;
}
