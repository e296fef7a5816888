/**
 * @module config/describe
 * describeConfig: the effective configuration as `name = value` lines, one per setting Config
 * holds, in schema order. Callers: `postwire check-config` (stdout) and anyone who wants the
 * startup log to say what is in force.
 *
 * Names are the flag names (also the config-file keys) and values use flag syntax (durations as
 * `5m`, sizes as `50MiB`, host:port with brackets for IPv6), so any line can be turned back into
 * `--name value` and parses to the same value: the tests hold that round trip. Unset optional
 * settings print `(none)`; settings Config does not hold (--config, unbuilt features) are omitted.
 * Secrets (--admin-token) print `(set, not shown)`: check-config output ends up in tickets. DKIM
 * keys print what signs (domain, selector, file, algorithm, size), never the key.
 *
 * Pure; reads only the Config it is given. A schema key that does not resolve in Config is a
 * schema bug and throws (the tests walk every key, so it cannot ship).
 */
import { formatHostPort, formatValue, type SettingValue } from './parse.js';
import { formatDuration } from '../util/index.js';
import { SCHEMA } from './schema.js';
import { dkimKeyWeakness } from './dkim.js';
import type { Config } from './types.js';

/** Settings whose value is a secret: printed as `(set)`, never as the value. */
export const SECRET_SETTINGS: ReadonlySet<string> = new Set(['admin-token']);

export function describeConfig(config: Config): string {
  const lines: string[] = [];
  for (const setting of SCHEMA) {
    if (setting.key === undefined) continue;
    if (SECRET_SETTINGS.has(setting.name) && readPath(config, setting.key) !== undefined) {
      lines.push(`${setting.name} = (set, not shown)`);
      continue;
    }
    lines.push(`${setting.name} = ${formatValue(setting, readPath(config, setting.key))}`);
  }
  // Routes come only from the config file; shown as the JSON they were read from.
  if (config.routes.length === 0) lines.push('routes = (none)');
  config.routes.forEach((r, i) => {
    const hop = r.nextHop.kind === 'mx' ? { mx: true } : { smarthost: formatHostPort({ host: r.nextHop.host, port: r.nextHop.port }) };
    const retry = r.retry ? { retry: r.retry.map(formatDuration).join(',') } : {};
    lines.push(`routes[${i}] = ${JSON.stringify({ pattern: r.pattern, ...hop, ...(r.concurrency ? { concurrency: r.concurrency } : {}), ...retry, ...(r.tls ? { tls: r.tls } : {}), ...rateOf(r), ...(r.auth ? { auth_user: r.auth.user, auth_password_file: r.auth.passwordFile } : {}) })}`);
  });
  // DKIM keys: what signs, never the key itself.
  if (config.dkim.length === 0) lines.push('dkim = (none)');
  config.dkim.forEach((k, i) => {
    const weakness = dkimKeyWeakness(k);
    lines.push(`dkim[${i}] = ${JSON.stringify({
      domain: k.domain,
      selector: k.selector,
      'key-file': k.keyFile,
      algorithm: k.algorithm,
      ...(k.bits !== undefined ? { bits: k.bits } : {}),
      headers: k.headers,
      canonicalization: k.canonicalization,
      subdomains: k.subdomains,
      ...(weakness !== undefined ? { warning: weakness } : {}),
    })}`);
  });
  return lines.join('\n') + '\n';
}

function rateOf(r: Config['routes'][number]): { rate?: string | number; burst?: number } {
  if (r.rate === undefined) return {};
  if (r.rate === 'unlimited') return { rate: 'unlimited' };
  return { rate: r.rate.perMinute, burst: r.rate.burst };
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
