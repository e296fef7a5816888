/**
 * @module api/v1
 * The admin contract, version 1: what the admin HTTP server (`--admin`, under `/api/v1`), the web
 * page and the CLI (`postwire queue`, `postwire explain`) say to each other. Types only, plus the
 * route table and the stable error codes; no I/O and no imports (KumoMTA kumo-api-types).
 *
 * One interface, AdminApiV1, has three transports: admin/ implements it over the store and the
 * queue manager; the HTTP server maps ROUTES_V1 onto it; the CLI calls it either over HTTP (a
 * running server) or in-process against a spool directory (offline). So every behaviour is built
 * and tested once, and the transports only move JSON.
 *
 * Wire conventions: JSON bodies; times are ISO 8601 strings in UTC; durations are milliseconds;
 * request bodies are validated and an unknown field is an error (UNKNOWN_FIELD), never ignored;
 * every error is `{ "error": { "code", "message", "field"? } }` with an HTTP status from
 * ERROR_STATUS_V1. Changing a field's meaning needs a v2; adding an optional response field
 * does not.
 */

export const API_V1_PREFIX = '/api/v1';

export type RecipientStateV1 = 'queued' | 'deferred' | 'held' | 'ambiguous' | 'delivered' | 'bounced' | 'expired' | 'deleted';

/**
 * Which messages an operation concerns. Every field narrows (AND); an empty filter matches every
 * message. Text matches are case-insensitive substrings, except `domain`, which is the exact
 * recipient domain (case-insensitive, IDNA as stored).
 */
export interface MessageFilterV1 {
  /** At least one recipient in this state. */
  readonly state?: RecipientStateV1;
  /** At least one recipient at this domain. */
  readonly domain?: string;
  readonly sender?: string;
  /** At least one recipient address containing this. */
  readonly recipient?: string;
  /** Received more than this many ms ago. */
  readonly olderThanMs?: number;
  /** The last attempt's reply (any recipient) contains this. */
  readonly reply?: string;
}

export type SortV1 = 'received' | 'next-attempt' | 'size';

export interface ListRequestV1 extends MessageFilterV1 {
  /** Default 'received' (oldest first). */
  readonly sort?: SortV1;
  /** Page size, 1..1000, default 50. */
  readonly limit?: number;
  /** The `next` cursor of the previous page. */
  readonly cursor?: string;
}

export interface RecipientV1 {
  readonly address: string;
  readonly state: RecipientStateV1;
  /** The last reply this recipient got, verbatim (all lines), when it had an attempt. */
  readonly lastReply?: string;
}

export interface MessageSummaryV1 {
  readonly id: string;
  /** '' for the null sender. */
  readonly sender: string;
  readonly recipients: readonly RecipientV1[];
  readonly size: number;
  readonly receivedAt: string;
  readonly attempts: number;
  readonly nextAttemptAt?: string;
  /** The node that holds the message now (shared queue) and until when. */
  readonly lease?: { readonly owner: string; readonly until: string };
}

export interface MessageListV1 {
  readonly messages: readonly MessageSummaryV1[];
  /** Present when there may be more: pass it as `cursor`. */
  readonly next?: string;
}

export interface AttemptV1 {
  readonly at: string;
  /** e.g. 'mx1.example.com[192.0.2.1]:25'; '' when no connection was made or for operator steps. */
  readonly nextHop: string;
  readonly results: readonly { readonly recipient: string; readonly state: RecipientStateV1; readonly reply: string }[];
  readonly nextAttemptAt?: string;
  /** 'hold', 'release', 'ambiguous-at-restart', a framing fault's byte counts, … */
  readonly note?: string;
}

export interface MessageDetailV1 extends MessageSummaryV1 {
  /** `user`: the AUTH identity, when the client authenticated (RFC 4954). */
  readonly client: { readonly ip: string; readonly helo: string; readonly protocol: string; readonly user?: string };
  readonly body: '7BIT' | '8BITMIME' | 'BINARYMIME';
  readonly smtputf8: boolean;
  readonly dsn: { readonly ret?: 'FULL' | 'HDRS'; readonly envid?: string };
  /** The header section, unfolded, in order (bounded: at most 200 fields, 64 KiB). */
  readonly headers: readonly { readonly name: string; readonly value: string }[];
  /** Every attempt and operator step, oldest first. */
  readonly history: readonly AttemptV1[];
  /** What happens next and why, in words: "retry at …: 451 from mx1 (attempt 3 of the schedule 1m,5m,…)", "held by operator: …". */
  readonly next: { readonly at?: string; readonly why: string };
}

/** Operator actions: the same verbs as `postwire queue`. */
export type ActionV1 = 'retry' | 'hold' | 'release' | 'delete' | 'bounce';

/**
 * Exactly one of `ids` or `filter`. A filter that matches more than one message needs
 * `confirm: true` (else CONFIRMATION_REQUIRED, nothing changed, `matched` in the message);
 * `dryRun: true` changes nothing and reports what would change. `reason` is required for
 * `bounce` (it goes into the DSN) and optional for `hold` and `delete` (kept in the history/log).
 */
export interface ActionRequestV1 {
  readonly action: ActionV1;
  readonly ids?: readonly string[];
  readonly filter?: MessageFilterV1;
  readonly reason?: string;
  readonly dryRun?: boolean;
  readonly confirm?: boolean;
}

export interface ActionResultV1 {
  readonly action: ActionV1;
  readonly dryRun: boolean;
  readonly matched: number;
  /** One entry per matched message: whether it changed (or would), and why not when it did not. */
  readonly results: readonly { readonly id: string; readonly changed: boolean; readonly detail?: string }[];
}

