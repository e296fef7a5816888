/**
 * @module util/date
 * RFC 5322 §3.3 date-time in UTC (`Sun, 29 Nov 2026 18:47:01 +0000`), for the `Received:` header
 * and DSN fields. Pure: the time comes in as milliseconds.
 */
export function rfc5322Date(ms: number): string {
  // toUTCString is "Sun, 29 Nov 2026 18:47:01 GMT"; RFC 5322 prefers a numeric zone.
  return new Date(ms).toUTCString().replace(/GMT$/, '+0000');
}
