/**
 * `dialcore` command line: edge | app | start. See `dialcore --help`.
 */
import { loadConfig, helpText, redactConfig, ConfigError, type DialcoreConfig, type InstanceAddress } from './config/index.js';
import { createLogger } from './app/observability/logger.js';
import { Edge, type EdgeOptions } from './edge/edge.js';
import { startEdgeThread } from './edge-thread.js';
import { startCore, type RunningCore } from './app/core.js';
import { startCallFeature, validateCallConfig, CallConfigError } from './app/calls/feature.js';
import type { Logger } from 'pino';
import { fork, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { hostname } from 'node:os';
import { isWildcardAddress } from './edge/transport/addresses.js';
import { fileURLToPath } from 'node:url';
import { uriHost } from './app/sip/uri-host.js';
import { useEnvironmentSnapshot } from './app/sip/srf.js';
import { tuneGarbageCollection } from './gc-tuning.js';

const USAGE = `Usage: dialcore <command> [options]

Commands:
  edge    run the embedded SIP edge alone (drachtio protocol server on --admin)
  app     run the core app alone against a drachtio server (--drachtio): our edge or drachtio-server
  start   run both, wired together, from the config file

Examples:
  dialcore edge --sip udp:127.0.0.1:5060 --sip tcp:127.0.0.1:5060 --admin 127.0.0.1:9022 --secret S
  dialcore app --drachtio 127.0.0.1:9022 --secret S
  dialcore start --redis redis://127.0.0.1:6379 --http 127.0.0.1:8080
`;

/** The edge's options from the config (the logger aside). */
function edgeOptions(config: DialcoreConfig): Omit<EdgeOptions, 'logger'> {
  if (!config.drachtio.secret) throw new ConfigError([{ field: 'drachtio.secret', message: 'a secret is required (--secret or DIALCORE_SECRET)' }]);
  return {
    sip: config.sip.listen,
    admin: config.drachtio.listen,
    secret: config.drachtio.secret,
    externalHost: config.sip.externalHost,
    tls: config.sip.tlsCert && config.sip.tlsKey ? { certFile: config.sip.tlsCert, keyFile: config.sip.tlsKey } : undefined,
    timers: { T1: config.sip.t1, T2: config.sip.t2, T4: config.sip.t4 },
    limits: { maxMessageBytes: config.sip.maxMessageBytes, maxConnections: config.sip.maxConnections, maxConnectionsPerIp: config.sip.maxConnectionsPerIp },
    ...(config.capture.hepServer ? {
      hep: { ...config.capture.hepServer, agentId: config.capture.hepAgentId, ...(config.capture.hepPassword ? { password: config.capture.hepPassword } : {}) },
    } : {}),
  };
}

/** The edge on this thread; returns its stop. */
async function runEdge(config: DialcoreConfig, logger: Logger): Promise<() => Promise<void>> {
  const edge = new Edge({ ...edgeOptions(config), logger: logger.child({ component: 'edge' }) });
  await edge.start();
  return () => edge.stop();
}

/** The edge on a thread of its own (edge-thread.ts); returns its stop. If the thread dies, so does the process. */
async function runEdgeOnThread(config: DialcoreConfig, logger: Logger): Promise<() => Promise<void>> {
  const edge = await startEdgeThread({ ...edgeOptions(config), logLevel: config.log.level }, {
    onFailure: (err) => {
      logger.fatal({ err }, 'the SIP edge thread failed; exiting');
      process.exit(1);
    },
  });
  return () => edge.stop();
}

/**
 * The instance address as other instances send to it (the host:port part of a SIP URI, with the transport
 * parameter for TCP): bindings record it and it names the instance's heartbeat.
 */
function instanceAddressUri(address: InstanceAddress): string {
  return `${uriHost(address.host)}:${address.port}${address.protocol === 'udp' ? '' : `;transport=${address.protocol}`}`;
}

/** `start`: the other instances reach this one on one of its own listeners. */
function checkInstanceAddressListens(config: DialcoreConfig): void {
  const address = config.cluster.instanceAddress;
  if (!address) return;
  const listens = config.sip.listen.some((l) => l.protocol === address.protocol && l.port === address.port && (l.host === address.host || isWildcardAddress(l.host)));
  if (!listens) {
    throw new ConfigError([{ field: 'cluster.instanceAddress', message: `${address.protocol}:${address.host}:${address.port} is not one of this instance's SIP listeners (sip.listen)` }]);
  }
}

/**
 * Where the other instances reach this instance's HTTP API (control commands for its sessions and calls):
 * its listening host, or for a wildcard bind the instance address's host (else the host name).
 */
function advertisedApiHost(config: DialcoreConfig): string {
  const listen = config.http.listen.host;
  return isWildcardAddress(listen) ? (config.cluster.instanceAddress?.host ?? hostname()) : listen;
}

/** Everything the core app needs, checked before anything starts. */
function checkAppConfig(config: DialcoreConfig): void {
  const problems = [];
  if (!config.drachtio.secret) problems.push({ field: 'drachtio.secret', message: 'a secret is required (--secret or DIALCORE_SECRET)' });
  if (config.http.adminToken.length < 16) problems.push({ field: 'http.adminToken', message: 'an admin API token of at least 16 characters is required (--admin-token or DIALCORE_ADMIN_TOKEN)' });
  if (config.registrar.nonceSecret && config.registrar.nonceSecret.length < 16) problems.push({ field: 'registrar.nonceSecret', message: 'must be at least 16 characters (or empty for a random per-process secret)' });
  try {
    validateCallConfig(config);
  } catch (err) {
    if (err instanceof CallConfigError) problems.push(...err.problems);
    else throw err;
  }
  if (problems.length) throw new ConfigError(problems);
}

async function runApp(config: DialcoreConfig, logger: Logger, drachtio = config.drachtio.connect): Promise<RunningCore> {
  checkAppConfig(config);
  return startCore({
    drachtio: { ...drachtio, secret: config.drachtio.secret },
    redisUrl: config.redis.url,
    ...(config.cluster.instanceAddress ? { instanceAddress: instanceAddressUri(config.cluster.instanceAddress) } : {}),
    ...(config.redis.sentinels.length > 0 ? {
      redisSentinel: { masterName: config.redis.sentinelMaster, sentinels: config.redis.sentinels, ...(config.redis.password ? { password: config.redis.password } : {}) },
    } : {}),
    ...(config.redis.clusterNodes.length > 0 ? {
      redisCluster: { rootNodes: config.redis.clusterNodes, ...(config.redis.password ? { password: config.redis.password } : {}) },
    } : {}),
    // extra app workers (DIALCORE_APP_WORKER=1) leave HTTP to the first process
    http: process.env.DIALCORE_APP_WORKER === '1' ? null : { ...config.http.listen, adminToken: config.http.adminToken, advertisedHost: advertisedApiHost(config) },
    registrar: config.registrar,
    logger: logger.child({ component: 'core' }),
  }, ({ srf, services }) => startCallFeature({ srf, services, logger: logger.child({ component: 'calls' }) }, {
    rtpengines: config.rtpengine.engines.map((e) => `${uriHost(e.host)}:${e.port}`),
    rtpenginePingIntervalMs: config.rtpengine.pingIntervalMs,
    domain: config.calls.domain,
    carriers: config.carriers,
    dialPlans: config.dialPlans,
    ringTimeoutSeconds: config.calls.ringTimeoutSeconds,
    maxCallSeconds: config.calls.maxCallSeconds,
    agents: { promptsDir: config.agents.promptsDir, holdMusic: config.agents.holdMusic },
    recordingDir: config.recording.dir,
    janusUrl: config.mixer.janusUrl,
    // dial-in runs when access numbers are configured
    ...(config.dialIn.accessNumbers.length > 0 ? { dialIn: config.dialIn } : {}),
    sessionExpiresSeconds: config.calls.sessionExpiresSeconds,
    minSessionExpiresSeconds: config.calls.minSessionExpiresSeconds,
    pbxOptionsIntervalSeconds: config.calls.pbxOptionsIntervalSeconds,
  }));
}

/**
 * An extra core app process (`dialcore app`) on the same edge: the edge shares requests among
 * connected apps round robin, and all state is in Redis. Restarted if it dies.
 */
function startAppWorker(argv: string[], config: DialcoreConfig, logger: Logger, index: number): () => Promise<void> {
  const args = argv.filter((a, i) => a !== 'start' && !(a.startsWith('--app-workers')) && argv[i - 1] !== '--app-workers');
  const { host, port } = config.drachtio.listen;
  let child: ChildProcess | undefined;
  let stopping = false;
  const spawn = () => {
    child = fork(fileURLToPath(new URL('../bin/dialcore.js', import.meta.url)), ['app', ...args, '--drachtio', `${uriHost(host)}:${port}`], {
      // the workers answer each other's digest challenges, so they sign nonces with the first process's key
      env: { ...process.env, DIALCORE_APP_WORKER: '1', DIALCORE_NONCE_SECRET: config.registrar.nonceSecret },
      stdio: 'inherit',
    });
    child.on('exit', (code, signal) => {
      if (stopping) return;
      logger.warn({ worker: index, code, signal }, 'app worker exited; restarting');
      setTimeout(spawn, 1000).unref();
    });
  };
  spawn();
  // SIGTERM makes the worker drain as this process does; it exits once its calls are over
  return async () => {
    stopping = true;
    if (!child || child.exitCode !== null) return;
    const exited = new Promise<void>((resolve) => child?.once('exit', () => resolve()));
    child.kill('SIGTERM');
    await Promise.race([exited, new Promise((r) => setTimeout(r, config.shutdown.drainSeconds * 1000 + 5000))]);
    if (child.exitCode === null) child.kill('SIGKILL');
  };
}

export async function main(argv: string[]): Promise<number> {
  useEnvironmentSnapshot();
  tuneGarbageCollection();
  let loaded;
  try {
    loaded = loadConfig({ argv });
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`${err.message}\n`);
      return 2;
    }
    throw err;
  }
  const [command] = loaded.positionals;
  if (loaded.help || !command || command === 'help') {
    process.stdout.write(`${USAGE}\n${helpText()}\n`);
    return command || loaded.help ? 0 : 2;
  }
  const { config } = loaded;
  const logger = createLogger({ level: config.log.level });
  logger.debug({ config: redactConfig(config) }, 'configuration');
  const stoppers: Array<() => Promise<void>> = [];
  /** Run before the stoppers on SIGTERM: cores wait (bounded) for their live calls, workers drain likewise. */
  const drainers: Array<(limitMs: number) => Promise<void>> = [];
  try {
    switch (command) {
      case 'edge': {
        stoppers.push(await runEdge(config, logger));
        break;
      }
      case 'app': {
        const core = await runApp(config, logger);
        drainers.push((limitMs) => core.drain(limitMs));
        stoppers.push(() => core.stop());
        break;
      }
      case 'start': {
        checkAppConfig(config);
        checkInstanceAddressListens(config);
        // One nonce key for every app worker: a REGISTER answered on another worker than the one that
        // challenged it must verify (RFC 7616 §3.3 leaves the nonce's make-up to the server).
        if (config.app.workers > 1 && !config.registrar.nonceSecret) config.registrar.nonceSecret = randomBytes(32).toString('hex');
        stoppers.push(await (config.edge.thread ? runEdgeOnThread : runEdge)(config, logger));
        const core = await runApp(config, logger, config.drachtio.listen);
        drainers.push((limitMs) => core.drain(limitMs));
        stoppers.unshift(() => core.stop());
        for (let i = 1; i < config.app.workers; i++) drainers.push(startAppWorker(argv, config, logger, i));
        break;
      }
      default:
        process.stderr.write(`unknown command "${command}"\n\n${USAGE}`);
        return 2;
    }
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`${err.message}\n`);
    } else {
      logger.fatal({ err }, 'failed to start');
    }
    for (const stop of stoppers) await stop().catch(() => undefined);
    return 1;
  }
  let shuttingDown = false;
  const stopNow = async () => {
    // a dependency that is already gone (Redis stopped with us) must not hold the exit
    setTimeout(() => process.exit(0), 5000).unref();
    for (const stop of stoppers) await stop().catch(() => undefined);
    process.exit(0);
  };
  const shutdown = async (signal: string, drain: boolean) => {
    if (shuttingDown) {
      // a second signal: no more waiting for calls
      logger.info({ signal }, 'stopping now');
      return void stopNow();
    }
    shuttingDown = true;
    const limitMs = drain ? config.shutdown.drainSeconds * 1000 : 0;
    logger.info({ signal, drainSeconds: limitMs / 1000 }, 'shutting down');
    // the edge and the SIP link stay up meanwhile, for the live calls' in-dialog requests
    await Promise.all(drainers.map((drainer) => drainer(limitMs).catch(() => undefined)));
    await stopNow();
  };
  // an app worker of `dialcore start --app-workers` goes with the process that forked it
  if (process.env.DIALCORE_APP_WORKER === '1' && process.send) process.once('disconnect', () => void shutdown('parent-exit', false));
  process.on('SIGINT', () => void shutdown('SIGINT', true));
  process.on('SIGTERM', () => void shutdown('SIGTERM', true));
  return -1; // keep running
}
