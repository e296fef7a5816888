/**
 * What the outbound rate-limit tests (one node: e2e/rate-limit; three nodes:
 * e2e/pg-cluster-rate) share: the config file of their three destinations, and the count the
 * limit is judged by.
 */
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { SinkTransaction } from '../fakes/fake-smtp-server.js';

/** The most sink transactions that started within any `ms` window. */
export function mostIn(transactions: readonly SinkTransaction[], ms: number): number {
  const at = transactions.map((t) => t.startedAt).sort((a, b) => a - b);
  let most = 0;
  for (let i = 0, j = 0; i < at.length; i++) {
    while ((at[i] ?? 0) - (at[j] ?? 0) > ms) j++;
    most = Math.max(most, i - j + 1);
  }
  return most;
}

/**
 * `postwire.toml` in `dir` with three routes: stuck.test at 1/m, limited.test at `rate`/s with
 * `burst`, and everything else unlimited; returns its path.
 */
export async function writeRateRoutes(dir: string, ports: { stuck: number; limited: number; other: number }, rate: number, burst: number): Promise<string> {
  const file = join(dir, 'postwire.toml');
  await writeFile(file, [
    '[[route]]', 'pattern = "stuck.test"', `smarthost = "127.0.0.1:${ports.stuck}"`, 'rate = "1/m"',
    '[[route]]', 'pattern = "limited.test"', `smarthost = "127.0.0.1:${ports.limited}"`, `rate = "${rate}/s"`, `burst = ${burst}`,
    '[[route]]', 'pattern = "*"', `smarthost = "127.0.0.1:${ports.other}"`,
  ].join('\n'));
  return file;
}
