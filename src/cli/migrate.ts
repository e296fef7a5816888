/**
 * @module cli/migrate
 * `postwire migrate --queue URL [--queue-schema NAME]`: create the shared queue's schema or bring
 * it up to this build's version (numbered, forward-only migrations; each in its own transaction,
 * serialised by an advisory lock, so running it twice, or on two machines at once, is harmless).
 * Settings come from the same flags, environment and --config file as `serve`.
 *
 * `serve` never migrates: it refuses a schema that is missing or older, and tells the operator to
 * run this. Changing the schema under a running cluster is the operator's decision (old nodes
 * would be talking to tables they do not know), never a side effect of starting one node.
 *
 * Exit codes: 0 done (the line says which migrations ran, or that none was needed); 2 a bad or
 * missing setting (--queue is required); 1 the database refused or could not be reached.
 * main.ts does the work (imported lazily): cli/ never imports a queue backend itself.
 */
import { loadConfig } from '../config/index.js';
import { EXIT_FAILURE, EXIT_OK, EXIT_USAGE, explainError, reportErrors, systemHostname, type CliIo } from './io.js';

export interface MigrateModule {
  migrateQueue(url: string, schema: string): Promise<{ schema: string; from: number; to: number; applied: ReadonlyArray<{ version: number; name: string }> }>;
}

export async function runMigrate(
  args: readonly string[],
  io: CliIo,
  loadMain: () => Promise<MigrateModule> = async () => await import('../main.js'),
): Promise<number> {
  const loaded = loadConfig({ argv: args, env: io.env ?? {}, hostname: systemHostname(io) });
  if (!loaded.ok) return reportErrors(io, loaded.errors);
  const url = loaded.config.queue;
  if (url === undefined) {
    io.stderr('postwire migrate: --queue postgres://... is required (the embedded --spool store migrates itself)\n');
    return EXIT_USAGE;
  }
  try {
    const main = await loadMain();
    const r = await main.migrateQueue(url, loaded.config.queueSchema);
    const what = r.applied.length === 0 ? 'already up to date' : `applied ${r.applied.map((m) => `${m.version} (${m.name})`).join(', ')}`;
    io.stdout(`schema ${r.schema}: version ${r.from} -> ${r.to}, ${what}\n`);
    return EXIT_OK;
  } catch (err) {
    io.stderr(`postwire migrate: ${explainError(err)}\n`);
    return EXIT_FAILURE;
  }
}
