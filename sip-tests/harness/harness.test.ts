/**
 * The harness itself: real redis-server, rtpengine and SIPp processes on 127.0.0.1.
 */
import { createRequire } from 'node:module';
import { afterAll, describe, expect, it } from 'vitest';
import { createSocket } from 'node:dgram';
import { createClient } from 'redis';
import { startJanus } from './janus.js';
import { freePort, freePortRange, isBound, releasePort, parseSippStatsCsv, redisAnswersPing, rtpengineAnswersPing, runSipp, spawnService, startRedis, startRtpengine, startSippServer } from './index.js';

const cleanups: (() => Promise<unknown>)[] = [];
afterAll(async () => {
  for (const cleanup of cleanups.reverse()) await cleanup();
});

describe('ports', () => {
  it('hands out distinct ports free for UDP and TCP', async () => {
    const ports = await Promise.all([freePort(), freePort(), freePort()]);
    expect(new Set(ports).size).toBe(3);
    const socket = createSocket('udp4');
    await new Promise<void>((resolve, reject) => {
      socket.once('error', reject);
      socket.bind(ports[0], '127.0.0.1', () => resolve());
    });
    expect(await isBound(ports[0], 'udp')).toBe(true);
    socket.close();
  });

  it('hands out even, non-overlapping ranges', async () => {
    const a = await freePortRange(100);
    const b = await freePortRange(100);
    expect(a.min % 2).toBe(0);
    expect(a.max - a.min).toBe(99);
    expect(a.max < b.min || b.max < a.min).toBe(true);
    const wide = await freePortRange(250); // spans three blocks
    expect(wide.max - wide.min).toBe(249);
    expect(wide.max < a.min || a.max < wide.min).toBe(true);
    expect(wide.max < b.min || b.max < wide.min).toBe(true);
    releasePort(wide);
  });
});

describe('spawnService', () => {
  it('captures output in its log and stops the process', async () => {
    const service = spawnService({ name: 'sleeper', command: 'sh', args: ['-c', 'echo started; exec sleep 30'] });
    await expect.poll(() => service.log()).toContain('started');
    expect(service.running()).toBe(true);
    const exit = await service.stop({ graceMs: 2000 });
    expect(exit.signal).toBe('SIGTERM');
    expect(service.running()).toBe(false);
  });

  it('reports a command that cannot be started', async () => {
    const service = spawnService({ name: 'missing', command: '/nonexistent/dialcore-test-binary', args: [] });
    const exit = await service.exited;
    expect(exit.spawnError?.message).toMatch(/ENOENT/);
    await service.stop();
  });
});

describe('redis', () => {
  it('starts, serves SET/GET, restarts on the same port and stops', async () => {
    const redis = await startRedis();
    cleanups.push(() => redis.stop());
    expect(redis.url).toBe(`redis://127.0.0.1:${redis.port}`);

    const client = createClient({ url: redis.url });
    client.on('error', () => undefined);
    await client.connect();
    await client.set('harness:key', 'value');
    expect(await client.get('harness:key')).toBe('value');
    client.destroy();

    await redis.restart();
    expect(await redisAnswersPing(redis.port)).toBe(true);
    const again = createClient({ url: redis.url });
    again.on('error', () => undefined);
    await again.connect();
    expect(await again.get('harness:key')).toBeNull(); // no persistence
    again.destroy();

    await redis.stop();
    expect(await redisAnswersPing(redis.port)).toBe(false);
  });
});

