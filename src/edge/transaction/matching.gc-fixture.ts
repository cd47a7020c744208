/**
 * Run by matching.test.ts as `node --expose-gc --import tsx <this>`: parses 5,000 REGISTERs of ~1.3 KB each,
 * keeps only their server transaction keys (as the completed-transaction table does for 32 s), and prints the
 * heap they hold, in bytes per key.
 */
import { parseMessage } from '../message/index.js';
import { serverTransactionKey } from './matching.js';

const gc = (globalThis as { gc?: () => void }).gc;
if (gc === undefined) throw new Error('run with node --expose-gc');

function register(i: number): Buffer {
  return Buffer.from([
    'REGISTER sip:example.com SIP/2.0',
    `Via: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bK-${i}-${'b'.repeat(20)};rport`,
    `From: <sip:1001@example.com>;tag=${i}`,
    'To: <sip:1001@example.com>',
    `Call-ID: ${i}-call@10.0.0.1`,
    'CSeq: 1 REGISTER',
    'Contact: <sip:1001@10.0.0.1:5060>',
    `X-Padding: ${'p'.repeat(1000)}`,
    'Content-Length: 0',
    '', '',
  ].join('\r\n'));
}

const keys: string[] = [];
gc();
const before = process.memoryUsage().heapUsed;
for (let i = 0; i < 5000; i++) {
  const parsed = parseMessage(register(i));
  if (!parsed.ok) throw new Error('fixture message did not parse');
  const key = serverTransactionKey(parsed.message);
  if (key === undefined) throw new Error('no key');
  keys.push(key);
}
gc();
process.stdout.write(`${Math.round((process.memoryUsage().heapUsed - before) / keys.length)}\n`);
