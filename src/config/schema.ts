/**
 * @module config/schema
 * Every tunable of Postwire in one table (Postfix's mail_params.h, done as data): its flag, its
 * environment variable, its key in a config file, where it lands in Config, its type and range,
 * its default and a one-line doc. load.ts, describe.ts and the CLI's usage text are all generated
 * from this table, so a setting added here is parsed, documented and printed everywhere at once.
 *
 * Naming is mechanical on purpose: setting `max-recipients` is the flag `--max-recipients`, the
 * variable `POSTWIRE_MAX_RECIPIENTS` and the file key `"max-recipients"`. No aliases.
 *
 * A setting with `unavailable` names a feature that is designed but not built: giving it any
 * value is a configuration error, never a silent no-op (an operator who sets --tls-cert and gets
 * plaintext would be worse off than one who gets an error).
 *
 * Ranges are what the code can honour, not what is wise: timeouts go down to 100ms because the
 * test suites drive real sockets with short timers; RFC minimums are in the docs, and
 * --max-command-line keeps RFC 5321's hard floor of 512.
 */
import type { HostPort } from './types.js';

/** The parsed value of each kind of setting. Durations are ms, sizes octets. */
export interface ValueOf {
  string: string;
  hostname: string;
  hostport: HostPort;
  'hostport-or-off': HostPort | 'off';
  'hostport-list': readonly HostPort[];
  'cidr-list': readonly string[];
  duration: number;
  'duration-list': readonly number[];
  size: number;
  integer: number;
  enum: string;
}
export type Kind = keyof ValueOf;

/** What a default may depend on: only facts handed to loadConfig, never ambient state. */
export interface DefaultContext {
  readonly hostname: string;
}

interface Common {
  /** Flag name without dashes; also the config-file key. */
  readonly name: string;
  readonly flag: string;
  readonly env: string;
  /** Dotted path in Config (`limits.maxRecipients`), or undefined for settings Config doesn't hold. */
  readonly key: string | undefined;
  /** Placeholder in usage text: `HOST:PORT`, `DURATION`. */
  readonly metavar: string;
  readonly doc: string;
  /** Only repeatable flags may be given more than once (each adds to the list). */
  readonly repeatable: boolean;
  /** Set for designed-but-unbuilt features: the error text for any attempt to use it. */
  readonly unavailable: string | undefined;
  /** Where docs/configuration.md lists it. */
  readonly section: Section;
  /**
   * What SIGHUP does with a changed value: `live` applies it without dropping sessions (new
   * sessions and new delivery attempts see it; open sessions keep what they started with);
   * `restart` keeps the running value and logs that a restart is needed.
   */
  readonly reload: 'live' | 'restart';
}

export const SECTIONS = ['relay', 'shared-queue', 'tls-auth', 'limits', 'delivery', 'next-hop', 'outbound-tls', 'observability', 'unbuilt'] as const;
export type Section = (typeof SECTIONS)[number];

interface Range {
  readonly min: number;
  readonly max: number;
}

interface HostPortRules {
  /** Port 0 means "any free port": right for listeners (tests bind it), wrong for peers. */
  readonly portZero: boolean;
  /** The DNS server must be an address: a name would need DNS to find DNS. */
  readonly ipOnly: boolean;
}

export type Setting =
  | (Common & { readonly kind: 'string'; readonly default: string | undefined })
  | (Common & { readonly kind: 'hostname'; readonly default: (ctx: DefaultContext) => string })
  | (Common & HostPortRules & { readonly kind: 'hostport'; readonly default: HostPort | undefined })
  | (Common & HostPortRules & { readonly kind: 'hostport-or-off'; readonly default: HostPort | 'off' })
  | (Common & HostPortRules & { readonly kind: 'hostport-list'; readonly default: readonly HostPort[] })
  | (Common & { readonly kind: 'cidr-list'; readonly default: readonly string[] })
  | (Common & Range & { readonly kind: 'duration'; readonly default: number })
  | (Common & Range & { readonly kind: 'duration-list'; readonly default: readonly number[] })
  | (Common & Range & { readonly kind: 'size'; readonly default: number })
  | (Common & Range & { readonly kind: 'integer'; readonly default: number })
  | (Common & { readonly kind: 'enum'; readonly values: readonly string[]; readonly default: string });

