/**
 * One key press, counted once. Phones and gateways often signal a press two ways at once (SIP
 * INFO and RFC 4733, or RFC 4733 and the tone left in the audio), and rtpengine may report one
 * RFC 4733 event twice. A press is dropped when the same digit was already accepted within
 * `windowMs` (about one event duration plus transport skew): from another source, or from the
 * same source with almost no gap (`sameSourceMs`, below the pause between two real presses).
 *
 * `sameSourceMs` 120: with in-band detection on (dial-in), rtpengine 10.5 reports each RFC 4733
 * event twice in identical datagrams, the second 20-41 ms after the first (measured, docs/media.md);
 * two real presses of one key end at least one tone and one pause apart (ITU-T Q.24: 40 + 40 ms
 * for machines, well over 150 ms for people).
 */
export type DtmfSource = 'rfc4733' | 'info' | 'inband';

export interface DtmfDedupOptions {
  windowMs?: number;
  sameSourceMs?: number;
  now?: () => number;
}

export class DtmfDeduplicator {
  private last?: { digit: string; source: DtmfSource; at: number };
  private readonly windowMs: number;
  private readonly sameSourceMs: number;
  private readonly now: () => number;

  constructor(options: DtmfDedupOptions = {}) {
    this.windowMs = options.windowMs ?? 400;
    this.sameSourceMs = options.sameSourceMs ?? 120;
    this.now = options.now ?? Date.now;
  }

  /** True when the digit is a new press (count it); false for the second report of the same press. */
  accept(digit: string, source: DtmfSource): boolean {
    const at = this.now();
    const last = this.last;
    if (last && last.digit === digit) {
      const gap = at - last.at;
      if (gap < (last.source === source ? this.sameSourceMs : this.windowMs)) return false;
    }
    this.last = { digit, source, at };
    return true;
  }
}
