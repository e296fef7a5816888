/**
 * @module protocol/dot-simd
 * DataDecoder and DotEncoder: the DATA codec of dot.ts with its byte loop in WebAssembly
 * (dot-simd.wat, 128-bit SIMD), for the hot path of every message in and out.
 *
 * Why: the JavaScript machines (ReferenceDataDecoder, ReferenceDotEncoder in dot.ts) pay two
 * Buffer.indexOf calls per line and a Buffer.subarray per stuffed line, each a trip into C++;
 * here a chunk costs one copy in, one call, and, only when the bytes changed (a dot removed or
 * added, a bare newline rewritten), one copy out. A chunk that passes unchanged, the common case
 * for mail without line-initial dots, is emitted as the caller's own buffer.
 *
 * The promise is dot.ts's, unchanged: end-of-data only at CRLF "." CRLF, a bare CR or LF never
 * starts a line, the bare-newline policy applied after those decisions. The reference machines
 * are the specification: dot.test.ts runs both on the same random inputs cut at random places
 * and requires the same bytes, the same end-of-data offset and the same counts.
 *
 * Memory: one module instance for the process (JavaScript is single-threaded and every call
 * here is synchronous), 4 pages: input at [0, 64 KiB), output after it. A longer chunk is
 * processed in 64 KiB slices, which the machine handles like any other chunk boundary. Outputs
 * are fresh buffers or the caller's input, never views of the module's memory.
 *
 * Failure behaviour: as dot.ts. Size overflow stops output (whole slices: the message is refused
 * anyway) while counting goes on; 'reject' keeps the bytes before the first bare newline.
 */
import { Buffer } from 'node:buffer';
import { ProtocolError } from './reply.js';
import type { BareNewlinePolicy, DecodeStep } from './dot.js';
import { DOT_SIMD_WASM } from './dot-simd.generated.js';

/*
 * Node 20's typings (lib ES2022, no DOM) do not declare the WebAssembly global; this is the part
 * used here. A module-scoped `declare` emits nothing: at run time the name is the real global.
 */
declare namespace WebAssembly {
  class Module {
    constructor(bytes: Uint8Array);
  }
  class Instance {
    constructor(module: Module, imports: Record<string, never>);
    readonly exports: Record<string, unknown>;
  }
  interface Memory {
    readonly buffer: ArrayBuffer;
    grow(pages: number): number;
  }
  interface Global {
    readonly value: unknown;
  }
}

const SLICE = 64 * 1024;
const OUTPUT_BASE = SLICE;
/** Input slice + worst-case output (2 bytes per input byte, a held CR, 16 bytes of SIMD slack). */
const PAGES = Math.ceil((OUTPUT_BASE + 2 * SLICE + 2 + 16) / 65536);

/** Decoder states, as in dot.ts and dot-simd.wat. */
const D_LINE_START = 1;
const D_DONE = 5;
/** Encoder states. */
const E_LINE_START = 1;
const E_ENDED = 3;

interface SimdExports {
  readonly memory: WebAssembly.Memory;
  readonly outLen: WebAssembly.Global;
  readonly state: WebAssembly.Global;
  readonly bare: WebAssembly.Global;
  readonly firstBare: WebAssembly.Global;
  readonly modified: WebAssembly.Global;
  setOutput(base: number): void;
  decode(len: number, state: number): number;
  encode(len: number, state: number): void;
}

interface Engine {
  readonly x: SimdExports;
  readonly bytes: Uint8Array;
}

let shared: Engine | undefined;

function engine(): Engine {
  if (shared) return shared;
  const module = new WebAssembly.Module(Buffer.from(DOT_SIMD_WASM, 'base64'));
  const x = new WebAssembly.Instance(module, {}).exports as unknown as SimdExports;
  const have = x.memory.buffer.byteLength / 65536;
  if (have < PAGES) x.memory.grow(PAGES - have);
  x.setOutput(OUTPUT_BASE);
  shared = { x, bytes: new Uint8Array(x.memory.buffer) };
  return shared;
}