export interface ExplainRequestV1 {
  /** A recipient address (local@domain) or a queue id. */
  readonly target: string;
}

export interface ExplainHostV1 {
  readonly host: string;
  readonly port: number;
  /** MX preference, when the host came from an MX record. */
  readonly preference?: number;
  /** Resolved addresses, in the order they would be tried; absent when resolution failed. */
  readonly addresses?: readonly string[];
  readonly error?: string;
}

export interface ExplainDestinationV1 {
  /** The recipient domain (or the route's next hop key). */
  readonly destination: string;
  readonly recipients: readonly string[];
  /** How the next hop was chosen: a configured route (its pattern), --smarthost, the MX records, an address literal, a null MX. */
  readonly route: { readonly kind: 'route' | 'smarthost' | 'mx' | 'a-fallback' | 'literal' | 'null-mx' | 'error'; readonly detail: string };
  readonly hosts: readonly ExplainHostV1[];
  readonly tls: { readonly policy: string; readonly why: string };
  /** The per-destination delivery window now. */
  readonly window: { readonly concurrency: number; readonly active: number; readonly waiting: number };
  /**
   * The destination's rate limit now, when one applies: deliveries started per minute and the
   * burst, whether the route sets it (else --destination-rate), the tokens in its bucket now
   * (cluster-wide on a shared queue; below 1 means the next delivery waits; absent when the
   * bucket could not be read) and this node's deliveries waiting for a token. Absent: unlimited.
   */
  readonly rate?: { readonly perMinute: number; readonly burst: number; readonly source: 'route' | 'default'; readonly tokens?: number; readonly waiting: number };
  readonly lastReply?: string;
  readonly nextAttemptAt?: string;
  /** In words, as in MessageDetailV1.next.why. */
  readonly why: string;
}

export interface ExplainV1 {
  readonly target: string;
  readonly kind: 'address' | 'message';
  readonly destinations: readonly ExplainDestinationV1[];
}

/** Counts of recipients per state. */
export type StateCountsV1 = Partial<Record<RecipientStateV1, number>>;

export interface OverviewV1 {
  readonly states: StateCountsV1;
  readonly oldestReceivedAt?: string;
  /** Per recipient domain, busiest first (bounded; the rest folded into one '(other)' row). */
  readonly destinations: readonly {
    readonly destination: string;
    readonly states: StateCountsV1;
    readonly oldestReceivedAt?: string;
    readonly lastError?: { readonly at: string; readonly reply: string };
    /** Recipients delivered in the last 10 minutes, per minute. */
    readonly deliveredPerMinute: number;
  }[];
}

/** Per-minute series over the last hour, oldest first, for the web page's charts. */
export interface TimeseriesV1 {
  readonly minutes: readonly {
    readonly at: string;
    readonly queueDepth: number;
    readonly delivered: number;
    readonly deferred: number;
    readonly bounced: number;
  }[];
}

/** The one interface; every transport (HTTP, in-process) implements or calls exactly this. */
export interface AdminApiV1 {
  list(request: ListRequestV1): Promise<MessageListV1>;
  show(id: string): Promise<MessageDetailV1>;
  act(request: ActionRequestV1): Promise<ActionResultV1>;
  explain(request: ExplainRequestV1): Promise<ExplainV1>;
  overview(): Promise<OverviewV1>;
  timeseries(): Promise<TimeseriesV1>;
}

/** The HTTP mapping under API_V1_PREFIX. GET requests take their fields from the query string. */
export const ROUTES_V1 = {
  list: { method: 'GET', path: '/messages' },
  show: { method: 'GET', path: '/messages/:id' },
  act: { method: 'POST', path: '/actions' },
  explain: { method: 'GET', path: '/explain' },
  overview: { method: 'GET', path: '/overview' },
  timeseries: { method: 'GET', path: '/timeseries' },
} as const satisfies Record<keyof AdminApiV1, { method: 'GET' | 'POST'; path: string }>;

export type ApiErrorCodeV1 =
  /** Malformed JSON, a wrong type, a value out of range, a missing required field. */
  | 'BAD_REQUEST'
  /** A field the schema does not know. */
  | 'UNKNOWN_FIELD'
  /** A string that is not a queue id. */
  | 'BAD_ID'
  | 'NOT_FOUND'
  /** A token is configured and the request did not carry it (`Authorization: Bearer …`). */
  | 'UNAUTHORIZED'
  | 'METHOD_NOT_ALLOWED'
  /** A filter matched more than one message and `confirm` was not set. */
  | 'CONFIRMATION_REQUIRED'
  /** The store or the queue manager failed; retry later. */
  | 'UNAVAILABLE'
  | 'INTERNAL';

export const ERROR_STATUS_V1: Readonly<Record<ApiErrorCodeV1, number>> = {
  BAD_REQUEST: 400,
  UNKNOWN_FIELD: 400,
  BAD_ID: 400,
  NOT_FOUND: 404,
  UNAUTHORIZED: 401,
  METHOD_NOT_ALLOWED: 405,
  CONFIRMATION_REQUIRED: 409,
  UNAVAILABLE: 503,
  INTERNAL: 500,
};

export interface ApiErrorBodyV1 {
  readonly error: { readonly code: ApiErrorCodeV1; readonly message: string; readonly field?: string };
}

/** What an AdminApiV1 implementation throws; the HTTP server turns it into ApiErrorBodyV1, the CLI into a message and exit code. */
export class ApiErrorV1 extends Error {
  constructor(
    readonly code: ApiErrorCodeV1,
    message: string,
    readonly field?: string,
  ) {
    super(message);
    this.name = 'ApiErrorV1';
  }
}
