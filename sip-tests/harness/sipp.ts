/**
 * SIPp (3.6.1) as a real SIP peer in integration tests.
 *
 *   // a UAC run to completion
 *   const result = await runSipp({ scenario: 'options-uac.xml', target: `127.0.0.1:${port}`, calls: 5 });
 *   expect(result.stats.successful).toBe(5);
 *
 *   // a UAS in the background
 *   const uas = await startSippServer({ scenario: 'invite-uas-bye-remote.xml' });
 *   ... send calls to 127.0.0.1:uas.port ...
 *   const uasResult = await uas.stop();
 *
 * `scenario` is a built-in name (`uac`, `uas`, ... = `-sn`) or an XML file (`-sf`): an
 * absolute path, or a file name in sipp-scenarios/.
 *
 * Every SIPp binds 127.0.0.1 only: `-i`, `-mi`, `-ci` are always 127.0.0.1 and the
 * control port (`-cp`, otherwise 0.0.0.0:8888), the SIP port (`-p`) and the media ports
 * (`-mp`, `-mp`+2 and the rtp_stream/pcap ports above them) are free ports of their own.
 * It runs with `-nostdin`, statistics go to a CSV (`-trace_stat -stf`, read back into
 * `stats`), unexpected messages to an error log (`-trace_err`), and it is killed after
 * `timeoutMs`.
 */
import { existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { isAbsolute, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { freePort, freePortRange, releasePort, type PortRange } from './ports.js';
import { isBound, makeServiceDir, spawnService, tail, waitUntil, type Service } from './service.js';

const HOST = '127.0.0.1';
const SCENARIO_DIR = fileURLToPath(new URL('../../sipp-scenarios/', import.meta.url));
const OUTPUT_TAIL_BYTES = 64 * 1024;
/** Media ports per SIPp: [media_port] (-mp; RTP echo, pcap play and rtp_stream all use it), -mp+2 and offsets such as [media_port+2]. */
const MEDIA_PORTS_PER_SIPP = 10;

/** `-t`: UDP one socket, UDP socket per call, TCP one socket, TCP socket per call. */
export type SippTransport = 'u1' | 'un' | 't1' | 'tn';

/** Rows for `-inf`, written to a CSV in the run's temp dir. Fields are joined with `;`. */
export interface SippInjection {
  order?: 'SEQUENTIAL' | 'RANDOM' | 'USER';
  rows: readonly (readonly string[])[];
}

export interface SippOptions {
  /** Built-in scenario name (`uac`, `uas`, `regexp`, ...) or XML file (absolute, or in sipp-scenarios/). */
  scenario: string;
  /** host:port of the peer, for scenarios that start by sending. */
  target?: string;
  /** Default `u1`. */
  transport?: SippTransport;
  /** `-m`: stop after this many calls. */
  calls?: number;
  /** `-r`: calls per second (per `ratePeriodMs`). */
  rate?: number;
  /** `-rp` in milliseconds. */
  ratePeriodMs?: number;
  /** `-l`: at most this many calls at once. */
  maxConcurrentCalls?: number;
  /** `-p`: local SIP port; default a free port. */
  localPort?: number;
  /** `-s`: user part of the request-URI ([service]). */
  service?: string;
  /** `-inf`: a CSV file path, or rows to write into one. */
  inf?: string | SippInjection;
  /** `-set name value` for each entry (scenario variables). */
  vars?: Readonly<Record<string, string>>;
  /** `-key name value` for each entry ([name] keywords). */
  keys?: Readonly<Record<string, string>>;
  /** Record every SIP message sent and received (`-trace_msg`) into `result.messages`. */
  traceMessages?: boolean;
  /** Record each call's response times (`-trace_rtt`, the scenario's `rtd`s) into `result.responseTimesMs`. */
  responseTimes?: boolean;
  /** Kill SIPp after this long. Default 30 s for runSipp, 5 min for servers. */
  timeoutMs?: number;
  /** Anything else, appended last. */
  extraArgs?: readonly string[];
}

export interface SippStats {
  /** SuccessfulCall(C) */
  successful: number;
  /** FailedCall(C) */
  failed: number;
  /** TotalCallCreated */
  created: number;
  /** Retransmissions(C) */
  retransmissions: number;
  /** FailedUnexpectedMessage(C) */
  failedUnexpectedMessage: number;
  /** FailedTimeoutOnRecv(C) */
  failedTimeoutOnRecv: number;
  /** FailedMaxUDPRetrans(C) */
  failedMaxUdpRetrans: number;
  /** OutOfCallMsgs(C): messages matching no call. */
  outOfCallMessages: number;
  /** DeadCallMsgs(C): messages for calls already ended. */
  deadCallMessages: number;
  /** Every column of the last statistics row, by header name. */
  raw: Record<string, string>;
}

export interface SippResult {
  /** 0 = all calls successful, 1 = some failed, 97/99 = quit without failures; null when killed. */
  exitCode: number | null;
  signal: NodeJS.Signals | null;
  /** True when the harness had to kill SIPp at `timeoutMs`. */
  timedOut: boolean;
  stats: SippStats;
  /** End of stdout (the final statistics screen). */
  stdout: string;
  /** End of stderr (fatal errors, warnings). */
  stderr: string;
  /** Unexpected messages SIPp logged (`-trace_err`). */
  errors: string;
  /** All SIP messages, with `traceMessages`. */
  messages?: string;
  /** Every response time SIPp measured (ms, all `rtd`s of the scenario), with `responseTimes`. */
  responseTimesMs?: number[];
  /** Local SIP port used. */
  localPort: number;
  /** The full command line, for failure messages. */
  commandLine: string;
}

export interface SippServer {
  readonly host: string;
  /** SIP port the scenario listens on. */
  readonly port: number;
  readonly transport: SippTransport;
  /** Settles when SIPp exits by itself (e.g. after `calls` calls). */
  readonly done: Promise<SippResult>;
  /** Asks SIPp to finish (SIGUSR1: no new calls, end when current ones end), kills it after `graceMs`. */
  stop(graceMs?: number): Promise<SippResult>;
}

function scenarioArgs(scenario: string): string[] {
  if (!scenario.endsWith('.xml')) return ['-sn', scenario];
  const file = isAbsolute(scenario) ? scenario : join(SCENARIO_DIR, scenario);
  if (!existsSync(file)) throw new Error(`SIPp scenario not found: ${file}`);
  return ['-sf', file];
}

function numberOr0(value: string | undefined): number {
  const parsed = Number.parseInt(value ?? '', 10);
  return Number.isFinite(parsed) ? parsed : 0;
}

/** Reads the last row of a `-trace_stat` CSV (`;`-separated, one header line). */
export function parseSippStatsCsv(csv: string): SippStats {
  const lines = csv.split('\n').filter((line) => line.trim() !== '');
  const header = (lines[0] ?? '').split(';');
  const last = lines.length > 1 ? lines[lines.length - 1].split(';') : [];
  const raw: Record<string, string> = {};
  header.forEach((name, index) => {
    if (name !== '') raw[name] = last[index] ?? '';
  });
  return {
    successful: numberOr0(raw['SuccessfulCall(C)']),
    failed: numberOr0(raw['FailedCall(C)']),
    created: numberOr0(raw['TotalCallCreated']),
    retransmissions: numberOr0(raw['Retransmissions(C)']),
    failedUnexpectedMessage: numberOr0(raw['FailedUnexpectedMessage(C)']),
    failedTimeoutOnRecv: numberOr0(raw['FailedTimeoutOnRecv(C)']),
    failedMaxUdpRetrans: numberOr0(raw['FailedMaxUDPRetrans(C)']),
    outOfCallMessages: numberOr0(raw['OutOfCallMsgs(C)']),
    deadCallMessages: numberOr0(raw['DeadCallMsgs(C)']),
    raw,
  };
}

/** The response_time_ms column of the `-trace_rtt` files (<scenario>_<pid>_rtt.csv) SIPp wrote into `dir`. */
export function readSippResponseTimes(dir: string): number[] {
  const out: number[] = [];
  for (const file of readdirSync(dir).filter((f) => f.endsWith('_rtt.csv'))) {
    for (const line of readFileSync(join(dir, file), 'utf8').split('\n').slice(1)) {
      const value = Number(line.split(';')[1]);
      if (line.trim() !== '' && Number.isFinite(value)) out.push(value);
    }
  }
  return out;
}

/** The `-inf` file for `injection`: the order line, then one `;`-joined row per call. */
function injectionCsv(injection: SippInjection): string {
  for (const row of injection.rows) {
    for (const field of row) {
      if (/[;\r\n]/.test(field)) throw new Error(`SIPp injection field may not contain ';' or a line break: ${JSON.stringify(field)}`);
    }
  }
  return [injection.order ?? 'SEQUENTIAL', ...injection.rows.map((row) => row.join(';'))].join('\n') + '\n';
}

function readIfExists(file: string, maxBytes: number): string | undefined {
  return existsSync(file) ? tail(file, maxBytes) : undefined;
}

interface LaunchedSipp {
  service: Service;
  localPort: number;
  media: PortRange;
  commandLine: string;
  /** Collects the result after the process exited. */
  collect(timedOut: boolean): SippResult;
}

async function launchSipp(options: SippOptions, defaultTimeoutMs: number): Promise<LaunchedSipp> {
  const localPort = options.localPort ?? (await freePort());
  const controlPort = await freePort();
  const media = await freePortRange(MEDIA_PORTS_PER_SIPP);
  const timeoutMs = options.timeoutMs ?? defaultTimeoutMs;

  // the run's temp dir is SIPp's cwd: relative output names land there
  const args: string[] = [
    ...scenarioArgs(options.scenario),
    ...(options.target ? [options.target] : []),
    '-i', HOST,
    '-mi', HOST,
    '-ci', HOST,
    '-cp', String(controlPort),
    '-p', String(localPort),
    '-mp', String(media.min),
    '-t', options.transport ?? 'u1',
    '-nostdin',
    '-trace_stat', '-stf', 'stats.csv', '-fd', '1',
    '-trace_err', '-error_file', 'errors.log',
    // SIPp's own global timeout ends the run cleanly (with statistics) before the hard kill
    '-timeout', `${Math.max(1, Math.ceil(timeoutMs / 1000))}s`,
  ];
  if (options.calls !== undefined) args.push('-m', String(options.calls));
  if (options.rate !== undefined) args.push('-r', String(options.rate));
  if (options.ratePeriodMs !== undefined) args.push('-rp', String(options.ratePeriodMs));
  if (options.maxConcurrentCalls !== undefined) args.push('-l', String(options.maxConcurrentCalls));
  if (options.service !== undefined) args.push('-s', options.service);
  if (options.traceMessages) args.push('-trace_msg', '-message_file', 'messages.log');
  // written after every call: with a larger -rtt_freq SIPp drops the last calls' times at exit
  if (options.responseTimes) args.push('-trace_rtt', '-rtt_freq', '1');
  for (const [name, value] of Object.entries(options.vars ?? {})) args.push('-set', name, value);
  for (const [name, value] of Object.entries(options.keys ?? {})) args.push('-key', name, value);

  let infRows: string | undefined;
  if (typeof options.inf === 'string') args.push('-inf', resolve(options.inf));
  else if (options.inf) {
    infRows = injectionCsv(options.inf);
    args.push('-inf', 'injection.csv');
  }
  args.push(...(options.extraArgs ?? []));

  const dir = makeServiceDir('sipp');
  if (infRows !== undefined) writeFileSync(join(dir, 'injection.csv'), infRows);
  const service = spawnService({ name: 'sipp', command: 'sipp', args, dir, separateStderr: true });
  const commandLine = ['sipp', ...args].map((arg) => (/^[\w@%+=:,./-]+$/.test(arg) ? arg : `'${arg}'`)).join(' ');

  return {
    service,
    localPort,
    media,
    commandLine,
    collect(timedOut) {
      const statsFile = join(dir, 'stats.csv');
      const stats = parseSippStatsCsv(existsSync(statsFile) ? readFileSync(statsFile, 'utf8') : '');
      return {
        exitCode: null,
        signal: null,
        timedOut,
        stats,
        stdout: tail(service.logFile, OUTPUT_TAIL_BYTES),
        stderr: tail(service.errLogFile, OUTPUT_TAIL_BYTES),
        errors: readIfExists(join(dir, 'errors.log'), OUTPUT_TAIL_BYTES) ?? '',
        messages: options.traceMessages ? readIfExists(join(dir, 'messages.log'), 4 << 20) ?? '' : undefined,
        responseTimesMs: options.responseTimes ? readSippResponseTimes(dir) : undefined,
        localPort,
        commandLine,
      };
    },
  };
}

/**
 * Waits for SIPp to exit, killing it after `hardTimeoutMs`; then reads its results and
 * removes its temp dir (kept when KEEP_TEST_LOGS is set).
 */
async function finish(launched: LaunchedSipp, hardTimeoutMs: number): Promise<SippResult> {
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    launched.service.child.kill('SIGKILL');
  }, hardTimeoutMs);
  const exit = await launched.service.exited;
  clearTimeout(timer);
  const result = launched.collect(timedOut);
  result.exitCode = exit.code;
  result.signal = exit.signal;
  if (exit.spawnError) result.stderr += `\nspawn failed: ${exit.spawnError.message}`;
  await launched.service.stop();
  releasePort(launched.media);
  return result;
}

