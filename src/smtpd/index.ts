export { SmtpServer } from './listener.js';
export type { SmtpServerOptions, SmtpServerDeps } from './listener.js';
export { SmtpConnection } from './connection.js';
export type { ConnectionOptions, ConnectionDeps } from './connection.js';
export { relayPolicy } from './policy.js';
export type { Policy, PolicyClient, Verdict } from './policy.js';
