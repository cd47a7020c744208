import { describe, expect, it } from 'vitest';
import { ResendRecords } from './resend-records.js';
import type { SendTarget } from '../transport/index.js';

const udp: SendTarget = { protocol: 'udp', address: '127.0.0.2', port: 5070 };
const tls: SendTarget = { protocol: 'tls', address: '::1', port: 5061, flowId: 'tls-7', serverName: 'pbx.example.com' };

describe('ResendRecords', () => {
  it('gives back exactly what was stored: expiry, target and a copy of the bytes', () => {
    const records = new ResendRecords(4096);
    const wire = Buffer.from('SIP/2.0 200 OK\r\nContent-Length: 0\r\n\r\n', 'latin1');
    const a = records.put(1_700_000_000_123, udp, wire);
    const b = records.put(1_700_000_000_456, tls, Buffer.from('SIP/2.0 404 Not Found\r\n\r\n'));
    expect(a).toBeGreaterThanOrEqual(0);
    expect(b).toBeGreaterThan(a);
    wire.fill(0);
    expect(records.expiresAt(a)).toBe(1_700_000_000_123);
    expect(records.target(a)).toEqual(udp);
    expect(records.wire(a).toString('latin1')).toBe('SIP/2.0 200 OK\r\nContent-Length: 0\r\n\r\n');
    expect(records.target(b)).toEqual(tls);
    expect(records.expiresAt(b)).toBe(1_700_000_000_456);
    // a copy: changing it changes nothing stored
    records.wire(b).fill(0);
    expect(records.wire(b).toString()).toBe('SIP/2.0 404 Not Found\r\n\r\n');
  });

  it('refuses what it cannot hold: records over a sixteenth of a slab, line breaks in target fields', () => {
    const records = new ResendRecords(1024);
    expect(records.put(1, udp, Buffer.alloc(60))).toBeLessThan(0);
    expect(records.put(1, { ...udp, serverName: 'a\nb' }, Buffer.alloc(4))).toBeLessThan(0);
    expect(records.put(1, udp, Buffer.alloc(4))).toBeGreaterThanOrEqual(0);
  });

  it('hands a slab back once all its records are released, and reuses it', () => {
    const records = new ResendRecords(1024);
    const handles: number[] = [];
    // 14-byte header + "udp\n127.0.0.2\n5070\n\n" (20) + 30 bytes = 64 per record: 16 per slab
    for (let i = 0; i < 40; i++) handles.push(records.put(i, udp, Buffer.alloc(30, i)));
    expect(records.slabsInUse).toBe(3);
    for (const handle of handles.slice(0, 16)) records.release(handle);
    expect(records.slabsInUse).toBe(2);
    expect(records.wire(handles[16]!)).toEqual(Buffer.alloc(30, 16));
    for (const handle of handles.slice(16, 32)) records.release(handle);
    expect(records.slabsInUse).toBe(1);
    // the open slab stays while it is being filled, even when empty
    for (const handle of handles.slice(32)) records.release(handle);
    expect(records.slabsInUse).toBe(1);
    const again = records.put(99, udp, Buffer.alloc(30, 7));
    expect(records.wire(again)).toEqual(Buffer.alloc(30, 7));
    records.clear();
    expect(records.slabsInUse).toBe(0);
    expect(() => records.expiresAt(again)).toThrow(RangeError);
  });
});
