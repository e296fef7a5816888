/**
 * @module smtpd
 * Inbound SMTP, the public surface of smtpd/: the listeners (SmtpServer), one SmtpConnection per
 * socket, the Policy seam (relay access) and the abuse limits (rates, tarpit, exemptions). It hands messages to cleanup and never touches the
 * queue itself.
 */
export { SmtpServer } from './listener.js';
export type { SmtpServerOptions, SmtpServerDeps } from './listener.js';
export { SmtpConnection } from './connection.js';
export type { ConnectionOptions, ConnectionDeps } from './connection.js';
export { relayPolicy } from './policy.js';
export type { Policy, PolicyClient, Verdict } from './policy.js';
export { InboundLimits, Tarpit, LIMIT_NAMES, addressKey } from './limits.js';
export type { LimitName, LimitSettings, LimitsDeps, RateSettings, TarpitSettings } from './limits.js';
