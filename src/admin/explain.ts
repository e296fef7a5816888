/**
 * @module admin/explain
 * `explain`: the decision path for a recipient address or a queued message: which route matched
 * and why (a configured pattern, --smarthost, the MX records with preferences and resolved
 * addresses in the order they would be tried, the A/AAAA fallback, a null MX, an address
 * literal), the TLS policy that applies and why, the per-destination window now (limit, active,
 * waiting), the rate limit and its bucket now, and for a message each destination's recipients, last reply and next attempt.
 *
 * admin/ does not import delivery/ (the import rules): routing comes in through ExplainPorts,
 * which main.ts implements over delivery's RouteTable (the same table, resolver and --dns the
 * queue manager uses, so explain resolves what delivery would) and qmgr's windows.
 *
 * Explaining does real DNS lookups (through the configured resolver) and nothing else: it never
 * connects to a host and changes nothing. Failure: ApiErrorV1 BAD_REQUEST (field `target`) for a
 * target that is neither an address nor a queue id, NOT_FOUND for an id not in the queue; a DNS
 * failure is not an error but the answer (route kind 'error' with the reason).
 */
import { ApiErrorV1 } from '../api/index.js';
import type { ExplainDestinationV1, ExplainHostV1, ExplainRequestV1, ExplainV1 } from '../api/index.js';
import { domainOf, isFinal, lastReplies, parseQueueId, QueueError } from '../queue/index.js';
import type { QueueStore } from '../queue/index.js';
import type { Clock } from '../util/index.js';
import type { RateLimit } from '../config/index.js';
import { nextStep } from './messages.js';
import { check, EXPLAIN_SCHEMA } from './validate.js';

/** What main.ts tells explain about one domain's route (from delivery/route's RouteTable). */
export interface RouteExplanation {
  /** The per-destination window key (`mx:example.com`, `smarthost:relay.example:587`), or the domain when routing failed. */
  readonly destination: string;
  readonly route: ExplainDestinationV1['route'];
  readonly hosts: readonly ExplainHostV1[];
  readonly tls: ExplainDestinationV1['tls'];
  /** The route's own concurrency limit, when it sets one. */
  readonly concurrency?: number;
  /** The route's own rate limit, when it sets one ('unlimited' lifts --destination-rate). */
  readonly rate?: RateLimit | 'unlimited';
  /** When routing failed: would the recipient bounce (true) or be retried (false)? */
  readonly permanent?: boolean;
}

export interface ExplainPorts {
  explainRoute(domain: string): Promise<RouteExplanation>;
  /** The delivery window of a destination now; `concurrency` is the route's own limit when it has one. */
  window(destination: string, concurrency?: number): ExplainDestinationV1['window'];
  /** The rate limit of a destination now (the route's own, else the default); undefined when unlimited. */
  rate?(destination: string, rate?: RateLimit | 'unlimited'): Promise<ExplainDestinationV1['rate']>;
}

export interface ExplainDeps {
  readonly store: QueueStore;
  readonly ports: ExplainPorts;
  readonly clock: Clock;
  /** The --retry schedule in force (it changes on reload). */
  readonly retry?: () => readonly number[];
}

export function createExplain(deps: ExplainDeps): (request: ExplainRequestV1) => Promise<ExplainV1> {
  return async (request) => {
    const { target } = check<ExplainRequestV1>(request, EXPLAIN_SCHEMA);
    const text = target.trim();
    const at = text.lastIndexOf('@');
    if (at > 0 && at < text.length - 1) return explainAddress(deps, text);
    const id = parseQueueId(text);
    if (id) return explainMessage(deps, text, id);
    throw new ApiErrorV1('BAD_REQUEST', `${JSON.stringify(target)} is neither an address (local@domain) nor a queue id`, 'target');
  };
}

async function explainAddress(deps: ExplainDeps, address: string): Promise<ExplainV1> {
  const domain = address.slice(address.lastIndexOf('@') + 1);
  const route = await deps.ports.explainRoute(domain);
  const why = route.route.kind === 'error' || route.route.kind === 'null-mx'
    ? `a message to ${address} would ${route.permanent ? 'bounce' : 'be deferred and retried'} now: ${route.route.detail}`
    : `a message to ${address} would be tried at once on arrival, ${route.hosts.length === 1 ? 'on the one host' : 'on the hosts in this order'}`;
  return { target: address, kind: 'address', destinations: [await destinationV1(deps, route, [address], why)] };
}

async function explainMessage(deps: ExplainDeps, target: string, id: NonNullable<ReturnType<typeof parseQueueId>>): Promise<ExplainV1> {
  let message;
  let history;
  try {
    message = await deps.store.getMessage(id);
    history = message === undefined ? [] : await deps.store.history(id);
  } catch (err) {
    if (err instanceof QueueError) throw new ApiErrorV1('UNAVAILABLE', err.message);
    throw err;
  }
  if (message === undefined) throw new ApiErrorV1('NOT_FOUND', `no message ${id} in the queue`);
  const last = lastReplies(history, message.recipients.length);
  // One route per domain, then recipients grouped by destination, as the queue manager groups them.
  const byDomain = new Map<string, RouteExplanation>();
  const groups = new Map<string, { route: RouteExplanation; indices: number[] }>();
  for (const [i, r] of message.recipients.entries()) {
    const domain = domainOf(r.address);
    let route = byDomain.get(domain);
    if (route === undefined) {
      route = await deps.ports.explainRoute(domain);
      byDomain.set(domain, route);
    }
    const group = groups.get(route.destination) ?? { route, indices: [] };
    group.indices.push(i);
    groups.set(route.destination, group);
  }
  const now = deps.clock.now();
  const overall = nextStep(message, history, now, deps.retry?.());
  const destinations = await Promise.all([...groups.values()].map(async ({ route, indices }) => {
    const states = indices.map((i) => message.recipients[i]?.state ?? 'deleted');
    const lastReply = [...indices].reverse().map((i) => last[i]).find((x) => x !== undefined);
    const finished = states.every(isFinal);
    const stateText = indices.map((i) => `${message.recipients[i]?.address ?? ''} ${message.recipients[i]?.state ?? ''}`).join(', ');
    const why = finished ? `nothing more for this destination (${stateText})` : `${overall.why} (${stateText})`;
    return {
      ...(await destinationV1(deps, route, indices.map((i) => message.recipients[i]?.address ?? ''), why)),
      ...(lastReply === undefined ? {} : { lastReply }),
      ...(!finished && overall.at !== undefined ? { nextAttemptAt: overall.at } : {}),
    };
  }));
  return { target, kind: 'message', destinations };
}

async function destinationV1(deps: ExplainDeps, route: RouteExplanation, recipients: readonly string[], why: string): Promise<ExplainDestinationV1> {
  const rate = await deps.ports.rate?.(route.destination, route.rate);
  return {
    destination: route.destination,
    recipients,
    route: route.route,
    hosts: route.hosts,
    tls: route.tls,
    window: deps.ports.window(route.destination, route.concurrency),
    ...(rate !== undefined ? { rate } : {}),
    why,
  };
}
