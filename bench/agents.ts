/**
 * Bench section `agents` (issue 12): agent sessions and bridged customer calls through the real
 * stack (edge + core + agent service in this process, real Redis and rtpengine, SIPp peers):
 *
 * 1. idle agent sessions held: N sip-address agents (SIPp PBX answering every INVITE, no media)
 *    connected at a bounded rate and held; target 1,000 on these 2 cores, every one ready;
 *    memory per session (heap and RSS after a forced GC, minus before, divided by N; the edge's
 *    share included) and rtpengine calls held;
 * 2. bridged customer calls per second: calls placed through the agent service at a fixed rate
 *    to a SIPp gateway, each bridged into a ready session (rtpengine re-offers of both legs) and
 *    hung up as soon as it is bridged; target 100/s set-up and tear-down with no failure, and
 *    the time from placing to bridged (p50/p99).
 *
 *   npx tsx bench/run.ts agents [--quick]
 */
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { pathToFileURL } from 'node:url';
import { freePort, startSippServer } from '../sip-tests/harness/index.js';
import { startAgentStack, type AgentStack } from '../sip-tests/agents/agent-stack.js';
import { waitFor, type BenchOptions, type BenchSection, type BenchSectionResult } from './section.js';

setFlagsFromString('--expose-gc');
const forceGc = runInNewContext('gc') as () => void;

const TARGET_SESSIONS = 1000;
const TARGET_CPS = 100;

function memory(): { heap: number; rss: number } {
  forceGc();
  forceGc();
  const m = process.memoryUsage();
  return { heap: m.heapUsed, rss: m.rss };
}


function percentile(values: number[], p: number): number {
  if (values.length === 0) return 0;
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}

async function connectAgents(st: AgentStack, pbxPort: number, count: number, perSecond: number): Promise<{ ids: string[]; ready: number; seconds: number }> {
  const ids: string[] = [];
  for (let i = 0; i < count; i++) {
    const user = await st.cs.createUser({ connectionMethod: 'sip-address', sipAddress: { uri: `sip:agent${i}@127.0.0.1:${pbxPort}` }, login: `bench${i}` });
    ids.push(user.id);
  }
  let ready = 0;
  const off = st.agents.events.on((e) => {
    if (e.type === 'agent.session.up') ready++;
  });
  const started = Date.now();
  for (let i = 0; i < ids.length; i++) {
    await st.agents.service.startSession(ids[i]!);
    const due = started + ((i + 1) * 1000) / perSecond;
    if (due > Date.now()) await new Promise((r) => setTimeout(r, due - Date.now()));
  }
  await waitFor(() => ready >= ids.length, 30_000);
  off();
  return { ids, ready, seconds: (Date.now() - started) / 1000 };
}

async function bridgedCalls(st: AgentStack, agents: string[], cps: number, seconds: number) {
  const planned = Math.round(cps * seconds);
  const free = [...agents];
  const placedAt = new Map<string, number>();
  const latencies: number[] = [];
  let bridged = 0;
  let ended = 0;
  let failed = 0;
  const off = st.agents.events.on((e) => {
    if (!e.callId) return;
    if (e.type === 'call.bridged') {
      bridged++;
      const at = placedAt.get(e.callId);
      if (at) latencies.push(Date.now() - at);
      void st.agents.service.hangupCall(e.callId).catch(() => undefined);
    } else if (e.type === 'call.ended') {
      ended++;
      if (e.cause !== 'hangup-by-api') failed++;
      if (e.agent) free.push(e.agent);
    }
  });
  const started = Date.now();
  let refused = 0;
  for (let i = 0; i < planned; i++) {
    const due = started + (i * 1000) / cps;
    if (due > Date.now()) await new Promise((r) => setTimeout(r, due - Date.now()));
    const agent = free.shift();
    if (!agent) {
      refused++;
      continue;
    }
    try {
      const call = await st.agents.service.placeCall({ agent, to: '+442071234567' });
      placedAt.set(call.id, Date.now());
    } catch {
      refused++;
      free.push(agent);
    }
  }
  await waitFor(() => ended + refused >= planned, 20_000);
  const wall = (Date.now() - started) / 1000;
  off();
  return { planned, bridged, ended, failed, refused, achievedCps: bridged / wall, p50Ms: percentile(latencies, 50), p99Ms: percentile(latencies, 99) };
}

