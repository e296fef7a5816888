/**
 * @module config/describe
 * describeConfig: the effective configuration as `name = value` lines, one per setting Config
 * holds, in schema order, for `postwire check-config` and the startup log. Names are the flag
 * names (also the config-file keys) and values use flag syntax, so any line can be turned back
 * into `--name value` and parses to the same value. Unset optional settings print `(none)`.
 * Pure; reads only the Config it is given.
 */
import { formatValue, type SettingValue } from './parse.js';
import { SCHEMA } from './schema.js';
import type { Config } from './types.js';

export function describeConfig(config: Config): string {
  const lines: string[] = [];
  for (const setting of SCHEMA) {
    if (setting.key === undefined) continue;
    lines.push(`${setting.name} = ${formatValue(setting, readPath(config, setting.key))}`);
  }
  return lines.join('\n') + '\n';
}

/** Follow a dotted schema key into Config; a miss is a schema bug (the tests walk every key). */
export function readPath(config: Config, key: string): SettingValue | undefined {
  let node: unknown = config;
  for (const part of key.split('.')) {
    if (typeof node !== 'object' || node === null || !(part in node)) throw new Error(`config: no key ${key} in Config`);
    node = (node as Record<string, unknown>)[part];
  }
  return node as SettingValue | undefined;
}
