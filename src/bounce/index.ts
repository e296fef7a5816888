/**
 * @module bounce
 * The public surface of bounce/: delivery status notifications (RFC 3464 inside an RFC 6522
 * multipart/report, RFC 6533 for UTF-8 addresses), built purely from message metadata and
 * recipient outcomes. qmgr calls planDsn/buildDsn when recipients fail, expire or pass the
 * delay-warning age, then enqueues streamDsn(dsn, store.readBody(id)) through cleanup with
 * `MAIL FROM:<>` (and SMTPUTF8 / BODY= as the Dsn says) to dsn.recipient.
 *
 * Pledge (DESIGN.md §2): imports protocol and util only; no I/O, no clock, no randomness. A
 * null-sender message never gets a DSN (nothing bounces a bounce): buildDsn returns undefined
 * and planDsn gives the reason for the log.
 */
export { buildDsn, planDsn, shouldNotify, whichRecipientsNotify } from './dsn.js';
export type { Dsn, DsnAction, DsnInput, DsnPlan, DsnRecipient, NotifySetting } from './dsn.js';
export { HeaderSectionCutter, streamDsn } from './original.js';
