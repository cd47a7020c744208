/**
 * The C++ drachtio-server as the SIP server under the app, instead of the embedded edge: the
 * suites that build their stack with `startStack` (sip-tests/fixtures/stack.ts) run against it
 * when DIALCORE_TEST_DRACHTIO_SERVER names its binary. It is not a Debian package, so CI runs
 * the edge only; this is how the app is checked against the server production may run.
 *
 * Listeners are given as contacts (`sip:127.0.0.1:PORT;transport=udp,tcp`) on the command line;
 * the config file holds the admin (drachtio protocol) listener, which the server requires there,
 * and logs to the console (the service log).
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { isBound, makeServiceDir, spawnService, waitUntil, type Service } from './service.js';

export type DrachtioProtocol = 'udp' | 'tcp' | 'tls' | 'ws' | 'wss';

export interface DrachtioServerOptions {
  binary: string;
  /** one port per listener; udp and tcp may share one */
  listeners: Array<{ protocol: DrachtioProtocol; port: number }>;
  adminPort: number;
  secret: string;
  /** certificate for tls/wss listeners; chainFile defaults to certFile (right for a self-signed one) */
  tls?: { certFile: string; keyFile: string; chainFile?: string };
}

export interface DrachtioServer {
  service: Service;
  stop(): Promise<void>;
}

const config = (adminPort: number, secret: string): string => `<drachtio>
  <admin port="${adminPort}" secret="${secret}">127.0.0.1</admin>
  <sip><contacts></contacts></sip>
  <cdrs>false</cdrs>
  <logging><console/><sofia-loglevel>3</sofia-loglevel><loglevel>${process.env.DIALCORE_TEST_DRACHTIO_LOGLEVEL ?? 'info'}</loglevel></logging>
</drachtio>
`;

export async function startDrachtioServer(opts: DrachtioServerOptions): Promise<DrachtioServer> {
  const dir = makeServiceDir('drachtio-server');
  const configFile = join(dir, 'drachtio.conf.xml');
  writeFileSync(configFile, config(opts.adminPort, opts.secret));
  const byPort = new Map<number, DrachtioProtocol[]>();
  for (const { protocol, port } of opts.listeners) byPort.set(port, [...(byPort.get(port) ?? []), protocol]);
  // sofia-sip binds tls and wss only for a sips: contact, and drachtio hands it the certificate only then
  const contacts = [...byPort].flatMap(([port, protocols]) => [
    '--contact', `${protocols.some((p) => p === 'tls' || p === 'wss') ? 'sips' : 'sip'}:127.0.0.1:${port};transport=${protocols.join(',')}`,
  ]);
  const service = spawnService({
    name: 'drachtio-server',
    dir,
    command: opts.binary,
    args: [
      '-f', configFile, ...contacts,
      // without a chain file sofia-sip looks for ./cafile.pem and drops the TLS listener; a self-signed certificate is its own chain
      ...(opts.tls ? ['--cert-file', opts.tls.certFile, '--key-file', opts.tls.keyFile, '--chain-file', opts.tls.chainFile ?? opts.tls.certFile] : []),
    ],
  });
  try {
    await waitUntil(async () => {
      if (!service.running()) throw new Error(`drachtio-server exited:\n${service.log()}`);
      if (!(await isBound(opts.adminPort, 'tcp'))) return false;
      for (const { protocol, port } of opts.listeners) {
        if (!(await isBound(port, protocol === 'udp' ? 'udp' : 'tcp'))) return false;
      }
      return true;
    }, { timeoutMs: 10_000, what: 'drachtio-server listening' });
  } catch (err) {
    await service.stop();
    throw err;
  }
  return { service, stop: async () => void (await service.stop()) };
}
