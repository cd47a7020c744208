/**
 * RFC 4475 torture messages sent over UDP to the running edge, with a drachtio-srf app that behaves like a UA
 * (INVITE -> 480, REGISTER / OPTIONS / MESSAGE -> 200; other methods are not routed, so the edge answers them).
 * Expected results follow shared/conformance/rfc4475/INDEX.tsv; where the RFC allows either a 400 or liberal
 * acceptance, both are accepted. The parser's own verdicts are pinned in src/edge/message/conformance.test.ts;
 * this suite checks what reaches the wire and the app.
 *
 * One change to each message: `;rport` is added to the top Via (RFC 3581), so the edge answers to our socket
 * rather than to the Via's sent-by (example.com hosts, port 5060). A request whose Via is unparseable is answered
 * to its source anyway (src/edge/transaction/response-target.ts).
 *
 * Several messages share a top Via branch and sent-by (e.g. unkscm / novelsc, cparam01 / cparam02): by RFC 3261
 * 17.2.3 they are the same transaction, and the second would be absorbed as a retransmission (its response going to
 * the first one's port). T1 is shortened so transactions end after 64*T1, and a message whose branch was already
 * used waits for that.
 *
 * A stray 2xx response to an INVITE (unreason.dat, bcast.dat) that matches no transaction and no dialog of ours is
 * dropped: RFC 3261 13.2.2.4 (ACK + BYE of an unwanted 2xx) applies only to forks of INVITEs the edge sent.
 */
import { readFileSync } from 'node:fs';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { startEdgeStack, type EdgeTestStack } from '../fixtures/stack.js';
import type { Srf } from '../../src/app/sip/srf.js';
import { UdpPeer, headerOf, servingStatuses, statusOf, withRport } from './raw-sip.js';
import { RFC4475_DIR } from '../fixtures/shared.js';

const DIR = RFC4475_DIR;
/** what the app answers, so a status proves the request reached it */
const APP_INVITE_STATUS = 480;
const T1 = 10;
/** 64*T1 (timer J / H) plus a margin */
const TRANSACTION_LIFETIME_MS = 64 * T1 + 200;
/** edge bugs, see the header comment */
const KNOWN_BUGS = new Set<string>([]);

type Expectation =
  | { kind: 'status'; statuses: number[]; header?: string }
  | { kind: 'drop' };

const status = (...statuses: number[]): Expectation => ({ kind: 'status', statuses });
const DROP: Expectation = { kind: 'drop' };

/** file -> what the edge + a UA app send back (INDEX.tsv column expected_response, resolved for a UA) */
const EXPECTED: Record<string, Expectation> = {
  // 3.1.1 valid: accepted and handled by the app (or 501 for unknown methods, as a UA answers)
  // its To carries a tag: a request inside a dialog the edge does not have, 481 (RFC 3261 12.2.2), never 400
  'wsinv.dat': status(481),
  'intmeth.dat': status(501),
  'esc01.dat': status(APP_INVITE_STATUS),
  'escnull.dat': status(200),
  'esc02.dat': status(501),
  'lwsdisp.dat': status(200),
  'longreq.dat': status(APP_INVITE_STATUS),
  'dblreq.dat': status(200),
  'semiuri.dat': status(200),
  'transports.dat': status(200),
  'mpart01.dat': status(200),
  'unreason.dat': DROP, // a response matching no transaction (RFC 3261 18.1.2 / 17.1.3): nothing is sent back
  'noreason.dat': DROP,
  // 3.1.2 invalid
  'badinv01.dat': status(400),
  'clerr.dat': status(400),
  'ncl.dat': status(400),
  'scalar02.dat': status(400),
  'scalarlg.dat': DROP,
  'quotbal.dat': status(400),
  'ltgtruri.dat': status(400),
  'lwsruri.dat': status(400),
  'lwsstart.dat': status(400, APP_INVITE_STATUS),
  'trws.dat': status(400, 200),
  'escruri.dat': status(400),
  'baddate.dat': status(400, APP_INVITE_STATUS),
  'regbadct.dat': status(400),
  'badaspec.dat': status(400),
  'baddn.dat': status(400),
  'badvers.dat': status(505),
  'mismatch01.dat': status(400),
  'mismatch02.dat': status(501, 400),
  'bigcode.dat': DROP,
  // 3.2 / 3.3 semantic
  'badbranch.dat': status(400, 200),
  'insuf.dat': status(400),
  'unkscm.dat': status(416),
  'novelsc.dat': status(416),
  'unksm2.dat': status(200, 400),
  'bext01.dat': { kind: 'status', statuses: [420], header: 'Unsupported' },
  'invut.dat': status(415),
  'regaut01.dat': status(200, 401, 405),
  'multi01.dat': status(400),
  'mcl01.dat': status(400),
  'bcast.dat': DROP,
  'zeromf.dat': status(200),
  'cparam01.dat': status(200),
  'cparam02.dat': status(200),
  'regescrt.dat': status(200),
  'sdp01.dat': status(406, 400),
  // 3.4
  'inv2543.dat': status(APP_INVITE_STATUS),
};

