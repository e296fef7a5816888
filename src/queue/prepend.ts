/**
 * @module queue/prepend
 * Envelope.prepend: header fields (the DKIM-Signature cleanup computed at enqueue) that go out
 * before the stored bytes at every delivery, and wherever the message is shown whole (a DSN's
 * returned original, `queue show`). The store keeps them in the envelope, not in the body, so
 * the body stays exactly the bytes that were received (plus our Received:), and a message is
 * signed once however often it is retried.
 *
 * StoredMessage.size counts them (backends add prependOctets to the body's octets), so the
 * framing-fault guard, which compares what it read with `size`, covers them too. readMessage is
 * the one way to read a message whole: prepend first, then QueueStore.readBody. Pure apart
 * from the store it is given.
 */
import type { Envelope, QueueStore, StoredMessage } from './store.js';

/** The prepended header lines as the octets that go out (UTF-8; a DKIM-Signature is ASCII). */
export function prependBytes(envelope: Envelope): Buffer {
  return Buffer.from(envelope.prepend ?? '', 'utf8');
}

export function prependOctets(envelope: Envelope): number {
  return envelope.prepend === undefined ? 0 : Buffer.byteLength(envelope.prepend, 'utf8');
}

/**
 * The whole message as the next hop receives it (before dot-stuffing): prepend, then the stored
 * body. Without a prepend it is the store's own stream: delivery's hot path gains no layer.
 */
export function readMessage(store: QueueStore, message: Pick<StoredMessage, 'id' | 'envelope'>): AsyncIterable<Uint8Array> {
  const head = prependBytes(message.envelope);
  return head.length === 0 ? store.readBody(message.id) : withHead(head, store.readBody(message.id));
}

async function* withHead(head: Uint8Array, body: AsyncIterable<Uint8Array>): AsyncGenerator<Uint8Array, void, undefined> {
  yield head;
  yield* body;
}