export type SettingOf<K extends Kind> = Extract<Setting, { readonly kind: K }>;

export const BARE_NEWLINE_POLICIES = ['normalize', 'reject'] as const;
export const LOG_LEVELS = ['trace', 'debug', 'info', 'warn', 'error', 'fatal'] as const;
export const LOG_FORMATS = ['auto', 'json', 'pretty'] as const;
export const AMBIGUOUS_POLICIES = ['retry', 'hold'] as const;
export const DELIVERY_MODES = ['on', 'off'] as const;
export const LONG_LINE_POLICIES = ['wrap', 'pass', 'bounce'] as const;
export const AUTH_WITHOUT_TLS = ['off', 'loopback'] as const;
export const ON_OFF = ['off', 'on'] as const;
export const OUTBOUND_TLS_POLICIES = ['none', 'may', 'encrypt', 'verify'] as const;
export const MTA_STS_MODES = ['on', 'off'] as const;

const SECOND = 1_000;
const MINUTE = 60 * SECOND;
const HOUR = 60 * MINUTE;
const DAY = 24 * HOUR;
const MIB = 1024 * 1024;

type DistributiveOmit<T, K extends PropertyKey> = T extends unknown ? Omit<T, K> : never;
type Spec = DistributiveOmit<Setting, 'flag' | 'env' | 'repeatable' | 'unavailable' | 'metavar' | 'section' | 'reload'> & {
  readonly metavar?: string;
  readonly repeatable?: boolean;
  readonly unavailable?: string;
};

const METAVARS: Readonly<Record<Kind, string>> = {
  string: 'VALUE',
  hostname: 'NAME',
  hostport: 'HOST:PORT',
  'hostport-or-off': 'HOST:PORT|off',
  'hostport-list': 'HOST:PORT',
  'cidr-list': 'CIDR,...',
  duration: 'DURATION',
  'duration-list': 'DURATION,...',
  size: 'SIZE',
  integer: 'N',
  enum: 'VALUE',
};

/** Derive flag and env names from the setting name, so they cannot drift apart. */
function define(spec: Spec): Setting {
  return {
    ...spec,
    flag: `--${spec.name}`,
    env: `POSTWIRE_${spec.name.toUpperCase().replaceAll('-', '_')}`,
    metavar: spec.metavar ?? METAVARS[spec.kind],
    repeatable: spec.repeatable ?? false,
    unavailable: spec.unavailable,
    section: SECTION_OF[spec.name] ?? 'relay',
    reload: LIVE.has(spec.name) ? 'live' : 'restart',
  } as Setting;
}

/** Each setting's section in docs/configuration.md; unlisted ones are in `relay`. */
const SECTION_OF: Readonly<Record<string, Section>> = {
  queue: 'shared-queue', 'queue-schema': 'shared-queue', 'queue-connections': 'shared-queue', 'node-name': 'shared-queue',
  'lease-time': 'shared-queue',
  'tls-cert': 'tls-auth', 'tls-key': 'tls-auth', submission: 'tls-auth', users: 'tls-auth', 'auth-without-tls': 'tls-auth',
  'sender-login-match': 'tls-auth', 'auth-failures-per-ip': 'tls-auth', 'auth-failures-per-user': 'tls-auth',
  'auth-failure-window': 'tls-auth', 'auth-failure-delay': 'tls-auth', 'auth-verifications': 'tls-auth',
  'max-connections': 'limits', 'max-connections-per-ip': 'limits', 'max-recipients': 'limits', 'max-message-size': 'limits',
  'max-command-line': 'limits', 'max-bad-commands': 'limits', 'listen-backlog': 'limits', 'command-timeout': 'limits',
  'data-timeout': 'limits', 'shutdown-grace': 'limits',
  'limits-exempt': 'limits', 'ip-message-rate': 'limits', 'ip-recipient-rate': 'limits', 'user-message-rate': 'limits',
  'user-recipient-rate': 'limits', 'rate-window': 'limits', 'rate-max-clients': 'limits', 'tarpit-after': 'limits',
  'tarpit-delay': 'limits', 'tarpit-max-delay': 'limits', 'limits-log-rate': 'limits',
  delivery: 'delivery', 'mx-port': 'delivery', 'destination-concurrency': 'delivery', 'max-deliveries': 'delivery',
  'destination-rate': 'delivery', 'destination-burst': 'delivery',
  ambiguous: 'delivery', 'long-lines': 'delivery',
  smarthost: 'next-hop', dns: 'next-hop', retry: 'next-hop', 'keep-done': 'next-hop', 'delay-warning': 'next-hop', 'max-age': 'next-hop',
  'tls-policy': 'outbound-tls', 'tls-ca-file': 'outbound-tls', 'mta-sts': 'outbound-tls', 'mta-sts-port': 'outbound-tls',
  'mta-sts-timeout': 'outbound-tls', 'mta-sts-max-size': 'outbound-tls',
  'dkim-max-header-size': 'limits',
  admin: 'observability', 'admin-token': 'observability', 'log-level': 'observability', 'log-format': 'observability', 'metrics-destinations': 'observability',
};

