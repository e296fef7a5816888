/**
 * @module bench/codec
 * The wire codec alone, in memory, no I/O: MB/s (10^6 bytes/s of wire bytes) of un-stuffing
 * (DataDecoder: end-of-data detection, dot removal, the bare-newline policy) and of stuffing
 * (DotEncoder), over a dot-heavy corpus (every other line begins with a period), in 64 KiB
 * chunks as a socket delivers them, next to a plain Buffer.indexOf scan for `<CRLF>.<CRLF>` over
 * the same bytes: the ceiling of any decoder that must look at every byte.
 */
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { DataDecoder, DotEncoder, ReferenceDataDecoder, ReferenceDotEncoder } from '../src/protocol/index.js';

const CHUNK = 64 * 1024;
const TERMINATOR = Buffer.from('\r\n.\r\n');

/** `bytes` of message text (CRLF lines, half of them starting with '.'), unstuffed and stuffed + end-of-data. */
export function dotCorpus(bytes: number): { readonly plain: Buffer; readonly wire: Buffer } {
  const lines: string[] = [];
  let size = 0;
  for (let i = 0; size < bytes; i++) {
    const line = `${i % 2 === 0 ? '.' : ''}${i % 7 === 0 ? '..' : ''}The quick brown fox ${i} jumps over the lazy dog; 0123456789 abcdefghij\r\n`;
    lines.push(line);
    size += line.length;
  }
  const plain = Buffer.from(lines.join(''));
  const wire = Buffer.from(lines.map((l) => (l.startsWith('.') ? `.${l}` : l)).join('') + '.\r\n');
  return { plain, wire };
}

function chunks(buf: Buffer): Buffer[] {
  const out: Buffer[] = [];
  for (let at = 0; at < buf.length; at += CHUNK) out.push(buf.subarray(at, at + CHUNK));
  return out;
}

/*
 * Each measurement starts from a collected heap: the reference machines leave hundreds of
 * thousands of small views behind, and without this the next case pays for their collection
 * (the WebAssembly decoder measured 0.6 GB/s after the reference and 3.4 GB/s alone).
 */
setFlagsFromString('--expose-gc');
const collect = runInNewContext('gc') as () => void;

function timed(fn: () => void): number {
  collect();
  const t0 = process.hrtime.bigint();
  fn();
  return Number(process.hrtime.bigint() - t0) / 1e9;
}

export interface CodecResult {
  /** MB/s over the wire form (the bytes a socket carries). */
  readonly unstuff: number;
  readonly stuff: number;
  /** The JavaScript reference machines (dot.ts), which the WebAssembly ones replaced. */
  readonly referenceUnstuff: number;
  readonly referenceStuff: number;
  readonly scan: number;
}

type Decoder = DataDecoder | ReferenceDataDecoder;
type Encoder = DotEncoder | ReferenceDotEncoder;

function unstuffRun(wireChunks: readonly Buffer[], make: () => Decoder, expected: number): number {
  let decodedBytes = 0;
  const seconds = timed(() => {
    const decoder = make();
    for (const c of wireChunks) for (const out of decoder.push(c).chunks) decodedBytes += out.length;
  });
  if (decodedBytes !== expected) throw new Error(`decoder produced ${decodedBytes} bytes, expected ${expected}`);
  return seconds;
}

function stuffRun(plainChunks: readonly Buffer[], make: () => Encoder, expected: number): number {
  let encodedBytes = 0;
  const seconds = timed(() => {
    const encoder = make();
    for (const c of plainChunks) for (const out of encoder.push(c)) encodedBytes += out.length;
    encodedBytes += encoder.end().length;
  });
  if (encodedBytes !== expected) throw new Error(`encoder produced ${encodedBytes} bytes, expected ${expected}`);
  return seconds;
}

export function codecRun(corpus: { plain: Buffer; wire: Buffer }): CodecResult {
  const wireChunks = chunks(corpus.wire);
  const plainChunks = chunks(corpus.plain);
  const mb = corpus.wire.length / 1e6;
  const options = { maxMessageSize: Number.MAX_SAFE_INTEGER, bareNewline: 'normalize' as const };
  // A warm-up pass over the first MiB, so every machine is measured after its JIT tier-up.
  const warm = (xs: readonly Buffer[]): Buffer[] => xs.slice(0, 16);
  for (const make of [() => new DataDecoder(options), () => new ReferenceDataDecoder(options)]) {
    const d = make();
    for (const c of warm(wireChunks)) d.push(c);
  }
  for (const make of [() => new DotEncoder(), () => new ReferenceDotEncoder()]) {
    const e = make();
    for (const c of warm(plainChunks)) e.push(c);
  }
  const unstuff = unstuffRun(wireChunks, () => new DataDecoder(options), corpus.plain.length);
  const referenceUnstuff = unstuffRun(wireChunks, () => new ReferenceDataDecoder(options), corpus.plain.length);
  const stuff = stuffRun(plainChunks, () => new DotEncoder(), corpus.wire.length);
  const referenceStuff = stuffRun(plainChunks, () => new ReferenceDotEncoder(), corpus.wire.length);
  let found = 0;
  const scan = timed(() => {
    // The terminator may straddle chunks: search each chunk with the previous one's last 4 bytes.
    let tail: Buffer = Buffer.alloc(0);
    for (const c of wireChunks) {
      if (Buffer.concat([tail, c.subarray(0, 4)]).indexOf(TERMINATOR) >= 0 || c.indexOf(TERMINATOR) >= 0) found++;
      tail = c.subarray(-4);
    }
  });
  if (found === 0) throw new Error('the scan did not find end-of-data');
  return { unstuff: mb / unstuff, stuff: mb / stuff, referenceUnstuff: mb / referenceUnstuff, referenceStuff: mb / referenceStuff, scan: mb / scan };
}
