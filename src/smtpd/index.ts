/**
 * @module smtpd
 * Inbound SMTP, the public surface of smtpd/: the listeners (SmtpServer), one SmtpConnection per
 * socket, the Policy seam (relay access), inbound TLS credentials, AUTH and the abuse limits
 * (rates, tarpit, exemptions). It hands messages to cleanup and never touches the queue itself.
 */
export { SmtpServer } from './listener.js';
export type { SmtpServerOptions, SmtpServerDeps } from './listener.js';
export { SmtpConnection } from './connection.js';
export type { ConnectionOptions, ConnectionDeps } from './connection.js';
export { relayPolicy } from './policy.js';
export { Authenticator, senderBinding } from './auth.js';
export type { AuthLimits } from './auth.js';
export { TlsCredentials } from './tls.js';
export type { Policy, PolicyClient, Verdict } from './policy.js';
export { InboundLimits } from './limits.js';
export type { LimitSettings } from './limits.js';
