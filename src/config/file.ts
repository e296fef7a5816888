/**
 * @module config/file
 * The --config file: TOML (smol-toml), or JSON when the name ends in `.json`. Both hold the same
 * thing: keys are the flag names without `--`, values as in the flag syntax (or native numbers
 * and lists), plus the structured routes: `[[route]]` tables in TOML, a `"routes"` list in JSON
 * (each spelling is the idiom of its format; config/routes.ts validates both the same way).
 *
 * Why both formats: TOML is the documented format (comments, no quoting of keys, tables for
 * routes); JSON was the format before TOML and stays accepted, chosen by the extension only, so a
 * file is never parsed by guesswork. Any other extension is refused with the two it could be.
 *
 * Errors name the file, the key, the line when it can be known (the TOML parser gives it for
 * syntax errors; for a key, the line where the key is written at the top level), and what is
 * wrong; an unknown key is an error with a "did you mean". Pure apart from its input text.
 */
import { parse as parseToml, TomlError } from 'smol-toml';
import type { Raw } from './parse.js';
import { SCHEMA, settingByName, type Setting } from './schema.js';
import { didYouMean } from './suggest.js';
import { parseRoutes } from './routes.js';
import { parseDkimKeys } from './dkim.js';
import type { DkimKeySetting, RouteSetting } from './types.js';

export type FileFormat = 'toml' | 'json';

export interface ConfigFile {
  readonly raws: Map<Setting, Raw>;
  readonly routes: RouteSetting[];
  /** The `[[dkim]]` tables (a `"dkim"` list in JSON), each key file read and checked (config/dkim.ts). */
  readonly dkim: DkimKeySetting[];
  /** How to name a setting of this file in an error: `relay.toml:3: key "max-recipients"`. */
  label(setting: Setting): string;
}

/** The format a file name says, or undefined for a name that says neither. */
export function formatOf(path: string): FileFormat | undefined {
  const lower = path.toLowerCase();
  if (lower.endsWith('.toml')) return 'toml';
  if (lower.endsWith('.json')) return 'json';
  return undefined;
}

/** The key that holds the routes, per format. */
const ROUTES_KEY: Readonly<Record<FileFormat, string>> = { toml: 'route', json: 'routes' };
/** The key that holds the DKIM keys: `[[dkim]]` in TOML, `"dkim"` in JSON. */
const DKIM_KEY = 'dkim';

export function parseConfigText(path: string, text: string, errors: string[]): ConfigFile | undefined {
  const format = formatOf(path);
  if (format === undefined) {
    errors.push(`${path}: unknown config file type: name it *.toml (TOML, the documented format) or *.json (JSON)`);
    return undefined;
  }
  const data = format === 'toml' ? readToml(path, text, errors) : readJson(path, text, errors);
  if (data === undefined) return undefined;
  const lines = format === 'toml' ? keyLines(text) : new Map<string, number>();
  const at = (key: string): string => {
    const line = lines.get(key);
    return line === undefined ? `${path}:` : `${path}:${line}:`;
  };
  const raws = new Map<Setting, Raw>();
  const routes: RouteSetting[] = [];
  const dkim: DkimKeySetting[] = [];
  const routesKey = ROUTES_KEY[format];
  for (const [key, value] of Object.entries(data)) {
    const setting = settingByName(key);
    if (key === routesKey) {
      // Structured, so file-only: not a Setting of the flag/env table.
      routes.push(...(parseRoutes(path, value, errors, routesKey, format === 'toml' ? tableLines(text, 'route') : []) ?? []));
    } else if (key === DKIM_KEY) {
      dkim.push(...(parseDkimKeys(path, value, errors, format === 'toml' ? tableLines(text, DKIM_KEY) : []) ?? []));
    } else if (setting === undefined) {
      const near = didYouMean(key, [...SCHEMA.map((s) => s.name), routesKey, DKIM_KEY]);
      const asTable = format === 'toml' && (near === routesKey || near === DKIM_KEY) ? ` (${near === DKIM_KEY ? 'DKIM keys are [[dkim]]' : 'routes are [[route]]'} tables)` : '';
      errors.push(`${at(key)} key ${JSON.stringify(key)} is unknown${near === undefined ? '' : ` (did you mean ${JSON.stringify(near)}?)`}${asTable}`);
    } else if (setting.name === 'config') {
      errors.push(`${at(key)} key "config" is not allowed in a config file (files do not include other files)`);
    } else {
      raws.set(setting, { from: 'json', value });
    }
  }
  return { raws, routes, dkim, label: (s) => `${at(s.name)} key ${JSON.stringify(s.name)}` };
}

function readToml(path: string, text: string, errors: string[]): Record<string, unknown> | undefined {
  try {
    return parseToml(text) as Record<string, unknown>;
  } catch (err) {
    if (err instanceof TomlError) {
      // smol-toml's message is "Invalid TOML document: <why>\n\n<code block>": keep the why.
      const why = err.message.replace(/^Invalid TOML document: /, '').split('\n')[0] ?? err.message;
      errors.push(`${path}:${err.line}:${err.column}: not valid TOML: ${why}`);
    } else {
      errors.push(`${path}: not valid TOML: ${err instanceof Error ? err.message : String(err)}`);
    }
    return undefined;
  }
}

function readJson(path: string, text: string, errors: string[]): Record<string, unknown> | undefined {
  let data: unknown;
  try {
    data = JSON.parse(text);
  } catch (err) {
    errors.push(`${path}: not valid JSON: ${err instanceof Error ? err.message : String(err)}`);
    return undefined;
  }
  if (typeof data !== 'object' || data === null || Array.isArray(data)) {
    errors.push(`${path}: expected a JSON object of settings, e.g. {"listen": ["127.0.0.1:2525"], "max-recipients": 100}`);
    return undefined;
  }
  return data as Record<string, unknown>;
}

/**
 * The line (1-based) of each top-level `key = …` of a TOML text, before the first table header.
 * The parser gives no positions for keys; this scan covers the keys Postwire has (bare or quoted
 * names at the top level), which is where settings live.
 */
export function keyLines(text: string): Map<string, number> {
  const out = new Map<string, number>();
  const lines = text.split('\n');
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i] ?? '';
    if (/^\s*\[/.test(line)) {
      const table = /^\s*\[\[?\s*([A-Za-z0-9_-]+)/.exec(line)?.[1];
      if (table !== undefined && !out.has(table)) out.set(table, i + 1);
      break;
    }
    const m = /^\s*(?:"([^"]+)"|'([^']+)'|([A-Za-z0-9_-]+))\s*=/.exec(line);
    const key = m?.[1] ?? m?.[2] ?? m?.[3];
    if (key !== undefined && !out.has(key)) out.set(key, i + 1);
  }
  return out;
}

/** The line of each `[[name]]` header, in order: table i's errors name its line. */
function tableLines(text: string, name: string): number[] {
  const header = new RegExp(`^\\s*\\[\\[\\s*${name}\\s*\\]\\]`);
  const out: number[] = [];
  text.split('\n').forEach((line, i) => {
    if (header.test(line)) out.push(i + 1);
  });
  return out;
}