/**
 * Settings SIGHUP applies to a running server (main.ts's reload). Everything else needs a restart:
 * listeners and the spool are open resources, qmgr's windows and slots are sized at start, and
 * the host name is in every component's greeting. `keep-done` applies from the next sweep (at
 * the cadence set at start). The certificate, key and user files are also re-read on every
 * SIGHUP whether or not their names changed (main.ts): renewing a certificate needs no restart.
 */
const LIVE: ReadonlySet<string> = new Set([
  'relay-from', 'bare-newline', 'max-connections', 'max-connections-per-ip', 'max-recipients', 'max-message-size',
  'max-command-line', 'max-bad-commands', 'command-timeout', 'data-timeout', 'shutdown-grace',
  'smarthost', 'dns', 'mx-port', 'retry', 'max-age', 'ambiguous', 'delay-warning', 'keep-done',
  'tls-cert', 'tls-key', 'users', 'auth-without-tls', 'sender-login-match', 'auth-failures-per-ip', 'auth-failures-per-user',
  'auth-failure-window', 'auth-failure-delay',
  // Abuse limits: what clients have spent is kept across a reload; only the rules change.
  'limits-exempt', 'ip-message-rate', 'ip-recipient-rate', 'user-message-rate', 'user-recipient-rate', 'rate-window',
  'rate-max-clients', 'tarpit-after', 'tarpit-delay', 'tarpit-max-delay', 'limits-log-rate',
  'dkim-max-header-size',
  'destination-rate', 'destination-burst',
]);

const local = (port: number): HostPort => ({ host: '127.0.0.1', port });
const listener = { portZero: true, ipOnly: false } as const;
const peer = { portZero: false, ipOnly: false } as const;

