/**
 * @module delivery/outcome
 * The one classifier of delivery results (Postfix smtp_trouble.c, OpenSMTPD FAIL_*, chasquid
 * courier): every fact the client session records (a reply, a lost or timed-out connection, a
 * framing fault, a local pre-flight refusal) becomes a per-recipient Outcome with a kind and a
 * scope. RFC quirks live here and nowhere else; call sites never look at reply codes.
 *
 * Who calls it: delivery/connection with each `transaction` event's facts (classifyTransaction)
 * and with a `session-failed` fact or a connect failure for the whole request (classifySession);
 * qmgr reads the Outcomes, bounce quotes `reply` in Diagnostic-Code (unless `local`).
 *
 * How a consumer reads an Outcome: `scope: 'destination'` means this host is unusable now: try
 * the next MX with every undelivered recipient, and apply `kind` only when no host is left (as
 * Postfix smtp_bulk_fail does for the final server). `ambiguous` is the RFC 1047 window (policy
 * `--ambiguous`), `held` a framing fault: hold the message, never retry it in a loop.
 *
 * Failure behaviour: total and pure: every input yields an Outcome, nothing throws, no I/O.
 * Trust: facts come from protocol/client-session; reply text is the peer's and kept verbatim.
 */
import { CLIENT_STEPS, enhancedFor, formatReply } from '../protocol/index.js';
import type { AttemptFact, ClientStepName, PreflightCheck, Reply, TlsFailure } from '../protocol/index.js';

export type OutcomeKind = 'delivered' | 'deferred' | 'bounced' | 'ambiguous' | 'held';
export type OutcomeScope = 'recipient' | 'message' | 'destination';

export interface Outcome {
  /** Index of the recipient in the delivery request. */
  readonly recipient: number;
  readonly kind: OutcomeKind;
  readonly scope: OutcomeScope;
  /** The reply verbatim (lines joined with '\n', codes included), or Postwire's own text. */
  readonly reply: string;
  /** RFC 3463 status for the DSN's Status field; its class always agrees with `kind`. */
  readonly enhanced?: string;
  /** `reply` was written by Postwire, not received from the peer (no `smtp;` Diagnostic-Code). */
  readonly local?: true;
}

/** The outcome of one fact for one recipient. The rules, in order:
 *  preflight        → bounced, message: 552 5.3.4 size / 553 5.6.7 SMTPUTF8 / 554 5.6.3 BINARYMIME;
 *                     REQUIRETLS not offered → bounced, destination, 550 5.7.30 (RFC 8689 §5: another
 *                     MX host may offer it, so the walk goes on; the last host's failure stands)
 *  tls              → the policy refused this host (scope destination: the next host may do):
 *                     not offered 451 4.7.4, handshake or certificate 451 4.7.5 (deferred: Postfix
 *                     defers these, a certificate gets fixed); REQUIRETLS impossible 550 5.7.30
 *  AUTH refused     → deferred, destination, whatever the code (Postfix smtp_sasl_auth_soft_bounce:
 *                     a 535 is usually a password to fix, and a deferral lets the queue drain then)
 *  framing-fault    → held, message (4.5.0)
 *  interrupted      → ambiguous, message, inside the RFC 1047 window; otherwise deferred,
 *                     destination (4.4.1 when connecting, 4.4.2 after: Postfix smtp_stream_except)
 *  421 at any step  → deferred, destination (RFC 5321 §3.8: the peer is closing)
 *  552 to RCPT      → deferred, recipient (RFC 5321 §4.5.3.1.10: read 552 as 452, "too many
 *                     recipients"; the rest go in a later transaction). Postfix keeps 552
 *                     permanent; we follow the RFC: a 552 mailbox-full is transient anyway (X.2.2)
 *  2xx to end-of-data / BDAT LAST → delivered, message
 *  4xx → deferred, 5xx → bounced, scoped by step: greeting/EHLO/HELO → destination, RCPT →
 *        recipient, anything else → message
 *  any other positive reply as a deciding fact → deferred, message (never delivered on it)
 * The reply code decides, not the enhanced code: RFC 2034 §4 says they must agree, and when a
 * peer breaks that the enhanced code is dropped (Postfix smtp_chat.c) and the status is the
 * code's default from protocol/status (enhancedFor), as when the peer sent none.
 */
export function classify(fact: AttemptFact, recipient: number): Outcome {
  switch (fact.kind) {
    case 'preflight':
      return local(recipient, 'bounced', fact.check === 'requiretls' ? 'destination' : 'message', PREFLIGHT[fact.check], fact.detail);
    case 'tls':
      return local(recipient, fact.failure === 'requiretls' ? 'bounced' : 'deferred', 'destination', TLS_FAILURE[fact.failure], fact.detail);
    case 'framing-fault':
      return local(recipient, 'held', 'message', { code: 451, enhanced: '4.5.0' }, `framing fault while ${phrase(fact.step)}: ${fact.reason}`);
    case 'interrupted': {
      const what = `${fact.cause === 'timeout' ? 'conversation timed out' : 'lost connection'} while ${phrase(fact.step)}`;
      const text = fact.detail === undefined ? what : `${what} (${fact.detail})`;
      if (fact.ambiguous) return local(recipient, 'ambiguous', 'message', { code: 451, enhanced: '4.4.2' }, text);
      const enhanced = fact.step === 'connect' ? '4.4.1' : '4.4.2';
      return local(recipient, 'deferred', 'destination', { code: 451, enhanced }, text);
    }
    case 'reply':
      return fromReply(recipient, fact.step, fact.reply);
  }
}