export async function runAgentsBench({ quick }: BenchOptions): Promise<BenchSectionResult> {
  const sessions = quick ? 200 : TARGET_SESSIONS;
  // rtpengine's ports: 4 per idle session (RTP+RTCP of two monologues), 4 per customer leg while it lives
  const st = await startAgentStack({ rtpengineArgs: ['--port-min=20000', '--port-max=44999'] });
  try {
    const pbxPort = await freePort();
    const pbx = await startSippServer({ scenario: 'invite-uas-bye-remote.xml', localPort: pbxPort, timeoutMs: 600_000, extraArgs: ['-max_recv_loops', '10000', '-max_sched_loops', '10000'] });
    const gwPort = await freePort();
    const gateway = await startSippServer({ scenario: 'invite-uas-bye-remote.xml', localPort: gwPort, timeoutMs: 600_000, extraArgs: ['-max_recv_loops', '10000', '-max_sched_loops', '10000'] });
    st.cs.carriers.outboundGateways.push(st.cs.gateway('bench-gw', gwPort));
    try {
      const before = memory();
      const connected = await connectAgents(st, pbxPort, sessions, 200);
      await new Promise((r) => setTimeout(r, 500));
      const after = memory();
      const rtpengineCalls = (await st.cs.rtpengineCalls()).length;
      const heapPerSessionKB = (after.heap - before.heap) / 1024 / sessions;
      const rssPerSessionKB = (after.rss - before.rss) / 1024 / sessions;
      console.log(
        `  idle sessions: ${connected.ready}/${sessions} ready in ${connected.seconds.toFixed(1)} s (200/s offered); rtpengine calls ${rtpengineCalls}; ` +
          `per session heap ${heapPerSessionKB.toFixed(1)} KB, RSS ${rssPerSessionKB.toFixed(1)} KB`,
      );
      const calls = await bridgedCalls(st, connected.ids, TARGET_CPS, quick ? 5 : 20);
      console.log(
        `  bridged calls at ${TARGET_CPS}/s offered: ${calls.bridged}/${calls.planned} bridged, achieved ${calls.achievedCps.toFixed(0)}/s, ` +
          `failed ${calls.failed}, refused ${calls.refused}; placed->bridged p50 ${calls.p50Ms} ms, p99 ${calls.p99Ms} ms`,
      );
      await st.agents.service.stop();
      await waitFor(() => st.cs.media.count === 0, 30_000);
      const passed =
        connected.ready === sessions &&
        (quick || sessions >= TARGET_SESSIONS) &&
        calls.bridged === calls.planned &&
        calls.failed === 0 &&
        calls.achievedCps >= TARGET_CPS * 0.95;
      return {
        passed,
        targets: { sessions: TARGET_SESSIONS, cps: TARGET_CPS },
        sessions: { held: connected.ready, offered: sessions, seconds: connected.seconds, rtpengineCalls, heapPerSessionKB, rssPerSessionKB },
        calls,
      };
    } finally {
      await pbx.stop(2000);
      await gateway.stop(2000);
    }
  } finally {
    await st.stop();
  }
}

export const agentsSection: BenchSection = {
  name: 'agents',
  description: 'agent sessions held idle (sip-address agents on a SIPp PBX) and customer calls bridged into them per second, with rtpengine',
  run: (options: BenchOptions) => runAgentsBench(options),
};

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  const result = await runAgentsBench({ quick: process.argv.includes('--quick') });
  console.log(JSON.stringify(result, null, 2));
  process.exit(result.passed ? 0 : 1);
}
