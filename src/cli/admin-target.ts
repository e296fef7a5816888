/**
 * @module cli/admin-target
 * Where `postwire queue` and `postwire explain` send their requests, and the flags they share.
 *
 * Online (the default): the admin API of a running server over HTTP, at `--admin HOST:PORT` or
 * else the configured --admin address (POSTWIRE_ADMIN, the --config file, or the default
 * 127.0.0.1:8025), with the token of --admin-token / POSTWIRE_ADMIN_TOKEN. Offline (`--spool DIR`
 * on the command line): the same AdminApiV1 in-process over the spool, from main.ts (imported
 * lazily, as `serve` does), refused while a server holds that spool.
 *
 * Every other setting flag of `serve` (--config, --dns, --smarthost, --hostname, --retry, …) is
 * accepted and read through config/ exactly as serve reads it, so an offline bounce names this
 * relay and an offline explain routes with the same table. Flag errors are usage errors (exit 2).
 */
import { parseArgs } from 'node:util';
import { ApiErrorV1 } from '../api/index.js';
import type { AdminApiV1, ApiErrorCodeV1 } from '../api/index.js';
import { formatHostPort, loadConfig, SCHEMA } from '../config/index.js';
import type { Config } from '../config/index.js';
import { httpAdminApi } from './admin-client.js';
import { EXIT_FAILURE, EXIT_USAGE, explainError, systemHostname } from './io.js';
import type { CliIo } from './io.js';

export type OptionSpec = { readonly type: 'string' | 'boolean'; readonly multiple?: boolean };

export interface ParsedCommand {
  readonly positionals: string[];
  /** The command's own options (not settings). */
  readonly values: Readonly<Record<string, string | boolean | undefined>>;
  /** Setting flags, as argv for loadConfig. */
  readonly settingArgs: string[];
}

export class UsageError extends Error {}

/** Parse argv with the command's own options plus every setting flag of the schema. */
export function parseCommand(args: readonly string[], own: Readonly<Record<string, OptionSpec>>): ParsedCommand {
  const options: Record<string, { type: 'string' | 'boolean'; multiple?: boolean }> = {};
  for (const s of SCHEMA) options[s.name] = { type: 'string', multiple: true };
  for (const [name, spec] of Object.entries(own)) options[name] = { ...spec };
  let parsed;
  try {
    parsed = parseArgs({ args: [...args], options, allowPositionals: true, strict: true });
  } catch (err) {
    throw new UsageError(err instanceof Error ? err.message.replace(/^Unknown option '(.*?)'.*$/s, "unknown flag $1") : String(err));
  }
  const values: Record<string, string | boolean | undefined> = {};
  const settingArgs: string[] = [];
  for (const [name, value] of Object.entries(parsed.values)) {
    if (Object.hasOwn(own, name)) {
      values[name] = Array.isArray(value) ? value[value.length - 1] : value;
      continue;
    }
    for (const v of Array.isArray(value) ? value : [value]) settingArgs.push(`--${name}`, String(v));
  }
  return { positionals: parsed.positionals, values, settingArgs };
}

export interface AdminTarget {
  readonly api: AdminApiV1;
  /** 'http://127.0.0.1:8025' or 'spool ./spool'. */
  readonly where: string;
  close(): Promise<void>;
}

/** The configuration the setting flags describe, or a UsageError listing every problem. */
export function commandConfig(settingArgs: readonly string[], io: CliIo): Config {
  const loaded = loadConfig({ argv: settingArgs, env: io.env ?? {}, hostname: systemHostname(io) });
  if (!loaded.ok) throw new UsageError(loaded.errors.join('\npostwire: '));
  return loaded.config;
}

export async function openTarget(settingArgs: readonly string[], io: CliIo): Promise<AdminTarget> {
  const config = commandConfig(settingArgs, io);
  if (settingArgs.includes('--spool')) {
    const main = await import('../main.js');
    const offline = await main.openOfflineAdmin(config);
    return { api: offline.api, where: `spool ${config.spool}`, close: () => offline.close() };
  }
  if (config.admin === 'off') throw new UsageError('--admin is off: give --admin HOST:PORT (a running server) or --spool DIR (offline)');
  const base = `http://${formatHostPort(config.admin)}`;
  return { api: httpAdminApi(base, config.adminToken), where: base, close: async () => undefined };
}

/** Caller mistakes exit 2, everything else 1 (DESIGN §3). */
const USAGE_CODES: ReadonlySet<ApiErrorCodeV1> = new Set(['BAD_REQUEST', 'UNKNOWN_FIELD', 'BAD_ID', 'CONFIRMATION_REQUIRED']);

/** Print a failure as `postwire <cmd>: …` and return its exit code. */
export function reportFailure(io: CliIo, command: string, err: unknown): number {
  if (err instanceof UsageError) {
    io.stderr(`postwire ${command}: ${err.message}\n`);
    return EXIT_USAGE;
  }
  if (err instanceof ApiErrorV1) {
    io.stderr(`postwire ${command}: ${err.message}${err.field === undefined ? '' : ` (field ${err.field})`} [${err.code}]\n`);
    return USAGE_CODES.has(err.code) ? EXIT_USAGE : EXIT_FAILURE;
  }
  io.stderr(`postwire ${command}: ${explainError(err)}\n`);
  return EXIT_FAILURE;
}
