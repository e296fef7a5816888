/**
 * @module test/fakes/fake-dns
 * A real authoritative DNS server for tests: UDP on 127.0.0.1 (or ::1), port 0, answering from a
 * zone written as data, so routing tests read like a zone file and never touch the real DNS.
 *
 * Who calls it: delivery and end-to-end tests, passing `server` to createDnsResolver / `--dns`.
 * Wire format (RFC 1035 §4), enough for node's `dns.promises.Resolver` (c-ares): header, one
 * question (compressed names accepted), answer RRs (the question's name by pointer, CNAME targets
 * whole). EDNS OPT and cookies in the query are ignored; answers carry no OPT ("no EDNS").
 *
 * What it answers: MX (`[0, '.']` is a null MX), A, AAAA, CNAME (followed inside the zone, as an
 * authoritative server does; a dangling target gives NXDOMAIN per RFC 6604), NXDOMAIN for names
 * not in the zone, NODATA for names without the asked type, SERVFAIL for names marked so, a delay
 * or a drop per name (to make the client time out). TTLs are 0 so c-ares's query cache never
 * hides a change a test makes to the zone (the zone object is read afresh on every query).
 *
 * Failure behaviour: a datagram that is not a parsable query gets FORMERR when it has a header,
 * and is ignored otherwise; every query is recorded as `TYPE name` (lower case) in `queries`.
 */
import { createSocket, type RemoteInfo, type Socket } from 'node:dgram';
import { isIPv4, isIPv6 } from 'node:net';
import { ipToBytes } from '../../src/util/index.js';

/** One name's data. A name with `cname` has no other records (RFC 1034 §3.6.2). */
export interface FakeRecords {
  /** [preference, exchange]; `'.'` as the exchange is the root (null MX, RFC 7505). */
  readonly mx?: ReadonlyArray<readonly [number, string]>;
  readonly a?: readonly string[];
  readonly aaaa?: readonly string[];
  readonly cname?: string;
  /**
   * TXT records, each a list of character-strings (RFC 1035 §3.3.14); a string longer than 255
   * octets is split into several, as a zone file would. `_mta-sts.<domain>` uses these.
   */
  readonly txt?: ReadonlyArray<string | readonly string[]>;
  /** Answer every query for this name with SERVFAIL. */
  readonly servfail?: boolean;
  /** Wait this long before answering (longer than the client's timeout = a timeout). */
  readonly delayMs?: number;
  /** Never answer (true), or drop only the first N queries for this name and answer the rest. */
  readonly drop?: boolean | number;
}

/** Names (case-insensitive, trailing dot optional) → their records. */
export type FakeZone = Record<string, FakeRecords>;

export interface FakeDnsOptions {
  /** Listen address: 127.0.0.1 (default) or ::1. */
  readonly host?: '127.0.0.1' | '::1';
}

export interface FakeDns {
  readonly port: number;
  readonly host: string;
  /** Ready to pass as `server` to createDnsResolver. */
  readonly server: { readonly host: string; readonly port: number };
  /** Every query received, in arrival order: `MX example.com`, `A mx1.example.com`. */
  readonly queries: string[];
  close(): Promise<void>;
}

const TYPE = { A: 1, NS: 2, CNAME: 5, SOA: 6, MX: 15, TXT: 16, AAAA: 28, OPT: 41, ANY: 255 } as const;
const TYPE_NAME = new Map<number, string>(Object.entries(TYPE).map(([k, v]) => [v, k]));
const CLASS_IN = 1;
const RCODE = { NOERROR: 0, FORMERR: 1, SERVFAIL: 2, NXDOMAIN: 3, NOTIMP: 4 } as const;
/** RFC 1035 §2.3.4 limits; a pointer chain longer than this is a loop. */
const MAX_NAME = 255;
const MAX_POINTERS = 16;
const MAX_CNAME_CHAIN = 8;

export async function startFakeDns(zone: FakeZone, options: FakeDnsOptions = {}): Promise<FakeDns> {
  const host = options.host ?? '127.0.0.1';
  const socket = createSocket(host === '::1' ? 'udp6' : 'udp4');
  const queries: string[] = [];
  const timers = new Set<NodeJS.Timeout>();
  const dropped = new Map<string, number>();

  socket.on('message', (msg, rinfo) => {
    const reply = answer(zone, msg, queries, dropped);
    if (reply === undefined) return;
    if (reply.delayMs > 0) {
      const t = setTimeout(() => {
        timers.delete(t);
        send(socket, reply.bytes, rinfo);
      }, reply.delayMs);
      timers.add(t);
    } else {
      send(socket, reply.bytes, rinfo);
    }
  });
  await new Promise<void>((resolve, reject) => {
    socket.once('error', reject);
    socket.bind(0, host, () => {
      socket.off('error', reject);
      resolve();
    });
  });
  const port = socket.address().port;
  return {
    port,
    host,
    server: { host, port },
    queries,
    close: () =>
      new Promise<void>((resolve) => {
        for (const t of timers) clearTimeout(t);
        timers.clear();
        socket.close(() => resolve());
      }),
  };
}

