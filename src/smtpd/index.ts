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
export type { AuthLimits, AuthOutcome } from './auth.js';
export { TlsCredentials, TLS_MIN_VERSION } from './tls.js';
export type { TlsFiles } from './tls.js';
export type { Policy, PolicyClient, Verdict } from './policy.js';
export { InboundLimits, Tarpit, LIMIT_NAMES, addressKey } from './limits.js';
export type { LimitName, LimitSettings, LimitsDeps, RateSettings, TarpitSettings } from './limits.js';
