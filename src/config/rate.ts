/**
 * @module config/rate
 * The syntax of an outbound rate limit, shared by `--destination-rate` and a route's `rate`:
 * `600/m`, `10/s`, `100/h`, a bare number (messages per minute; TOML may give it unquoted), or
 * `unlimited`. A burst is the number of messages that may start at once after a quiet spell
 * (the token bucket's size); when none is given it is one second of the rate, at least 1.
 *
 * Pure; every error says what was given and what is expected, and the caller prefixes it with
 * the setting's name or the route's place in the file.
 */
import type { DeliverySettings, RateLimit } from './types.js';

/** Messages per minute: from 1 an hour to 100,000 a second. */
export const MIN_PER_MINUTE = 1 / 60;
export const MAX_PER_MINUTE = 6_000_000;
export const MAX_BURST = 1_000_000;
export const RATE_HINT = 'a rate like "600/m", "10/s" or "100/h", a number (per minute), or "unlimited"';

const PER_MINUTE: Readonly<Record<string, number>> = { s: 60, m: 1, h: 1 / 60 };

export type RateParse = { readonly ok: true; readonly perMinute: number | 'unlimited' } | { readonly ok: false; readonly reason: string };

export function parseRate(value: unknown): RateParse {
  let perMinute: number;
  if (typeof value === 'number') perMinute = value;
  else if (typeof value === 'string') {
    const text = value.trim().toLowerCase();
    if (text === 'unlimited') return { ok: true, perMinute: 'unlimited' };
    const hit = /^(\d+(?:\.\d+)?)\s*(?:\/\s*([smh]))?$/.exec(text);
    if (!hit) return { ok: false, reason: `${JSON.stringify(value)} is not ${RATE_HINT}` };
    perMinute = Number(hit[1]) * (PER_MINUTE[hit[2] ?? 'm'] ?? 1);
  } else return { ok: false, reason: `must be ${RATE_HINT}` };
  if (!Number.isFinite(perMinute) || perMinute < MIN_PER_MINUTE || perMinute > MAX_PER_MINUTE) {
    return { ok: false, reason: `${JSON.stringify(value)} is out of range (1/h to 100000/s)` };
  }
  return { ok: true, perMinute };
}

/** The burst when none is configured: one second of the rate, at least one message. */
export function defaultBurst(perMinute: number): number {
  return Math.max(1, Math.ceil(perMinute / 60));
}

/** A parsed rate and an optional explicit burst (0 or undefined: the default) → the limit. */
export function rateLimit(perMinute: number, burst: number | undefined): RateLimit {
  return { perMinute, burst: burst === undefined || burst === 0 ? defaultBurst(perMinute) : burst };
}

/** `600/m burst 10`, as check-config, explain and logs print it. */
export function formatRate(limit: RateLimit | undefined): string {
  if (limit === undefined) return 'unlimited';
  const { perMinute } = limit;
  const text = Number.isInteger(perMinute / 60) && perMinute >= 60 ? `${perMinute / 60}/s`
    : Number.isInteger(perMinute) ? `${perMinute}/m`
    : Number.isInteger(perMinute * 60) ? `${Math.round(perMinute * 60)}/h`
    : `${perMinute}/m`;
  return `${text} burst ${limit.burst}`;
}

/** --destination-rate and --destination-burst as a limit; undefined: unlimited. */
export function defaultRate(delivery: Pick<DeliverySettings, 'destinationRate' | 'destinationBurst'>): RateLimit | undefined {
  const parsed = parseRate(delivery.destinationRate);
  if (!parsed.ok) throw new Error(`config: --destination-rate ${delivery.destinationRate} passed validation but does not parse`);
  return parsed.perMinute === 'unlimited' ? undefined : rateLimit(parsed.perMinute, delivery.destinationBurst);
}
