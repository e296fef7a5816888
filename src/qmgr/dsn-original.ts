/**
 * @module qmgr/dsn-original
 * The returned original of a DSN (RFC 3464's message/rfc822 part), for the runner's bounces and
 * control's operator bounce alike: the message whole as it was sent (Envelope.prepend first,
 * queue/prepend readMessage). An unreadable body (a corrupt spool entry) must not stop the
 * report: it is logged and the report goes out with what was read.
 */
import type { Logger } from '../obs/index.js';
import { readMessage } from '../queue/index.js';
import type { QueueStore, StoredMessage } from '../queue/index.js';

export async function* dsnOriginal(store: QueueStore, log: Logger, message: StoredMessage): AsyncGenerator<Uint8Array, void, undefined> {
  try {
    for await (const chunk of readMessage(store, message)) yield chunk;
  } catch (err) {
    log.error({ queueId: message.id, err: String(err) }, 'the original could not be read for its DSN; sending the report without it');
  }
}
