/**
 * @module bounce/original
 * Streams a built DSN: `head`, then the original message (whole for RET=FULL, otherwise only its
 * header section), then `tail`, without ever holding the original in memory.
 *
 * Who calls it: qmgr, feeding QueueStore.readBody(id) of the bounced message into cleanup as the
 * DSN's body. HeaderSectionCutter is also usable alone (e.g. to show headers in the admin page).
 *
 * Failure behaviour: errors of the source iterable propagate unchanged; when the header section
 * ends early, the source is closed (its iterator's return() runs) instead of being read to the end.
 *
 * Trust: the stored body uses CRLF line ends (DESIGN.md invariant 4: bare LF never gets queued),
 * so the header section ends at the first CRLF CRLF, or at the end of a message without a body.
 * The cut is exact at any chunking: the CR that may begin the empty line is held back one chunk.
 */
import type { Dsn } from './dsn.js';

const CR = 0x0d;
const LF = 0x0a;
const PATTERN = [CR, LF, CR, LF] as const;

/** Passes bytes through up to and including the CRLF that ends the last header field. */
export class HeaderSectionCutter {
  /** Bytes of CRLF CRLF matched so far; the message start counts as just after a CRLF. */
  private matched = 2;
  private heldCR = false;
  private ended = false;

  /** True once the empty line was seen: later input is ignored. */
  get done(): boolean {
    return this.ended;
  }

  /** The pieces of `chunk` (and a CR held from the previous one) that belong to the header section. */
  push(chunk: Uint8Array): Uint8Array[] {
    if (this.ended) return [];
    const out: Uint8Array[] = [];
    let start = 0;
    for (let i = 0; i < chunk.length; i++) {
      const b = chunk[i];
      if (b === PATTERN[this.matched]) this.matched++;
      else this.matched = b === CR ? 1 : 0;
      if (i === 0 && this.heldCR) {
        this.heldCR = false;
        if (this.matched !== 4) out.push(Uint8Array.of(CR));
      }
      if (this.matched === 4) {
        // The empty line's CR is at i - 1: in this chunk, or the held one (dropped above).
        if (i - 1 > start) out.push(chunk.subarray(start, i - 1));
        this.ended = true;
        return out;
      }
    }
    let end = chunk.length;
    if (this.matched === 3 && end > 0) {
      this.heldCR = true;
      end -= 1;
    }
    if (end > start) out.push(chunk.subarray(start, end));
    return out;
  }

  /** At the end of the source: a message with no body is all header section. */
  finish(): Uint8Array[] {
    if (this.ended || !this.heldCR) return [];
    this.heldCR = false;
    return [Uint8Array.of(CR)];
  }
}

/** The DSN's bytes in order: head, the original (as dsn.includeOriginal says), tail. */
export async function* streamDsn(dsn: Dsn, original: AsyncIterable<Uint8Array>): AsyncGenerator<Uint8Array, void, undefined> {
  yield dsn.head;
  if (dsn.includeOriginal === 'full') {
    for await (const chunk of original) yield chunk;
  } else {
    const cutter = new HeaderSectionCutter();
    for await (const chunk of original) {
      for (const piece of cutter.push(chunk)) yield piece;
      if (cutter.done) break;
    }
    for (const piece of cutter.finish()) yield piece;
  }
  yield dsn.tail;
}
