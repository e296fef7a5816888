/**
 * @module cleanup/cleanup
 * One message in, one queue entry out. smtpd opens an IncomingMessage when DATA or the first
 * BDAT is accepted, streams the decoded body into it, and commits; cleanup prepends the
 * `Received:` header, removes duplicate recipients, turns the SMTP envelope into the store's
 * Envelope, and hands everything to QueueStore. commit() resolves with the queue id only when
 * the store says the message is durable (DESIGN.md invariant 2); the 250 waits for it.
 *
 * Failure: a store error rejects commit(); the caller answers 451 and nothing is queued.
 * An abort (client gone, size exceeded, bare newline refused) drops the partial message.
 * Trust: the envelope was validated by protocol/; body bytes are taken as they come.
 */
import type { AcceptedRecipient, TransactionEnvelope } from '../protocol/index.js';
import { formatPath, parseForwardPath } from '../protocol/index.js';
import type { Envelope, EnvelopeRecipient, MessageWriter, QueueStore } from '../queue/index.js';
import type { Clock } from '../util/index.js';
import type { Logger } from '../obs/index.js';
import { formatReceived } from './received.js';

export interface ClientInfo {
  readonly ip: string;
  readonly helo: string;
  /** RFC 3848 name: SMTP, ESMTP, UTF8SMTP … */
  readonly protocol: string;
  readonly session: string;
  /** The AUTH identity, when the client authenticated (stored in the envelope, not in headers). */
  readonly user?: string;
  /** The session's TLS version and cipher, for the Received: comment. */
  readonly tls?: { readonly version: string; readonly cipher: string };
}

export interface IncomingMessage {
  readonly id: string;
  /** Octets stored so far, trace header included. */
  readonly size: number;
  write(chunk: Uint8Array): Promise<void>;
  /** Resolves with the queue id once durable. */
  commit(): Promise<string>;
  abort(): Promise<void>;
}

/** A message Postwire writes itself (a DSN): null sender, one recipient given as text. */
export interface GeneratedMessage {
  readonly recipient: string;
  readonly body: '7BIT' | '8BITMIME';
  readonly smtputf8: boolean;
  /** What generated it, for the log and the Received: header's `from` (e.g. `dsn:<queue id>`). */
  readonly origin: string;
}

/** The interface smtpd sees: it never touches the queue itself. */
export interface MessageIntake {
  open(envelope: TransactionEnvelope, client: ClientInfo): IncomingMessage;
  /** For qmgr's DSNs; rejects (QUEUE-free) with an Error when the recipient is not an address. */
  openGenerated(message: GeneratedMessage): IncomingMessage;
}

export interface CleanupDeps {
  readonly store: QueueStore;
  readonly hostname: string;
  readonly clock: Clock;
  readonly log: Logger;
  /** Told after each durable commit (qmgr's wake-up: new mail is due now; metrics). */
  readonly onQueued?: (id: string, size: number) => void;
}

export function createCleanup(deps: CleanupDeps): MessageIntake {
  const intake: MessageIntake = {
    openGenerated(message) {
      const to = parseForwardPath(`<${message.recipient}>`);
      if (!to.ok) throw new Error(`generated message: bad recipient <${message.recipient}>: ${to.reason}`);
      const params = { body: message.body, ...(message.smtputf8 ? { smtputf8: true as const } : {}) };
      return intake.open(
        { sender: null, params, body: message.body, recipients: [{ mailbox: to.path, params: {} }] },
        { ip: '127.0.0.1', helo: deps.hostname, protocol: 'ESMTP', session: message.origin },
      );
    },
    open(envelope, client) {
      const writer = deps.store.createMessage();
      const recipients = dedupeRecipients(envelope.recipients);
      const received = formatReceived({
        helo: client.helo,
        clientIp: client.ip,
        hostname: deps.hostname,
        protocol: client.protocol,
        ...(client.tls !== undefined ? { tls: client.tls } : {}),
        queueId: writer.id,
        forRecipient: recipients.length === 1 ? recipients[0]?.mailbox.address : undefined,
        utf8: envelope.params.smtputf8 === true,
        nowMs: deps.clock.now(),
      });
      return new CleanupMessage(writer, toStoreEnvelope(envelope, recipients, client), Buffer.from(received, 'utf8'), deps.log, client.session, deps.onQueued);
    },
  };
  return intake;
}

class CleanupMessage implements IncomingMessage {
  private headerPending = true;

  constructor(
    private readonly writer: MessageWriter,
    private readonly envelope: Envelope,
    private readonly traceHeader: Buffer,
    private readonly log: Logger,
    private readonly session: string,
    private readonly onQueued: ((id: string, size: number) => void) | undefined,
  ) {}

  get id(): string {
    return this.writer.id;
  }

  get size(): number {
    return this.writer.size;
  }

  async write(chunk: Uint8Array): Promise<void> {
    if (this.headerPending) await this.writeHeader();
    if (chunk.length > 0) await this.writer.write(chunk);
  }

  async commit(): Promise<string> {
    if (this.headerPending) await this.writeHeader();
    const stored = await this.writer.commit(this.envelope);
    this.log.info(
      { session: this.session, queueId: stored.id, from: this.envelope.sender, rcpts: stored.recipients.length, size: stored.size, client: this.envelope.client.ip },
      'queued',
    );
    this.onQueued?.(stored.id, stored.size);
    return stored.id;
  }

  abort(): Promise<void> {
    return this.writer.abort();
  }

  private async writeHeader(): Promise<void> {
    this.headerPending = false;
    await this.writer.write(this.traceHeader);
  }
}

/** Same mailbox twice in one envelope is delivered once (first occurrence's DSN params win). */
function dedupeRecipients(recipients: readonly AcceptedRecipient[]): AcceptedRecipient[] {
  const seen = new Set<string>();
  const out: AcceptedRecipient[] = [];
  for (const r of recipients) {
    const key = `${r.mailbox.localPart}@${r.mailbox.domain.toLowerCase()}`;
    if (seen.has(key)) continue;
    seen.add(key);
    out.push(r);
  }
  return out;
}

function toStoreEnvelope(env: TransactionEnvelope, recipients: readonly AcceptedRecipient[], client: ClientInfo): Envelope {
  const sender = formatPath(env.sender).slice(1, -1);
  return {
    sender,
    recipients: recipients.map(toStoreRecipient),
    body: env.body,
    smtputf8: env.params.smtputf8 === true,
    ...(env.params.ret ? { dsnRet: env.params.ret } : {}),
    ...(env.params.envid !== undefined ? { dsnEnvid: env.params.envid } : {}),
    // RFC 8689: the session accepted REQUIRETLS only over TLS; delivery must now honour it.
    ...(env.params.requireTls ? { requireTls: true as const } : {}),
    client: { ip: client.ip, helo: client.helo, protocol: client.protocol, ...(client.user !== undefined ? { user: client.user } : {}) },
  };
}

function toStoreRecipient(r: AcceptedRecipient): EnvelopeRecipient {
  return {
    address: r.mailbox.address,
    ...(r.params.notify ? { notify: r.params.notify } : {}),
    ...(r.params.orcpt ? { orcpt: `${r.params.orcpt.addrType};${r.params.orcpt.address}` } : {}),
  };
}
