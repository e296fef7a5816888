export { createCleanup } from './cleanup.js';
export type { ClientInfo, IncomingMessage, MessageIntake, CleanupDeps } from './cleanup.js';
export { formatReceived, rfc5322Date, ipLiteral } from './received.js';