describe('rtpengine', () => {
  it('starts userspace rtpengine that answers an ng ping, and stops', async () => {
    const rtpengine = await startRtpengine({ mediaPorts: 20 });
    cleanups.push(() => rtpengine.stop());
    expect(rtpengine.portMax - rtpengine.portMin).toBe(19);
    expect(await rtpengineAnswersPing(rtpengine.ngPort)).toBe(true);
    expect(rtpengine.pid).toBeGreaterThan(0);
    expect(await rtpengine.callIds()).toEqual([]);
    // a call offered over ng is listed
    const { Client } = createRequire(import.meta.url)('rtpengine-client') as {
      Client: new (o: { localAddress: string; localPort: number; timeout: number }) => { offer(d: { port: number; host: string }, o: Record<string, unknown>): Promise<{ result?: string }>; close(): void };
    };
    const ng = new Client({ localAddress: '127.0.0.1', localPort: 0, timeout: 2000 });
    const sdp = 'v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 40000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n';
    expect((await ng.offer({ port: rtpengine.ngPort, host: '127.0.0.1' }, { 'call-id': 'harness-list-1', 'from-tag': 'a', sdp })).result).toBe('ok');
    ng.close();
    expect(await rtpengine.callIds()).toEqual(['harness-list-1']);
    await rtpengine.stop();
    expect(await rtpengineAnswersPing(rtpengine.ngPort, '127.0.0.1', 300)).toBe(false);
  });
});

describe('janus', () => {
  it('starts Janus with only the AudioBridge and the HTTP API on loopback, no admin API, and stops', async () => {
    const janus = await startJanus();
    const info = (await (await fetch(`${janus.url}/info`)).json()) as { plugins: Record<string, unknown>; transports: Record<string, unknown> };
    expect(Object.keys(info.plugins)).toEqual(['janus.plugin.audiobridge']);
    expect(Object.keys(info.transports)).toEqual(['janus.transport.http']);
    expect(await isBound(janus.httpPort, 'tcp')).toBe(true); // on 127.0.0.1 only
    expect(janus.log()).toMatch(new RegExp(`HTTP webserver started \\(port ${janus.httpPort}\\b`));
    expect(janus.log()).not.toMatch(/admin/i); // no admin/monitor API
    await janus.stop();
    expect(await isBound(janus.httpPort, 'tcp')).toBe(false);
  });
});

describe('sipp', () => {
  it('runs 10 calls of the built-in UAC against the built-in UAS', async () => {
    const uas = await startSippServer({ scenario: 'uas' });
    cleanups.push(() => uas.stop());
    const result = await runSipp({ scenario: 'uac', target: `127.0.0.1:${uas.port}`, calls: 10, rate: 50, timeoutMs: 20_000, responseTimes: true });
    expect(result.exitCode, result.stderr + result.stdout.slice(-1500)).toBe(0);
    expect(result.stats.successful).toBe(10);
    // every call's INVITE -> 200 time, the last ones too
    expect(result.responseTimesMs).toHaveLength(10);
    expect(result.responseTimesMs!.every((ms) => ms >= 0 && ms < 5000)).toBe(true);
    expect(result.stats.failed).toBe(0);
    expect(result.timedOut).toBe(false);

    const uasResult = await uas.stop();
    expect(uasResult.stats.successful).toBe(10);
  });

  it('reports failed calls when nobody answers', async () => {
    const silentPort = await freePort();
    const result = await runSipp({
      scenario: 'uac',
      target: `127.0.0.1:${silentPort}`,
      calls: 1,
      timeoutMs: 15_000,
      extraArgs: ['-recv_timeout', '1000', '-max_retrans', '1'],
    });
    expect(result.exitCode).not.toBe(0);
    expect(result.stats.successful).toBe(0);
    expect(result.stats.failed).toBe(1);
  });

  it('refuses injection fields that would break the CSV', async () => {
    await expect(runSipp({ scenario: 'uac', target: '127.0.0.1:9', calls: 1, inf: { rows: [['a;b']] } })).rejects.toThrow(/may not contain/);
  });

  it('parses the last row of a statistics CSV', () => {
    const stats = parseSippStatsCsv('SuccessfulCall(C);FailedCall(C);Retransmissions(C);\n0;0;0;\n7;2;3;\n');
    expect(stats).toMatchObject({ successful: 7, failed: 2, retransmissions: 3 });
    expect(parseSippStatsCsv('')).toMatchObject({ successful: 0, failed: 0 });
  });
});
