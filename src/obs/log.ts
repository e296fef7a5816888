/**
 * @module obs/log
 * The structured log. One line per event (pino), carrying the ids that tie events together:
 * `session` (an SMTP connection), `queueId` (a message), `client`, and for delivery attempts the
 * fields of the store's attempt record (`at`, `nextHop`, `recipient`, `rcpt`, `state`, `reply`,
 * `nextAttemptAt`, `note`), so a message's history and the log tell the same events. Modules
 * receive a Logger and make children with their ids bound, so no call site has to repeat them.
 *
 * Formats (`--log-format`): `json`, one JSON object per line, for collectors; `pretty`, one
 * readable line per event (time, level, message, then the fields as key=value, ids first), for
 * people; `auto` (the default) is pretty when stdout is a terminal and json otherwise. Pretty is
 * a small formatter of our own run in-process on pino's JSON lines (no worker thread, so nothing
 * is lost at exit and the order of lines is the order of events).
 *
 * Failure: logging never throws into the caller; a line the pretty formatter cannot parse is
 * written unchanged. `silentLogger` serves tests that want quiet.
 */
import { Writable } from 'node:stream';
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
export type LogFormat = 'auto' | 'json' | 'pretty';

export interface LoggerOptions {
  readonly level: LogLevel;
  readonly format?: LogFormat;
  /** Default: process.stdout. */
  readonly destination?: NodeJS.WritableStream & { isTTY?: boolean };
  /** Colours in pretty output; default: when the destination is a terminal. */
  readonly color?: boolean;
}

export function createLogger(options: LoggerOptions): Logger {
  const base = { base: { service: 'postwire' }, level: options.level, timestamp: pino.stdTimeFunctions.isoTime };
  const out = options.destination ?? process.stdout;
  const tty = (out as { isTTY?: boolean }).isTTY === true;
  const format = options.format ?? 'json';
  if (format === 'pretty' || (format === 'auto' && tty)) return pino(base, prettyStream(out, options.color ?? tty));
  return options.destination ? pino(base, options.destination) : pino(base);
}

const LEVELS: Readonly<Record<number, string>> = { 10: 'TRACE', 20: 'DEBUG', 30: 'INFO', 40: 'WARN', 50: 'ERROR', 60: 'FATAL' };
const COLORS: Readonly<Record<number, string>> = { 10: '90', 20: '36', 30: '32', 40: '33', 50: '31', 60: '35' };
/** Shown first, in this order: the ids that tie events together, then the attempt's facts. */
const FIRST = ['queueId', 'session', 'client', 'rcpt', 'recipient', 'state', 'nextHop', 'reply'];
const HIDDEN = new Set(['level', 'time', 'msg', 'service', 'pid', 'hostname']);

/** A Writable that turns each pino JSON line into one pretty line on `out`. */
export function prettyStream(out: NodeJS.WritableStream, color: boolean): Writable {
  let partial = '';
  return new Writable({
    write(chunk: Buffer | string, _encoding, done) {
      const lines = (partial + chunk.toString()).split('\n');
      partial = lines.pop() ?? '';
      const text = lines.map((l) => formatPretty(l, color)).join('');
      if (text === '') done();
      else out.write(text, () => done());
    },
  });
}

/** One JSON log line → `HH:MM:SS.mmm LEVEL message key=value …\n`. */
export function formatPretty(line: string, color: boolean): string {
  if (line.trim() === '') return '';
  let event: Record<string, unknown>;
  try {
    event = JSON.parse(line) as Record<string, unknown>;
  } catch {
    return `${line}\n`;
  }
  const level = typeof event['level'] === 'number' ? event['level'] : 30;
  const time = typeof event['time'] === 'string' ? event['time'].slice(11, 23) : '';
  const name = (LEVELS[level] ?? String(level)).padEnd(5);
  const keys = [...FIRST.filter((k) => k in event), ...Object.keys(event).filter((k) => !FIRST.includes(k) && !HIDDEN.has(k))];
  const fields = keys.map((k) => `${k}=${show(event[k])}`).join(' ');
  const head = color ? `\x1b[${COLORS[level] ?? '0'}m${name}\x1b[0m` : name;
  const msg = typeof event['msg'] === 'string' ? event['msg'] : '';
  return `${time} ${head} ${msg}${fields === '' ? '' : `  ${fields}`}\n`;
}

function show(value: unknown): string {
  if (typeof value === 'string') return /^[^\s"=]+$/.test(value) ? value : JSON.stringify(value);
  return JSON.stringify(value) ?? 'undefined';
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
