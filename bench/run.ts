/**
 * Bench entry: npx tsx bench/run.ts [all|<section>...] [--quick] [--strict]
 *
 * Each section (bench/<name>.ts, exporting a BenchSection) prints a table and its results are written to
 * .run/bench-<name>.json. --quick keeps every section under ~30 s (CI). The exit code is 1 when a section
 * crashed, or with --strict when a target was missed.
 * Sections: edge (issue 2), registrar (issue 3, with Kamailio side by side), b2bua (issue 4), agents (issue 12),
 * dialin (issue 13), cluster (issue 14).
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { BenchSection } from './section.js';

const SECTIONS: Record<string, () => Promise<BenchSection>> = {
  edge: async () => (await import('./edge.js')).edgeSection,
  registrar: async () => (await import('./registrar.js')).registrarSection,
  b2bua: async () => (await import('./b2bua.js')).b2buaSection,
  agents: async () => (await import('./agents.js')).agentsSection,
  dialin: async () => (await import('./dialin.js')).dialinSection,
  cluster: async () => (await import('./cluster.js')).clusterSection,
};

const RESULTS_DIR = fileURLToPath(new URL('../.run/', import.meta.url));

function usage(): string {
  return `usage: npx tsx bench/run.ts [all|${Object.keys(SECTIONS).join('|')}]... [--quick] [--strict]`;
}

async function main(argv: string[]): Promise<number> {
  const flags = new Set(argv.filter((a) => a.startsWith('--')));
  for (const flag of flags) {
    if (flag === '--help') {
      console.log(usage());
      return 0;
    }
    if (flag !== '--quick' && flag !== '--strict') {
      console.error(`unknown flag ${flag}\n${usage()}`);
      return 2;
    }
  }
  const requested = argv.filter((a) => !a.startsWith('--'));
  const names = requested.length === 0 || requested.includes('all') ? Object.keys(SECTIONS) : requested;
  const unknown = names.filter((n) => !(n in SECTIONS));
  if (unknown.length > 0) {
    console.error(`unknown bench section ${unknown.join(', ')}\n${usage()}`);
    return 2;
  }
  const quick = flags.has('--quick');
  mkdirSync(RESULTS_DIR, { recursive: true });
  let exitCode = 0;
  for (const name of names) {
    const section = await SECTIONS[name]();
    console.log(`\n=== bench ${section.name}${quick ? ' (quick)' : ''}: ${section.description}`);
    const started = Date.now();
    try {
      const result = await section.run({ quick });
      const file = join(RESULTS_DIR, `bench-${section.name}.json`);
      writeFileSync(file, `${JSON.stringify({ section: section.name, date: new Date().toISOString(), durationS: (Date.now() - started) / 1000, ...result }, null, 2)}\n`);
      console.log(`=== ${section.name}: ${result.passed ? 'all targets met' : 'targets MISSED'} in ${((Date.now() - started) / 1000).toFixed(0)} s; results in ${file}`);
      if (!result.passed && flags.has('--strict')) exitCode = 1;
    } catch (err) {
      console.error(`=== ${section.name} failed: ${err instanceof Error ? err.stack : String(err)}`);
      exitCode = 1;
    }
  }
  return exitCode;
}

process.exitCode = await main(process.argv.slice(2));
