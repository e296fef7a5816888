/**
 * @module delivery
 * The public surface of outbound delivery. Other folders (qmgr) import only from here.
 *
 * What is here so far: the outcome classifier, the one place where a reply, a lost connection,
 * a timeout, a framing fault or a local pre-flight refusal becomes a per-recipient result
 * (delivered, deferred, bounced, ambiguous, held) with a scope (recipient, message, destination).
 * Routing (route.ts, mx.ts, resolver.ts), the connection and the pool add their exports below.
 *
 * Who calls it: qmgr, which groups recipients per next hop, asks delivery to deliver them and
 * records the Outcomes in the queue; delivery itself never writes the queue (DESIGN.md §2).
 *
 * Failure behaviour: see each module's header; the classifier is pure and total.
 * Trust: delivery trusts the envelope it is given (accepted and validated by smtpd) and nothing
 * the peer says.
 */
export { classify, classifySession, classifyTransaction, verbatim } from './outcome.js';
export type { Outcome, OutcomeKind, OutcomeScope } from './outcome.js';
export { RouteTable, RouteConfigError, smarthostRoute, withSmarthost, validateRoutes, normalizeDomain, TLS_POLICIES } from './route.js';
export type { NextHop, RouteConfig, RouteFailure, RouteAuth, RouteInfo, RouteResult, RouteSuccess, RouteTableOptions, TlsPolicy } from './route.js';
export { DEFAULT_TLS_POLICY, describeTls, requirementFor, requiresTls } from './tls-policy.js';
export type { TlsRequirement, TlsState } from './tls-policy.js';
export { ADDRESS_ORDERS, DEFAULT_ADDRESS_ORDER, MAX_ADDRESSES, MAX_MX_HOSTS, MX_PORT, orderMx, parseDomainLiteral } from './mx.js';
export type { AddressOrder, PortFor, RouteFailureCode, RouteHost } from './mx.js';
export { createDnsResolver, DnsServerError, DNS_DEFAULT_TIMEOUT_MS, DNS_DEFAULT_TRIES, ResolveError } from './resolver.js';
export type { DnsResolverOptions, MxRecord, Resolver, ResolveErrorCode } from './resolver.js';
export { createDeliveryAgent, DELIVERY_CHANNELS, outboundMessage } from './agent.js';
export type { DeliveryAgent, DeliveryAgentOptions, DeliveryDiagnostic, DeliveryReport } from './agent.js';
export { DeliveryError, hostLabel, MAX_LINE_OCTETS, openConnection, SmtpConnection } from './connection.js';
export type { ConnectionOptions, ConnectionSecurity, DeliveryErrorCode, DeliveryJob, OpenResult, TransactionResult } from './connection.js';
export { MtaStsResolver, MTA_STS_MAX_AGE_LIMIT, mxMatches, parseStsPolicy, parseStsRecord } from './mta-sts.js';
export type { MtaStsLookup, MtaStsMode, MtaStsOptions, MtaStsPolicy } from './mta-sts.js';
export { ConnectionPool, DEFAULT_IDLE_TIMEOUT_MS, DEFAULT_MAX_REUSE, DEFAULT_PROBE_AFTER_MS } from './pool.js';
export type { AcquireOptions, Lease, PoolOptions } from './pool.js';
