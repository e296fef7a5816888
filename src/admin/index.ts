/**
 * @module admin
 * The admin HTTP surface, the public face of admin/: today the /metrics listener.
 */
export { startAdminServer } from './server.js';
export type { AdminServer, AdminDeps } from './server.js';
export { createOverview } from './overview.js';
export type { OverviewDeps } from './overview.js';
export { createTimeseries } from './timeseries.js';
export type { TimeseriesDeps, TimeseriesRecorder } from './timeseries.js';
