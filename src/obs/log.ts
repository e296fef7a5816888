/**
 * @module obs/log
 * The structured log. One JSON line per event (pino), carrying the ids that tie events together:
 * `session` (an SMTP connection), `queueId` (a message), `client`. Modules receive a Logger and
 * make children with their ids bound, so no call site has to repeat them.
 *
 * Failure: logging never throws into the caller; pino writes asynchronously to stdout by default,
 * and `silentLogger` serves tests that want quiet.
 */
import { pino } from 'pino';

export interface Logger {
  trace(fields: object, message?: string): void;
  debug(fields: object, message?: string): void;
  info(fields: object, message?: string): void;
  warn(fields: object, message?: string): void;
  error(fields: object, message?: string): void;
  fatal(fields: object, message?: string): void;
  child(bindings: object): Logger;
}

export type LogLevel = 'trace' | 'debug' | 'info' | 'warn' | 'error' | 'fatal';

export function createLogger(options: { level: LogLevel; destination?: NodeJS.WritableStream }): Logger {
  const base = { base: { service: 'postwire' }, level: options.level, timestamp: pino.stdTimeFunctions.isoTime };
  return options.destination ? pino(base, options.destination) : pino(base);
}

const noop = (): void => undefined;
export const silentLogger: Logger = {
  trace: noop,
  debug: noop,
  info: noop,
  warn: noop,
  error: noop,
  fatal: noop,
  child: () => silentLogger,
};