function asBuffer(chunk: Uint8Array): Buffer {
  return Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength);
}

/** `n` bytes of the last call's output, copied out of the module's memory. */
function copyOut(e: Engine, n: number): Buffer {
  return Buffer.from(e.x.memory.buffer.slice(OUTPUT_BASE, OUTPUT_BASE + n));
}

/** DATA body decoder: strict CRLF.CRLF end-of-data, un-stuffing, bare CR/LF policy. */
export class DataDecoder {
  private readonly max: number;
  private readonly policy: BareNewlinePolicy;
  private state = D_LINE_START;
  private decoded = 0;
  private bare = 0;
  private stopped = false;

  constructor(options: { maxMessageSize: number; bareNewline: BareNewlinePolicy }) {
    this.max = options.maxMessageSize;
    this.policy = options.bareNewline;
  }

  /** Decoded octets so far, bare newlines counted as CRLF; keeps counting past the limit. */
  get size(): number {
    return this.decoded;
  }

  get overflow(): boolean {
    return this.decoded > this.max;
  }

  get bareNewlines(): number {
    return this.bare;
  }

  push(chunk: Uint8Array): DecodeStep {
    if (this.state === D_DONE) throw new ProtocolError('PUSH_AFTER_END', 'DataDecoder.push after end-of-data');
    const buf = asBuffer(chunk);
    const chunks: Buffer[] = [];
    const e = engine();
    for (let at = 0; at < buf.length; at += SLICE) {
      const part = buf.length <= SLICE ? buf : buf.subarray(at, at + SLICE);
      e.bytes.set(part, 0);
      const end = e.x.decode(part.length, this.state);
      this.state = end >= 0 ? D_DONE : (e.x.state.value as number);
      this.take(e, part, chunks);
      if (end >= 0) return { chunks, done: true, rest: buf.subarray(at + end) };
    }
    return { chunks, done: false };
  }

  private take(e: Engine, part: Buffer, chunks: Buffer[]): void {
    const outLen = e.x.outLen.value as number;
    const bareHere = e.x.bare.value as number;
    const before = this.decoded;
    this.decoded += outLen;
    this.bare += bareHere;
    if (this.stopped) return;
    if (bareHere > 0 && this.policy === 'reject') {
      this.stopped = true;
      const keep = e.x.firstBare.value as number;
      if (keep > 0 && before + keep <= this.max) chunks.push(copyOut(e, keep));
      return;
    }
    if (outLen === 0 || this.decoded > this.max) return;
    // Unchanged means the output is the whole slice: done always drops the terminator's '.'.
    chunks.push((e.x.modified.value as number) === 0 ? part : copyOut(e, outLen));
  }
}

/** DATA body encoder: bare CR/LF become CRLF, line-initial '.' is doubled; end() adds the terminator. */
export class DotEncoder {
  private state = E_LINE_START;

  push(chunk: Uint8Array): Buffer[] {
    if (this.state === E_ENDED) throw new ProtocolError('PUSH_AFTER_END', 'DotEncoder.push after end()');
    const buf = asBuffer(chunk);
    const out: Buffer[] = [];
    const e = engine();
    for (let at = 0; at < buf.length; at += SLICE) {
      const part = buf.length <= SLICE ? buf : buf.subarray(at, at + SLICE);
      e.bytes.set(part, 0);
      e.x.encode(part.length, this.state);
      this.state = e.x.state.value as number;
      const outLen = e.x.outLen.value as number;
      if (outLen > 0) out.push((e.x.modified.value as number) === 0 ? part : copyOut(e, outLen));
    }
    return out;
  }

  /** The terminator: `.\r\n` after a line end (or for an empty body), else `\r\n.\r\n`. */
  end(): Buffer {
    if (this.state === E_ENDED) throw new ProtocolError('PUSH_AFTER_END', 'DotEncoder.end called twice');
    const atLineStart = this.state === E_LINE_START;
    this.state = E_ENDED;
    return Buffer.from(atLineStart ? '.\r\n' : '\r\n.\r\n');
  }
}
