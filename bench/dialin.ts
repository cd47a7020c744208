/**
 * Bench section `dialin` (issue 13): concurrent dial-in logins through the real stack (edge +
 * core + agent service + dial-in in this process, real Redis and rtpengine, one SIPp instance
 * with one caller per agent):
 *
 * N callers from the carrier trunk call the access number at once (SIPp -r N per second), each
 * types its own 4-digit ID and 4-digit PIN by SIP INFO (dialin-caller-info.xml) over the
 * prompts rtpengine plays (tone prompts); every login runs the full scrypt check. Measured: how
 * many became agent sessions (target: all 200, none lost), the time from the first INVITE to
 * the last session up, and the CPU this process used per login (scrypt included; rtpengine's
 * own CPU not counted). Then every session is ended (BYE from dialcore) and SIPp must count
 * every call successful.
 *
 *   npx tsx bench/run.ts dialin [--quick]          (--quick: 20 callers)
 *   DIALIN_BENCH_CALLERS=50 npx tsx bench/dialin.ts
 */
import { createSocket } from 'node:dgram';
import { pathToFileURL } from 'node:url';
import { runSipp } from '../sip-tests/harness/index.js';
import { CARRIER_IP } from '../sip-tests/calls/call-stack.js';
import { ACCESS_NUMBER, startDialInStack } from '../sip-tests/dialin/dialin-stack.js';
import { waitFor, type BenchOptions, type BenchSection, type BenchSectionResult } from './section.js';

const TARGET_CALLERS = 200;
const PIN = '2468';


export async function runDialInBench({ quick }: BenchOptions): Promise<BenchSectionResult> {
  const callers = Number(process.env.DIALIN_BENCH_CALLERS) || (quick ? 20 : TARGET_CALLERS);
  // 4 rtpengine ports per caller (RTP + RTCP of the caller side and the parked side)
  const st = await startDialInStack({ firstDigitMs: 10_000, interDigitMs: 5_000 }, { rtpengineArgs: ['--port-min=20000', '--port-max=29999'] });
  // the callers' SDP points here: prompts arrive and are dropped
  const sink = createSocket('udp4');
  await new Promise<void>((resolve) => sink.bind(0, CARRIER_IP, () => resolve()));
  let promptPackets = 0;
  sink.on('message', () => promptPackets++);
  try {
    const rows: string[][] = [];
    const userIds = new Set<string>();
    for (let i = 0; i < callers; i++) {
      const dialInId = String(1000 + i); // a fresh Redis: 4-digit IDs 1000..
      const user = await st.cs.createUser({ connectionMethod: 'dial-in', dialIn: { id: dialInId, pin: PIN }, login: `dialin-bench-${dialInId}` });
      userIds.add(user.id);
      rows.push([`4477009${String(10000 + i)}`, String(sink.address().port), ...`${dialInId}#${PIN}#`]);
    }
    let up = 0;
    let lastUpAt = 0;
    const off = st.agents.events.on((e) => {
      if (e.type === 'agent.session.up' && e.agent && userIds.has(e.agent)) {
        up++;
        lastUpAt = Date.now();
      }
    });
    const cpuBefore = process.cpuUsage();
    const started = Date.now();
    const sipp = runSipp({
      scenario: 'dialin-caller-info.xml',
      target: st.cs.target,
      service: ACCESS_NUMBER,
      calls: callers,
      rate: callers,
      maxConcurrentCalls: callers,
      inf: { rows },
      keys: { formats: '0 101', sdp_extra: 'a=rtpmap:101 telephone-event/8000' },
      timeoutMs: 300_000,
      extraArgs: [...st.cs.carrierSippArgs(), '-max_recv_loops', '10000', '-max_sched_loops', '10000'],
    });
    await waitFor(() => up >= callers, 120_000);
    const cpu = process.cpuUsage(cpuBefore);
    const loginSeconds = ((lastUpAt || Date.now()) - started) / 1000;
    const cpuMsPerLogin = (cpu.user + cpu.system) / 1000 / Math.max(1, up);
    const sessionsListed = st.agents.service.sessionCount;
    await st.agents.service.stop(); // every session ends: BYE to every caller
    const result = await sipp;
    off();
    await waitFor(() => st.cs.media.count === 0, 30_000);
    console.log(
      `  ${callers} callers at once: ${up}/${callers} logged in (agent sessions ${sessionsListed}) within ${loginSeconds.toFixed(1)} s of the first INVITE; ` +
        `CPU ${cpuMsPerLogin.toFixed(1)} ms per login in this process (edge + core + scrypt); SIPp successful ${result.stats.successful}, failed ${result.stats.failed}; ` +
        `prompt packets received ${promptPackets}`,
    );
    const passed = up === callers && result.stats.successful === callers && result.stats.failed === 0 && (quick || callers >= TARGET_CALLERS);
    return {
      passed,
      targets: { concurrentLogins: TARGET_CALLERS },
      callers,
      loggedIn: up,
      loginSeconds,
      cpuMsPerLogin,
      sipp: { successful: result.stats.successful, failed: result.stats.failed },
      promptPackets,
    };
  } finally {
    sink.close();
    await st.stop();
  }
}

export const dialinSection: BenchSection = {
  name: 'dialin',
  description: 'concurrent dial-in logins (SIPp callers typing ID and PIN by SIP INFO over rtpengine prompts) becoming agent sessions, CPU per login',
  run: (options: BenchOptions) => runDialInBench(options),
};

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  const result = await runDialInBench({ quick: process.argv.includes('--quick') });
  console.log(JSON.stringify(result, null, 2));
  process.exit(result.passed ? 0 : 1);
}