function send(socket: Socket, bytes: Buffer, to: RemoteInfo): void {
  // The socket may be closed by the time a delayed answer is due; that is the test's business.
  try {
    socket.send(bytes, to.port, to.address);
  } catch {
    /* closed */
  }
}

interface Reply {
  readonly bytes: Buffer;
  readonly delayMs: number;
}

function answer(zone: FakeZone, msg: Buffer, queries: string[], dropped: Map<string, number>): Reply | undefined {
  if (msg.length < 12) return undefined;
  const id = msg.readUInt16BE(0);
  const flags = msg.readUInt16BE(2);
  if (flags & 0x8000) return undefined; // a response, not a query: never answer those (loops)
  const opcode = (flags >> 11) & 0xf;
  const rd = flags & 0x0100;
  const qdcount = msg.readUInt16BE(4);
  const header = (rcode: number, an: number, qd = 1): Buffer => {
    const h = Buffer.alloc(12);
    h.writeUInt16BE(id, 0);
    // QR, the query's opcode, AA (we are the authority), RD echoed, RA clear, the rcode.
    h.writeUInt16BE(0x8000 | (opcode << 11) | 0x0400 | rd | rcode, 2);
    h.writeUInt16BE(qd, 4);
    h.writeUInt16BE(an, 6);
    return h;
  };
  let question;
  try {
    if (qdcount !== 1) throw new Error('one question only');
    question = readQuestion(msg, 12);
  } catch {
    return { bytes: header(RCODE.FORMERR, 0, 0), delayMs: 0 };
  }
  const { name, type, klass } = question;
  const key = canonical(name);
  queries.push(`${TYPE_NAME.get(type) ?? `TYPE${type}`} ${key}`);
  const qbytes = Buffer.concat([encodeName(name), u16(type), u16(klass)]);
  const reply = (rcode: number, rrs: Buffer[] = []): Buffer => Buffer.concat([header(rcode, rrs.length), qbytes, ...rrs]);

  if (opcode !== 0 || klass !== CLASS_IN) return { bytes: reply(RCODE.NOTIMP), delayMs: 0 };
  const records = lookup(zone, key);
  if (records?.drop !== undefined && records.drop !== false) {
    const seen = dropped.get(key) ?? 0;
    dropped.set(key, seen + 1);
    if (records.drop === true || seen < records.drop) return undefined;
  }
  const delayMs = records?.delayMs ?? 0;
  if (records?.servfail) return { bytes: reply(RCODE.SERVFAIL), delayMs };

  // Follow CNAMEs inside the zone, as an authoritative server answering for all of it would.
  const rrs: Buffer[] = [];
  let owner: Buffer = u16(0xc00c); // the question's name, by pointer (RFC 1035 §4.1.4)
  let current = key;
  let here = records;
  for (let hops = 0; ; hops++) {
    if (here === undefined) return { bytes: reply(RCODE.NXDOMAIN, rrs), delayMs };
    if (here.cname !== undefined && type !== TYPE.CNAME) {
      if (hops >= MAX_CNAME_CHAIN) return { bytes: reply(RCODE.SERVFAIL), delayMs };
      rrs.push(rr(owner, TYPE.CNAME, encodeName(here.cname)));
      current = canonical(here.cname);
      owner = encodeName(current);
      here = lookup(zone, current);
      continue;
    }
    rrs.push(...recordsOfType(here, type, owner));
    return { bytes: reply(RCODE.NOERROR, rrs), delayMs };
  }
}

function recordsOfType(records: FakeRecords, type: number, owner: Buffer): Buffer[] {
  switch (type) {
    case TYPE.A:
      return (records.a ?? []).map((ip) => rr(owner, TYPE.A, ipBytes(ip, 4)));
    case TYPE.AAAA:
      return (records.aaaa ?? []).map((ip) => rr(owner, TYPE.AAAA, ipBytes(ip, 6)));
    case TYPE.MX:
      return (records.mx ?? []).map(([pref, exchange]) => rr(owner, TYPE.MX, Buffer.concat([u16(pref), encodeName(exchange)])));
    case TYPE.CNAME:
      return records.cname === undefined ? [] : [rr(owner, TYPE.CNAME, encodeName(records.cname))];
    case TYPE.TXT:
      return (records.txt ?? []).map((t) => rr(owner, TYPE.TXT, txtData(typeof t === 'string' ? [t] : t)));
    default:
      return [];
  }
}

