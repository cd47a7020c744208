import type { SrvRecord } from 'node:dns';

/**
 * RFC 2782 target selection: ascending priority; within one priority a weighted random order where every record's
 * chance of coming next is its weight over the weights left (weight-0 records placed first, so they are picked
 * only rarely). `random` returns a number in [0, 1) and is injectable for tests.
 */
export function orderSrvRecords(records: readonly SrvRecord[], random: () => number = Math.random): SrvRecord[] {
  const byPriority = new Map<number, SrvRecord[]>();
  for (const record of records) {
    const group = byPriority.get(record.priority);
    if (group) group.push(record);
    else byPriority.set(record.priority, [record]);
  }
  const ordered: SrvRecord[] = [];
  for (const priority of [...byPriority.keys()].sort((a, b) => a - b)) {
    const group = byPriority.get(priority) ?? [];
    const remaining = [...group.filter((r) => r.weight === 0), ...group.filter((r) => r.weight > 0)];
    while (remaining.length > 0) {
      const sum = remaining.reduce((total, r) => total + r.weight, 0);
      const pick = Math.floor(random() * (sum + 1));   // uniform in [0, sum]
      let running = 0;
      let index = remaining.findIndex((r) => (running += r.weight) >= pick);
      if (index < 0) index = remaining.length - 1;
      ordered.push(remaining[index]);
      remaining.splice(index, 1);
    }
  }
  return ordered;
}
