/**
 * @module protocol/dot
 * Message bytes on the wire: DATA decoding (end-of-data, un-stuffing), DATA encoding
 * (dot-stuffing), newline normalisation for BDAT bodies, and the BDAT command line.
 *
 * The promise (SMTP smuggling impossible, RFC 5321 §4.1.1.4 read strictly): end-of-data is only
 * CRLF "." CRLF, lines end only at a real CRLF, and a bare CR or LF never starts a line, so it
 * can neither end the message nor be un-stuffed. Only after those decisions is a bare CR/LF
 * rewritten to CRLF ('normalize') or taken as a reason to refuse the message ('reject'). Hence
 * `a<LF>.<LF>MAIL…` stays inside the body and the encoder re-stuffs that '.' on the way out.
 *
 * Who calls it: smtpd/connection (DataDecoder after 354, NewlineNormalizer for BDAT chunks);
 * delivery (DotEncoder and bdatCommand when sending). DataDecoder and DotEncoder live in
 * dot-simd.ts (the same machine in WebAssembly); the JavaScript machines here are their
 * specification (ReferenceDataDecoder, ReferenceDotEncoder) and NewlineNormalizer's engine.
 *
 * Failure behaviour: nothing here throws on peer input. Size overflow and refused bare newlines
 * stop output but scanning continues to the real end-of-data, so the connection stays in sync.
 * Pushing after end-of-data / end() throws ProtocolError PUSH_AFTER_END (a caller bug).
 *
 * Performance and memory (of the machines here): scanning uses Buffer.indexOf for CR and LF
 * (two native calls per line); output is subarrays of the input except for inserted CRLF/'.'
 * constants (shared, so emitted chunks must never be mutated). State between pushes is a few
 * small fields; the input is never retained.
 */
import { Buffer } from 'node:buffer';
import { ProtocolError } from './reply.js';

export type BareNewlinePolicy = 'normalize' | 'reject';

export interface DecodeStep {
  readonly chunks: Buffer[];
  readonly done: boolean;
  /** Present once done (possibly empty): the bytes after end-of-data, e.g. pipelined commands. */
  readonly rest?: Buffer;
}

const CR = 0x0d;
const LF = 0x0a;
const DOT = 0x2e;
const CRLF_BYTES = Buffer.from('\r\n');
const DOT_BYTES = Buffer.from('.');
const EMPTY = Buffer.alloc(0);

function asBuffer(chunk: Uint8Array): Buffer {
  return Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength);
}

/** Kinds of line break BreakScanner reports. */
const NONE = 0;
const CRLF = 1;
const BARE_CR = 2;
const BARE_LF = 3;
/** A CR as the chunk's last byte: bare or not depends on the next chunk. */
const TRAILING_CR = 4;

/**
 * Finds the next CR or LF in one chunk and classifies it. The two cursors are cached so every
 * byte is searched once per kind. Precondition of next(i): buf[i] is not the LF of a CRLF whose
 * CR is before i (callers step past a CRLF as a unit).
 */
class BreakScanner {
  kind = NONE;
  private buf: Buffer = EMPTY;
  private cr = -1;
  private lf = -1;

  reset(buf: Buffer): void {
    this.buf = buf;
    this.cr = this.lf = -1;
  }

  /** Position of the next break at or after i (its CR for a CRLF), or the chunk length. */
  next(i: number): number {
    const n = this.buf.length;
    if (this.cr < i) this.cr = indexOrEnd(this.buf, CR, i);
    if (this.lf < i) this.lf = indexOrEnd(this.buf, LF, i);
    const { cr, lf } = this;
    if (cr < lf) {
      this.kind = cr + 1 === lf && lf < n ? CRLF : cr === n - 1 ? TRAILING_CR : BARE_CR;
      return cr;
    }
    this.kind = lf < n ? BARE_LF : NONE;
    return lf;
  }
}

function indexOrEnd(buf: Buffer, byte: number, from: number): number {
  const at = buf.indexOf(byte, from);
  return at < 0 ? buf.length : at;
}

/** Decoder states between bytes. */
const MID = 0; // inside a line
const LINE_START = 1; // just after a real CRLF (or at the start of DATA)
const AFTER_DOT = 2; // a line-initial '.' was dropped
const AFTER_DOT_CR = 3; // ... followed by a CR: end-of-data if LF comes next
const PENDING_CR = 4; // a CR ended the last chunk
const DONE = 5;

