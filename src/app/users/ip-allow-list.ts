/**
 * Per-user source-address allow-list: IPv4/IPv6 addresses and CIDR ranges, matched with
 * node:net BlockList. IPv4-mapped IPv6 sources (::ffff:a.b.c.d, as dual-stack sockets report
 * them) are matched as IPv4.
 */
import { BlockList, isIP } from 'node:net';

export type AllowListEntryCheck = { ok: true } | { ok: false; message: string };

/** Checks one entry: "192.0.2.7", "2001:db8::1", "10.0.0.0/8", "2001:db8::/32". */
export function checkAllowListEntry(entry: string): AllowListEntryCheck {
  const parsed = parseEntry(entry);
  return parsed ? { ok: true } : { ok: false, message: 'not an IP address or CIDR' };
}

interface ParsedEntry {
  address: string;
  family: 'ipv4' | 'ipv6';
  prefix: number | null;
}

function parseEntry(entry: string): ParsedEntry | null {
  if (entry.length > 64) return null;
  const slash = entry.indexOf('/');
  const addressText = slash === -1 ? entry : entry.slice(0, slash);
  const version = isIP(addressText);
  if (version === 0) return null;
  const family = version === 4 ? 'ipv4' : 'ipv6';
  if (slash === -1) return { address: addressText, family, prefix: null };
  const prefixText = entry.slice(slash + 1);
  if (!/^\d{1,3}$/.test(prefixText)) return null;
  const prefix = Number(prefixText);
  if (prefix > (family === 'ipv4' ? 32 : 128)) return null;
  return { address: addressText, family, prefix };
}

/** Strips the IPv4-mapped prefix so "::ffff:10.1.2.3" matches "10.0.0.0/8". */
export function normaliseSourceAddress(address: string): string {
  const lower = address.toLowerCase();
  if (lower.startsWith('::ffff:') && isIP(lower.slice(7)) === 4) return lower.slice(7);
  if (lower.startsWith('[') && lower.endsWith(']')) return lower.slice(1, -1);
  return lower;
}

export interface AllowList {
  /** True when the list is empty (no restriction) or the address matches an entry. */
  allows(address: string): boolean;
}

/** Compiles entries (already validated; invalid ones are ignored) into a matcher. */
export function compileAllowList(entries: readonly string[]): AllowList {
  if (entries.length === 0) return { allows: () => true };
  const list = new BlockList();
  let usable = 0;
  for (const entry of entries) {
    const parsed = parseEntry(entry);
    if (!parsed) continue;
    usable++;
    const address = parsed.family === 'ipv6' ? normaliseSourceAddress(parsed.address) : parsed.address;
    const family = isIP(address) === 4 ? 'ipv4' : 'ipv6';
    if (parsed.prefix === null) list.addAddress(address, family);
    else list.addSubnet(address, family === parsed.family ? parsed.prefix : Math.max(0, parsed.prefix - 96), family);
  }
  if (usable === 0) return { allows: () => false };
  return {
    allows(address: string): boolean {
      const source = normaliseSourceAddress(address);
      const version = isIP(source);
      if (version === 0) return false;
      return list.check(source, version === 4 ? 'ipv4' : 'ipv6');
    },
  };
}
