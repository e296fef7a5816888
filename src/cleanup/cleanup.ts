/**
 * @module cleanup/cleanup
 * One message in, one queue entry out. smtpd opens an IncomingMessage when DATA or the first
 * BDAT is accepted, streams the decoded body into it, and commits; cleanup prepends the
 * `Received:` header, removes duplicate recipients, turns the SMTP envelope into the store's
 * Envelope, and hands everything to QueueStore. commit() resolves with the queue id only when
 * the store says the message is durable (DESIGN.md invariant 2); the 250 waits for it.
 *
 * DKIM (cleanup/dkim): when keys are configured, every stored byte also streams through a
 * MessageSigner; at commit its DKIM-Signature goes into Envelope.prepend, so the message is
 * signed once and every retry sends the same bytes. DSNs (openGenerated) are signed the same way.
 *
 * Failure: a store error rejects commit(); the caller answers 451 and nothing is queued. So does
 * a DKIM signing error (logged with the domain): a configured signer signs, or the client retries.
 * An abort (client gone, size exceeded, bare newline refused) drops the partial message.
 * Trust: the envelope was validated by protocol/; body bytes are taken as they come.
 */
import type { AcceptedRecipient, TransactionEnvelope } from '../protocol/index.js';
import { formatPath, parseForwardPath } from '../protocol/index.js';
import type { Envelope, EnvelopeRecipient, MessageWriter, QueueStore } from '../queue/index.js';
import type { Clock } from '../util/index.js';
import type { Logger } from '../obs/index.js';
import { formatReceived } from './received.js';
import { DkimSignError, MessageSigner, type DkimKeyring } from './dkim.js';

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
  /** The DKIM keys in force, asked once per message (a reload swaps them); absent: no signing. */
  readonly dkim?: () => DkimSettings | undefined;
  /** Told once per message a key applied to: signed, or failed (refused with 451). For metrics. */
  readonly onDkim?: (domain: string, result: 'signed' | 'failed') => void;
}

export interface DkimSettings {
  readonly keyring: DkimKeyring;
  /** How much header section is gathered to find From: (--dkim-max-header-size). */
  readonly maxHeaderOctets: number;
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
      const dkim = deps.dkim?.();
      const signer = dkim !== undefined && dkim.keyring.size > 0
        ? new MessageSigner({ keyring: dkim.keyring, maxHeaderOctets: dkim.maxHeaderOctets, signTime: deps.clock.now() })
        : undefined;
      return new CleanupMessage(writer, toStoreEnvelope(envelope, recipients, client), Buffer.from(received, 'utf8'), deps, client.session, signer);
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
    private readonly deps: Pick<CleanupDeps, 'log' | 'onQueued' | 'onDkim'>,
    private readonly session: string,
    private readonly signer: MessageSigner | undefined,
  ) {}

  get id(): string {
    return this.writer.id;
  }

  get size(): number {
    return this.writer.size;
  }

  async write(chunk: Uint8Array): Promise<void> {
    if (this.headerPending) await this.writeHeader();
    if (chunk.length > 0) await this.store(chunk);
  }

  async commit(): Promise<string> {
    if (this.headerPending) await this.writeHeader();
    const envelope = await this.sign();
    const stored = await this.writer.commit(envelope);
    this.deps.log.info(
      { session: this.session, queueId: stored.id, from: envelope.sender, rcpts: stored.recipients.length, size: stored.size, client: envelope.client.ip },
      'queued',
    );
    this.deps.onQueued?.(stored.id, stored.size);
    return stored.id;
  }

  abort(): Promise<void> {
    this.signer?.abort();
    return this.writer.abort();
  }

  private async writeHeader(): Promise<void> {
    this.headerPending = false;
    await this.store(this.traceHeader);
  }

  /** The same bytes, in the same order, to the store and the signer; each write waits for both. */
  private async store(chunk: Uint8Array): Promise<void> {
    if (this.signer === undefined) return this.writer.write(chunk);
    await Promise.all([this.writer.write(chunk), this.signer.write(chunk)]);
  }

  /** The envelope to commit: with the DKIM-Signature in prepend when a key signed it. */
  private async sign(): Promise<Envelope> {
    if (this.signer === undefined) return this.envelope;
    const log = this.deps.log;
    try {
      const result = await this.signer.finish();
      if (!result.signed) {
        log.debug({ session: this.session, queueId: this.writer.id, reason: result.reason, ...(result.fromDomain ? { fromDomain: result.fromDomain } : {}) }, 'not DKIM-signed');
        return this.envelope;
      }
      log.debug({ session: this.session, queueId: this.writer.id, domain: result.domain, selectors: result.selectors }, 'DKIM-signed');
      this.deps.onDkim?.(result.domain, 'signed');
      return { ...this.envelope, prepend: result.header };
    } catch (err) {
      const domain = err instanceof DkimSignError ? err.domain : undefined;
      log.error({ session: this.session, queueId: this.writer.id, domain, err: err instanceof Error ? err.message : String(err) }, 'DKIM signing failed: message refused (451), the client will retry');
      if (domain !== undefined) this.deps.onDkim?.(domain, 'failed');
      throw err;
    }
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