/**
 * DATA body decoder: strict CRLF.CRLF end-of-data, un-stuffing, bare CR/LF policy. The
 * specification of the fast DataDecoder in dot-simd.ts, which must produce the same bytes for
 * every input cut anywhere (dot.test.ts checks it); kept readable rather than fast.
 */
export class ReferenceDataDecoder {
  private readonly max: number;
  private readonly policy: BareNewlinePolicy;
  private readonly scanner = new BreakScanner();
  private state = LINE_START;
  private out: Buffer[] = [];
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
    if (this.state === DONE) throw new ProtocolError('PUSH_AFTER_END', 'ReferenceDataDecoder.push after end-of-data');
    const buf = asBuffer(chunk);
    this.out = [];
    const end = this.scan(buf);
    const chunks = this.out;
    this.out = [];
    return end < 0 ? { chunks, done: false } : { chunks, done: true, rest: buf.subarray(end) };
  }

  /** Returns the offset just after end-of-data, or -1 if the chunk did not contain it. */
  private scan(buf: Buffer): number {
    const n = buf.length;
    const scanner = this.scanner;
    scanner.reset(buf);
    let i = 0;
    let run = 0; // start of the bytes passed through unchanged, not yet emitted
    while (i < n) {
      switch (this.state) {
        case MID: {
          const at = scanner.next(i);
          const kind = scanner.kind;
          if (kind === CRLF) {
            i = at + 2;
            // The next line's start, inline while it is in this chunk (the hot path: one loop
            // turn per line, dotted or not). Only a dot before a CR needs the state machine.
            if (i >= n) this.state = LINE_START;
            else if (buf[i] === DOT) {
              this.emit(buf, run, i);
              run = ++i;
              if (i >= n || buf[i] === CR) this.state = AFTER_DOT;
            }
          } else if (kind === NONE) {
            i = n;
          } else {
            this.emit(buf, run, at);
            run = i = at + 1;
            if (kind === TRAILING_CR) this.state = PENDING_CR;
            else this.bareNewline();
          }
          break;
        }
        case LINE_START:
          if (buf[i] === DOT) {
            this.emit(buf, run, i);
            run = ++i;
            this.state = AFTER_DOT;
          } else this.state = MID;
          break;
        case AFTER_DOT:
          if (buf[i] === CR) {
            run = ++i;
            this.state = AFTER_DOT_CR;
          } else this.state = MID;
          break;
        case AFTER_DOT_CR:
        case PENDING_CR:
          if (buf[i] === LF) {
            if (this.state === AFTER_DOT_CR) {
              this.state = DONE;
              return i + 1;
            }
            this.emit(CRLF_BYTES, 0, 2);
            run = ++i;
            this.state = LINE_START;
          } else {
            this.bareNewline();
            this.state = MID;
          }
          break;
      }
    }
    this.emit(buf, run, n);
    return -1;
  }

  private bareNewline(): void {
    this.bare++;
    if (this.policy === 'reject') this.stopped = true;
    this.emit(CRLF_BYTES, 0, 2);
  }

  private emit(buf: Buffer, start: number, end: number): void {
    if (end <= start) return;
    this.decoded += end - start;
    if (this.stopped || this.decoded > this.max) return;
    this.out.push(start === 0 && end === buf.length ? buf : buf.subarray(start, end));
  }
}

/** Encoder states between bytes. */
const E_MID = 0;
const E_LINE_START = 1;
const E_PENDING_CR = 2;
const E_ENDED = 3;

/**
 * DATA body encoder: bare CR/LF become CRLF, line-initial '.' is doubled; end() adds the
 * terminator. The specification of the fast DotEncoder in dot-simd.ts (see ReferenceDataDecoder).
 */
export class ReferenceDotEncoder {
  private readonly scanner = new BreakScanner();
  private state = E_LINE_START;
  private out: Buffer[] = [];

  push(chunk: Uint8Array): Buffer[] {
    if (this.state === E_ENDED) throw new ProtocolError('PUSH_AFTER_END', 'ReferenceDotEncoder.push after end()');
    const buf = asBuffer(chunk);
    this.out = [];
    this.scan(buf);
    const out = this.out;
    this.out = [];
    return out;
  }

  /** The terminator: `.\r\n` after a line end (or for an empty body), else `\r\n.\r\n`. */
  end(): Buffer {
    if (this.state === E_ENDED) throw new ProtocolError('PUSH_AFTER_END', 'ReferenceDotEncoder.end called twice');
    const atLineStart = this.state === E_LINE_START;
    this.state = E_ENDED;
    return Buffer.from(atLineStart ? '.\r\n' : '\r\n.\r\n');
  }

