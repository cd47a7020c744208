/**
 * Abuse protection on INVITE as on REGISTER (issue 15 item 4): a known scanner's INVITE and any INVITE from a
 * banned source get no final response (no challenge to work on); the same INVITE from anyone else is
 * challenged (407). The 100 Trying still goes out: the SIP server sends it on receipt of every INVITE
 * (the edge as drachtio-server does), before the app sees the request. Nonce-count replay of INVITE
 * credentials: outbound.test.ts.
 */
import { describe, expect, it } from 'vitest';
import { useCallStack, type CallStack } from './call-stack.js';
import { inviteRequest, statusOf, UdpPeer } from '../edge-faults/raw-sip.js';
import type { SippServer } from '../harness/index.js';

let cs: CallStack;
const servers: SippServer[] = [];
useCallStack((started) => (cs = started), servers);

/** Sends an INVITE from `host` and returns the final statuses it got back within `waitMs`. */
async function invite(host: string, headers: string[], waitMs = 1500): Promise<number[]> {
  const peer = await UdpPeer.open(host);
  try {
    await peer.send(inviteRequest(cs.stack.sipPort, peer.port, headers, host), cs.stack.sipPort);
    await peer.waitFor((m) => (statusOf(m) ?? 0) >= 200, waitMs);
    return peer.received.map((m) => statusOf(m) ?? 0).filter((status) => status >= 200);
  } finally {
    peer.close();
  }
}

describe('INVITE from scanners and banned sources', () => {
  it('a scanner User-Agent gets no final response; an ordinary phone is challenged', async () => {
    expect(await invite('127.0.0.1', ['User-Agent: friendly-scanner'])).toEqual([]);
    expect(await invite('127.0.0.1', ['User-Agent: sipvicious 0.3.4'])).toEqual([]);
    expect(await invite('127.0.0.1', ['User-Agent: Yealink SIP-T46S'])).toContain(407);
  });

  it('a banned source gets no final response; other sources are unaffected', async () => {
    const source = '127.0.0.23';
    for (let i = 0; i < cs.services.abuse.sourceFailureLimit; i++) await cs.services.abuse.recordFailure(source, null);
    expect(cs.services.abuse.isSourceBanned(source)).toBe(true);
    expect(await invite(source, ['User-Agent: Yealink SIP-T46S'])).toEqual([]);
    expect(await invite('127.0.0.1', ['User-Agent: Yealink SIP-T46S'])).toContain(407);
  });
});