/** RDATA of one TXT record: each string as length-prefixed pieces of at most 255 octets. */
function txtData(strings: readonly string[]): Buffer {
  const parts: Buffer[] = [];
  for (const s of strings) {
    const bytes = Buffer.from(s, 'utf8');
    if (bytes.length === 0) parts.push(Buffer.from([0]));
    for (let i = 0; i < bytes.length; i += 255) {
      const piece = bytes.subarray(i, i + 255);
      parts.push(Buffer.from([piece.length]), piece);
    }
  }
  return Buffer.concat(parts);
}

function lookup(zone: FakeZone, key: string): FakeRecords | undefined {
  for (const [name, records] of Object.entries(zone)) if (canonical(name) === key) return records;
  return undefined;
}

function canonical(name: string): string {
  const lower = name.toLowerCase();
  return lower.length > 1 && lower.endsWith('.') ? lower.slice(0, -1) : lower;
}

function rr(owner: Buffer, type: number, rdata: Buffer): Buffer {
  const fixed = Buffer.alloc(10);
  fixed.writeUInt16BE(type, 0);
  fixed.writeUInt16BE(CLASS_IN, 2);
  fixed.writeUInt32BE(0, 4); // TTL 0: see the header (no caching in c-ares)
  fixed.writeUInt16BE(rdata.length, 8);
  return Buffer.concat([owner, fixed, rdata]);
}

function ipBytes(ip: string, family: 4 | 6): Buffer {
  const ok = family === 4 ? isIPv4(ip) : isIPv6(ip);
  const bytes = ok ? ipToBytes(ip) : undefined;
  if (bytes === undefined) throw new Error(`fake-dns zone: '${ip}' is not an IPv${family} address`);
  return Buffer.from(family === 4 ? bytes.subarray(12) : bytes);
}

function u16(n: number): Buffer {
  const b = Buffer.alloc(2);
  b.writeUInt16BE(n, 0);
  return b;
}

/** A name as uncompressed labels; `.` and `` are the root. Case is kept (c-ares compares it). */
export function encodeName(name: string): Buffer {
  const trimmed = name.endsWith('.') ? name.slice(0, -1) : name;
  const parts: Buffer[] = [];
  if (trimmed !== '') {
    for (const label of trimmed.split('.')) {
      const bytes = Buffer.from(label, 'latin1');
      if (bytes.length === 0 || bytes.length > 63) throw new Error(`fake-dns: bad label in '${name}'`);
      parts.push(Buffer.from([bytes.length]), bytes);
    }
  }
  parts.push(Buffer.from([0]));
  return Buffer.concat(parts);
}

/**
 * Reads a possibly compressed name at `offset`; returns it (dotted, no trailing dot, '' for the
 * root) and the offset just past it in the original position. Throws on truncation and loops.
 */
export function decodeName(msg: Buffer, offset: number): { name: string; end: number } {
  const labels: string[] = [];
  let pos = offset;
  let end = -1;
  let jumps = 0;
  let length = 1;
  for (;;) {
    if (pos >= msg.length) throw new Error('name runs past the message');
    const len = msg[pos] ?? 0;
    if ((len & 0xc0) === 0xc0) {
      if (pos + 1 >= msg.length) throw new Error('truncated pointer');
      if (++jumps > MAX_POINTERS) throw new Error('compression loop');
      if (end < 0) end = pos + 2;
      pos = ((len & 0x3f) << 8) | (msg[pos + 1] ?? 0);
      continue;
    }
    if ((len & 0xc0) !== 0) throw new Error('reserved label type');
    if (len === 0) {
      if (end < 0) end = pos + 1;
      return { name: labels.join('.'), end };
    }
    if (pos + 1 + len > msg.length) throw new Error('label runs past the message');
    length += len + 1;
    if (length > MAX_NAME) throw new Error('name longer than 255 octets');
    labels.push(msg.toString('latin1', pos + 1, pos + 1 + len));
    pos += 1 + len;
  }
}

function readQuestion(msg: Buffer, offset: number): { name: string; type: number; klass: number } {
  const { name, end } = decodeName(msg, offset);
  if (end + 4 > msg.length) throw new Error('truncated question');
  return { name, type: msg.readUInt16BE(end), klass: msg.readUInt16BE(end + 2) };
}

/** Runs `run` with a fake server for `zone`, and always closes it. */
export async function withFakeDns<T>(zone: FakeZone, run: (dns: FakeDns) => Promise<T>, options: FakeDnsOptions = {}): Promise<T> {
  const dns = await startFakeDns(zone, options);
  try {
    return await run(dns);
  } finally {
    await dns.close();
  }
}

/** A seeded uniform [0, 1) source (mulberry32) for tests that inject `random`. */
export function seededRandom(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
