/**
 * @module admin
 * The admin surface, the public face of admin/: the one AdminApiV1 implementation
 * (createAdminApi, over the store and qmgr/control, with routing for `explain` injected as
 * ExplainPorts) and the HTTP listener that serves it under /api/v1 next to GET /metrics.
 */
export { startAdminServer, MAX_BODY_BYTES } from './server.js';
export type { AdminServer, AdminServerDeps } from './server.js';
export { createAdminApi } from './api.js';
export type { AdminApiDeps } from './api.js';
export type { ExplainPorts, RouteExplanation } from './explain.js';
