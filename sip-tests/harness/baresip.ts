/**
 * baresip (Debian 12: 1.0.0) as a real SIP phone in integration tests, headless on loopback.
 *
 *   const phone = await startBaresip({ login: '1001', password, domain: 'dialcore.test', proxy: '127.0.0.1:5060', transport: 'udp' });
 *   await phone.waitForEvent('REGISTER_OK');
 *   await phone.command('dial', 'sip:02071234567@dialcore.test');
 *   await phone.waitForEvent('CALL_ESTABLISHED');
 *   await phone.command('hangup');
 *   await phone.stop();
 *
 * Each phone gets a config dir of its own (`baresip -f <dir>`): SIP on 127.0.0.1 (a free port), RTP on
 * a free port range, G.711 only, a 440 Hz sine as the microphone (`ausine`) and ALSA's built-in `null`
 * device as the speaker, so no sound card is needed. It is driven through the `ctrl_tcp` module
 * (netstring-framed JSON on a TCP port of its own: commands of the `menu` module, and events such as
 * REGISTER_OK, CALL_INCOMING, CALL_ESTABLISHED, CALL_CLOSED).
 */
import { readdirSync, writeFileSync } from 'node:fs';
import { connect, type Socket } from 'node:net';
import { join } from 'node:path';
import { freePort, freePortRange, releasePort, type PortRange } from './ports.js';
import { makeServiceDir, spawnService, startupError, waitUntil, type Service } from './service.js';
import { pcm16Level } from './wav-level.js';

export interface BaresipOptions {
  login: string;
  password: string;
  /** Domain of the AOR (the registrar's realm). */
  domain: string;
  /** host:port of the registrar / proxy the phone sends everything to. */
  proxy: string;
  transport: 'udp' | 'tcp' | 'tls';
  /** Answer incoming calls at once (account `answermode=auto`). */
  autoAnswer?: boolean;
  /** Registration interval in seconds; 0 = do not register. Default 600. */
  registerSeconds?: number;
  /** CA file the phone trusts for TLS (`sip_cafile`). */
  caFile?: string;
  /** Print every SIP message sent and received into the log (`-s`). */
  sipTrace?: boolean;
  /** Extra account parameters (`;name=value`), e.g. `sipnat=outbound`. */
  accountParams?: readonly string[];
}

/** A ctrl_tcp event: `type` is e.g. REGISTER_OK, CALL_INCOMING, CALL_ESTABLISHED, CALL_CLOSED. */
export interface BaresipEvent {
  type: string;
  class?: string;
  param?: string;
  peeruri?: string;
  id?: string;
  [key: string]: unknown;
}

export interface BaresipPhone {
  readonly sipPort: number;
  readonly service: Service;
  /** Every event so far, oldest first. */
  readonly events: BaresipEvent[];
  /** Runs a command (`dial`, `hangup`, `accept`, `callstat`, ...); resolves with its printed output. */
  command(name: string, params?: string): Promise<string>;
  /**
   * Resolves once the registrar answered the phone's REGISTER 200 with `bindings` bindings (read from the
   * phone's log: the first REGISTER may be answered before the control connection is up, so its event is lost).
   */
  waitForRegistration(bindings?: number, timeoutMs?: number): Promise<void>;
  /** The first event of `type` after the `from`-th event (default: any so far). */
  waitForEvent(type: string, options?: { from?: number; timeoutMs?: number }): Promise<BaresipEvent>;
  /**
   * The audio the phone received and decoded on its calls so far (the `sndfile` module's `*-dec.wav`
   * recordings, 16-bit PCM): its length in seconds and its RMS level (A-law silence is about 8).
   */
  receivedAudio(): { seconds: number; rms: number };
  stop(): Promise<void>;
}

const MODULE_DIR = '/usr/lib/baresip/modules';

interface Pending {
  resolve(data: string): void;
  reject(err: Error): void;
}

