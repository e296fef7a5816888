export { createLogger, silentLogger } from './log.js';
export type { Logger, LogLevel } from './log.js';
