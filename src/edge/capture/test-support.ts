/**
 * A HEP3 decoder written from the spec's chunk table, for tests: walks the chunks, checks every
 * length, and returns them by type. Not used by the product (which only sends).
 */
export interface DecodedHep {
  totalLength: number;
  chunks: Map<number, Buffer>;
  /** chunk types in the order they came */
  order: number[];
}

export function decodeHep3(packet: Buffer): DecodedHep {
  if (packet.length < 6 || packet.toString('latin1', 0, 4) !== 'HEP3') throw new Error('not a HEP3 packet');
  const totalLength = packet.readUInt16BE(4);
  if (totalLength !== packet.length) throw new Error(`length field ${totalLength} != packet ${packet.length}`);
  const chunks = new Map<number, Buffer>();
  const order: number[] = [];
  let offset = 6;
  while (offset < packet.length) {
    if (offset + 6 > packet.length) throw new Error(`truncated chunk header at ${offset}`);
    const vendor = packet.readUInt16BE(offset);
    const type = packet.readUInt16BE(offset + 2);
    const length = packet.readUInt16BE(offset + 4);
    if (vendor !== 0) throw new Error(`vendor ${vendor} at ${offset}`);
    if (length < 6 || offset + length > packet.length) throw new Error(`bad chunk length ${length} at ${offset}`);
    chunks.set(type, packet.subarray(offset + 6, offset + length));
    order.push(type);
    offset += length;
  }
  return { totalLength, chunks, order };
}
