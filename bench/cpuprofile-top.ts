/**
 * Top self-time functions of a V8 .cpuprofile (node --cpu-prof; BENCH_CPU_PROF=<dir> for the edge bench).
 * Run: npx tsx bench/cpuprofile-top.ts <file.cpuprofile> [count]
 */
import { readFileSync } from 'node:fs';
import { relative } from 'node:path';

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  children?: number[];
}
interface CpuProfile {
  nodes: ProfileNode[];
  samples: number[];
  timeDeltas: number[];
}

export function topSelfTime(profile: CpuProfile, count: number): Array<{ where: string; ms: number; pct: number }> {
  const byId = new Map(profile.nodes.map((node) => [node.id, node]));
  const selfUs = new Map<string, number>();
  let total = 0;
  profile.samples.forEach((id, i) => {
    const node = byId.get(id);
    const delta = profile.timeDeltas[i] ?? 0;
    if (!node) return;
    const { functionName, url, lineNumber } = node.callFrame;
    const file = url.startsWith('file://') ? relative(process.cwd(), new URL(url).pathname) : url || '(native)';
    const key = `${file}:${lineNumber + 1} ${functionName || '(anonymous)'}`;
    selfUs.set(key, (selfUs.get(key) ?? 0) + delta);
    total += delta;
  });
  return [...selfUs.entries()]
    .sort((a, b) => b[1] - a[1])
    .slice(0, count)
    .map(([where, us]) => ({ where, ms: us / 1000, pct: (us / Math.max(1, total)) * 100 }));
}

const [file, count = '30'] = process.argv.slice(2);
if (file) {
  const profile = JSON.parse(readFileSync(file, 'utf8')) as CpuProfile;
  for (const row of topSelfTime(profile, Number(count))) {
    console.log(`${row.pct.toFixed(1).padStart(5)}%  ${row.ms.toFixed(0).padStart(7)} ms  ${row.where}`);
  }
}
