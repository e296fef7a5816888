/**
 * @module delivery/tls-policy
 * What one connection to one host must do about TLS, decided before it is opened (Postfix
 * smtp_tls_security_level, per destination). Four levels:
 *   none     never STARTTLS
 *   may      STARTTLS when offered, certificate not checked; a failed handshake is retried once
 *            in plain text on a new connection (Postfix does the same for `may`)
 *   encrypt  STARTTLS required, certificate not checked
 *   verify   STARTTLS required, the chain must verify against the trust store and the name
 *            must match one of `names` (the MX host name, or the smart host name)
 * A route's `tls` wins over the global default; MTA-STS `enforce` and REQUIRETLS raise the level
 * to `verify` (never lower it), and REQUIRETLS also needs the peer to announce REQUIRETLS.
 *
 * Who calls it: delivery/agent (per host) and, for `postwire explain`, main's admin ports.
 * Pure: no I/O. A policy that requires TLS never falls back to plain text: `requiresTls`.
 */
import { OUTBOUND_TLS_POLICIES } from '../config/index.js';

/** The levels are config's (`--tls-policy`, a route's `tls`): one list for both. */
export type TlsPolicy = (typeof OUTBOUND_TLS_POLICIES)[number];
export const TLS_POLICIES: readonly TlsPolicy[] = OUTBOUND_TLS_POLICIES;
export const DEFAULT_TLS_POLICY: TlsPolicy = 'may';

const RANK: Readonly<Record<TlsPolicy, number>> = { none: 0, may: 1, encrypt: 2, verify: 3 };

/** What a connection must do; part of the pool key, so a connection is reused only under the same terms. */
export interface TlsRequirement {
  readonly policy: TlsPolicy;
  /** Why this level, for the history and explain: `route 'example.com'`, `default`, `MTA-STS enforce`, `REQUIRETLS`. */
  readonly source: string;
  /** Names the certificate may match (verify): the MX host or smart host name. */
  readonly names: readonly string[];
  /** The message carries REQUIRETLS (RFC 8689): verified TLS and REQUIRETLS from the peer. */
  readonly requireTls: boolean;
  /** Plain text on purpose: the one retry after a `may` handshake failure. */
  readonly fallback?: true;
}

/** encrypt and verify (and REQUIRETLS): without TLS the connection carries nothing. */
export function requiresTls(r: Pick<TlsRequirement, 'policy' | 'requireTls'>): boolean {
  return r.requireTls || RANK[r.policy] >= RANK.encrypt;
}

export interface RequirementInput {
  /** The route's `tls`, when it sets one. */
  readonly route?: { readonly policy: TlsPolicy; readonly pattern: string };
  readonly defaultPolicy: TlsPolicy;
  /** The host name the certificate must carry. */
  readonly name: string;
  /** The domain's MTA-STS policy is `enforce` and lists this host. */
  readonly mtaStsEnforce?: boolean;
  readonly requireTls?: boolean;
}

/** The requirement for one host: the route or the default, raised by MTA-STS enforce and REQUIRETLS. */
export function requirementFor(input: RequirementInput): TlsRequirement {
  let policy = input.route?.policy ?? input.defaultPolicy;
  let source = input.route !== undefined ? `route '${input.route.pattern}'` : 'default';
  if (input.mtaStsEnforce === true && RANK[policy] < RANK.verify) {
    policy = 'verify';
    source = 'MTA-STS enforce';
  }
  if (input.requireTls === true && RANK[policy] < RANK.verify) {
    policy = 'verify';
    source = 'REQUIRETLS';
  }
  return { policy, source, names: [input.name], requireTls: input.requireTls === true };
}

/** A short stable key for the pool: connections are shared only between equal requirements. */
export function requirementKey(r: TlsRequirement): string {
  return `${r.policy}${r.requireTls ? '+requiretls' : ''}${r.fallback ? '+plain' : ''}|${r.names.join(',').toLowerCase()}`;
}

/** What the TLS of one connection turned out to be, for the log line and the history. */
export interface TlsState {
  readonly version: string;
  readonly cipher: string;
  /** Chain verified against the trust store and a name of the requirement matched. */
  readonly verified: boolean;
  /** Why not verified: the chain error or the name mismatch; absent when verified. */
  readonly unverifiedReason?: string;
}

/** `TLSv1.3 TLS_AES_256_GCM_SHA384, verified` / `…, not verified (reason)`. */
export function describeTls(t: TlsState | undefined): string {
  if (t === undefined) return 'no TLS';
  const v = t.verified ? 'certificate verified' : `certificate not verified${t.unverifiedReason !== undefined ? ` (${t.unverifiedReason})` : ''}`;
  return `TLS ${t.version} ${t.cipher}, ${v}`;
}
