/**
 * @module queue
 * The queue's public surface for everyone outside queue/: the QueueStore seam and its types
 * (scheduling included: Lease, ClaimedMessage, AttemptRecord), the due/final state sets, queue
 * ids, and QueueError with its stable codes. The shared transition rules (transitions.ts) are for
 * backends; only isDue/isFinal are exported here. Concrete backends (queue/sqlite, later
 * queue/postgres) are imported only by main.ts; the conformance suite (conformance.ts) imports
 * node:test and is imported by test files by path, never from here.
 */
export type {
  AttemptRecord,
  AttemptResult,
  AttemptState,
  ClaimedMessage,
  ClaimQuery,
  DomainStats,
  DomainStatsQuery,
  Envelope,
  EnvelopeRecipient,
  Lease,
  ListQuery,
  MessageWriter,
  QueueErrorCode,
  QueueStore,
  RecipientRecord,
  RecipientState,
  SearchPage,
  SearchQuery,
  SearchSort,
  StoredMessage,
} from './store.js';
export { AMBIGUOUS_AT_RESTART, DUE_STATES, FINAL_STATES, OPERATOR_NOTES, QueueError, RETRY_REPLY } from './store.js';
export { prependBytes, prependOctets, readMessage } from './prepend.js';
export { containsFolded, domainOf, isDue, isFinal, lastReplies } from './transitions.js';
export type { QueueId } from './ids.js';
export { isQueueId, newQueueId, parseQueueId, QueueIdGenerator } from './ids.js';