const index = readFileSync(`${DIR}INDEX.tsv`, 'utf8').trim().split('\n').slice(1).map((line) => {
  const [file, section, cls, expected] = line.split('\t');
  return { file, section, cls, expected };
});

describe('RFC 4475 torture messages through the running edge (UDP)', () => {
  let stack: EdgeTestStack;
  let app: Srf;
  const appSaw: string[] = [];

  beforeAll(async () => {
    stack = await startEdgeStack({ timers: { T1, T2: 4 * T1 } });
    app = await stack.connectApp();
    app.invite((req, res) => {
      appSaw.push(`INVITE ${req.get('Call-ID') ?? ''}`);
      res.send(APP_INVITE_STATUS);
    });
    app.register((req, res) => {
      appSaw.push(`REGISTER ${req.get('Call-ID') ?? ''}`);
      res.send(200);
    });
    app.options((_req, res) => res.send(200));
    app.message((_req, res) => res.send(200));
  });
  afterAll(async () => {
    await stack?.stop();
  });
  afterEach(async () => {
    expect(await servingStatuses(stack.sipPort)).toEqual({ udp: 200, tcp: 200 });
  });

  it('has an expectation for every INDEX.tsv row', () => {
    expect(index.map((row) => row.file).sort()).toEqual(Object.keys(EXPECTED).sort());
  });

  const branchesUsed = new Set<string>();
  for (const row of index) {
    const expectation = EXPECTED[row.file];
    const title = expectation?.kind === 'drop' ? 'no response within 1 s' : `answered ${expectation?.statuses.join(' or ')}`;
    const test = KNOWN_BUGS.has(row.file) ? it.fails : it;
    test(`${row.file} (${row.section} ${row.cls}, INDEX: ${row.expected}): ${title}`, async () => {
      const message = withRport(readFileSync(DIR + row.file));
      const branch = /branch\s*=\s*([^;,\s]+)/i.exec(message.toString('latin1'))?.[1] ?? row.file;
      if (branchesUsed.has(branch)) await new Promise((resolve) => setTimeout(resolve, TRANSACTION_LIFETIME_MS));
      branchesUsed.add(branch);
      const peer = await UdpPeer.open();
      try {
        await peer.send(message, stack.sipPort);
        if (expectation.kind === 'drop') {
          expect(await peer.waitFor(() => true, 1000)).toBeUndefined();
          return;
        }
        const response = await peer.finalResponse(3000);
        expect(response, 'no final response').toBeDefined();
        expect(expectation.statuses).toContain(statusOf(response!));
        if (expectation.header) expect(headerOf(response!, expectation.header)).toBeTruthy();
        // a valid message is never refused as malformed
        if (row.cls === 'valid') expect(statusOf(response!)).not.toBe(400);
      } finally {
        peer.close();
      }
    });
  }

  it('dblreq.dat: the INVITE-looking bytes after the REGISTER never reach the app', () => {
    expect(appSaw.filter((seen) => seen.startsWith('INVITE') && seen.includes('dblreq'))).toEqual([]);
  });
});
