/**
 * @module queue/ids
 * Queue ids: short, URL- and file-name-safe, sortable by creation time, unique without a
 * coordinator (several nodes may share one queue). Shape: 10 chars of milliseconds since the
 * epoch in Crockford base32, then 8 chars of randomness: `01JDQ4K8ZR` + `7XG2MB0T`.
 * The Postfix analogue is mail_queue_id_ok(): ids from outside are validated before use.
 * Within one generator, ids are strictly increasing even inside one millisecond (ULID's
 * monotonic rule: the tail counts up), so "sorted by id" is "sorted by arrival" on each node.
 */
import { pooledRandomBytes } from '../util/index.js';

export type QueueId = string & { readonly __brand: 'QueueId' };

const ALPHABET = '0123456789ABCDEFGHJKMNPQRSTVWXYZ';
const ID_RE = /^[0-9A-HJKMNP-TV-Z]{18}$/;

export function isQueueId(text: string): text is QueueId {
  return ID_RE.test(text);
}

/** Parse an id from outside (CLI, API); undefined when it is not one. */
export function parseQueueId(text: string): QueueId | undefined {
  const upper = text.trim().toUpperCase();
  return isQueueId(upper) ? upper : undefined;
}

const TAIL_SPACE = 32 ** 8;

function encode(value: number, digits: number): string {
  let out = '';
  let v = value;
  for (let i = 0; i < digits; i++) {
    out = ALPHABET[v % 32] + out;
    v = Math.floor(v / 32);
  }
  return out;
}

function randomTail(random: (n: number) => Uint8Array): number {
  // 39 random bits: the top half of the 40-bit tail space, leaving room to count up.
  const bytes = random(5);
  let v = 0;
  for (const b of bytes) v = v * 256 + b;
  return Math.floor(v / 2);
}

/** A stateless id: unique, sortable to the millisecond. Prefer a QueueIdGenerator for a store. */
export function newQueueId(nowMs: number, random: (n: number) => Uint8Array = pooledRandomBytes): QueueId {
  return (encode(Math.max(0, Math.floor(nowMs)), 10) + encode(randomTail(random), 8)) as QueueId;
}

/** Strictly increasing ids for one producer (one store instance). */
export class QueueIdGenerator {
  private lastMs = -1;
  private lastTail = 0;

  constructor(private readonly random: (n: number) => Uint8Array = pooledRandomBytes) {}

  next(nowMs: number): QueueId {
    let ms = Math.max(0, Math.floor(nowMs));
    let tail: number;
    if (ms <= this.lastMs) {
      ms = this.lastMs;
      tail = this.lastTail + 1;
      if (tail >= TAIL_SPACE) {
        ms += 1;
        tail = randomTail(this.random);
      }
    } else {
      tail = randomTail(this.random);
    }
    this.lastMs = ms;
    this.lastTail = tail;
    return (encode(ms, 10) + encode(tail, 8)) as QueueId;
  }
}
