/**
 * Submitting test mail to a running Postwire, shared by the delivery and interop tests: one
 * message (dot-stuffed here, so callers pass the message as it should arrive), its queue id
 * back (`sendMessage` does the same to any SMTP server, Postfix included, and returns the final
 * reply); and waiting for a message's recipients to reach a state.
 */
import assert from 'node:assert/strict';
import { RawClient } from './raw-client.js';
import type { TestServer } from './server.js';
import { parseQueueId } from '../../src/queue/index.js';
import type { QueueId } from '../../src/queue/index.js';

export async function submit(server: TestServer, from: string, to: readonly string[], message: string | Buffer, mailParams = ''): Promise<QueueId> {
  const text = await sendMessage(server.port, from, to, message, mailParams);
  const id = parseQueueId(/queued as (\S+)/.exec(text)?.[1] ?? '');
  assert.ok(id, `no queue id in ${text}`);
  return id;
}

/**
 * Sends one message to any SMTP server on 127.0.0.1:`port` (dot-stuffed here) and returns the
 * text of the 250 after end-of-data. Asserts every reply along the way.
 */
export async function sendMessage(port: number, from: string, to: readonly string[], message: string | Buffer, mailParams = ''): Promise<string> {
  const c = await RawClient.connect(port);
  try {
    await c.reply();
    assert.equal((await c.command('EHLO source.test')).code, 250);
    assert.equal((await c.command(`MAIL FROM:<${from}>${mailParams}`)).code, 250);
    // RawClient writes a string as UTF-8: a UTF-8 address goes out as its UTF-8 bytes.
    for (const rcpt of to) assert.equal((await c.command(`RCPT TO:<${rcpt}>`)).code, 250);
    assert.equal((await c.command('DATA')).code, 354);
    const text = Buffer.isBuffer(message) ? message.toString('latin1') : Buffer.from(message, 'utf8').toString('latin1');
    await c.write(Buffer.from(`${text.replace(/(^|\r\n)\./g, '$1..')}.\r\n`, 'latin1'));
    const r = await c.reply(60_000);
    assert.equal(r.code, 250, r.text);
    await c.command('QUIT');
    return r.text;
  } finally {
    c.close();
  }
}

/** Resolves with the recipients' states once every one is `state`; rejects after `ms`. */
export async function allInState(server: TestServer, id: QueueId, state: string, ms = 30_000): Promise<string[]> {
  const deadline = Date.now() + ms;
  for (;;) {
    const states = (await server.store.getMessage(id))?.recipients.map((r) => r.state) ?? [];
    if (states.length > 0 && states.every((s) => s === state)) return states;
    if (Date.now() > deadline) throw new Error(`${id}: recipients ${states.join(',')} after ${ms} ms`);
    await new Promise((r) => setTimeout(r, 25));
  }
}
