/**
 * @module qmgr
 * The queue manager, the public surface of qmgr/: the runner that claims, routes, delivers,
 * schedules and records; the per-destination windows; the retry arithmetic.
 */
export { QueueManager } from './runner.js';
export type { DeliveryJob, DeliveryPort, QmgrDeps, QmgrOptions, ReloadablePolicy, RoutePort } from './runner.js';
export { DestinationWindows } from './destinations.js';
export { ClusterWindows } from './cluster-windows.js';
export type { DestinationSlots, Windows } from './cluster-windows.js';
export { LocalDestinationRates, RateGate } from './rates.js';
export type { DestinationRates, RateTake } from './rates.js';
export { nextStep, retryDelay, RETRY_JITTER } from './schedule.js';
export type { NextStep, RetryPolicy } from './schedule.js';
export { createQueueControl, preview, DEFAULT_DELETE_REASON, DEFAULT_HOLD_REASON } from './control.js';
export type { ControlAction, ControlResult, QueueControl, QueueControlDeps } from './control.js';
