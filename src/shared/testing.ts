import { execFileSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';

/**
 * For tests of what the garbage collector keeps: runs a fixture script in a child node with --expose-gc (so it
 * can force collections without touching the test runner's heap) and returns the one number it prints. The old
 * generation starts at 128 MB, so V8 starts no full GC of its own while the fixture measures: one that landed
 * mid-run freed part of what the run measures, and the result moved with its timing (2.99 instead of ~6.3 MB,
 * seen once in CI).
 */
export function measureInGcFixture(fixture: URL, ...args: string[]): number {
  const output = execFileSync(process.execPath, ['--expose-gc', '--initial-old-space-size=128', '--import', 'tsx', fileURLToPath(fixture), ...args], { encoding: 'utf8' });
  const value = Number(output.trim());
  if (!Number.isFinite(value)) throw new Error(`${fixture.pathname} printed ${JSON.stringify(output)}, not a number`);
  return value;
}
