/**
 * @module config/types
 * The frozen, typed configuration every module receives. Built only by config/load.ts from
 * defaults ← environment (POSTWIRE_*) ← config file ← command-line flags. Durations are in
 * milliseconds, sizes in octets. No other module reads process.env or argv.
 */
import type { BareNewlinePolicy } from '../protocol/index.js';

export interface HostPort {
  /** A host name, IPv4 address, or IPv6 address without brackets. */
  readonly host: string;
  readonly port: number;
}

export interface SmtpdLimits {
  /** Simultaneous inbound SMTP connections over all listeners; beyond it: `421 4.7.0`, close. */
  readonly maxConnections: number;
  /** Simultaneous inbound connections from one client IP; beyond it: `421 4.7.0`, close. */
  readonly maxConnectionsPerIp: number;
  /** Recipients in one transaction; beyond it: `452 4.5.3` (RFC 5321 §4.5.3.1.10). */
  readonly maxRecipients: number;
  /** Largest message accepted, in octets, advertised in EHLO SIZE; beyond it: `552 5.3.4`. */
  readonly maxMessageSize: number;
  /** Longest command line including CRLF (RFC 5321 §4.5.3.1.4: at least 512). */
  readonly maxCommandLine: number;
  /** Bad commands in one session before `421 4.7.0` and close (Postfix smtpd_hard_error_limit). */
  readonly maxBadCommands: number;
  /** Kernel listen backlog: sized for bursts of simultaneous connects. */
  readonly listenBacklog: number;
}

/** Inbound abuse limits (smtpd/limits); rates count per `rateWindow`, 0 turns a rate off. */
export interface AbuseLimits {
  /** CIDRs exempt from the per-IP limits and the tarpit (AUTH users' limits still apply). */
  readonly exempt: readonly string[];
  /** MAIL commands per window from one client IP (IPv6: per /64). */
  readonly ipMessageRate: number;
  /** Accepted recipients per window from one client IP. */
  readonly ipRecipientRate: number;
  /** MAIL commands per window from one AUTH user, wherever it connects from. */
  readonly userMessageRate: number;
  /** Accepted recipients per window from one AUTH user. */
  readonly userRecipientRate: number;
  /** The window, in ms; the allowance refills evenly over it. */
  readonly rateWindow: number;
  /** Clients remembered per rate; the least recently seen is forgotten beyond it. */
  readonly rateMaxClients: number;
  /** Errors in a session before its replies are delayed; 0: no tarpit. */
  readonly tarpitAfter: number;
  /** Delay per error beyond tarpitAfter, in ms. */
  readonly tarpitDelay: number;
  /** Longest delay for one reply, in ms. */
  readonly tarpitMaxDelay: number;
  /** Refusal log lines per minute. */
  readonly logRate: number;
}

export interface SmtpdTimeouts {
  /** Waiting for the next command (RFC 5321 §4.5.3.2.7: at least 5 minutes). */
  readonly command: number;
  /** Waiting for the next bytes inside DATA or a BDAT chunk (RFC 5321 §4.5.3.2.5: 3 minutes). */
  readonly data: number;
  /** How long SIGTERM waits for sessions to finish before closing them with 421. */
  readonly shutdownGrace: number;
}

/** An outbound rate limit (config/rate.ts): a token bucket of `burst` messages refilled at `perMinute`. */
export interface RateLimit {
  /** Messages per minute (fractional for rates given per hour). */
  readonly perMinute: number;
  /** Messages that may start at once after a quiet spell (the bucket's size), at least 1. */
  readonly burst: number;
}

/** One entry of the config file's `routes` (config/routes.ts); delivery's RouteTable reads it. */
export interface RouteSetting {
  /** `example.com`, `*.example.com` (subdomains) or `*`. */
  readonly pattern: string;
  readonly nextHop: { readonly kind: 'smarthost'; readonly host: string; readonly port: number } | { readonly kind: 'mx' };
  readonly concurrency?: number;
  /** Retry delays in ms; the last repeats. */
  readonly retry?: readonly number[];
  /** Outbound TLS for this route; unset: `--tls-policy`. */
  readonly tls?: 'none' | 'may' | 'encrypt' | 'verify';
  /** Client AUTH (smart hosts only): the user and the file holding the password (never the password). */
  readonly auth?: { readonly user: string; readonly passwordFile: string };
  /** Messages started per minute to this route's destination; 'unlimited' overrides --destination-rate. */
  readonly rate?: RateLimit | 'unlimited';
}

/** Outbound TLS (delivery/tls-policy, delivery/mta-sts). */
export interface OutboundTlsSettings {
  readonly policy: 'none' | 'may' | 'encrypt' | 'verify';
  /** PEM file of trusted CAs; undefined: Node's bundled roots. */
  readonly caFile: string | undefined;
  readonly mtaSts: 'on' | 'off';
  readonly mtaStsPort: number;
  readonly mtaStsTimeout: number;
  readonly mtaStsMaxSize: number;
}

export type DkimCanonicalization = 'relaxed/relaxed' | 'relaxed/simple' | 'simple/relaxed' | 'simple/simple';

/** One `[[dkim]]` table of the config file (config/dkim.ts), its key file read and checked. */
export interface DkimKeySetting {
  /** The signing domain (d=), lower case, without a trailing dot. */
  readonly domain: string;
  /** s=: the public key is at `<selector>._domainkey.<domain>`. */
  readonly selector: string;
  /** The file as the config named it (for messages; the key itself is in privateKey). */
  readonly keyFile: string;
  /** Follows the key: RSA signs rsa-sha256, Ed25519 signs ed25519-sha256 (RFC 8463). */
  readonly algorithm: 'rsa-sha256' | 'ed25519-sha256';
  /** The RSA modulus length; absent for Ed25519. */
  readonly bits?: number;
  /** The private key as PKCS#8 PEM, read when the configuration was loaded. Never printed or logged. */
  readonly privateKey: string;
  /** Header fields to sign (h=), as configured; From is always among them and oversigned. */
  readonly headers: readonly string[];
  /** header/body canonicalization (c=). */
  readonly canonicalization: DkimCanonicalization;
  /** Also sign mail whose From: domain is a subdomain of `domain` (when no closer key exists). */
  readonly subdomains: boolean;
}