  private scan(buf: Buffer): void {
    const n = buf.length;
    const scanner = this.scanner;
    scanner.reset(buf);
    let i = 0;
    let run = 0;
    while (i < n) {
      if (this.state === E_LINE_START) {
        if (buf[i] === DOT) {
          this.emit(buf, run, i);
          this.out.push(DOT_BYTES);
          run = i; // the original '.' starts the next run: '.' + '.' = '..'
        }
        this.state = E_MID;
      } else if (this.state === E_PENDING_CR) {
        // The held CR becomes CRLF either way; a following LF is its own.
        this.out.push(CRLF_BYTES);
        if (buf[i] === LF) run = ++i;
        this.state = E_LINE_START;
      } else {
        const at = scanner.next(i);
        const kind = scanner.kind;
        if (kind === CRLF) {
          i = at + 2;
          // The next line's start, inline while it is in this chunk (one loop turn per line).
          if (i >= n) this.state = E_LINE_START;
          else if (buf[i] === DOT) {
            this.emit(buf, run, i);
            this.out.push(DOT_BYTES);
            run = i; // the original '.' starts the next run: '.' + '.' = '..'
          }
        } else if (kind === NONE) {
          i = n;
        } else {
          this.emit(buf, run, at);
          run = i = at + 1;
          if (kind === TRAILING_CR) {
            this.state = E_PENDING_CR;
          } else {
            this.out.push(CRLF_BYTES);
            this.state = E_LINE_START;
          }
        }
      }
    }
    this.emit(buf, run, n);
  }

  private emit(buf: Buffer, start: number, end: number): void {
    if (end > start) this.out.push(start === 0 && end === buf.length ? buf : buf.subarray(start, end));
  }
}

/** BDAT body normaliser: bare CR/LF → CRLF ('normalize') or output stops at the first ('reject'). */
export class NewlineNormalizer {
  private readonly policy: BareNewlinePolicy;
  private readonly scanner = new BreakScanner();
  private pendingCR = false;
  private bare = 0;
  private stopped = false;
  private out: Buffer[] = [];

  constructor(policy: BareNewlinePolicy) {
    this.policy = policy;
  }

  get bareNewlines(): number {
    return this.bare;
  }

  push(chunk: Uint8Array): Buffer[] {
    const buf = asBuffer(chunk);
    this.out = [];
    this.scan(buf);
    const out = this.out;
    this.out = [];
    return out;
  }

  /** Flushes a CR held from the last chunk: at the end of the body it is bare. */
  end(): Buffer[] {
    this.out = [];
    if (this.pendingCR) {
      this.pendingCR = false;
      this.bareNewline();
    }
    const out = this.out;
    this.out = [];
    return out;
  }

  private scan(buf: Buffer): void {
    const n = buf.length;
    const scanner = this.scanner;
    scanner.reset(buf);
    let i = 0;
    let run = 0;
    if (this.pendingCR && n > 0) {
      this.pendingCR = false;
      if (buf[0] === LF) {
        this.emit(CRLF_BYTES, 0, 2);
        run = i = 1;
      } else this.bareNewline();
    }
    while (i < n) {
      const at = scanner.next(i);
      const kind = scanner.kind;
      if (kind === CRLF) {
        i = at + 2;
      } else if (kind === NONE) {
        i = n;
      } else {
        this.emit(buf, run, at);
        run = i = at + 1;
        if (kind === TRAILING_CR) this.pendingCR = true;
        else this.bareNewline();
      }
    }
    this.emit(buf, run, n);
  }

  private bareNewline(): void {
    this.bare++;
    if (this.policy === 'reject') this.stopped = true;
    this.emit(CRLF_BYTES, 0, 2);
  }

  private emit(buf: Buffer, start: number, end: number): void {
    if (end > start && !this.stopped) this.out.push(start === 0 && end === buf.length ? buf : buf.subarray(start, end));
  }
}

/** `BDAT <size>[ LAST]\r\n` (RFC 3030). */
export function bdatCommand(size: number, last: boolean): string {
  if (!Number.isSafeInteger(size) || size < 0) throw new RangeError(`BDAT size ${size} is not a non-negative integer`);
  return `BDAT ${size}${last ? ' LAST' : ''}\r\n`;
}
