import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { ConfigError, helpText, loadConfig, redactConfig } from './index.js';

const dir = mkdtempSync(join(tmpdir(), 'dialcore-config-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function file(name: string, text: string): string {
  const path = join(dir, name);
  writeFileSync(path, text);
  return path;
}

/** The problems a load reports, as "field: message" lines. */
function problemsOf(load: () => unknown): string[] {
  try {
    load();
  } catch (err) {
    if (err instanceof ConfigError) return err.problems.map((p) => `${p.field}: ${p.message}`);
    throw err;
  }
  throw new Error('expected a ConfigError');
}

describe('loadConfig', () => {
  const empty = file('empty.jsonc', '{}');

  it('defaults: MD5 alone, which SIPp, phones that answer only the first challenge and JsSIP (only the last) all answer', () => {
    const { config } = loadConfig({ file: empty, env: {} });
    expect(config.registrar.digestAlgorithms).toEqual(['MD5']);
    expect(config.registrar.realm).toBe('dialcore');
    expect(config.sip.listen.length).toBeGreaterThan(0);
  });

  it('file < environment < flags', () => {
    const f = file('levels.jsonc', '{ // comment\n "registrar": { "realm": "from-file", "digestAlgorithms": ["SHA-256"] }, "log": { "level": "warn" } }');
    const fromFile = loadConfig({ file: f, env: {} }).config;
    expect(fromFile.registrar.realm).toBe('from-file');
    expect(fromFile.registrar.digestAlgorithms).toEqual(['SHA-256']);
    const fromEnv = loadConfig({ file: f, env: { DIALCORE_REALM: 'from-env', DIALCORE_DIGEST_ALGORITHMS: 'sha-256, md5' } }).config;
    expect(fromEnv.registrar.realm).toBe('from-env');
    expect(fromEnv.registrar.digestAlgorithms).toEqual(['SHA-256', 'MD5']);
    const fromFlag = loadConfig({ file: f, env: { DIALCORE_REALM: 'from-env' }, argv: ['start', '--realm', 'from-flag', '--digest-algorithms=MD5'] });
    expect(fromFlag.config.registrar.realm).toBe('from-flag');
    expect(fromFlag.config.registrar.digestAlgorithms).toEqual(['MD5']);
    expect(fromFlag.positionals).toEqual(['start']);
    expect(fromFlag.config.log.level).toBe('warn');
  });

  it('names every bad field by where it came from (flag, environment variable or file path)', () => {
    const problems = problemsOf(() => loadConfig({
      file: empty,
      env: { DIALCORE_DIGEST_ALGORITHMS: 'MD5,MD4' },
      argv: ['--t1', 'soon', '--redis', 'http://x', '--no-such-flag', 'x'],
    }));
    expect(problems).toEqual(expect.arrayContaining([
      expect.stringMatching(/^DIALCORE_DIGEST_ALGORITHMS: "MD4" is not one of /),
      '--t1: must be a whole number',
      '--redis: must be a redis:// or rediss:// URL',
      '--no-such-flag: unknown flag (see --help)',
    ]));
    expect(problemsOf(() => loadConfig({ file: empty, env: { DIALCORE_DIGEST_ALGORITHMS: 'MD5,md5' } }))).toEqual([
      'DIALCORE_DIGEST_ALGORITHMS: MD5 is listed twice',
    ]);
    expect(problemsOf(() => loadConfig({ file: file('none.jsonc', '{ "registrar": { "digestAlgorithms": [] } }'), env: {} }))).toEqual([
      expect.stringMatching(/^registrar\.digestAlgorithms: at least one algorithm is required/),
    ]);
  });

  it('mixer.janusUrl: unset by default (3-way refused); an http(s) URL from flag, environment or file; anything else named', () => {
    expect(loadConfig({ file: empty, env: {} }).config.mixer.janusUrl).toBeNull();
    expect(loadConfig({ file: empty, env: {}, argv: ['--janus-url', 'http://127.0.0.1:8088/janus/'] }).config.mixer.janusUrl).toBe('http://127.0.0.1:8088/janus');
    expect(loadConfig({ file: empty, env: { DIALCORE_JANUS_URL: 'https://mixer.example/janus' } }).config.mixer.janusUrl).toBe('https://mixer.example/janus');
    expect(loadConfig({ file: file('janus.jsonc', '{ "mixer": { "janusUrl": "http://10.0.0.5:8088/janus" } }'), env: {} }).config.mixer.janusUrl).toBe('http://10.0.0.5:8088/janus');
    expect(problemsOf(() => loadConfig({ file: empty, env: {}, argv: ['--janus-url', 'ws://127.0.0.1:8188'] }))).toEqual(['--janus-url: must be an http:// or https:// URL']);
    expect(problemsOf(() => loadConfig({ file: empty, env: { DIALCORE_JANUS_URL: 'http://h/janus?x=1' } }))).toEqual(['DIALCORE_JANUS_URL: must have no query or fragment']);
    expect(problemsOf(() => loadConfig({ file: empty, env: {}, argv: ['--janus-url=http://u:p@h/janus'] }))).toEqual(['--janus-url: must not carry credentials']);
    expect(problemsOf(() => loadConfig({ file: file('janus-bad.jsonc', '{ "mixer": { "janusUrl": 8088 } }'), env: {} }))).toEqual(['mixer.janusUrl: must be an http:// or https:// URL']);
  });

  it('edge.thread: on by default; true/false words from flag, environment or file; anything else named', () => {
    expect(loadConfig({ file: empty, env: {} }).config.edge.thread).toBe(true);
    expect(loadConfig({ file: empty, env: {}, argv: ['--edge-thread', 'false'] }).config.edge.thread).toBe(false);
    expect(loadConfig({ file: empty, env: { DIALCORE_EDGE_THREAD: 'no' } }).config.edge.thread).toBe(false);
    expect(loadConfig({ file: file('thread.jsonc', '{ "edge": { "thread": false } }'), env: {} }).config.edge.thread).toBe(false);
    expect(loadConfig({ file: empty, env: { DIALCORE_EDGE_THREAD: 'off' }, argv: ['--edge-thread=1'] }).config.edge.thread).toBe(true);
    expect(problemsOf(() => loadConfig({ file: empty, env: {}, argv: ['--edge-thread', 'maybe'] }))).toEqual(['--edge-thread: must be true or false']);
    expect(problemsOf(() => loadConfig({ file: file('thread-bad.jsonc', '{ "edge": { "thread": "sometimes" } }'), env: {} })))
      .toEqual(['edge.thread: must be true or false']);
  });

  it('cross-field rules', () => {
    expect(problemsOf(() => loadConfig({ file: empty, env: {}, argv: ['--min-expires', '600', '--max-expires', '60'] })))
      .toEqual(['registrar.minExpires: must not exceed registrar.maxExpires']);
    expect(problemsOf(() => loadConfig({ file: empty, env: {}, argv: ['--session-expires', '120', '--min-se', '600'] })))
      .toEqual(['calls.minSessionExpiresSeconds: must not exceed calls.sessionExpiresSeconds']);
  });

  it('RFC 4028 session timers: 1800 s asked, 90 s accepted by default; Min-SE below 90 is refused (§4)', () => {
    const { config } = loadConfig({ file: empty, env: {} });
    expect(config.calls).toMatchObject({ sessionExpiresSeconds: 1800, minSessionExpiresSeconds: 90 });
    expect(problemsOf(() => loadConfig({ file: empty, env: { DIALCORE_MIN_SE: '30' } }))).toEqual([expect.stringMatching(/^DIALCORE_MIN_SE: /)]);
  });

  it('Redis Sentinel: sentinels and the master name go together; passwords are redacted for logs', () => {
    const { config } = loadConfig({ file: empty, env: {}, argv: ['--redis-sentinel', '127.0.0.1:26379', '--redis-sentinel', '127.0.0.1:26380', '--redis-sentinel-master', 'dc', '--redis-password', 'redis-secret-1'] });
    expect(config.redis).toMatchObject({ sentinels: [{ host: '127.0.0.1', port: 26379 }, { host: '127.0.0.1', port: 26380 }], sentinelMaster: 'dc' });
    expect(problemsOf(() => loadConfig({ file: empty, env: {}, argv: ['--redis-sentinel', '127.0.0.1:26379'] }))).toEqual([expect.stringMatching(/^redis\.sentinelMaster: /)]);
    expect(problemsOf(() => loadConfig({ file: empty, env: {}, argv: ['--redis-sentinel-master', 'dc'] }))).toEqual([expect.stringMatching(/^redis\.sentinels: /)]);
    const shown = JSON.stringify(redactConfig(loadConfig({ file: empty, env: { DIALCORE_REDIS: 'redis://u:url-secret-2@127.0.0.1:6379', DIALCORE_REDIS_PASSWORD: 'redis-secret-1' } }).config));
    expect(shown).not.toContain('redis-secret-1');
    expect(shown).not.toContain('url-secret-2');
  });

  it('Redis Cluster: root nodes from a flag, env or the file; refused beside --redis or Sentinel, naming the field', () => {
    const { config } = loadConfig({ file: empty, env: {}, argv: ['--redis-cluster', '127.0.0.1:7001,127.0.0.1:7002', '--redis-cluster', '127.0.0.1:7003', '--redis-password', 'p'] });
    expect(config.redis.clusterNodes).toEqual([{ host: '127.0.0.1', port: 7001 }, { host: '127.0.0.1', port: 7002 }, { host: '127.0.0.1', port: 7003 }]);
    expect(loadConfig({ file: empty, env: { DIALCORE_REDIS_CLUSTER: '127.0.0.1:7001' } }).config.redis.clusterNodes).toEqual([{ host: '127.0.0.1', port: 7001 }]);
    expect(loadConfig({ file: empty, env: {} }).config.redis.clusterNodes).toEqual([]);
    // the shipped file names a redis.url: a cluster on the command line overrides it
    const withUrl = file('with-url.jsonc', '{ "redis": { "url": "redis://127.0.0.1:6379" } }');
    expect(loadConfig({ file: withUrl, env: {}, argv: ['--redis-cluster', '127.0.0.1:7001'] }).config.redis.clusterNodes).toHaveLength(1);
    const both = file('both.jsonc', '{ "redis": { "url": "redis://127.0.0.1:6379", "clusterNodes": ["127.0.0.1:7001"] } }');
    expect(problemsOf(() => loadConfig({ file: both, env: {} }))).toEqual([expect.stringMatching(/^redis\.clusterNodes: cannot be combined with redis\.url/)]);
    expect(problemsOf(() => loadConfig({ file: empty, env: {}, argv: ['--redis', 'redis://127.0.0.1:6379', '--redis-cluster', '127.0.0.1:7001'] })))
      .toEqual([expect.stringMatching(/^redis\.clusterNodes: cannot be combined with redis\.url/)]);
    expect(problemsOf(() => loadConfig({ file: file('c.jsonc', '{ "redis": { "clusterNodes": "127.0.0.1:7001" } }'), env: { DIALCORE_REDIS: 'redis://127.0.0.1:6379' } })))
      .toEqual([expect.stringMatching(/^redis\.clusterNodes: cannot be combined with redis\.url/)]);
    expect(problemsOf(() => loadConfig({ file: empty, env: {}, argv: ['--redis-cluster', '127.0.0.1:7001', '--redis-sentinel', '127.0.0.1:26379', '--redis-sentinel-master', 'dc'] })))
      .toEqual([expect.stringMatching(/^redis\.clusterNodes: cannot be combined with redis\.sentinels/)]);
    expect(problemsOf(() => loadConfig({ file: empty, env: {}, argv: ['--redis-cluster', '127.0.0.1:notaport'] }))).toEqual([expect.stringMatching(/^--redis-cluster: /)]);
  });

  it('HEP capture: an IP and port, agent id; a DNS name is refused naming the field', () => {
    const { config } = loadConfig({ file: empty, env: { DIALCORE_HEP: '127.0.0.1:9060', DIALCORE_HEP_AGENT_ID: '7' } });
    expect(config.capture).toMatchObject({ hepServer: { host: '127.0.0.1', port: 9060 }, hepAgentId: 7 });
    expect(loadConfig({ file: empty, env: {} }).config.capture.hepServer).toBeNull();
    expect(problemsOf(() => loadConfig({ file: empty, env: {}, argv: ['--hep', 'homer.example:9060'] }))).toEqual([expect.stringMatching(/^capture\.hepServer: /)]);
  });

  it('instance address: ip:port is UDP, tcp:ip:port TCP; other transports and names are refused naming the field', () => {
    const secret = { DIALCORE_NONCE_SECRET: 'a-shared-nonce-secret-0123456789' };
    expect(loadConfig({ file: empty, env: { ...secret, DIALCORE_INSTANCE_ADDRESS: '10.0.0.7:5060' } }).config.cluster.instanceAddress).toEqual({ protocol: 'udp', host: '10.0.0.7', port: 5060 });
    expect(loadConfig({ file: empty, env: secret, argv: ['--instance-address', 'TCP:[fd00::7]:5070'] }).config.cluster.instanceAddress).toEqual({ protocol: 'tcp', host: 'fd00::7', port: 5070 });
    expect(problemsOf(() => loadConfig({ file: empty, env: secret, argv: ['--instance-address', 'tls:10.0.0.7:5061'] }))).toEqual(['--instance-address: transport must be udp or tcp, got "tls"']);
    expect(problemsOf(() => loadConfig({ file: empty, env: secret, argv: ['--instance-address', 'tcp:core-a.example:5060'] }))).toEqual([expect.stringMatching(/^cluster\.instanceAddress: must be an IP address/)]);
  });

  it('graceful drain: 30 s by default, 0 allowed, negative refused', () => {
    expect(loadConfig({ file: empty, env: {} }).config.shutdown.drainSeconds).toBe(30);
    expect(loadConfig({ file: empty, env: {}, argv: ['--drain-seconds', '0'] }).config.shutdown.drainSeconds).toBe(0);
    expect(problemsOf(() => loadConfig({ file: empty, env: {}, argv: ['--drain-seconds', '-1'] }))).toEqual([expect.stringMatching(/^--drain-seconds: /)]);
  });

  it('--help lists every option; secrets are redacted for logs', () => {
    expect(helpText()).toContain('--digest-algorithms');
    const { config } = loadConfig({ file: empty, env: { DIALCORE_NONCE_SECRET: 'a-very-secret-nonce-key', DIALCORE_ADMIN_TOKEN: 'token-123' } });
    const shown = JSON.stringify(redactConfig(config));
    expect(shown).not.toContain('a-very-secret-nonce-key');
    expect(shown).not.toContain('token-123');
  });
});

describe('dialIn config', () => {
  const empty = join(dir, 'dialin-empty.jsonc');
  writeFileSync(empty, '{}');

  it('access numbers from the file, the environment or repeated flags; defaults for the rest', () => {
    const f = file('dialin.jsonc', '{ "dialIn": { "accessNumbers": ["+442071234567", "0800123456"], "lockoutFailures": 5 } }');
    const fromFile = loadConfig({ file: f, env: {} }).config.dialIn;
    expect(fromFile).toMatchObject({ accessNumbers: ['+442071234567', '0800123456'], lockoutFailures: 5, lockoutWindowSeconds: 900, firstDigitTimeoutMs: 10_000, interDigitTimeoutMs: 5_000, defaultLanguage: 'en' });
    expect(fromFile.dtmfEvents).toEqual({ host: '127.0.0.1', port: 22230 });
    expect(loadConfig({ file: empty, env: { DIALCORE_ACCESS_NUMBERS: '100,200' } }).config.dialIn.accessNumbers).toEqual(['100', '200']);
    expect(loadConfig({ file: empty, env: {}, argv: ['--access-number', '300', '--access-number', '400'] }).config.dialIn.accessNumbers).toEqual(['300', '400']);
  });

  it('errors name the field', () => {
    const bad = file('dialin-bad.jsonc', '{ "dialIn": { "accessNumbers": ["12ab"], "lockoutFailures": 0, "defaultLanguage": "english!" } }');
    const problems = problemsOf(() => loadConfig({ file: bad, env: {} }));
    expect(problems).toEqual(expect.arrayContaining([
      expect.stringMatching(/^dialIn\.accessNumbers: "12ab" is not a phone number/),
      'dialIn.lockoutFailures: must be at least 1',
      expect.stringMatching(/^dialIn\.defaultLanguage: must be a language tag/),
    ]));
    expect(problemsOf(() => loadConfig({ file: empty, env: { DIALCORE_ACCESS_NUMBERS: '100,100' } }))).toEqual(['DIALCORE_ACCESS_NUMBERS: 100 is listed twice']);
  });
});