export interface DeliverySettings {
  /** 'off': accept and queue only; the queue manager does not run. */
  readonly mode: 'on' | 'off';
  /** TCP port for MX delivery: 25, except in tests and labs. */
  readonly mxPort: number;
  /** Simultaneous deliveries to one next hop. */
  readonly destinationConcurrency: number;
  /** Messages in delivery at once over all destinations. */
  readonly maxInFlight: number;
  /**
   * Deliveries started per minute to one destination unless its route says otherwise, as
   * written and validated (`600/m`, `unlimited`); config/rate's defaultRate() gives the RateLimit.
   */
  readonly destinationRate: string;
  /** The burst for destinationRate; 0: one second of the rate, at least 1. */
  readonly destinationBurst: number;
  /** Connection lost after our end-of-data, before the reply (RFC 1047): retry or hold. */
  readonly ambiguous: 'retry' | 'hold';
  /** Lines over 998 octets to a peer without BINARYMIME: wrap (CRLF SP), pass, or bounce. */
  readonly longLines: 'wrap' | 'pass' | 'bounce';
  /** A "delayed" DSN goes out once when a message has waited this long (NOTIFY permitting). */
  readonly delayWarning: number;
  /** Finished messages (every recipient final) stay this long, then are purged. */
  readonly keepDone: number;
  /** How long a claim lasts (renewed every third of it): how long a dead node's work waits. */
  readonly leaseTime: number;
}

/** Inbound TLS (STARTTLS and the submission listener): PEM file paths, re-read on SIGHUP. */
export interface TlsSettings {
  readonly cert: string | undefined;
  readonly key: string | undefined;
}

/** AUTH (RFC 4954) for inbound clients. */
export interface AuthSettings {
  /** The user file; undefined: AUTH is not offered. */
  readonly users: string | undefined;
  /** 'loopback': AUTH is also offered without TLS to loopback clients. */
  readonly withoutTls: 'off' | 'loopback';
  /** 'on': an authenticated client's MAIL FROM must be one of its addresses. */
  readonly senderLoginMatch: 'off' | 'on';
  readonly failuresPerIp: number;
  readonly failuresPerUser: number;
  /** ms a failure counts. */
  readonly failureWindow: number;
  /** ms before a failed or throttled attempt is answered. */
  readonly failureDelay: number;
  /** Concurrent argon2 verifications. */
  readonly maxVerifications: number;
}

export interface Config {
  /** Inbound SMTP listeners. */
  readonly listen: readonly HostPort[];
  /** The embedded queue's directory. */
  readonly spool: string;
  /** A postgres:// URL for the shared queue; undefined: the embedded store in `spool`. */
  readonly queue: string | undefined;
  /** The PostgreSQL schema of the shared queue. */
  readonly queueSchema: string;
  /** Pool size towards the shared queue. */
  readonly queueConnections: number;
  /** This node's name (lease owner, application_name); undefined: main picks host name:pid. */
  readonly nodeName: string | undefined;
  /** Deliver everything via this host (delivery is not built yet; validated and kept). */
  readonly smarthost: HostPort | undefined;
  /** DNS server for MX lookups (delivery is not built yet; validated and kept). */
  readonly dns: HostPort | undefined;
  /** Retry delays in ms; the last repeats. */
  readonly retry: readonly number[];
  /** Give up and bounce after this many ms in the queue. */
  readonly maxAge: number;
  /** Our name in the banner, EHLO reply and Received: header. */
  readonly hostname: string;
  /** Admin HTTP listener, or 'off'. */
  readonly admin: HostPort | 'off';
  /** The bearer token the admin API requires; required when `admin` is not a loopback address. */
  readonly adminToken: string | undefined;
  /** Networks (CIDR) whose clients may relay without AUTH. */
  readonly relayFrom: readonly string[];
  /** What DATA does with a bare CR or LF: rewrite it to CRLF, or refuse the message. */
  readonly bareNewline: BareNewlinePolicy;
  readonly limits: SmtpdLimits;
  readonly abuse: AbuseLimits;
  readonly timeouts: SmtpdTimeouts;
  readonly tls: TlsSettings;
  /** The implicit-TLS submission listener (RFC 8314), if any. */
  readonly submission: HostPort | undefined;
  readonly auth: AuthSettings;
  readonly delivery: DeliverySettings;
  readonly outboundTls: OutboundTlsSettings;
  /** Routes from the config file, in order; `--smarthost` is added by main as the `*` route. */
  readonly routes: readonly RouteSetting[];
  /** DKIM signing keys from the config file (`[[dkim]]`), in file order; empty: nothing is signed. */
  readonly dkim: readonly DkimKeySetting[];
  /** Log level for the structured log. */
  readonly logLevel: 'trace' | 'debug' | 'info' | 'warn' | 'error' | 'fatal';
  /** json, pretty, or auto (pretty when stdout is a terminal). */
  readonly logFormat: 'auto' | 'json' | 'pretty';
  /** Per-destination metric labels: the N busiest destinations, the rest as `other`. */
  readonly metricsDestinations: number;
  /** Octets of header section gathered to find From: before signing; a longer one is not signed. */
  readonly dkimMaxHeaderSize: number;
}
