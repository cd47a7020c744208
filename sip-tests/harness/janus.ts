/**
 * A throw-away Janus (Debian package `janus`, 1.1.x) for one test file: the AudioBridge plugin
 * (the 3-way mixer, plain-RTP participants) behind the plain-HTTP Janus API on 127.0.0.1.
 *
 *   const janus = await startJanus();   // { url: 'http://127.0.0.1:<port>/janus', ... }
 *   ...
 *   await janus.stop();
 *
 * Nothing of /etc/janus is read: the service's temp dir holds a generated configuration folder
 * and plugin/transport folders with links to only libjanus_audiobridge.so and libjanus_http.so,
 * so no other plugin, transport, event handler or logger is loaded. The admin API is off
 * (no admin secret at all), the HTTP API listens on loopback only, and the AudioBridge's
 * plain-RTP sockets take ports from a block of their own on 127.0.0.1.
 */
import { existsSync, mkdirSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { freePort, freePortRange, releasePort } from './ports.js';
import { makeServiceDir, spawnService, startupError, waitUntil } from './service.js';

const HOST = '127.0.0.1';
const JANUS_LIB = '/usr/lib/x86_64-linux-gnu/janus';

export interface JanusServer {
  readonly host: string;
  readonly httpPort: number;
  /** The Janus HTTP API root (what config `mixer.janusUrl` takes). */
  readonly url: string;
  /** Plain-RTP ports the AudioBridge binds its participants to (inclusive). */
  readonly rtpPortMin: number;
  readonly rtpPortMax: number;
  stop(): Promise<void>;
  log(): string;
}

function janusLibDir(kind: 'plugins' | 'transports'): string {
  const multiarch = join(JANUS_LIB, kind);
  if (existsSync(multiarch)) return multiarch;
  throw new Error(`Janus ${kind} not found in ${multiarch} (install the Debian package janus)`);
}

/** Janus's own configuration format (libconfig-style .jcfg). */
function writeConfig(dir: string, httpPort: number, rtpMin: number, rtpMax: number): string {
  const conf = join(dir, 'conf');
  const plugins = join(dir, 'plugins');
  const transports = join(dir, 'transports');
  const empty = join(dir, 'none');
  for (const d of [conf, plugins, transports, empty]) mkdirSync(d, { recursive: true });
  symlinkSync(join(janusLibDir('plugins'), 'libjanus_audiobridge.so'), join(plugins, 'libjanus_audiobridge.so'));
  symlinkSync(join(janusLibDir('transports'), 'libjanus_http.so'), join(transports, 'libjanus_http.so'));
  writeFileSync(
    join(conf, 'janus.jcfg'),
    [
      'general: {',
      `  configs_folder = "${conf}"`,
      `  plugins_folder = "${plugins}"`,
      `  transports_folder = "${transports}"`,
      `  events_folder = "${empty}"`,
      `  loggers_folder = "${empty}"`,
      '  debug_level = 4',
      '  session_timeout = 60',
      '}',
      'media: {',
      '}',
      'nat: {',
      '  nice_debug = false',
      '}',
      '',
    ].join('\n'),
  );
  writeFileSync(
    join(conf, 'janus.transport.http.jcfg'),
    [
      'general: {',
      '  json = "plain"',
      '  base_path = "/janus"',
      '  http = true',
      `  port = ${httpPort}`,
      `  ip = "${HOST}"`,
      '  https = false',
      '}',
      'admin: {',
      '  admin_http = false',
      '  admin_https = false',
      '}',
      '',
    ].join('\n'),
  );
  writeFileSync(
    join(conf, 'janus.plugin.audiobridge.jcfg'),
    ['general: {', `  rtp_port_range = "${rtpMin}-${rtpMax}"`, `  local_ip = "${HOST}"`, '}', ''].join('\n'),
  );
  return conf;
}

async function answersInfo(url: string): Promise<boolean> {
  try {
    const res = await fetch(`${url}/info`, { signal: AbortSignal.timeout(500) });
    if (!res.ok) return false;
    const body = (await res.json()) as { janus?: string; plugins?: Record<string, unknown> };
    return body.janus === 'server_info' && body.plugins !== undefined && 'janus.plugin.audiobridge' in body.plugins;
  } catch {
    return false;
  }
}

export async function startJanus(options: { rtpPorts?: number } = {}): Promise<JanusServer> {
  const httpPort = await freePort();
  const range = await freePortRange(options.rtpPorts ?? 100);
  const dir = makeServiceDir('janus');
  const conf = writeConfig(dir, httpPort, range.min, range.max);
  const url = `http://${HOST}:${httpPort}/janus`;
  const service = spawnService({
    name: 'janus',
    command: 'janus',
    dir,
    args: ['--config', join(conf, 'janus.jcfg'), '--configs-folder', conf, '--disable-colors', '--interface', HOST, '--ice-enforce-list', 'lo'],
  });
  try {
    await waitUntil(async () => !service.running() || (await answersInfo(url)), { timeoutMs: 15_000, intervalMs: 100, what: `janus HTTP API on ${url}` });
  } catch {
    await service.stop({ keepDir: true });
    releasePort(range);
    throw startupError(service, `did not answer ${url}/info with the AudioBridge loaded`);
  }
  if (!service.running()) {
    releasePort(range);
    throw startupError(service, 'exited during start-up');
  }
  return {
    host: HOST,
    httpPort,
    url,
    rtpPortMin: range.min,
    rtpPortMax: range.max,
    async stop() {
      await service.stop();
      releasePort(range);
    },
    log: () => service.log(),
  };
}
