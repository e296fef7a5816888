/**
 * @module cleanup
 * One message in, one queue entry out: the public surface of cleanup/. smtpd sees only the
 * MessageIntake interface; the Received: header formatting is exported for tests and tools.
 */
export { createCleanup } from './cleanup.js';
export type { ClientInfo, GeneratedMessage, IncomingMessage, MessageIntake, CleanupDeps, DkimSettings } from './cleanup.js';
export { DkimKeyring } from './dkim.js';
export { formatReceived, ipLiteral } from './received.js';

