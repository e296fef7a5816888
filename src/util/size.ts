/**
 * @module util/size
 * Sizes as operators write them (`50MiB`, `10M`, `1048576`) to and from octets.
 *
 * Callers: config/ (message size limits) and logs. Parsing never throws: it returns a reason, and
 * the caller names the setting.
 *
 * Units are case-insensitive and exact: K, M, G (and KB, MB, GB) are decimal (1000^n); KiB, MiB,
 * GiB are binary (1024^n); B or no unit is octets. Both families exist because people mean both.
 * A result that is not a whole number of octets (`1.5`, `1.0001K`) is refused, not rounded.
 * formatSize picks the shortest exact spelling, so parse(format(n)) === n (a tested property).
 */

export type SizeResult = { readonly ok: true; readonly value: number } | { readonly ok: false; readonly reason: string };

const UNITS: Readonly<Record<string, number>> = {
  '': 1,
  b: 1,
  k: 1e3,
  kb: 1e3,
  m: 1e6,
  mb: 1e6,
  g: 1e9,
  gb: 1e9,
  kib: 1024,
  mib: 1024 ** 2,
  gib: 1024 ** 3,
};

export const SIZE_HINT = 'octets, or a number with K, M, G, KiB, MiB or GiB, e.g. 50MiB';

export function parseSize(text: string): SizeResult {
  const m = /^(\d+(?:\.\d+)?)\s*([a-z]*)$/i.exec(text.trim());
  if (m === null) return { ok: false, reason: `is not a size (expected ${SIZE_HINT})` };
  const unit = (m[2] ?? '').toLowerCase();
  const factor = UNITS[unit];
  if (factor === undefined) return { ok: false, reason: `has an unknown unit "${m[2] ?? ''}" (expected ${SIZE_HINT})` };
  const value = Number(m[1]) * factor;
  if (!Number.isSafeInteger(Math.round(value))) return { ok: false, reason: 'is too large' };
  if (Math.abs(value - Math.round(value)) > 1e-6) return { ok: false, reason: 'is not a whole number of octets' };
  return { ok: true, value: Math.round(value) };
}

/** Exact and short: binary units when they divide evenly (limits are usually set that way), else octets. */
export function formatSize(octets: number): string {
  if (!Number.isSafeInteger(octets) || octets <= 0) return String(octets);
  for (const [unit, factor] of [['GiB', 1024 ** 3], ['MiB', 1024 ** 2], ['KiB', 1024]] as const) {
    if (octets % factor === 0) return `${octets / factor}${unit}`;
  }
  for (const [unit, factor] of [['G', 1e9], ['M', 1e6], ['K', 1e3]] as const) {
    if (octets % factor === 0) return `${octets / factor}${unit}`;
  }
  return String(octets);
}
