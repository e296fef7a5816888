/**
 * @module protocol/types
 * The vocabulary of the SMTP wire: commands as parsed values, paths, ESMTP parameters and replies.
 * Everything here is plain data; the codec modules produce and consume it. No I/O.
 */

/** An RFC 5321 mailbox (`Local-part "@" Domain`), after parsing. */
export interface Mailbox {
  /** Local part as the client wrote it, quotes removed and quoted-pairs resolved. */
  readonly localPart: string;
  /** Domain, or an address literal including its brackets (`[192.0.2.1]`, `[IPv6:…]`). */
  readonly domain: string;
  /** True when local part or domain holds non-ASCII (needs SMTPUTF8, RFC 6531). */
  readonly utf8: boolean;
  /** The canonical text form `local@domain`, local part re-quoted when it must be. */
  readonly address: string;
}

/** Reverse-path: a mailbox, or null for the null sender `<>`. */
export type ReversePath = Mailbox | null;

export type BodyType = '7BIT' | '8BITMIME' | 'BINARYMIME';
export type DsnRet = 'FULL' | 'HDRS';
export type DsnNotify = 'SUCCESS' | 'FAILURE' | 'DELAY';

/** MAIL FROM parameters (RFC 1870 SIZE, 6152 BODY, 3030 BINARYMIME, 6531 SMTPUTF8, 3461 DSN, 4954 AUTH). */
export interface MailParams {
  readonly size?: number;
  readonly body?: BodyType;
  readonly smtputf8?: true;
  readonly ret?: DsnRet;
  /** ENVID, decoded from xtext. */
  readonly envid?: string;
  /** AUTH=, decoded from xtext; `<>` means an unknown or unauthenticated submitter. */
  readonly auth?: string;
  /** RFC 8689 REQUIRETLS (no value): every hop must use verified TLS. */
  readonly requireTls?: true;
}

/** RCPT TO parameters (RFC 3461 DSN). */
export interface RcptParams {
  /** `NEVER` is the empty list: the DSN says NOTIFY=NEVER. */
  readonly notify?: readonly DsnNotify[] | 'NEVER';
  /** ORCPT as `addr-type;address`, address decoded from xtext (or utf-8-addr-xtext). */
  readonly orcpt?: { readonly addrType: string; readonly address: string };
}

export type Command =
  | { readonly verb: 'EHLO' | 'HELO'; readonly domain: string }
  | { readonly verb: 'MAIL'; readonly from: ReversePath; readonly params: MailParams }
  | { readonly verb: 'RCPT'; readonly to: Mailbox; readonly params: RcptParams; readonly postmaster: boolean }
  | { readonly verb: 'DATA' }
  | { readonly verb: 'BDAT'; readonly size: number; readonly last: boolean }
  | { readonly verb: 'RSET' }
  | { readonly verb: 'NOOP' }
  | { readonly verb: 'QUIT' }
  | { readonly verb: 'VRFY'; readonly argument: string }
  | { readonly verb: 'EXPN'; readonly argument: string }
  | { readonly verb: 'HELP'; readonly argument: string }
  | { readonly verb: 'STARTTLS' }
  | { readonly verb: 'AUTH'; readonly mechanism: string; readonly initialResponse?: string };

export type Verb = Command['verb'];

/** A server reply: code, optional RFC 3463 enhanced status, one or more text lines. */
export interface Reply {
  readonly code: number;
  /** `class.subject.detail`, e.g. `5.7.1`. Omitted on 220/221 greetings and EHLO lines. */
  readonly enhanced?: string;
  readonly lines: readonly string[];
}