export async function startBaresip(options: BaresipOptions): Promise<BaresipPhone> {
  const dir = makeServiceDir('baresip');
  // baresip listens for SIP/TLS on the SIP port + 1: both must be free
  const sipPorts = await freePortRange(2);
  const sipPort = sipPorts.min;
  const ctrlPort = await freePort();
  const rtp: PortRange = await freePortRange(20);
  const config = [
    `sip_listen 127.0.0.1:${sipPort}`,
    ...(options.caFile ? [`sip_cafile ${options.caFile}`] : []),
    'net_interface 127.0.0.1',
    `rtp_ports ${rtp.min}-${rtp.max}`,
    'audio_source ausine,440',
    'ausrc_srate 48000', // ausine makes 48 kHz stereo only; baresip resamples to the codec's rate
    'ausrc_channels 2',
    'audio_player alsa,null',
    'audio_alert alsa,null',
    `module_path ${MODULE_DIR}`,
    'module g711.so',
    'module ausine.so',
    'module alsa.so',
    'module sndfile.so', // records each call's audio, sent (enc) and received (dec), as WAV files in snd_path
    `snd_path ${dir}`,
    'module uuid.so', // the +sip.instance of RFC 5626 outbound (sipnat=outbound), kept in the config dir
    'module_app account.so',
    'module_app menu.so',
    'module_app ctrl_tcp.so',
    `ctrl_tcp_listen 127.0.0.1:${ctrlPort}`,
    '',
  ].join('\n');
  writeFileSync(join(dir, 'config'), config);
  const proxy = `sip:${options.proxy};transport=${options.transport}`;
  const params = [
    `auth_pass=${options.password}`,
    `outbound="${proxy}"`,
    `regint=${options.registerSeconds ?? 600}`,
    'audio_codecs=PCMA,PCMU',
    `answermode=${options.autoAnswer ? 'auto' : 'manual'}`,
    ...(options.accountParams ?? []),
  ];
  writeFileSync(join(dir, 'accounts'), `<sip:${options.login}@${options.domain};transport=${options.transport}>;${params.join(';')}\n`);
  writeFileSync(join(dir, 'contacts'), '');

  const service = spawnService({ name: 'baresip', command: 'baresip', args: ['-f', dir, '-v', ...(options.sipTrace ? ['-s'] : [])], dir });
  const stopService = async (): Promise<void> => {
    await service.stop({ graceMs: 3000 });
    releasePort(rtp);
    releasePort(sipPorts);
  };
  let socket: Socket;
  try {
    await waitUntil(() => !service.running() || service.log().includes('ctrl_tcp: TCP socket listening'), { timeoutMs: 10_000, what: 'baresip ctrl_tcp' });
    if (!service.running()) throw startupError(service, 'exited at start');
    socket = await new Promise<Socket>((resolve, reject) => {
      const s = connect({ host: '127.0.0.1', port: ctrlPort }, () => resolve(s));
      s.once('error', reject);
    });
  } catch (err) {
    const failure = err instanceof Error && err.message.includes('baresip') ? err : startupError(service, String(err));
    await stopService();
    throw failure;
  }

  const events: BaresipEvent[] = [];
  const pending = new Map<string, Pending>();
  const waiters = new Set<() => void>();
  let buffer = Buffer.alloc(0);
  let tokens = 0;
  socket.on('error', () => undefined);
  socket.on('data', (chunk: Buffer) => {
    buffer = Buffer.concat([buffer, chunk]);
    // netstrings: <length>:<payload>,
    for (;;) {
      const colon = buffer.indexOf(0x3a);
      if (colon < 0) return;
      const length = Number(buffer.subarray(0, colon).toString('ascii'));
      if (!Number.isInteger(length) || length < 0) {
        socket.destroy();
        return;
      }
      if (buffer.length < colon + 1 + length + 1) return;
      const payload = buffer.subarray(colon + 1, colon + 1 + length).toString('utf8');
      buffer = buffer.subarray(colon + 1 + length + 1);
      let message: Record<string, unknown>;
      try {
        message = JSON.parse(payload) as Record<string, unknown>;
      } catch {
        continue;
      }
      if (message.event === true && typeof message.type === 'string') {
        events.push(message as BaresipEvent);
        for (const wake of waiters) wake();
      } else if (message.response === true && typeof message.token === 'string') {
        const waiter = pending.get(message.token);
        pending.delete(message.token);
        const data = typeof message.data === 'string' ? message.data : '';
        if (message.ok === false) waiter?.reject(new Error(`baresip command failed: ${data}`));
        else waiter?.resolve(data);
      }
    }
  });

  return {
    sipPort,
    service,
    events,
    command(name, params) {
      const token = `t${++tokens}`;
      const json = JSON.stringify({ command: name, ...(params !== undefined ? { params } : {}), token });
      return new Promise<string>((resolve, reject) => {
        const timer = setTimeout(() => {
          pending.delete(token);
          reject(new Error(`baresip command ${name}: no response`));
        }, 5000);
        pending.set(token, {
          resolve: (data) => (clearTimeout(timer), resolve(data)),
          reject: (err) => (clearTimeout(timer), reject(err)),
        });
        socket.write(`${Buffer.byteLength(json)}:${json},`);
      });
    },
    waitForRegistration(bindings = 1, timeoutMs = 10_000) {
      const done = ` 200 OK () [${bindings} binding`;
      return waitUntil(() => service.log().includes(done), { timeoutMs, what: `baresip registration (${bindings} binding)` }).catch(() => {
        throw new Error(`baresip: not registered within ${timeoutMs} ms\n${service.log(4000)}`);
      });
    },
    waitForEvent(type, { from = 0, timeoutMs = 10_000 } = {}) {
      const find = (): BaresipEvent | undefined => events.slice(from).find((e) => e.type === type);
      const found = find();
      if (found) return Promise.resolve(found);
      return new Promise<BaresipEvent>((resolve, reject) => {
        const wake = (): void => {
          const event = find();
          if (!event) return;
          waiters.delete(wake);
          clearTimeout(timer);
          resolve(event);
        };
        const timer = setTimeout(() => {
          waiters.delete(wake);
          reject(new Error(`baresip: no ${type} event within ${timeoutMs} ms (events: ${events.map((e) => e.type).join(', ')})\n${service.log(4000)}`));
        }, timeoutMs);
        waiters.add(wake);
      });
    },
    receivedAudio: () => pcm16Level(readdirSync(dir).filter((name) => name.endsWith('-dec.wav')).map((name) => join(dir, name))),
    async stop() {
      socket.destroy();
      await stopService();
    },
  };
}
