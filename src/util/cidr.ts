/**
 * @module util/cidr
 * IPv4 and IPv6 networks in CIDR notation, and the one question asked of them: is this client
 * address inside any of these networks? (relay-from, and later per-network policies.)
 *
 * Every address is compared as 128 bits: an IPv4 address a.b.c.d is read as the IPv4-mapped
 * ::ffff:a.b.c.d and an IPv4 prefix /p as /(96+p). So a dual-stack socket's `::ffff:127.0.0.1`
 * is inside 127.0.0.0/8 with no special case, and the two spellings of one client never disagree.
 *
 * Parsing is strict and never throws: a bad prefix length, host bits set below the prefix
 * (`10.0.0.1/8`: almost always a typo for 10.0.0.0/8 or 10.0.0.1/32), zone ids, or a list
 * with empty items return a reason. A bare address means a single host (/32 or /128).
 * cidrContains never throws either: an unparsable client address is simply in no network.
 */
import { isIPv4, isIPv6 } from 'node:net';

export interface Cidr {
  /** The network address as 16 bytes (IPv4 networks are stored IPv4-mapped). */
  readonly bytes: Uint8Array;
  /** Prefix length over the 128-bit form (an IPv4 /8 is 104 here). */
  readonly prefix128: number;
  readonly family: 4 | 6;
  /** Canonical text: `127.0.0.0/8`, `::1/128`, `2001:db8::/32`. */
  readonly text: string;
}

export type CidrResult<T> = { readonly ok: true; readonly value: T } | { readonly ok: false; readonly reason: string };

const MAPPED_PREFIX = [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff] as const;

/** 16 bytes for any IPv4 or IPv6 literal (IPv4 mapped), or undefined. No zone ids, no brackets. */
export function ipToBytes(text: string): Uint8Array | undefined {
  if (isIPv4(text)) return mapV4(text);
  if (isIPv6(text) && !text.includes('%')) return v6Bytes(text);
  return undefined;
}

function mapV4(text: string): Uint8Array {
  // Called per connection (relay and limit checks): digits are summed in place, no arrays.
  // isIPv4 has vetted the text: four decimal octets separated by dots.
  const out = new Uint8Array(16);
  out.set(MAPPED_PREFIX);
  let at = 12;
  let value = 0;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c === 0x2e) {
      out[at++] = value;
      value = 0;
    } else value = value * 10 + (c - 0x30);
  }
  out[at] = value;
  return out;
}

function v6Bytes(text: string): Uint8Array {
  const out = new Uint8Array(16);
  let s = text.toLowerCase();
  let tail: number[] = [];
  const lastColon = s.lastIndexOf(':');
  // isIPv6 has vetted the text, so an embedded dotted quad is well formed.
  if (s.slice(lastColon + 1).includes('.')) {
    const quad = s.slice(lastColon + 1).split('.').map(Number);
    tail = [((quad[0] ?? 0) << 8) | (quad[1] ?? 0), ((quad[2] ?? 0) << 8) | (quad[3] ?? 0)];
    // The quad fills the last two groups: stand in two zero groups, then overwrite them.
    s = s.slice(0, lastColon + 1) + '0:0';
  }
  const [head = '', rest] = s.split('::') as [string?, string?];
  const groups = (part: string): number[] => (part === '' ? [] : part.split(':').map((g) => parseInt(g, 16)));
  let words = groups(head);
  if (rest !== undefined) {
    const right = groups(rest);
    words = [...words, ...new Array<number>(8 - words.length - right.length).fill(0), ...right];
  }
  if (tail.length === 2) words = [...words.slice(0, 6), ...tail];
  words.forEach((w, i) => {
    out[i * 2] = w >> 8;
    out[i * 2 + 1] = w & 0xff;
  });
  return out;
}

function isMapped(bytes: Uint8Array): boolean {
  return MAPPED_PREFIX.every((b, i) => bytes[i] === b);
}

/** RFC 5952 text for 16 bytes: lower case, longest zero run (≥2 groups) as `::`. */
function formatV6(bytes: Uint8Array): string {
  const words = Array.from({ length: 8 }, (_, i) => ((bytes[i * 2] ?? 0) << 8) | (bytes[i * 2 + 1] ?? 0));
  let bestAt = -1;
  let bestLen = 1;
  for (let i = 0; i < 8; ) {
    let j = i;
    while (j < 8 && words[j] === 0) j++;
    if (j - i > bestLen) [bestAt, bestLen] = [i, j - i];
    i = j === i ? i + 1 : j;
  }
  const hex = (ws: number[]): string => ws.map((w) => w.toString(16)).join(':');
  if (bestAt < 0) return hex(words);
  return `${hex(words.slice(0, bestAt))}::${hex(words.slice(bestAt + bestLen))}`;
}

