/**
 * @module cli/check-config
 * `postwire check-config [flags]`: load the configuration exactly as `serve` would (same flags,
 * environment and --config file, same code path) and print the effective values, one
 * `name = value` per line, on stdout; exit 0.
 *
 * Any error: every one on stderr, one per line, prefixed `postwire: `; exit 2.
 *
 * Starts nothing and opens no sockets, so it is safe in CI and before a restart. It does not
 * test that the spool is writable or that ports are free: only `serve` can know that, and it
 * reports those as runtime failures (exit 1).
 */
import { describeConfig, loadConfig } from '../config/index.js';
import { EXIT_OK, reportErrors, systemHostname, type CliIo } from './io.js';

export function runCheckConfig(args: readonly string[], io: CliIo): number {
  const loaded = loadConfig({ argv: args, env: io.env ?? {}, hostname: systemHostname(io) });
  if (!loaded.ok) return reportErrors(io, loaded.errors);
  io.stdout(describeConfig(loaded.config));
  return EXIT_OK;
}
