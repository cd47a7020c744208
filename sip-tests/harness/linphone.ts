/**
 * linphonec (Debian 12 linphone-cli: liblinphone 5.1) as a real SIP phone in integration tests,
 * headless on loopback, driven through its stdin like a user at its prompt.
 *
 *   const phone = await startLinphone({ transport: 'udp', account: { login, password, domain: 'dialcore.test', proxy: '127.0.0.1:5060' } });
 *   await phone.waitForRegistration();
 *   phone.send('call sip:02071234567@dialcore.test');
 *   await phone.waitForOutput(/Call \d+ .* connected/);
 *   phone.send('terminate');
 *   await phone.stop();
 *
 * Each phone gets a directory of its own: its linphonerc (SIP on 127.0.0.1, a free port, on the one
 * transport asked for; RTP on a free port range; the account as the default proxy config, with the
 * registrar as its outbound route, and its digest credentials) and a HOME for liblinphone's database.
 * Sound goes through files (`soundcard use files`): a 440 Hz tone is played into each call and what
 * the phone receives is recorded to a WAV file (`record`), so no sound card is needed.
 *
 * linphone-daemon (the same package) was tried first: without a sound card its audio graph is
 * clocked by ALSA's `null` device, whose clock does not advance (2 RTP packets in 3 s), and the
 * daemon has no command for the file mode that linphonec has.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { pcm16Wav } from '../../src/app/media/wav.js';
import { freePort, freePortRange, releasePort, type PortRange } from './ports.js';
import { makeServiceDir, spawnService, startupError, waitUntil, type Service } from './service.js';
import { pcm16Level } from './wav-level.js';

export interface LinphoneAccount {
  login: string;
  password: string;
  domain: string;
  /** host:port of the registrar / proxy. */
  proxy: string;
}

export interface LinphoneOptions {
  account: LinphoneAccount;
  transport: 'udp' | 'tcp' | 'tls';
  /** Answer incoming calls at once (`-a`). */
  autoAnswer?: boolean;
  /** CA file the phone trusts for TLS (`[sip] root_ca`); the server's name is not checked (see below). */
  caFile?: string;
}

export interface LinphonePhone {
  readonly sipPort: number;
  readonly service: Service;
  /** Writes one command line to linphonec's prompt. */
  send(line: string): void;
  /** linphonec's output so far. */
  output(): string;
  /** Resolves with the first match of `pattern` in the output after offset `from` (default 0). */
  waitForOutput(pattern: RegExp, options?: { from?: number; timeoutMs?: number }): Promise<RegExpExecArray>;
  /** Asks `proxy list` until the account shows `registered: yes`. */
  waitForRegistration(timeoutMs?: number): Promise<void>;
  /** Seconds and RMS level of the audio the phone received (its `record` file). */
  receivedAudio(): { seconds: number; rms: number };
  stop(): Promise<void>;
}

/** linphonec's whole output (it is small: liblinphone's own log is off) */
const FULL_LOG = 16 * 1024 * 1024;

/** 5 s of a 440 Hz tone, 8 kHz 16-bit mono: what the phone "says" on its calls. */
function toneWav(): Buffer {
  const rate = 8000;
  const pcm = Buffer.alloc(rate * 5 * 2);
  for (let i = 0; i < rate * 5; i++) pcm.writeInt16LE(Math.round(8000 * Math.sin((2 * Math.PI * 440 * i) / rate)), i * 2);
  return pcm16Wav(pcm, 1, rate);
}

