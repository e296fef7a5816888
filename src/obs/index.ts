/**
 * @module obs
 * Observability, the public surface of obs/: the structured logger. Metrics and
 * diagnostics_channel names arrive with the operations issue.
 */
export { createLogger, silentLogger } from './log.js';
export type { Logger, LogLevel } from './log.js';
export { createMetrics } from './metrics.js';
export type { Metrics, MetricsSources } from './metrics.js';
export { DELIVERY_CHANNELS } from './channels.js';