export const SCHEMA: readonly Setting[] = [
  define({ name: 'config', key: undefined, kind: 'string', default: undefined, metavar: 'FILE',
    doc: 'read settings from this TOML file (or JSON, by the .json extension); keys are flag names; flags override it' }),
  define({ name: 'listen', key: 'listen', kind: 'hostport-list', ...listener, default: [local(2525)], repeatable: true,
    doc: 'inbound SMTP listener; repeat for several (port 0 picks a free port)' }),
  define({ name: 'spool', key: 'spool', kind: 'string', default: './spool', metavar: 'DIR',
    doc: 'embedded queue directory' }),
  define({ name: 'queue', key: 'queue', kind: 'string', default: undefined, metavar: 'URL',
    doc: 'postgres://... shared queue instead of the embedded one (create its schema first: postwire migrate)' }),
  define({ name: 'queue-schema', key: 'queueSchema', kind: 'string', default: 'postwire', metavar: 'NAME',
    doc: 'PostgreSQL schema holding the shared queue (lower-case letters, digits, _)' }),
  define({ name: 'queue-connections', key: 'queueConnections', kind: 'integer', min: 2, max: 1000, default: 10,
    doc: 'connections this node keeps to the shared queue (plus one for destination slots)' }),
  define({ name: 'node-name', key: 'nodeName', kind: 'string', default: undefined, metavar: 'NAME',
    doc: 'this node in leases, logs and the database (application_name); default: host name:pid' }),
  define({ name: 'smarthost', key: 'smarthost', kind: 'hostport', ...peer, default: undefined,
    doc: 'deliver all mail via this host (default: MX lookup per domain)' }),
  define({ name: 'dns', key: 'dns', kind: 'hostport', portZero: false, ipOnly: true, default: undefined,
    doc: "DNS server for MX/A/AAAA lookups (default: the system's)" }),
  define({ name: 'retry', key: 'retry', kind: 'duration-list', min: 100, max: 30 * DAY,
    default: [MINUTE, 5 * MINUTE, 15 * MINUTE, HOUR, 4 * HOUR],
    doc: 'delays between delivery attempts; the last one repeats' }),
  define({ name: 'max-age', key: 'maxAge', kind: 'duration', min: 100, max: 365 * DAY, default: 5 * DAY,
    doc: 'give up and bounce a message after this long in the queue' }),
  define({ name: 'hostname', key: 'hostname', kind: 'hostname', default: (ctx) => ctx.hostname,
    doc: 'our name in the banner, EHLO and Received: (default: the system host name)' }),
  define({ name: 'admin', key: 'admin', kind: 'hostport-or-off', ...listener, default: local(8025),
    doc: 'HTTP admin API, web page and /metrics, or "off"' }),
  define({ name: 'admin-token', key: 'adminToken', kind: 'string', default: undefined, metavar: 'TOKEN',
    doc: 'bearer token the admin API requires (Authorization: Bearer TOKEN); needed when --admin is not loopback' }),
  define({ name: 'relay-from', key: 'relayFrom', kind: 'cidr-list', default: ['127.0.0.0/8', '::1/128'],
    doc: 'networks allowed to relay without AUTH (IPv4-mapped IPv6 clients match IPv4 networks)' }),
  define({ name: 'tls-cert', key: 'tls.cert', kind: 'string', default: undefined, metavar: 'FILE',
    doc: 'certificate chain (PEM) for STARTTLS and the submission listener; re-read on SIGHUP' }),
  define({ name: 'tls-key', key: 'tls.key', kind: 'string', default: undefined, metavar: 'FILE',
    doc: 'private key (PEM) for --tls-cert; re-read on SIGHUP' }),
  define({ name: 'submission', key: 'submission', kind: 'hostport', ...listener, default: undefined,
    doc: 'implicit-TLS submission listener (RFC 8314, usually port 465); needs --tls-cert' }),
  define({ name: 'users', key: 'auth.users', kind: 'string', default: undefined, metavar: 'FILE',
    doc: 'AUTH user file (managed with `postwire user`); enables AUTH PLAIN and LOGIN over TLS; re-read on SIGHUP' }),
  define({ name: 'auth-without-tls', key: 'auth.withoutTls', kind: 'enum', values: AUTH_WITHOUT_TLS, default: 'off',
    metavar: AUTH_WITHOUT_TLS.join('|'), doc: 'loopback: also offer AUTH without TLS to loopback clients (tests, local tools); never to others' }),
  define({ name: 'sender-login-match', key: 'auth.senderLoginMatch', kind: 'enum', values: ON_OFF, default: 'off',
    metavar: ON_OFF.join('|'), doc: "on: an authenticated client's MAIL FROM must be one of its addresses in the user file (553 5.7.1)" }),
  define({ name: 'auth-failures-per-ip', key: 'auth.failuresPerIp', kind: 'integer', min: 1, max: 100_000, default: 5,
    doc: 'failed AUTH attempts from one client IP per --auth-failure-window; beyond it: 421 4.7.0 and close' }),
  define({ name: 'auth-failures-per-user', key: 'auth.failuresPerUser', kind: 'integer', min: 1, max: 100_000, default: 10,
    doc: 'failed AUTH attempts for one user name per --auth-failure-window; beyond it: 454 4.7.0 for that user' }),
  define({ name: 'auth-failure-window', key: 'auth.failureWindow', kind: 'duration', min: 1000, max: DAY, default: 15 * MINUTE,
    doc: 'how long a failed AUTH attempt counts against its IP and user' }),
  define({ name: 'auth-failure-delay', key: 'auth.failureDelay', kind: 'duration', min: 0, max: MINUTE, default: SECOND,
    doc: 'a failed or throttled AUTH attempt is answered after this delay (slows guessing)' }),
  define({ name: 'auth-verifications', key: 'auth.maxVerifications', kind: 'integer', min: 1, max: 64, default: 2,
    doc: 'password verifications (argon2id, CPU-heavy, off the event loop) running at once; more wait their turn' }),
  define({ name: 'max-connections', key: 'limits.maxConnections', kind: 'integer', min: 1, max: 1_000_000, default: 1000,
    doc: 'simultaneous inbound connections; beyond it: 421 and close' }),
  define({ name: 'max-connections-per-ip', key: 'limits.maxConnectionsPerIp', kind: 'integer', min: 1, max: 1_000_000,
    default: 50, doc: 'simultaneous inbound connections from one client IP' }),
  define({ name: 'max-recipients', key: 'limits.maxRecipients', kind: 'integer', min: 1, max: 100_000, default: 1000,
    doc: 'recipients in one transaction; beyond it: 452 (RFC 5321 requires at least 100)' }),
  define({ name: 'max-message-size', key: 'limits.maxMessageSize', kind: 'size', min: 1, max: 8 * 1024 * MIB,
    default: 50 * MIB, doc: 'largest message accepted, advertised as EHLO SIZE; beyond it: 552' }),
  define({ name: 'max-command-line', key: 'limits.maxCommandLine', kind: 'integer', min: 512, max: 65_536, default: 512,
    doc: 'longest command line in octets including CRLF (RFC 5321: at least 512)' }),
  define({ name: 'max-bad-commands', key: 'limits.maxBadCommands', kind: 'integer', min: 1, max: 10_000, default: 20,
    doc: 'bad commands in one session before 421 and close' }),
  define({ name: 'listen-backlog', key: 'limits.listenBacklog', kind: 'integer', min: 1, max: 65_535, default: 1024,
    doc: 'kernel listen backlog (the OS may cap it at somaxconn)' }),
  define({ name: 'command-timeout', key: 'timeouts.command', kind: 'duration', min: 100, max: DAY, default: 5 * MINUTE,
    doc: 'idle time allowed between commands (RFC 5321: at least 5m)' }),
  define({ name: 'data-timeout', key: 'timeouts.data', kind: 'duration', min: 100, max: DAY, default: 3 * MINUTE,
    doc: 'idle time allowed inside DATA or a BDAT chunk (RFC 5321: 3m)' }),
  define({ name: 'shutdown-grace', key: 'timeouts.shutdownGrace', kind: 'duration', min: 0, max: HOUR, default: 10 * SECOND,
    doc: 'on SIGTERM, how long sessions may finish before they get 421' }),
  define({ name: 'limits-exempt', key: 'abuse.exempt', kind: 'cidr-list', default: ['127.0.0.0/8', '::1/128'],
    doc: 'clients the per-IP limits (connections, rates) and the tarpit do not apply to; empty: nobody is exempt' }),
  define({ name: 'ip-message-rate', key: 'abuse.ipMessageRate', kind: 'integer', min: 0, max: 10_000_000, default: 1000,
    doc: 'messages (MAIL commands) per --rate-window from one client IP (IPv6: per /64); beyond it: 451 4.7.1; 0: no limit' }),
  define({ name: 'ip-recipient-rate', key: 'abuse.ipRecipientRate', kind: 'integer', min: 0, max: 10_000_000, default: 10_000,
    doc: 'accepted recipients per --rate-window from one client IP (IPv6: per /64); beyond it: 451 4.7.1; 0: no limit' }),
  define({ name: 'user-message-rate', key: 'abuse.userMessageRate', kind: 'integer', min: 0, max: 10_000_000, default: 300,
    doc: 'messages per --rate-window from one AUTH user (from any address); beyond it: 451 4.7.1; 0: no limit' }),
  define({ name: 'user-recipient-rate', key: 'abuse.userRecipientRate', kind: 'integer', min: 0, max: 10_000_000, default: 3000,
    doc: 'accepted recipients per --rate-window from one AUTH user; beyond it: 451 4.7.1; 0: no limit' }),
  define({ name: 'rate-window', key: 'abuse.rateWindow', kind: 'duration', min: 100, max: DAY, default: MINUTE,
    doc: 'the window the rates count over; a full allowance refills evenly over it (so the rate is also the burst)' }),
  define({ name: 'rate-max-clients', key: 'abuse.rateMaxClients', kind: 'integer', min: 1, max: 10_000_000, default: 50_000,
    doc: 'clients remembered per rate (bounded memory, about 260 bytes each); beyond it one not seen lately is forgotten' }),
  define({ name: 'tarpit-after', key: 'abuse.tarpitAfter', kind: 'integer', min: 0, max: 10_000, default: 10,
    doc: 'errors in a session (5xx replies) after which each reply is delayed; 0: no tarpit' }),
  define({ name: 'tarpit-delay', key: 'abuse.tarpitDelay', kind: 'duration', min: 1, max: HOUR, default: SECOND,
    doc: 'tarpit delay per error beyond --tarpit-after (the delay grows with each error)' }),
  define({ name: 'tarpit-max-delay', key: 'abuse.tarpitMaxDelay', kind: 'duration', min: 1, max: HOUR, default: 10 * SECOND,
    doc: 'longest tarpit delay for one reply (also at most half of --command-timeout)' }),
  define({ name: 'limits-log-rate', key: 'abuse.logRate', kind: 'integer', min: 1, max: 1_000_000, default: 60,
    doc: 'refusal log lines per minute at most; the rest are counted in the next line (suppressed=N)' }),
  define({ name: 'bare-newline', key: 'bareNewline', kind: 'enum', values: BARE_NEWLINE_POLICIES, default: 'normalize',
    metavar: BARE_NEWLINE_POLICIES.join('|'), doc: 'bare CR or LF inside DATA: rewrite to CRLF, or refuse the message' }),
  define({ name: 'delivery', key: 'delivery.mode', kind: 'enum', values: DELIVERY_MODES, default: 'on',
    metavar: DELIVERY_MODES.join('|'),
    doc: 'off: accept and queue only, deliver nothing (maintenance, staged roll-outs, acceptance tests)' }),
  define({ name: 'mx-port', key: 'delivery.mxPort', kind: 'integer', min: 1, max: 65_535, default: 25,
    doc: 'TCP port for MX delivery (25; tests and lab setups point it elsewhere)' }),
  define({ name: 'destination-concurrency', key: 'delivery.destinationConcurrency', kind: 'integer', min: 1, max: 10_000,
    default: 20, doc: 'simultaneous deliveries to one destination (next hop)' }),
  define({ name: 'destination-rate', key: 'delivery.destinationRate', kind: 'string', default: 'unlimited', metavar: 'RATE',
    doc: 'deliveries started per destination (next hop), e.g. 600/m, 10/s, 100/h, or unlimited; a route\'s rate overrides it; cluster-wide on a shared queue' }),
  define({ name: 'destination-burst', key: 'delivery.destinationBurst', kind: 'integer', min: 0, max: 1_000_000, default: 0,
    doc: 'deliveries that may start at once under --destination-rate after a quiet spell; 0: one second of the rate, at least 1' }),
  define({ name: 'max-deliveries', key: 'delivery.maxInFlight', kind: 'integer', min: 2, max: 100_000, default: 200,
    doc: 'messages being delivered at once, over all destinations' }),
  define({ name: 'ambiguous', key: 'delivery.ambiguous', kind: 'enum', values: AMBIGUOUS_POLICIES, default: 'retry',
    metavar: AMBIGUOUS_POLICIES.join('|'),
    doc: 'connection lost after our end-of-data, before the reply: retry (a duplicate beats a loss) or hold' }),
  define({ name: 'lease-time', key: 'delivery.leaseTime', kind: 'duration', min: 300, max: DAY, default: 2 * MINUTE,
    doc: 'a claim on a message lasts this long, renewed every third of it; a dead node\'s work waits this long' }),
  define({ name: 'keep-done', key: 'delivery.keepDone', kind: 'duration', min: 100, max: 365 * DAY, default: HOUR,
    doc: 'how long a message whose recipients are all delivered, bounced or expired stays in the spool for inspection' }),
  define({ name: 'delay-warning', key: 'delivery.delayWarning', kind: 'duration', min: 100, max: 365 * DAY, default: 4 * HOUR,
    doc: 'tell the sender (a "delayed" DSN, once, NOTIFY permitting) when a message has waited this long' }),
  define({ name: 'long-lines', key: 'delivery.longLines', kind: 'enum', values: LONG_LINE_POLICIES, default: 'wrap',
    metavar: LONG_LINE_POLICIES.join('|'),
    doc: 'lines over 998 octets to a peer without BINARYMIME: wrap (CRLF SP, as Postfix), pass unchanged, or bounce' }),
  define({ name: 'tls-policy', key: 'outboundTls.policy', kind: 'enum', values: OUTBOUND_TLS_POLICIES, default: 'may',
    metavar: OUTBOUND_TLS_POLICIES.join('|'),
    doc: 'outbound TLS for routes without `tls`: none, may (STARTTLS when offered, unverified), encrypt (required, unverified), verify (required, chain and name)' }),
  define({ name: 'tls-ca-file', key: 'outboundTls.caFile', kind: 'string', default: undefined, metavar: 'FILE',
    doc: "trust store (PEM CA certificates) for verify, MTA-STS and REQUIRETLS (default: Node's bundled roots)" }),
  define({ name: 'mta-sts', key: 'outboundTls.mtaSts', kind: 'enum', values: MTA_STS_MODES, default: 'on', metavar: MTA_STS_MODES.join('|'),
    doc: 'honour MTA-STS (RFC 8461) policies of MX-routed domains' }),
  define({ name: 'mta-sts-port', key: 'outboundTls.mtaStsPort', kind: 'integer', min: 1, max: 65_535, default: 443,
    doc: 'HTTPS port of mta-sts.<domain> (443; tests and labs point it elsewhere)' }),
  define({ name: 'mta-sts-timeout', key: 'outboundTls.mtaStsTimeout', kind: 'duration', min: 100, max: 5 * MINUTE, default: 10 * SECOND,
    doc: 'how long an MTA-STS policy fetch may take before the domain is treated as having none' }),
  define({ name: 'mta-sts-max-size', key: 'outboundTls.mtaStsMaxSize', kind: 'size', min: 256, max: MIB, default: 64 * 1024,
    doc: 'largest MTA-STS policy file accepted' }),
  define({ name: 'log-level', key: 'logLevel', kind: 'enum', values: LOG_LEVELS, default: 'info',
    metavar: 'LEVEL', doc: `structured log threshold (${LOG_LEVELS.join(', ')})` }),
  define({ name: 'log-format', key: 'logFormat', kind: 'enum', values: LOG_FORMATS, default: 'auto',
    metavar: LOG_FORMATS.join('|'), doc: 'json: one JSON object per line; pretty: one readable line per event; auto: pretty when stdout is a terminal, else json' }),
  define({ name: 'metrics-destinations', key: 'metricsDestinations', kind: 'integer', min: 0, max: 1000, default: 20,
    doc: 'per-destination metric series: the N busiest destinations get their own label, the rest are "other"' }),
  define({ name: 'dkim-max-header-size', key: 'dkimMaxHeaderSize', kind: 'size', min: 1024, max: 64 * MIB, default: MIB,
    doc: 'header section gathered (in memory) to find From: before DKIM signing; a message whose header is longer is queued unsigned' }),
];

const BY_NAME: ReadonlyMap<string, Setting> = new Map(SCHEMA.map((s) => [s.name, s]));
const BY_ENV: ReadonlyMap<string, Setting> = new Map(SCHEMA.map((s) => [s.env, s]));

export function settingByName(name: string): Setting | undefined {
  return BY_NAME.get(name);
}

export function settingByEnv(env: string): Setting | undefined {
  return BY_ENV.get(env);
}
