/**
 * @module protocol/status
 * Reply-code classes (RFC 5321 §4.2.1) and the RFC 3463 enhanced status codes Postwire sends,
 * each with its meaning, so a code in a reply is never a magic string.
 *
 * Who calls it: the server session and smtpd when choosing replies; delivery/outcome when it
 * classifies a remote reply (transient vs permanent); bounce when writing a DSN.
 *
 * Failure behaviour: pure lookups; an unknown code maps to the class default (`X.0.0`) or,
 * for 1xx/3xx which have no enhanced form, to undefined.
 *
 * Trust: callers pass integer reply codes; out-of-range codes are simply neither transient,
 * permanent nor positive.
 */

/** 2xx and 3xx: the command was accepted (3xx: send more). */
export function isPositive(code: number): boolean {
  return code >= 200 && code < 400;
}

/** 4xx: try again later. */
export function isTransient(code: number): boolean {
  return code >= 400 && code < 500;
}

/** 5xx: do not retry the same thing. */
export function isPermanent(code: number): boolean {
  return code >= 500 && code < 600;
}

/** The enhanced codes Postwire uses (RFC 3463, RFC 5248 registry), with their meaning. */
export const ENHANCED_STATUS = {
  '2.0.0': 'success, nothing more specific to say',
  '2.1.0': 'sender address accepted',
  '2.1.5': 'recipient address valid',
  '2.6.0': 'message content accepted',
  '2.7.0': 'security: authentication or TLS succeeded',
  '4.3.0': 'mail system temporarily unavailable',
  '4.3.1': 'mail system full (queue disk space)',
  '4.3.2': 'system not accepting network messages (shutting down)',
  '4.4.2': 'bad connection: timeout or connection dropped',
  '4.5.3': 'too many recipients, try the rest later',
  '4.7.0': 'security or policy: temporary refusal',
  '5.1.1': 'bad destination mailbox',
  '5.1.3': 'bad destination address syntax',
  '5.1.7': 'bad sender address syntax',
  '5.3.4': 'message too big for system',
  '5.5.0': 'protocol error, unspecified',
  '5.5.1': 'invalid or out-of-sequence command',
  '5.5.2': 'syntax error',
  '5.5.4': 'invalid command arguments',
  '5.6.0': 'bad message content (e.g. bare CR/LF refused)',
  '5.6.7': 'non-ASCII address without SMTPUTF8',
  '5.7.0': 'security or policy: permanent refusal',
  '5.7.1': 'delivery not authorized (relay denied)',
} as const;

export type EnhancedStatus = keyof typeof ENHANCED_STATUS;

/** Exact defaults for the codes whose meaning is unambiguous; otherwise the class default. */
const DEFAULTS: Readonly<Record<number, EnhancedStatus>> = {
  421: '4.3.0',
  451: '4.3.0',
  452: '4.3.1',
  500: '5.5.2',
  501: '5.5.4',
  502: '5.5.1',
  503: '5.5.1',
  504: '5.5.4',
  552: '5.3.4',
  555: '5.5.4',
};

/** The enhanced code to send with `code` when nothing more specific is known. */
export function enhancedFor(code: number): string | undefined {
  const exact = DEFAULTS[code];
  if (exact !== undefined) return exact;
  if (code >= 200 && code < 300) return '2.0.0';
  if (isTransient(code)) return '4.0.0';
  if (isPermanent(code)) return '5.0.0';
  return undefined;
}
