/**
 * drachtio wire framing: `<length>#<payload>` where length is the byte length of payload
 * (see shared/reference/drachtio-wire-protocol.md). The C++ server accepts at most 5 digits;
 * we do the same, and treat anything else as a fatal protocol error for that connection.
 */
const HASH = 0x23;
export const MAX_LENGTH_DIGITS = 5;

export class FrameDecoder {
  private buffer: Buffer = Buffer.alloc(0);

  constructor(private readonly maxFrameBytes = 99_999) {}

  /** Returns the complete frames' payloads (utf8); throws on a malformed length prefix. */
  push(chunk: Buffer): string[] {
    this.buffer = this.buffer.length === 0 ? chunk : Buffer.concat([this.buffer, chunk]);
    const frames: string[] = [];
    for (;;) {
      const hash = this.buffer.indexOf(HASH);
      if (hash === -1) {
        if (this.buffer.length > MAX_LENGTH_DIGITS) throw new Error('invalid frame length prefix');
        if (!/^\d*$/.test(this.buffer.toString('latin1'))) throw new Error('invalid frame length prefix');
        break;
      }
      if (hash === 0 || hash > MAX_LENGTH_DIGITS) throw new Error('invalid frame length prefix');
      let length = 0;
      for (let i = 0; i < hash; i++) {
        const c = this.buffer[i] - 0x30;
        if (c < 0 || c > 9) throw new Error('invalid frame length prefix');
        length = length * 10 + c;
      }
      if (length > this.maxFrameBytes) throw new Error('frame too large');
      const end = hash + 1 + length;
      if (this.buffer.length < end) break;
      frames.push(this.buffer.toString('utf8', hash + 1, end));
      this.buffer = this.buffer.subarray(end);
    }
    if (this.buffer.length === 0) this.buffer = Buffer.alloc(0);
    return frames;
  }

  get pendingBytes(): number {
    return this.buffer.length;
  }
}

export function encodeFrame(payload: string): Buffer {
  const body = Buffer.from(payload, 'utf8');
  return Buffer.concat([Buffer.from(`${body.length}#`, 'latin1'), body]);
}
