/**
 * A Map for entries that come and go per request (pending transactions, requests waiting for an app), which
 * lets go of a value the moment its entry is deleted, even where V8 would not.
 *
 * Why: a JS Map's entries live in a hash table that V8 replaces by a fresh copy (rehash) whenever deleted slots
 * fill it up, which under steady churn is every few dozen operations. The replaced table keeps pointing at the
 * entries it held at that moment until the next full (mark-compact) GC. Once the Map has lived long enough for
 * its table to reach the old generation, V8 allocates every new table there too, so the young-generation
 * collector (scavenger) treats each dead old table as a root: whatever a request's entry pointed at survives two
 * scavenges and is promoted, although the request was finished a millisecond later. Measured on the edge at
 * 3,000 requests/s: about a fifth of everything allocated was promoted (~20 MB/s), each scavenge took 4-9 ms
 * instead of under 1, and the old generation filled towards a mark-compact every few seconds.
 *
 * Here the table holds only a small box per entry; `delete` empties the box first, so a stale table retains the
 * box and the key (keep keys small and primitive), never the value.
 */
interface Box<V> {
  value: V | undefined;
}

export class TransientMap<K, V> {
  private readonly boxes = new Map<K, Box<V>>();

  get size(): number {
    return this.boxes.size;
  }

  get(key: K): V | undefined {
    return this.boxes.get(key)?.value;
  }

  has(key: K): boolean {
    return this.boxes.has(key);
  }

  set(key: K, value: V): this {
    const box = this.boxes.get(key);
    if (box !== undefined) box.value = value;
    else this.boxes.set(key, { value });
    return this;
  }

  delete(key: K): boolean {
    const box = this.boxes.get(key);
    if (box === undefined) return false;
    box.value = undefined;
    return this.boxes.delete(key);
  }

  clear(): void {
    for (const box of this.boxes.values()) box.value = undefined;
    this.boxes.clear();
  }

  /** A snapshot of the current values: safe to delete from the map while walking it. */
  valuesSnapshot(): V[] {
    const values: V[] = [];
    for (const box of this.boxes.values()) if (box.value !== undefined) values.push(box.value);
    return values;
  }
}
