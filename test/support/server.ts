/**
 * Starts a real Postwire (the same composition root `postwire serve` uses) on 127.0.0.1 port 0
 * with a fresh spool in a temp directory, configured through the real config loader.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadConfig } from '../../src/config/index.js';
import type { Config } from '../../src/config/index.js';
import { startServer } from '../../src/main.js';
import type { Server } from '../../src/main.js';
import type { Clock } from '../../src/util/index.js';
import { silentLogger } from '../../src/obs/index.js';
import { withDefaults } from './flags.js';

export { withDefaults } from './flags.js';
import type { QueueStore, StoredMessage } from '../../src/queue/index.js';

export interface TestServer {
  readonly port: number;
  readonly server: Server;
  readonly store: QueueStore;
  readonly spool: string;
  readonly config: Config;
  /** Every stored message with its body, oldest first. */
  messages(): Promise<Array<StoredMessage & { body: Buffer }>>;
  /** Stop and remove the spool. */
  stop(): Promise<void>;
  /** Stop and keep the spool (for a restart with startTestServerOn). */
  close(): Promise<void>;
}

export function testConfig(spool: string, flags: readonly string[] = []): Config {
  const loaded = loadConfig({
    // Delivery is off unless a test turns it on: acceptance tests must never reach for real DNS.
    argv: ['--listen', '127.0.0.1:0', '--spool', spool, '--hostname', 'mx.postwire.test', '--shutdown-grace', '2s', ...withDefaults(flags)],
    env: {},
    hostname: 'mx.postwire.test',
  });
  if (!loaded.ok) throw new Error(`test config: ${loaded.errors.join('; ')}`);
  return loaded.config;
}

/** `options.clock`: the server's injected clock (e.g. one a test moves forward); default the system's. */
export async function startTestServer(flags: readonly string[] = [], options: { readonly clock?: Clock } = {}): Promise<TestServer> {
  return startTestServerOn(await mkdtemp(join(tmpdir(), 'postwire-test-')), flags, options);
}

/** As startTestServer, on an existing spool (a restart). `close()` stops it and keeps the spool. */
export async function startTestServerOn(spool: string, flags: readonly string[] = [], options: { readonly clock?: Clock } = {}): Promise<TestServer> {
  const config = testConfig(spool, flags);
  const server = await startServer(config, { log: silentLogger, ...(options.clock ? { clock: options.clock } : {}) });
  const port = server.listeners[0]?.port;
  if (port === undefined) throw new Error('no listener');
  return {
    port,
    server,
    store: server.store,
    spool,
    config,
    async messages() {
      const list = await server.store.listMessages({ limit: 10_000 });
      const out: Array<StoredMessage & { body: Buffer }> = [];
      for (const m of list) out.push({ ...m, body: await readAll(server.store.readBody(m.id)) });
      return out;
    },
    async stop() {
      await server.close('test over');
      await rm(spool, { recursive: true, force: true });
    },
    close: () => server.close('test over'),
  };
}

export async function readAll(source: AsyncIterable<Uint8Array>): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const chunk of source) parts.push(Buffer.from(chunk));
  return Buffer.concat(parts);
}

/** The stored body minus the one `Received:` header Postwire prepends (it asserts there is one). */
export function withoutTraceHeader(body: Buffer): Buffer {
  const text = body.toString('latin1');
  if (!text.startsWith('Received: from ')) throw new Error(`stored body does not start with our Received: header: ${JSON.stringify(text.slice(0, 80))}`);
  let end = text.indexOf('\r\n');
  while (end >= 0 && text[end + 2] === '\t') end = text.indexOf('\r\n', end + 2);
  if (end < 0) throw new Error('unterminated Received: header');
  return body.subarray(end + 2);
}
