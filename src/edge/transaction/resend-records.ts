import type { SendTarget } from '../transport/index.js';

/**
 * Where completed non-INVITE server transactions wait out timer J (RFC 3261 17.2.2: 64*T1 = 32 s over UDP) when
 * nothing but a retransmitted request can still reach them: the expiry, the target and the bytes of the last
 * response, packed into large buffers outside the V8 heap. The table keeps one small integer per record.
 *
 * At 5,000 transactions/s that is 160,000 records at once. As heap objects (the record, a view of its bytes, its
 * target) they were ~530 bytes each and most of the edge thread's old generation: every full GC marked them all,
 * and those GCs lined up with the registrar's slowest registrations. A record here costs the heap nothing: the
 * table's Map holds its key and a handle (a small integer V8 keeps inline). The bytes are copied out again only
 * when a retransmission needs them.
 *
 * Records are appended in the order they are made; a slab is handed back (to a small pool, for reuse) once every
 * record in it has been released, so memory follows the live records.
 *
 * Record layout: f64 expiresAt | u16 target length | u32 wire length | target (utf8) | wire bytes.
 */
export const DEFAULT_RECORD_SLAB_BYTES = 1 << 20;
/** handle = slab id * SLAB_SPAN + offset: a slab can't be larger than this */
const SLAB_SPAN = 1 << 20;
/** slab ids in use at once (with 1 MiB slabs, 1 GiB of records): handles stay below 2^30, V8 small integers */
const MAX_SLABS = 1024;
const POOLED_SLABS = 4;
const HEADER_BYTES = 14;

export class ResendRecords {
  private readonly slabs: Array<Buffer | undefined> = new Array<Buffer | undefined>(MAX_SLABS).fill(undefined);
  private readonly live = new Int32Array(MAX_SLABS);
  private readonly pool: Buffer[] = [];
  private current = -1;
  private used = 0;
  private nextId = 0;
  private slabCount = 0;

  constructor(private readonly slabBytes = DEFAULT_RECORD_SLAB_BYTES) {
    if (slabBytes < 64 || slabBytes > SLAB_SPAN) throw new RangeError(`slab size must be 64..${SLAB_SPAN} bytes`);
  }

  /** Slabs holding at least one record (or open for more). */
  get slabsInUse(): number {
    return this.slabCount;
  }

  /**
   * Stores a record and returns its handle, or -1 when it doesn't fit this store (larger than a sixteenth of a
   * slab, a target field with a line break, or every slab id in use): the caller keeps that one as an object.
   */
  put(expiresAt: number, target: SendTarget, wire: Buffer): number {
    const encodedTarget = encodeTarget(target);
    if (encodedTarget === undefined) return -1;
    const targetBytes = Buffer.byteLength(encodedTarget, 'utf8');
    const size = HEADER_BYTES + targetBytes + wire.length;
    if (size > this.slabBytes / 16 || targetBytes > 0xffff) return -1;
    if (this.current < 0 || this.used + size > this.slabBytes) {
      if (!this.openSlab()) return -1;
    }
    const slab = this.slabs[this.current]!;
    const offset = this.used;
    slab.writeDoubleLE(expiresAt, offset);
    slab.writeUInt16LE(targetBytes, offset + 8);
    slab.writeUInt32LE(wire.length, offset + 10);
    slab.write(encodedTarget, offset + HEADER_BYTES, targetBytes, 'utf8');
    wire.copy(slab, offset + HEADER_BYTES + targetBytes);
    this.used += size;
    this.live[this.current]!++;
    return this.current * SLAB_SPAN + offset;
  }

  expiresAt(handle: number): number {
    const [slab, offset] = this.locate(handle);
    return slab.readDoubleLE(offset);
  }

  target(handle: number): SendTarget {
    const [slab, offset] = this.locate(handle);
    const targetBytes = slab.readUInt16LE(offset + 8);
    const [protocol, address, port, flowId, serverName] = slab.toString('utf8', offset + HEADER_BYTES, offset + HEADER_BYTES + targetBytes).split('\n');
    const target: SendTarget = { protocol: protocol as SendTarget['protocol'], address: address ?? '', port: Number(port) };
    if (flowId) target.flowId = flowId;
    if (serverName) target.serverName = serverName;
    return target;
  }

  /** A copy of the record's bytes: the slab may be reused once the record is released. */
  wire(handle: number): Buffer {
    const [slab, offset] = this.locate(handle);
    const start = offset + HEADER_BYTES + slab.readUInt16LE(offset + 8);
    return Buffer.from(slab.subarray(start, start + slab.readUInt32LE(offset + 10)));
  }

  /** The record is gone: its slab is handed back once it holds no other live record. */
  release(handle: number): void {
    const id = Math.floor(handle / SLAB_SPAN);
    if (this.slabs[id] === undefined || this.live[id]! <= 0) return;
    this.live[id]!--;
    if (this.live[id] === 0 && id !== this.current) this.freeSlab(id);
  }

  /** Drop every record (shutdown). */
  clear(): void {
    for (let id = 0; id < MAX_SLABS; id++) if (this.slabs[id] !== undefined) this.freeSlab(id);
    this.current = -1;
    this.used = 0;
  }

  private locate(handle: number): [Buffer, number] {
    const slab = this.slabs[Math.floor(handle / SLAB_SPAN)];
    if (slab === undefined) throw new RangeError(`no record ${handle}`);
    return [slab, handle % SLAB_SPAN];
  }

  /** A fresh slab to append to; false when all MAX_SLABS ids hold live records. */
  private openSlab(): boolean {
    let id = this.nextId;
    for (let tried = 0; this.slabs[id] !== undefined; tried++) {
      if (tried === MAX_SLABS) return false;
      id = (id + 1) % MAX_SLABS;
    }
    const previous = this.current;
    this.slabs[id] = this.pool.pop() ?? Buffer.allocUnsafeSlow(this.slabBytes);
    this.slabCount++;
    this.live[id] = 0;
    this.current = id;
    this.used = 0;
    this.nextId = (id + 1) % MAX_SLABS;
    if (previous >= 0 && this.live[previous] === 0) this.freeSlab(previous);
    return true;
  }

  private freeSlab(id: number): void {
    const slab = this.slabs[id];
    if (slab === undefined) return;
    this.slabs[id] = undefined;
    this.live[id] = 0;
    this.slabCount--;
    if (id === this.current) {
      this.current = -1;
      this.used = 0;
    }
    if (this.pool.length < POOLED_SLABS) this.pool.push(slab);
  }
}

function encodeTarget(target: SendTarget): string | undefined {
  const fields = [target.protocol, target.address, String(target.port), target.flowId ?? '', target.serverName ?? ''];
  for (const field of fields) if (field.includes('\n')) return undefined;
  return fields.join('\n');
}
