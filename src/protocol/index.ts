/**
 * @module protocol
 * The public surface of the pure SMTP codec: framing, commands, replies, paths, parameters,
 * status codes and message-body encodings. Other folders import only from here.
 */
export * from './types.js';
export * from './line-reader.js';
export * from './command.js';
export * from './address.js';
export * from './params.js';
export * from './reply.js';
export * from './status.js';
export * from './dot.js';
export { DataDecoder, DotEncoder } from './dot-simd.js';
// server-session exports are added by the lead
export { ServerSession } from './server-session.js';
export type { AcceptedRecipient, Decision, ServerSessionOptions, TransactionEnvelope } from './server-session.js';
export { CLIENT_STEPS, ClientSession, NO_EXTENSIONS, parseEhlo } from './client-session.js';
export type {
  AttemptFact,
  Capabilities,
  ClientEvent,
  ClientSessionOptions,
  ClientStep,
  ClientStepName,
  OutboundMessage,
  OutboundRecipient,
  PreflightCheck,
} from './client-session.js';
