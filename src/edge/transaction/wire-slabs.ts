/**
 * Where completed transactions kept as objects keep the bytes they may have to send again (the ACK for a non-2xx
 * final, RFC 3261 17.1.1.3, or the last response of a transaction whose end someone listens for: 17.2.2) for up to
 * 32 s: copied into large shared buffers outside the V8 heap, each record holding only a view of its bytes. The
 * common case, a non-INVITE final nobody listens for, goes to ResendRecords, which keeps the whole record there.
 *
 * As heap strings (~500 bytes each) these bytes made up most of the edge thread's old generation under load:
 * every scavenge copied and promoted them, and every full GC marked them. A slab is freed by the GC once no view
 * of it is left; records expire roughly in the order they were made, so slabs empty in order too.
 */
export const DEFAULT_SLAB_BYTES = 1 << 20;

export class WireSlabs {
  private slab: Buffer | undefined;
  private used = 0;

  constructor(private readonly slabBytes = DEFAULT_SLAB_BYTES) {}

  /** A copy of `bytes` in a slab (bytes larger than a sixteenth of a slab get a buffer of their own). */
  keep(bytes: Buffer): Buffer {
    const length = bytes.length;
    if (length > this.slabBytes / 16) return Buffer.from(bytes);
    if (this.slab === undefined || this.used + length > this.slab.length) {
      this.slab = Buffer.allocUnsafeSlow(this.slabBytes);
      this.used = 0;
    }
    const start = this.used;
    bytes.copy(this.slab, start);
    this.used += length;
    return this.slab.subarray(start, start + length);
  }
}