/** SIPp's own `-timeout` fires at timeoutMs; the hard kill is a bounded time later. */
const HARD_KILL_MARGIN_MS = 5_000;

/** Runs a scenario to completion (or `timeoutMs`) and reports what happened. */
export async function runSipp(options: SippOptions): Promise<SippResult> {
  const timeoutMs = options.timeoutMs ?? 30_000;
  const launched = await launchSipp({ ...options, timeoutMs }, timeoutMs);
  return finish(launched, timeoutMs + HARD_KILL_MARGIN_MS);
}

/** Starts a scenario that waits for the peer (UAS) and returns once its SIP port is bound. */
export async function startSippServer(options: SippOptions): Promise<SippServer> {
  const timeoutMs = options.timeoutMs ?? 5 * 60_000;
  const launched = await launchSipp({ ...options, timeoutMs }, timeoutMs);
  const transport = options.transport ?? 'u1';
  const protocol = transport.startsWith('t') ? 'tcp' : 'udp';
  const done = finish(launched, timeoutMs + HARD_KILL_MARGIN_MS);
  try {
    await waitUntil(async () => !launched.service.running() || (await isBound(launched.localPort, protocol)), {
      timeoutMs: 10_000,
      what: `SIPp on ${HOST}:${launched.localPort}/${protocol}`,
    });
  } catch (err) {
    launched.service.child.kill('SIGKILL');
    await done;
    throw err;
  }
  if (!launched.service.running()) {
    const result = await done;
    throw new Error(`SIPp exited during start-up (${launched.commandLine}):\n${result.stderr}\n${result.stdout.slice(-2000)}`);
  }
  return {
    host: HOST,
    port: launched.localPort,
    transport,
    done,
    async stop(graceMs = 5_000) {
      if (launched.service.running()) {
        launched.service.child.kill('SIGUSR1');
        const timer = setTimeout(() => launched.service.child.kill('SIGKILL'), graceMs);
        await launched.service.exited;
        clearTimeout(timer);
      }
      return done;
    },
  };
}
