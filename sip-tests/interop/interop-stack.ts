/**
 * What the real-client suites (baresip, linphone) share: the product's call stack listening on UDP, TCP and
 * TLS (a self-signed certificate the phones are given as their CA), SIPp carrier gateways and trunk calls,
 * and the audio checks.
 */
import { rmSync } from 'node:fs';
import { afterAll, afterEach, expect } from 'vitest';
import { CARRIER_IP, useCallStack, type CallStack, type TestUser } from '../calls/call-stack.js';
import { freePort, runSipp, startSippServer, type SippResult, type SippServer } from '../harness/index.js';
import { makeSelfSignedCert } from '../fixtures/stack.js';

export const transports = ['udp', 'tcp', 'tls'] as const;
export type Transport = (typeof transports)[number];

/** Anything with a stop() the suite must end after each test (the phones). */
export interface Stoppable {
  stop(): Promise<void>;
}

export interface InteropStack {
  readonly cs: CallStack;
  /** CA file for the phones (the edge's self-signed TLS certificate). */
  readonly caFile: string;
  /** host:port of the edge's listener for `transport`. */
  proxyFor(transport: Transport): string;
  /** A new user with a DID routed to them. */
  newUser(): Promise<TestUser & { did: string }>;
  /** Stopped after the test. */
  track<T extends Stoppable>(phone: T): T;
  /** A SIPp carrier gateway taking one call with `scenario` (its `done` settles after it), the only outbound gateway of this test. */
  gateway(scenario: string): Promise<SippServer>;
  /** A SIPp carrier trunk (source 127.0.0.2) calling `did`. */
  carrierCall(scenario: string, did: string, pauseMs?: number): Promise<SippResult>;
  /** Waits until rtpengine counted at least `atLeast` packets from each leg of the live call; returns [a, b]. */
  bothLegsCarryAudio(atLeast: number): Promise<number[]>;
}

export function useInteropStack(): InteropStack {
  let cs: CallStack | undefined;
  const servers: SippServer[] = [];
  const tracked: Stoppable[] = [];
  const cert = makeSelfSignedCert();
  let didCounter = 0;

  // phones first (they unregister and hang up), then the stack's own after-each (SIPp peers, nothing left)
  afterEach(async () => {
    await Promise.all(tracked.splice(0).map((phone) => phone.stop()));
  });
  useCallStack((started) => (cs = started), servers, (stack) => void stack.carriers.outboundGateways.splice(0), {
    protocols: ['udp', 'tcp', 'tls'],
    tls: cert,
  });
  afterAll(() => rmSync(cert.dir, { recursive: true, force: true }));

  const stack = (): CallStack => {
    if (!cs) throw new Error('call stack not started');
    return cs;
  };

  return {
    get cs() {
      return stack();
    },
    caFile: cert.certFile,
    proxyFor(transport) {
      if (transport !== 'tls') return stack().target;
      const tls = stack().stack.addresses.sip.find((listener) => listener.protocol === 'tls');
      if (!tls) throw new Error('no tls listener');
      return `127.0.0.1:${tls.port}`;
    },
    async newUser() {
      const user = await stack().createUser({});
      const did = `4420712399${String(++didCounter).padStart(2, '0')}`;
      stack().routeDid(did, user.id);
      return { ...user, did };
    },
    track(phone) {
      tracked.push(phone);
      return phone;
    },
    async gateway(scenario) {
      const port = await freePort();
      const server = await startSippServer({ scenario, localPort: port, calls: 1, traceMessages: true, timeoutMs: 30_000 });
      servers.push(server);
      stack().carriers.outboundGateways.push(stack().gateway('uk', port));
      return server;
    },
    carrierCall(scenario, did, pauseMs) {
      return runSipp({
        scenario, target: stack().target, service: did, calls: 1, traceMessages: true, timeoutMs: 30_000,
        keys: { caller: '+447700900123', caller_national: '07700900123' },
        extraArgs: ['-i', CARRIER_IP, '-mi', CARRIER_IP, ...(pauseMs !== undefined ? ['-d', String(pauseMs)] : [])],
      });
    },
    async bothLegsCarryAudio(atLeast) {
      let last: number[] = [];
      const deadline = Date.now() + 10_000;
      while (Date.now() < deadline) {
        const call = stack().calls.list()[0];
        if (call) last = await stack().packetsByLeg(call.callId);
        if (last.length === 2 && last.every((n) => n >= atLeast)) return last;
        await new Promise((r) => setTimeout(r, 200));
      }
      throw new Error(`rtpengine packets per leg, [a, b]: ${JSON.stringify(last)}`);
    },
  };
}

/** The phone decoded real audio (the carrier's A-law file, not silence, which decodes to about 8) for at least `seconds`. */
export function expectHeardAudio(heard: { seconds: number; rms: number }, seconds: number): void {
  expect(heard.seconds, 'seconds of audio the phone received').toBeGreaterThanOrEqual(seconds);
  expect(heard.rms, 'level of the audio the phone received (A-law silence decodes to 8)').toBeGreaterThan(50);
}
