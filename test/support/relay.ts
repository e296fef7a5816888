/**
 * An e2e test server that relays to a fake smart host (test/fakes/fake-smtp-server), with
 * delivery on and retries fast; both are stopped whatever the test does.
 */
import { startFakeSmtp } from '../fakes/fake-smtp-server.js';
import type { FakeSmtpServer } from '../fakes/fake-smtp-server.js';
import { startTestServer } from './server.js';
import type { TestServer } from './server.js';

/** Delivery on, a retry 300 ms after a deferral, and no expiry within a test. */
export const FAST_DELIVERY: readonly string[] = ['--delivery', 'on', '--retry', '300ms', '--max-age', '1h'];

/** A test's own flag replaces the FAST_DELIVERY default of the same name (flags may not repeat). */
export async function withRelay(
  flags: readonly string[],
  sinkOptions: Parameters<typeof startFakeSmtp>[0],
  body: (server: TestServer, sink: FakeSmtpServer) => Promise<void>,
): Promise<void> {
  const sink = await startFakeSmtp(sinkOptions);
  try {
    const defaults = FAST_DELIVERY.filter((f, i, all) => !flags.includes(f.startsWith('--') ? f : (all[i - 1] ?? '')));
    const server = await startTestServer([...defaults, '--smarthost', `127.0.0.1:${sink.port}`, ...flags]);
    try {
      await body(server, sink);
    } finally {
      await server.stop();
    }
  } finally {
    await sink.close();
  }
}
