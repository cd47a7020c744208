/**
 * The process the edge bench measures: the embedded SIP edge (UDP + TCP on one loopback port) and a
 * trivial drachtio-srf app connected to it over the drachtio protocol, as `dialcore start` runs them.
 * The app answers OPTIONS 200 and INVITE with an SDP answer via srf.createUAS; srf handles the BYE.
 *
 * Run: node --import tsx bench/trivial-app-stack.ts
 * Prints one JSON line on stdout once ready: {"pid":..,"sipPort":..,"adminPort":..}
 * Stops cleanly on SIGTERM / SIGINT (so `node --cpu-prof` writes its profile).
 */
import { Edge } from '../src/edge/edge.js';
import { connectSrf, createSrf } from '../src/app/sip/srf.js';
import { freePort } from '../sip-tests/harness/ports.js';

export interface StackReady {
  pid: number;
  sipPort: number;
  adminPort: number;
}

const HOST = '127.0.0.1';
const SECRET = 'bench-secret';

function answerSdp(sessionId: number): string {
  return ['v=0', `o=- ${sessionId} 1 IN IP4 ${HOST}`, 's=-', `c=IN IP4 ${HOST}`, 't=0 0',
    'm=audio 40000 RTP/AVP 0 101', 'a=rtpmap:0 PCMU/8000', 'a=rtpmap:101 telephone-event/8000', 'a=sendrecv', ''].join('\r\n');
}

async function main(): Promise<void> {
  const sipPort = await freePort();
  const edge = new Edge({
    sip: [{ protocol: 'udp', host: HOST, port: sipPort }, { protocol: 'tcp', host: HOST, port: sipPort }],
    admin: { host: HOST, port: 0 },
    secret: SECRET,
  });
  const addresses = await edge.start();

  const srf = createSrf();
  await connectSrf(srf, { host: HOST, port: addresses.admin.port, secret: SECRET });
  srf.options((_req, res) => res.send(200));
  let sessions = 0;
  srf.invite((req, res) => {
    srf.createUAS(req, res, { localSdp: answerSdp(++sessions) }).catch(() => undefined);
  });

  let stopping = false;
  const stop = async (): Promise<void> => {
    if (stopping) return;
    stopping = true;
    srf.disconnect();
    await edge.stop();
    process.exit(0);
  };
  process.on('SIGTERM', () => void stop());
  process.on('SIGINT', () => void stop());

  // BENCH_STACK_MEM=<ms>: memory and edge table sizes on stderr every <ms> (diagnosis only)
  const memEvery = Number(process.env.BENCH_STACK_MEM ?? 0);
  if (memEvery > 0) {
    setInterval(() => {
      const m = process.memoryUsage();
      const mib = (n: number) => (n / 1048576).toFixed(0);
      process.stderr.write(`mem rss=${mib(m.rss)} heapUsed=${mib(m.heapUsed)} heapTotal=${mib(m.heapTotal)} external=${mib(m.external)} arrayBuffers=${mib(m.arrayBuffers)} ${JSON.stringify(edge.stats())}\n`);
    }, memEvery).unref();
  }

  const ready: StackReady = { pid: process.pid, sipPort, adminPort: addresses.admin.port };
  process.stdout.write(`${JSON.stringify(ready)}\n`);
}

main().catch((err: unknown) => {
  process.stderr.write(`trivial-app-stack failed: ${err instanceof Error ? err.stack : String(err)}\n`);
  process.exit(1);
});
