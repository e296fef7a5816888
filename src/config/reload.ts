/**
 * @module config/reload
 * What a SIGHUP may change: compares the running Config with a freshly loaded one, setting by
 * setting through SCHEMA, and returns the Config to run with from now on: the running one with
 * every changed `live` setting (schema `reload`) and the routes and DKIM keys taken from the new one, and the
 * names of the changed settings that need a restart (which keep their running value).
 *
 * Callers: main.ts's Server.reload, after cli/serve loaded the configuration again with the same
 * flags and environment. Pure; the result is deeply frozen like every Config.
 */
import { readPath } from './describe.js';
import { SCHEMA } from './schema.js';
import type { Config } from './types.js';

export interface ReloadPlan {
  /** The configuration to run with. */
  readonly config: Config;
  /** Changed settings applied now (`routes`, `dkim` included when the routes or the DKIM keys changed). */
  readonly live: readonly string[];
  /** Changed settings that keep their running value until a restart. */
  readonly restart: readonly string[];
}

export function planReload(running: Config, next: Config): ReloadPlan {
  const live: string[] = [];
  const restart: string[] = [];
  const merged = structuredClone(running) as unknown as Record<string, unknown>;
  for (const setting of SCHEMA) {
    if (setting.key === undefined) continue;
    const before = readPath(running, setting.key);
    const after = readPath(next, setting.key);
    if (same(before, after)) continue;
    if (setting.reload === 'live') {
      live.push(setting.name);
      writePath(merged, setting.key, structuredClone(after));
    } else {
      restart.push(setting.name);
    }
  }
  if (!same(running.routes, next.routes)) {
    live.push('routes');
    merged['routes'] = structuredClone(next.routes);
  }
  // DKIM keys are live so that a key rotation (a new selector, a new key file) needs no restart;
  // the reload read and checked every key file before this point, so a bad one refused it whole.
  if (!same(running.dkim, next.dkim)) {
    live.push('dkim');
    merged['dkim'] = structuredClone(next.dkim);
  }
  return { config: freeze(merged) as unknown as Config, live, restart };
}

function same(a: unknown, b: unknown): boolean {
  return JSON.stringify(a) === JSON.stringify(b);
}

function writePath(target: Record<string, unknown>, key: string, value: unknown): void {
  const parts = key.split('.');
  const last = parts.pop();
  if (last === undefined) throw new Error(`config: empty key`);
  let node = target;
  for (const part of parts) node = node[part] as Record<string, unknown>;
  node[last] = value;
}

function freeze(value: unknown): unknown {
  if (typeof value === 'object' && value !== null) {
    for (const v of Object.values(value)) freeze(v);
    Object.freeze(value);
  }
  return value;
}
