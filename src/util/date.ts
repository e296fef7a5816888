/**
 * @module util/date
 * RFC 5322 §3.3 date-time in UTC (`Sun, 29 Nov 2026 18:47:01 +0000`), for the `Received:` header
 * and DSN fields. Pure: the time comes in as milliseconds. The text of the last second asked for
 * is kept: every accepted message asks for "now", and formatting a Date was 0.7 % of a relay
 * profile (docs/benchmarks.md).
 */
let lastSecond = Number.NaN;
let lastText = '';

export function rfc5322Date(ms: number): string {
  const second = Math.floor(ms / 1000);
  if (second === lastSecond) return lastText;
  // toUTCString is "Sun, 29 Nov 2026 18:47:01 GMT"; RFC 5322 prefers a numeric zone.
  const text = new Date(ms).toUTCString().replace(/GMT$/, '+0000');
  lastSecond = second;
  lastText = text;
  return text;
}
