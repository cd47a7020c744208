import { execFileSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';

/**
 * For tests of what the garbage collector keeps: runs a fixture script in a child node with --expose-gc (so it
 * can force collections without touching the test runner's heap) and returns the one number it prints.
 */
export function measureInGcFixture(fixture: URL, ...args: string[]): number {
  const output = execFileSync(process.execPath, ['--expose-gc', '--import', 'tsx', fileURLToPath(fixture), ...args], { encoding: 'utf8' });
  const value = Number(output.trim());
  if (!Number.isFinite(value)) throw new Error(`${fixture.pathname} printed ${JSON.stringify(output)}, not a number`);
  return value;
}