function formatAddress(bytes: Uint8Array, family: 4 | 6): string {
  return family === 4 ? Array.from(bytes.subarray(12)).join('.') : formatV6(bytes);
}

/** True when bit positions ≥ prefix128 are all zero. */
function hostBitsClear(bytes: Uint8Array, prefix128: number): boolean {
  return bytes.every((b, i) => (b & ~maskByte(prefix128, i) & 0xff) === 0);
}

function maskByte(prefix128: number, index: number): number {
  const bits = Math.max(0, Math.min(8, prefix128 - index * 8));
  return (0xff << (8 - bits)) & 0xff;
}

function applyMask(bytes: Uint8Array, prefix128: number): Uint8Array {
  return bytes.map((b, i) => b & maskByte(prefix128, i));
}

export function parseCidr(text: string): CidrResult<Cidr> {
  const s = text.trim();
  if (s === '') return { ok: false, reason: 'is empty' };
  const slash = s.indexOf('/');
  const addr = slash < 0 ? s : s.slice(0, slash);
  const family = isIPv4(addr) ? 4 : isIPv6(addr) && !addr.includes('%') ? 6 : undefined;
  if (family === undefined) return { ok: false, reason: 'is not an IPv4 or IPv6 network (e.g. 192.0.2.0/24, 2001:db8::/32)' };
  const max = family === 4 ? 32 : 128;
  let prefix = max;
  if (slash >= 0) {
    const p = s.slice(slash + 1);
    if (!/^\d{1,3}$/.test(p)) return { ok: false, reason: `has prefix length "${p}", not a number 0..${max}` };
    prefix = Number(p);
    if (prefix > max) return { ok: false, reason: `has prefix length ${prefix}, too long for IPv${family} (at most ${max})` };
  }
  const bytes = family === 4 ? mapV4(addr) : v6Bytes(addr);
  const prefix128 = family === 4 ? prefix + 96 : prefix;
  if (!hostBitsClear(bytes, prefix128)) {
    const net = formatAddress(applyMask(bytes, prefix128), family);
    return { ok: false, reason: `has host bits set (did you mean ${net}/${prefix} or ${addr}/${max}?)` };
  }
  return { ok: true, value: { bytes, prefix128, family, text: `${formatAddress(bytes, family)}/${prefix}` } };
}

/** A comma-separated string or an array of items (each may itself hold commas). Empty list is valid. */
export function parseCidrList(input: string | readonly string[]): CidrResult<readonly Cidr[]> {
  const items = (typeof input === 'string' ? [input] : input).flatMap((x) => x.split(','));
  if (items.length === 1 && items[0]?.trim() === '') return { ok: true, value: [] };
  const out: Cidr[] = [];
  for (const item of items) {
    const r = parseCidr(item);
    if (!r.ok) return { ok: false, reason: item.trim() === '' ? 'has an empty item (a stray comma?)' : `"${item.trim()}" ${r.reason}` };
    out.push(r.value);
  }
  return { ok: true, value: out };
}

/** Is `ip` (IPv4, IPv6, IPv4-mapped IPv6; a `%zone` suffix is ignored) inside any network of `list`? */
export function cidrContains(list: readonly Cidr[], ip: string): boolean {
  const bytes = ipToBytes(ip.replace(/%.*$/, ''));
  if (bytes === undefined) return false;
  return list.some((c) => c.bytes.every((b, i) => ((bytes[i] ?? 0) & maskByte(c.prefix128, i)) === b));
}

/** For lists that were validated already (Config.relayFrom): parse, or throw naming the bad item. */
export function compileCidrList(list: readonly string[]): readonly Cidr[] {
  const r = parseCidrList(list);
  if (!r.ok) throw new RangeError(`invalid CIDR list ${JSON.stringify(list)}: ${r.reason}`);
  return r.value;
}

/** True for an IPv4-mapped IPv6 address (`::ffff:a.b.c.d`); logs show such clients as IPv4. */
export function isIPv4Mapped(ip: string): boolean {
  const bytes = ipToBytes(ip);
  return bytes !== undefined && isIPv6(ip) && isMapped(bytes);
}
