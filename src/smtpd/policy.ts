/**
 * @module smtpd/policy
 * Decisions about who may do what, apart from protocol correctness: the seam where relay
 * access and the rate limits (smtpd/limits wraps a Policy with them) plug in. A Policy answers
 * a Verdict; the session turns a refusal into the reply it carries (go-smtp's Session /
 * Haraka's verdicts).
 *
 * The default, relayPolicy, is the no-open-relay rule: Postwire has no local mailboxes, so every
 * recipient is a relay, and only clients inside `--relay-from`, or authenticated ones (AUTH), may
 * name one. Everyone else gets `554 5.7.1` per recipient, so a misconfigured relay fails closed.
 */
import type { Mailbox, MailParams, RcptParams, Reply, ReversePath } from '../protocol/index.js';
import { reply } from '../protocol/index.js';
import { cidrContains, compileCidrList } from '../util/index.js';

export interface PolicyClient {
  readonly ip: string;
  readonly session: string;
  readonly helo: string;
  /** The AUTH identity (RFC 4954) once the client authenticated; absent before and without AUTH. */
  readonly user?: string;
  /** The session runs over TLS (STARTTLS done, or the implicit-TLS submission listener). */
  readonly tls?: boolean;
}

export type Verdict = { readonly accept: true } | { readonly accept: false; readonly reply: Reply };

export interface Policy {
  onConnect(client: PolicyClient): Verdict | Promise<Verdict>;
  onMail(client: PolicyClient, from: ReversePath, params: MailParams): Verdict | Promise<Verdict>;
  onRcpt(client: PolicyClient, to: Mailbox, params: RcptParams): Verdict | Promise<Verdict>;
}

const ACCEPT: Verdict = { accept: true };

export function relayPolicy(options: { relayFrom: readonly string[] }): Policy {
  const networks = compileCidrList(options.relayFrom);
  return {
    onConnect: () => ACCEPT,
    onMail: () => ACCEPT,
    onRcpt(client, to) {
      if (to.domain === '') {
        return { accept: false, reply: reply(550, '5.1.1', `<${to.localPart}>: this relay has no local mailboxes`) };
      }
      // RFC 4954 §8 / RFC 6409: an authenticated client relays from wherever it is.
      if (client.user !== undefined || cidrContains(networks, client.ip)) return ACCEPT;
      return { accept: false, reply: reply(554, '5.7.1', `<${to.address}>: Relay access denied`) };
    },
  };
}
