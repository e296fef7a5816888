/**
 * @module util/duration
 * Durations as operators write them (`100ms`, `30s`, `5m`, `1h30m`, `5d`) to and from whole
 * milliseconds, the unit every timer and schedule in Postwire uses.
 *
 * Callers: config/ (parsing flags, env and files; printing the effective config) and anything that
 * logs a delay. Parsing never throws: it returns a reason a person can act on, and the caller adds
 * which setting it was. A bare number is refused on purpose: "300" could mean seconds or
 * milliseconds, and a timeout off by 1000x fails silently in production.
 *
 * Grammar: one or more `<number><unit>` parts, largest unit first or not, no spaces; the number
 * may have a fraction (`1.5h`) as long as the total is a whole number of milliseconds.
 * Units: ms, s, m, h, d (a day is 24h: no calendar, no DST).
 */

export type DurationResult = { readonly ok: true; readonly value: number } | { readonly ok: false; readonly reason: string };

const UNIT_MS: Readonly<Record<string, number>> = { ms: 1, s: 1_000, m: 60_000, h: 3_600_000, d: 86_400_000 };

/** Largest first: formatDuration emits parts in this order. */
const FORMAT_UNITS: readonly (readonly [string, number])[] = [
  ['d', 86_400_000],
  ['h', 3_600_000],
  ['m', 60_000],
  ['s', 1_000],
  ['ms', 1],
];

const PART = /(\d+(?:\.\d+)?)(ms|s|m|h|d)/y;

export const DURATION_HINT = 'a number with ms, s, m, h or d, e.g. 30s, 5m, 1h30m';

export function parseDuration(text: string): DurationResult {
  const s = text.trim();
  if (s === '') return { ok: false, reason: 'is empty' };
  if (/^\d+(\.\d+)?$/.test(s)) return { ok: false, reason: `has no unit (write ${s}ms, ${s}s, ${s}m, ...)` };
  let total = 0;
  PART.lastIndex = 0;
  while (PART.lastIndex < s.length) {
    const at = PART.lastIndex;
    const m = PART.exec(s);
    if (m === null) {
      const where = at === 0 ? '' : `at "${s.slice(at)}"; `;
      return { ok: false, reason: `is not a duration (${where}expected ${DURATION_HINT})` };
    }
    total += Number(m[1]) * (UNIT_MS[m[2] ?? ''] ?? Number.NaN);
  }
  if (!Number.isSafeInteger(Math.round(total))) return { ok: false, reason: 'is too large' };
  // Fractions are for "1.5h"; a fraction of a millisecond is a typo, not a wish.
  if (Math.abs(total - Math.round(total)) > 1e-6) return { ok: false, reason: 'is not a whole number of milliseconds' };
  return { ok: true, value: Math.round(total) };
}

/** The shortest exact spelling: 300000 → "5m", 5400000 → "1h30m", 0 → "0ms". */
export function formatDuration(ms: number): string {
  if (!Number.isSafeInteger(ms) || ms < 0) return `${ms}ms`;
  if (ms === 0) return '0ms';
  let rest = ms;
  let out = '';
  for (const [unit, size] of FORMAT_UNITS) {
    const n = Math.floor(rest / size);
    if (n > 0) {
      out += `${n}${unit}`;
      rest -= n * size;
    }
  }
  return out;
}
