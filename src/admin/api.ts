/**
 * @module admin/api
 * createAdminApi: the one AdminApiV1 implementation (api/v1.ts), composed from admin/messages
 * (list, show, act) and admin/explain; `overview` and `timeseries` come in as dependencies (the
 * web page's summaries are built beside it). The HTTP server (admin/server) maps ROUTES_V1 onto
 * this object, and the offline CLI (`postwire queue --spool DIR`) calls it in-process through
 * main.ts, so every behaviour is built and tested once.
 *
 * Every method validates its own input (admin/validate) and throws ApiErrorV1 with a stable code;
 * anything else thrown is a bug, which the server answers as INTERNAL.
 */
import type { AdminApiV1, OverviewV1, TimeseriesV1 } from '../api/index.js';
import type { QueueStore } from '../queue/index.js';
import type { QueueControl } from '../qmgr/index.js';
import type { Clock } from '../util/index.js';
import { createExplain } from './explain.js';
import type { ExplainPorts } from './explain.js';
import { createMessagesApi } from './messages.js';
import { check, NO_FIELDS } from './validate.js';

export interface AdminApiDeps {
  readonly store: QueueStore;
  readonly control: QueueControl;
  readonly explain: ExplainPorts;
  readonly clock: Clock;
  /** The --retry schedule in force (it changes on reload), for "what happens next" in words. */
  readonly retry?: () => readonly number[];
  readonly overview: () => Promise<OverviewV1>;
  readonly timeseries: () => Promise<TimeseriesV1>;
}

export function createAdminApi(deps: AdminApiDeps): AdminApiV1 {
  const messages = createMessagesApi({ store: deps.store, control: deps.control, clock: deps.clock, ...(deps.retry ? { retry: deps.retry } : {}) });
  const explain = createExplain({ store: deps.store, ports: deps.explain, clock: deps.clock, ...(deps.retry ? { retry: deps.retry } : {}) });
  return {
    list: (request) => messages.list(request),
    show: (id) => messages.show(id),
    act: (request) => messages.act(request),
    explain: (request) => explain(request),
    overview: () => deps.overview(),
    timeseries: () => deps.timeseries(),
  };
}

/** Validates a request for a route that takes no fields (overview, timeseries). */
export function checkNoFields(request: unknown): void {
  check(request, NO_FIELDS);
}
