/** Flags every test server and test process gets unless the test gives its own. */

/**
 * Test defaults a test may override: delivery off (acceptance tests must never reach for real
 * DNS) and no admin listener.
 */
export function withDefaults(flags: readonly string[]): string[] {
  const out = [...flags];
  if (!out.includes('--delivery')) out.push('--delivery', 'off');
  if (!out.includes('--admin')) out.push('--admin', 'off');
  return out;
}
