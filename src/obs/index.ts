/**
 * @module obs
 * Observability, the public surface of obs/: the structured logger (JSON or pretty), the
 * Prometheus metrics, and the diagnostics_channel names publishers and subscribers share.
 */
export { createLogger, silentLogger } from './log.js';
export type { Logger, LogLevel, LogFormat, LoggerOptions } from './log.js';
export { formatPretty } from './log.js';
export { createMetrics } from './metrics.js';
export type { Metrics, MetricsSources } from './metrics.js';
export { DELIVERY_CHANNELS } from './channels.js';
export type { DeliveryDiagnostic, DeliveryTransactionEvent } from './channels.js';