export async function startLinphone(options: LinphoneOptions): Promise<LinphonePhone> {
  const dir = makeServiceDir('linphone');
  const home = join(dir, 'home');
  mkdirSync(join(home, '.local', 'share', 'linphone'), { recursive: true });
  const sipPort = await freePort();
  const rtp: PortRange = await freePortRange(20);
  const { account } = options;
  const proxy = `sip:${account.proxy};transport=${options.transport}`;
  const port = (transport: LinphoneOptions['transport']): number => (options.transport === transport ? sipPort : -1);
  const rc = [
    '[sip]',
    `sip_port=${port('udp')}`,
    `sip_tcp_port=${port('tcp')}`,
    `sip_tls_port=${port('tls')}`,
    'bind_address=127.0.0.1',
    // the chain is verified against caFile; the name is not: belle-sip's mbedTLS reads no IP-address
    // subjectAltName ("<unsupported>") and reports CN-mismatch for a certificate of 127.0.0.1
    ...(options.caFile ? [`root_ca=${options.caFile}`, 'verify_server_certs=1', 'verify_server_cn=0'] : []),
    'default_proxy=0',
    '[proxy_0]',
    `reg_proxy=<${proxy}>`,
    `reg_route=<${proxy};lr>`,
    `reg_identity=<sip:${account.login}@${account.domain}>`,
    'reg_expires=600',
    'reg_sendregister=1',
    'publish=0',
    '[auth_info_0]',
    `username=${account.login}`,
    `passwd=${account.password}`,
    `realm=${account.domain}`,
    `domain=${account.domain}`,
    '[rtp]',
    `audio_rtp_port=${rtp.min}-${rtp.max}`,
    '[sound]',
    'echocancellation=0',
    '[net]',
    'ipv6=0',
    '',
  ].join('\n');
  const rcFile = join(dir, 'linphonerc');
  writeFileSync(rcFile, rc);
  const tone = join(dir, 'tone.wav');
  writeFileSync(tone, toneWav());
  const recording = join(dir, 'received.wav');

  const service = spawnService({
    name: 'linphonec', command: 'linphonec', args: ['-c', rcFile, '-d', '6', '-l', join(dir, 'liblinphone.log'), ...(options.autoAnswer ? ['-a'] : [])], dir, env: { HOME: home }, stdin: 'pipe',
  });
  const stopService = async (): Promise<void> => {
    await service.stop({ graceMs: 3000 });
    releasePort(rtp);
  };
  const send = (line: string): void => {
    service.child.stdin?.write(`${line}\n`);
  };
  service.child.stdin?.on('error', () => undefined);
  const waitForOutput = async (pattern: RegExp, { from = 0, timeoutMs = 10_000 } = {}): Promise<RegExpExecArray> => {
    let match: RegExpExecArray | null = null;
    await waitUntil(() => {
      match = pattern.exec(service.log(FULL_LOG).slice(from));
      return match !== null || !service.running();
    }, { timeoutMs, intervalMs: 100, what: `linphonec output ${pattern}` }).catch(() => undefined);
    if (!match) throw new Error(`linphonec: no ${pattern} within ${timeoutMs} ms\n${service.log(3000)}`);
    return match;
  };
  try {
    await waitForOutput(/linphonec> /);
  } catch (err) {
    await stopService();
    throw service.running() ? err : startupError(service, 'exited at start');
  }
  // sound from and to files: the tone is played into every call, what is received is recorded
  send('soundcard use files');
  send(`play ${tone}`);
  send(`record ${recording}`);

  return {
    sipPort,
    service,
    send,
    output: () => service.log(FULL_LOG),
    waitForOutput,
    async waitForRegistration(timeoutMs = 10_000) {
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        const from = service.log(FULL_LOG).length;
        send('proxy list');
        const state = await waitForOutput(/registered: (yes|no)/, { from, timeoutMs: 3000 });
        if (state[1] === 'yes') return;
        if (Date.now() > deadline) throw new Error(`linphonec: not registered within ${timeoutMs} ms\n${service.log(3000)}`);
        await new Promise((r) => setTimeout(r, 200));
      }
    },
    receivedAudio: () => pcm16Level([recording]),
    async stop() {
      send('quit');
      await Promise.race([service.exited, new Promise((r) => setTimeout(r, 2000))]);
      await stopService();
    },
  };
}
