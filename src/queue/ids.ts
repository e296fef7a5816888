/**
 * @module queue/ids
 * Queue ids: short, URL- and file-name-safe, sortable by creation time, unique without a
 * coordinator (several nodes may share one queue). Shape: 10 chars of milliseconds since the
 * epoch in Crockford base32, then 8 chars of randomness: `01JDQ4K8ZR` + `7XG2MB0T`.
 * The Postfix analogue is mail_queue_id_ok(): ids from outside are validated before use.
 */
import { randomBytes } from 'node:crypto';

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

export function newQueueId(nowMs: number, random: (n: number) => Uint8Array = randomBytes): QueueId {
  let time = '';
  let t = Math.max(0, Math.floor(nowMs));
  for (let i = 0; i < 10; i++) {
    time = ALPHABET[t % 32] + time;
    t = Math.floor(t / 32);
  }
  let tail = '';
  for (const byte of random(8)) tail += ALPHABET[byte % 32];
  return (time + tail) as QueueId;
}
