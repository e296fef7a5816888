/**
 * @module cli/usage
 * The usage text, generated: the subcommand list comes from the command table in index.ts and
 * the flag list from config's SCHEMA, so a new setting or command documents itself and the help
 * can never list a flag the loader does not accept (the tests check every schema flag appears).
 *
 * Defaults are printed in flag syntax (config's formatValue), the same spelling check-config
 * prints; settings of unbuilt features are listed, marked "[not available yet]", because the
 * loader refuses them with that reason and an operator should see why before trying.
 *
 * Pure: strings in, a string out. Callers: help.ts.
 */
import { formatValue, SCHEMA, type Setting } from '../config/index.js';

export interface CommandSummary {
  readonly name: string;
  readonly summary: string;
}

export function usageText(commands: readonly CommandSummary[]): string {
  const width = Math.max(...commands.map((c) => c.name.length)) + 2;
  const out = [
    'Usage: postwire <command> [flags]',
    '',
    'Commands:',
    ...commands.map((c) => `  ${c.name.padEnd(width)}${c.summary}`),
    '',
    'Flags of serve and check-config (also POSTWIRE_<NAME> in the environment, or <name> keys',
    'in the --config TOML file; flags override the file, the file overrides the environment):',
    ...flagLines(),
    '',
    'Durations: 100ms, 30s, 5m, 1h30m, 5d. Sizes: octets, K/M/G (x1000) or KiB/MiB/GiB (x1024).',
    'Exit codes: 0 ok, 1 runtime failure, 2 usage or configuration error.',
  ];
  return out.join('\n') + '\n';
}

function flagLines(): string[] {
  const heads = SCHEMA.map((s) => `  ${s.flag} ${s.metavar}`);
  const width = Math.max(...heads.map((h) => h.length)) + 2;
  return SCHEMA.map((s, i) => `${(heads[i] ?? '').padEnd(width)}${s.doc}${notes(s)}`);
}

function notes(s: Setting): string {
  if (s.unavailable !== undefined) return ' [not available yet]';
  const parts: string[] = [];
  if (s.kind !== 'hostname' && s.default !== undefined) parts.push(`default ${formatValue(s, s.default)}`);
  if (s.repeatable) parts.push('repeatable');
  return parts.length === 0 ? '' : ` (${parts.join('; ')})`;
}
