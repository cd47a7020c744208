/**
 * Self-test of sipp-scenarios/: every scenario runs against its counterpart on 127.0.0.1,
 * so a broken scenario is caught here and not mistaken for a fault of dialcore.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { runSipp, startSippServer, type SippOptions, type SippResult, type SippServer } from './index.js';

let servers: SippServer[] = [];
afterEach(async () => {
  await Promise.all(servers.map((server) => server.stop(2_000)));
  servers = [];
});

async function server(options: SippOptions): Promise<SippServer> {
  const started = await startSippServer(options);
  servers.push(started);
  return started;
}

function explain(result: SippResult): string {
  return `${result.commandLine}\n${result.stderr}\n${result.errors}\n${result.stdout.slice(-1500)}`;
}

/** Runs `uac` against `uas` and returns both results (the UAS stopped after the UAC finished). */
async function pair(uas: SippOptions, uac: Omit<SippOptions, 'target'>): Promise<{ uac: SippResult; uas: SippResult }> {
  const peer = await server(uas);
  const uacResult = await runSipp({ rate: 20, timeoutMs: 30_000, ...uac, transport: uas.transport, target: `127.0.0.1:${peer.port}` });
  const uasResult = await peer.stop(5_000);
  return { uac: uacResult, uas: uasResult };
}

function expectAllSuccessful(result: SippResult, calls: number): void {
  expect(result.stats.successful, explain(result)).toBe(calls);
  expect(result.stats.failed, explain(result)).toBe(0);
}

/** The Via branch of each message of `method` (requests) in a -trace_msg log, in order. */
function branchesOf(messages: string, method: string): string[] {
  const branches: string[] = [];
  for (const block of messages.split(/^-{20,}.*$/m)) {
    const lines = block.trim().split(/\r?\n/).filter((line) => line.trim() !== '');
    const startLine = lines.findIndex((line) => /^[A-Z]+ \S+ SIP\/2\.0$/.test(line));
    if (startLine < 0 || !lines[startLine].startsWith(`${method} `)) continue;
    const via = lines.slice(startLine).find((line) => /^Via:/i.test(line));
    const branch = via?.match(/branch=([^;\s]+)/)?.[1];
    if (branch) branches.push(branch);
  }
  return branches;
}

describe('sipp-scenarios', () => {
  it('options-uac gets 200 from options-uas over UDP', async () => {
    const { uac, uas } = await pair({ scenario: 'options-uas.xml' }, { scenario: 'options-uac.xml', calls: 5 });
    expectAllSuccessful(uac, 5);
    expectAllSuccessful(uas, 5);
  });

  it('options-uac gets 200 from options-uas over TCP', async () => {
    const { uac, uas } = await pair({ scenario: 'options-uas.xml', transport: 't1' }, { scenario: 'options-uac.xml', calls: 3 });
    expectAllSuccessful(uac, 3);
    expectAllSuccessful(uas, 3);
  });

  it('invite-bye-uac completes calls with invite-uas-bye-remote', async () => {
    const { uac, uas } = await pair({ scenario: 'invite-uas-bye-remote.xml' }, { scenario: 'invite-bye-uac.xml', calls: 5, extraArgs: ['-d', '100'] });
    expectAllSuccessful(uac, 5);
    expectAllSuccessful(uas, 5);
  });

  it('invite-uas-bye-local hangs up on invite-uac-wait-bye', async () => {
    const { uac, uas } = await pair(
      { scenario: 'invite-uas-bye-local.xml', extraArgs: ['-d', '200'] },
      { scenario: 'invite-uac-wait-bye.xml', calls: 2 },
    );
    expectAllSuccessful(uac, 2);
    expectAllSuccessful(uas, 2);
  });

  it('cancel-uac cancels uas-ring-forever, with the INVITE branch on CANCEL and ACK', async () => {
    const { uac, uas } = await pair({ scenario: 'uas-ring-forever.xml' }, { scenario: 'cancel-uac.xml', calls: 3, traceMessages: true });
    expectAllSuccessful(uac, 3);
    expectAllSuccessful(uas, 3);
    const invites = branchesOf(uac.messages ?? '', 'INVITE');
    expect(invites).toHaveLength(3);
    expect(branchesOf(uac.messages ?? '', 'CANCEL')).toEqual(invites); // RFC 3261 §9.1
    expect(branchesOf(uac.messages ?? '', 'ACK')).toEqual(invites); // RFC 3261 §17.1.1.3
  });

  it('no-ack-uac gets the BYE of uas-bye-on-ack-timeout', async () => {
    const { uac, uas } = await pair({ scenario: 'uas-bye-on-ack-timeout.xml' }, { scenario: 'no-ack-uac.xml', calls: 1, traceMessages: true });
    expectAllSuccessful(uac, 1);
    expectAllSuccessful(uas, 1);
    expect(branchesOf(uac.messages ?? '', 'ACK')).toEqual([]);
  });

  it('reinvite-uac re-INVITEs inside the dialog of invite-uas-bye-remote', async () => {
    const { uac, uas } = await pair(
      { scenario: 'invite-uas-bye-remote.xml' },
      { scenario: 'reinvite-uac.xml', calls: 2, traceMessages: true, extraArgs: ['-d', '100'] },
    );
    expectAllSuccessful(uac, 2);
    expectAllSuccessful(uas, 2);
    expect(branchesOf(uac.messages ?? '', 'INVITE')).toHaveLength(4);
  });

  const users = { rows: [['alice', 'secret', 'example.com'], ['bob', 'hunter2', 'example.com']] };

  it('register-auth-uac registers with digest credentials at registrar-uas', async () => {
    const { uac, uas } = await pair({ scenario: 'registrar-uas.xml', inf: users }, { scenario: 'register-auth-uac.xml', calls: 2, inf: users });
    expectAllSuccessful(uac, 2);
    expectAllSuccessful(uas, 2);
  });

  it('register-auth-uac fails with a wrong password', async () => {
    const wrong = { rows: [['alice', 'not-the-password', 'example.com']] };
    const { uac } = await pair({ scenario: 'registrar-uas.xml', inf: users }, { scenario: 'register-auth-uac.xml', calls: 1, inf: wrong });
    expect(uac.stats.successful).toBe(0);
    expect(uac.stats.failed).toBe(1);
  });

  it('register-unregister-uac registers and removes the binding', async () => {
    const { uac, uas } = await pair(
      { scenario: 'registrar-uas.xml', inf: users },
      { scenario: 'register-unregister-uac.xml', calls: 1, inf: users, traceMessages: true },
    );
    expectAllSuccessful(uac, 1);
    expectAllSuccessful(uas, 1);
    expect(uac.messages).toMatch(/^Expires: 0\r?$/m);
  });

  it('uac-invite-rtp and uas-answer-rtp set up a call with audio', async () => {
    const { uac, uas } = await pair({ scenario: 'uas-answer-rtp.xml' }, { scenario: 'uac-invite-rtp.xml', calls: 1, extraArgs: ['-d', '500'] });
    expectAllSuccessful(uac, 1);
    expectAllSuccessful(uas, 1);
    expect(uac.stderr).toMatch(/g711a\.pcap, npkts \d+/); // SIPp loaded the audio to play
  });
});
