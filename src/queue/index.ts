/**
 * @module queue
 * The queue's public surface for everyone outside queue/: the QueueStore seam and its types, queue
 * ids, and QueueError with its stable codes. Concrete backends (queue/sqlite, later
 * queue/postgres) are imported only by main.ts; the conformance suite (conformance.ts) imports
 * node:test and is imported by test files by path, never from here.
 */
export type {
  Envelope,
  EnvelopeRecipient,
  ListQuery,
  MessageWriter,
  QueueErrorCode,
  QueueStore,
  RecipientRecord,
  RecipientState,
  StoredMessage,
} from './store.js';
export { QueueError } from './store.js';
export type { QueueId } from './ids.js';
export { isQueueId, newQueueId, parseQueueId, QueueIdGenerator } from './ids.js';
