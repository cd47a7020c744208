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

  it('defaults: MD5 offered before SHA-256, so phones that answer only the first challenge register', () => {
    const { config } = loadConfig({ file: empty, env: {} });
    expect(config.registrar.digestAlgorithms).toEqual(['MD5', 'SHA-256']);
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