/** One Outcome per fact of a `transaction` event; `recipients[i]` renumbers fact i if given. */
export function classifyTransaction(facts: readonly AttemptFact[], recipients?: readonly number[]): Outcome[] {
  return facts.map((fact, i) => classify(fact, recipients?.[i] ?? i));
}

/** A fact that ended the whole connection (greeting, EHLO/HELO, connect) for every recipient. */
export function classifySession(fact: AttemptFact, recipients: readonly number[]): Outcome[] {
  return recipients.map((r) => classify(fact, r));
}

const PREFLIGHT: Readonly<Record<PreflightCheck, { readonly code: number; readonly enhanced: string }>> = {
  size: { code: 552, enhanced: '5.3.4' }, // RFC 3463 X.3.4 message too big for system
  smtputf8: { code: 553, enhanced: '5.6.7' }, // RFC 6531 §3.5 non-ASCII address not permitted
  binarymime: { code: 554, enhanced: '5.6.3' }, // RFC 3463 X.6.3 conversion required but not supported
  requiretls: { code: 550, enhanced: '5.7.30' }, // RFC 8689 §5 REQUIRETLS support required
};

const TLS_FAILURE: Readonly<Record<TlsFailure, { readonly code: number; readonly enhanced: string }>> = {
  'not-offered': { code: 451, enhanced: '4.7.4' }, // RFC 5248 X.7.4 security features not supported
  handshake: { code: 451, enhanced: '4.7.5' }, // X.7.5 cryptographic failure
  unverified: { code: 451, enhanced: '4.7.5' },
  requiretls: { code: 550, enhanced: '5.7.30' }, // RFC 8689 §5
};

const SESSION_STEPS: ReadonlySet<ClientStepName> = new Set(['connect', 'banner', 'ehlo', 'helo', 'starttls', 'auth']);
const FINAL_STEPS: ReadonlySet<ClientStepName> = new Set(['data-end', 'bdat-last']);

function fromReply(recipient: number, step: ClientStepName, r: Reply): Outcome {
  const text = verbatim(r);
  const cls = Math.floor(r.code / 100);
  const enhanced = agreeing(r);
  const out = (kind: OutcomeKind, scope: OutcomeScope, status: string): Outcome => ({ recipient, kind, scope, reply: text, enhanced: status });
  if (r.code === 421) return out('deferred', 'destination', enhanced ?? '4.3.0');
  if (step === 'auth' && cls !== 2) {
    // Soft: 535 5.7.8 → 4.7.8 (the class must agree with `deferred`).
    return out('deferred', 'destination', enhanced === undefined ? '4.7.0' : `4${enhanced.slice(1)}`);
  }
  if (step === 'rcpt' && r.code === 552) {
    // Read as 452: the class becomes 4, the detail stays (5.2.2 mailbox full → 4.2.2).
    return out('deferred', 'recipient', enhanced === undefined ? '4.5.3' : `4${enhanced.slice(1)}`);
  }
  const scope: OutcomeScope = SESSION_STEPS.has(step) ? 'destination' : step === 'rcpt' ? 'recipient' : 'message';
  // Without an (agreeing) enhanced code, protocol/status gives the code's usual meaning
  // (552 → 5.3.4, 500 → 5.5.2) or the class default X.0.0.
  const status = enhanced ?? enhancedFor(r.code) ?? `${cls}.0.0`;
  if (cls === 2 && FINAL_STEPS.has(step)) return out('delivered', 'message', status);
  if (cls === 4) return out('deferred', scope, status);
  if (cls === 5) return out('bounced', scope, status);
  // A positive reply cannot finish a recipient anywhere else; the session never reports one.
  // Retrying is the safe reading of a caller's mistake: a delivery must be seen, not assumed.
  return out('deferred', 'message', '4.5.0');
}

/** The enhanced code when its class agrees with the reply code (RFC 2034 §4), else undefined. */
function agreeing(r: Reply): string | undefined {
  const e = r.enhanced;
  return e !== undefined && e[0] === String(r.code)[0] ? e : undefined;
}

/** The reply as the peer sent it, CRLFs dropped, lines joined with '\n'. */
export function verbatim(r: Reply): string {
  return formatReply(r).replace(/\r\n$/, '').split('\r\n').join('\n');
}

function phrase(step: ClientStepName): string {
  return CLIENT_STEPS[step].phrase;
}

function local(
  recipient: number,
  kind: OutcomeKind,
  scope: OutcomeScope,
  status: { readonly code: number; readonly enhanced: string },
  text: string,
): Outcome {
  return { recipient, kind, scope, reply: `${status.code} ${status.enhanced} ${text}`, enhanced: status.enhanced, local: true };
}
