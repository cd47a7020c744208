/** Reading SIPp's `-trace_msg` log: the messages one SIPp received. */
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

/** Every SIP message the SIPp received, as text (headers and body). */
export function receivedMessages(trace: string | undefined): string[] {
  if (!trace) return [];
  const blocks = trace.split(/^-{5,}.*$/m);
  const out: string[] = [];
  for (let i = 0; i < blocks.length; i++) {
    const block = blocks[i]!;
    const header = /message received \[\d+\] bytes :/i.exec(block);
    if (header) out.push(block.slice(header.index + header[0].length).trim());
  }
  return out;
}

/** Final status codes among the received messages (responses only). */
export function receivedStatuses(trace: string | undefined): number[] {
  return receivedMessages(trace)
    .map((m) => /^SIP\/2\.0 (\d{3})/.exec(m)?.[1])
    .filter((s): s is string => s !== undefined)
    .map(Number);
}

/** The first received request of a method (e.g. the INVITE a callee got). */
export function receivedRequest(trace: string | undefined, method: string): string | undefined {
  return receivedMessages(trace).find((m) => m.startsWith(`${method} `));
}

/** A header's values in one message (case-insensitive name, compact forms not expanded). */
export function headerValues(message: string, name: string): string[] {
  const head = message.split(/\r?\n\r?\n/)[0] ?? '';
  const re = new RegExp(`^${name}\\s*:\\s*(.*)$`, 'gim');
  return [...head.matchAll(re)].map((m) => m[1]!.trim());
}

/** call-uas-reject.xml answering `status reason` instead of 486 (SIPp reads status codes at load time). */
export function rejectScenario(status: number, reason: string): string {
  const template = readFileSync(fileURLToPath(new URL('../../sipp-scenarios/call-uas-reject.xml', import.meta.url)), 'utf8');
  const dir = mkdtempSync(join(tmpdir(), 'dialcore-reject-'));
  const file = join(dir, `call-uas-reject-${status}.xml`);
  writeFileSync(file, template.replace('SIP/2.0 486 Busy Here', `SIP/2.0 ${status} ${reason}`));
  return file;
}
