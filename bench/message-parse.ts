/**
 * Micro-benchmark of the SIP message parser / serialiser (src/edge/message): parses/s of a typical INVITE and
 * REGISTER as they arrive from a softphone, plus the lazy header accessors the transaction layer always touches.
 * Run: node --import tsx bench/message-parse.ts [seconds-per-case]
 */
import { parseMessage, StreamFramer } from '../src/edge/message/index.js';

const sdp = [
  'v=0', 'o=- 3862382113 3862382113 IN IP4 192.0.2.10', 's=-', 'c=IN IP4 192.0.2.10', 't=0 0',
  'm=audio 40000 RTP/AVP 0 8 101', 'a=rtpmap:0 PCMU/8000', 'a=rtpmap:8 PCMA/8000',
  'a=rtpmap:101 telephone-event/8000', 'a=fmtp:101 0-16', 'a=ptime:20', 'a=sendrecv', '',
].join('\r\n');

const invite = Buffer.from([
  'INVITE sip:+15551234567@dialer.example.com;user=phone SIP/2.0',
  'Via: SIP/2.0/UDP 192.0.2.10:5060;rport;branch=z9hG4bK-524287-1---7b0c1bf2e3c44f02',
  'Max-Forwards: 70',
  'Contact: <sip:1001@192.0.2.10:5060;transport=udp>',
  'To: <sip:+15551234567@dialer.example.com;user=phone>',
  'From: "Agent 1001" <sip:1001@dialer.example.com>;tag=6e2c1f3a',
  'Call-ID: NjI0ZDg3YjE5ZDM4ZGY2MmQ1YzA0ZjYxNDYzOTk3ZjI',
  'CSeq: 2 INVITE',
  'Allow: INVITE, ACK, CANCEL, BYE, NOTIFY, REFER, MESSAGE, OPTIONS, INFO, SUBSCRIBE',
  'Content-Type: application/sdp',
  'Supported: replaces, norefersub, extended-refer, timer, outbound, path, X-cisco-serviceuri',
  'User-Agent: Z 5.6.1 v2.10.19.9',
  'Proxy-Authorization: Digest username="1001",realm="dialer.example.com",nonce="5f1d0c2a",uri="sip:+15551234567@dialer.example.com;user=phone",response="0a4f113b0a4f113b0a4f113b0a4f113b",algorithm=MD5',
  `Content-Length: ${Buffer.byteLength(sdp)}`,
  '',
  sdp,
].join('\r\n'));

const register = Buffer.from([
  'REGISTER sip:dialer.example.com SIP/2.0',
  'Via: SIP/2.0/UDP 192.0.2.10:5060;rport;branch=z9hG4bK-524287-1---1f2e3d4c5b6a7980',
  'Max-Forwards: 70',
  'Contact: <sip:1001@192.0.2.10:5060;rinstance=8f3a2b1c;transport=udp>;expires=3600',
  'To: <sip:1001@dialer.example.com>',
  'From: <sip:1001@dialer.example.com>;tag=1a2b3c4d',
  'Call-ID: ZjYxNDYzOTk3ZjINjI0ZDg3YjE5ZDM4ZGY2MmQ1YzA0',
  'CSeq: 7 REGISTER',
  'Expires: 3600',
  'Allow: INVITE, ACK, CANCEL, BYE, NOTIFY, REFER, MESSAGE, OPTIONS, INFO, SUBSCRIBE',
  'Supported: replaces, norefersub, extended-refer, timer, outbound, path',
  'User-Agent: Z 5.6.1 v2.10.19.9',
  'Authorization: Digest username="1001",realm="dialer.example.com",nonce="5f1d0c2a",uri="sip:dialer.example.com",response="0a4f113b0a4f113b0a4f113b0a4f113b",algorithm=MD5',
  'Allow-Events: presence, kpml, talk',
  'Content-Length: 0',
  '',
  '',
].join('\r\n'));

const seconds = Number(process.argv[2] ?? '1');

/**
 * Rate per second of CPU time used by this process (process.cpuUsage), so a busy machine skews it less than
 * wall-clock time would; the wall-clock rate is printed too.
 */
function run(label: string, fn: () => void): void {
  for (let i = 0; i < 20000; i++) fn();   // warm-up
  let count = 0;
  const started = process.hrtime.bigint();
  const cpuStarted = process.cpuUsage();
  const budget = BigInt(Math.round(seconds * 1e9));
  let elapsed = 0n;
  while (elapsed < budget) {
    for (let i = 0; i < 1000; i++) fn();
    count += 1000;
    elapsed = process.hrtime.bigint() - started;
  }
  const cpu = process.cpuUsage(cpuStarted);
  const cpuSeconds = (cpu.user + cpu.system) / 1e6;
  const perCpuSecond = Math.round(count / cpuSeconds).toLocaleString('en-US');
  const perWallSecond = Math.round(count / (Number(elapsed) / 1e9)).toLocaleString('en-US');
  console.log(`${label.padEnd(44)} ${perCpuSecond.padStart(10)} /s CPU   (${perWallSecond} /s wall)`);
}

function mustParse(buf: Buffer): void {
  const r = parseMessage(buf);
  if (!r.ok) throw new Error(`benchmark message does not parse: ${r.error}`);
}

mustParse(invite);
mustParse(register);
run('parseMessage INVITE (with SDP)', () => { parseMessage(invite); });
run('parseMessage REGISTER', () => { parseMessage(register); });
run('parse REGISTER + callId/fromTag/cseq/branch', () => {
  const r = parseMessage(register);
  if (r.ok) {
    const m = r.message;
    if (m.callId === undefined || m.fromTag === undefined || m.cseq === undefined || m.topViaBranch === undefined) {
      throw new Error('accessor failed');
    }
  }
});
const parsedInvite = parseMessage(invite);
if (parsedInvite.ok) {
  const msg = parsedInvite.message;
  run('serialise INVITE', () => { msg.serialise(); });
}
const framer = new StreamFramer();
const ten = Buffer.concat(Array.from({ length: 10 }, () => register));
run('StreamFramer 10 REGISTERs per chunk (x10)', () => { framer.push(ten); });
