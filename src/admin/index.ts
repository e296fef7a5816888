/**
 * @module admin
 * The admin HTTP surface, the public face of admin/: today the /metrics listener.
 */
export { startAdminServer } from './server.js';
export type { AdminServer } from './server.js';
