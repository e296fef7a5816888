/**
 * @module admin
 * The admin surface, the public face of admin/: the one AdminApiV1 implementation
 * (createAdminApi, over the store and qmgr/control, with routing for `explain` injected as
 * ExplainPorts), the web page's two reads (createOverview, createTimeseries) and its static files
 * (loadWebFiles), and the HTTP listener that serves them: /api/v1, GET /metrics and the page at /.
 */
export { startAdminServer, MAX_BODY_BYTES } from './server.js';
export type { AdminServer, AdminServerDeps } from './server.js';
export { createAdminApi } from './api.js';
export type { AdminApiDeps } from './api.js';
export type { ExplainPorts, RouteExplanation } from './explain.js';
export { createOverview } from './overview.js';
export type { OverviewDeps } from './overview.js';
export { createTimeseries } from './timeseries.js';
export type { TimeseriesDeps, TimeseriesRecorder } from './timeseries.js';
export { loadWebFiles } from './web.js';
export type { WebFiles } from './web.js';
