/**
 * RFC 4475 torture messages sent over UDP to the running edge, with a drachtio-srf app that behaves like a UA
 * (INVITE -> 480, REGISTER / OPTIONS / MESSAGE -> 200; other methods are not routed, so the edge answers them).
 * Expected results follow /work/shared/conformance/rfc4475/INDEX.tsv; where the RFC allows either a 400 or liberal
 * acceptance, both are accepted. The parser's own verdicts are pinned in src/edge/message/conformance.test.ts;
 * this suite checks what reaches the wire and the app.
 *
 * One change to each message: `;rport` is added to the top Via (RFC 3581), so the edge answers to our socket
 * rather than to the Via's sent-by (example.com hosts, port 5060). A request whose Via is unparseable is answered
 * to its source anyway (src/edge/transaction/response-target.ts).
 */
import { readFileSync } from 'node:fs';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { startStack, type TestStack } from '../fixtures/stack.js';
import type { Srf } from '../../src/app/sip/srf.js';
import { UdpPeer, headerOf, servingStatuses, statusOf } from './raw-sip.js';

const DIR = '/work/shared/conformance/rfc4475/';
/** what the app answers, so a status proves the request reached it */
const APP_INVITE_STATUS = 480;

type Expectation =
  | { kind: 'status'; statuses: number[]; header?: string }
  | { kind: 'drop' };

const status = (...statuses: number[]): Expectation => ({ kind: 'status', statuses });
const DROP: Expectation = { kind: 'drop' };

/** file -> what the edge + a UA app send back (INDEX.tsv column expected_response, resolved for a UA) */
const EXPECTED: Record<string, Expectation> = {
  // 3.1.1 valid: accepted and handled by the app (or 501 for unknown methods, as a UA answers)
  'wsinv.dat': status(APP_INVITE_STATUS),
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
  'unreason.dat': DROP, // a response matching no transaction
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

/** Adds `;rport` to the first value of the first Via header field (folded lines included). */
export function withRport(message: Buffer): Buffer {
  const text = message.toString('latin1');
  const via = /(^|\r?\n)(via|v)[ \t]*:/i.exec(text);
  if (!via) return message;
  const valueStart = via.index + via[0].length;
  let fieldEnd = valueStart;
  for (;;) {
    const eol = text.indexOf('\n', fieldEnd);
    if (eol === -1) { fieldEnd = text.length; break; }
    const next = text[eol + 1];
    if (next === ' ' || next === '\t') { fieldEnd = eol + 1; continue; }
    fieldEnd = text[eol - 1] === '\r' ? eol - 1 : eol;
    break;
  }
  const value = text.slice(valueStart, fieldEnd);
  if (/;\s*rport/i.test(value)) return message;
  const comma = value.indexOf(',');
  const insertAt = comma === -1 ? fieldEnd : valueStart + comma;
  return Buffer.concat([message.subarray(0, insertAt), Buffer.from(';rport'), message.subarray(insertAt)]);
}

describe('RFC 4475 torture messages through the running edge (UDP)', () => {
  let stack: TestStack;
  let app: Srf;
  const appSaw: string[] = [];

  beforeAll(async () => {
    stack = await startStack();
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

  for (const row of index) {
    const expectation = EXPECTED[row.file];
    const title = expectation?.kind === 'drop' ? 'no response within 1 s' : `answered ${expectation?.statuses.join(' or ')}`;
    it(`${row.file} (${row.section} ${row.cls}, INDEX: ${row.expected}): ${title}`, async () => {
      const peer = await UdpPeer.open();
      try {
        await peer.send(withRport(readFileSync(DIR + row.file)), stack.sipPort);
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
