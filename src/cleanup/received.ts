/**
 * @module cleanup/received
 * The one header Postwire adds: a `Received:` trace line (RFC 5321 §4.4) with the RFC 3848 /
 * RFC 6531 protocol name (ESMTPS / ESMTPSA … say TLS and AUTH), the TLS version and cipher in
 * a comment as Postfix writes it, the queue id, and `for <rcpt>` only when there is exactly one
 * recipient (more would disclose the envelope's Bcc). The AUTH identity is never written: the
 * header travels to the recipients. Pure: the time comes in as a number.
 *
 * Trust: the HELO name is client text, so anything outside printable ASCII (or UTF-8 when the
 * transaction is SMTPUTF8) is replaced, and CR/LF can never reach the header.
 */
import { rfc5322Date } from '../util/index.js';
export interface ReceivedFields {
  readonly helo: string;
  readonly clientIp: string;
  readonly hostname: string;
  readonly protocol: string;
  /** The session's TLS parameters, when it ran over TLS. */
  readonly tls?: { readonly version: string; readonly cipher: string };
  readonly queueId: string;
  /** The recipient for the `for` clause, or undefined to leave it out. */
  readonly forRecipient: string | undefined;
  readonly utf8: boolean;
  readonly nowMs: number;
}

export function formatReceived(f: ReceivedFields): string {
  const tls = f.tls === undefined ? '' : `\r\n\t(using ${clean(f.tls.version, false)} with cipher ${clean(f.tls.cipher, false)})`;
  const from = `from ${clean(f.helo || 'unknown', f.utf8)} (${ipLiteral(f.clientIp)})${tls}`;
  const by = `by ${f.hostname} (Postwire) with ${f.protocol} id ${f.queueId}`;
  const forClause = f.forRecipient === undefined ? '' : `\r\n\tfor <${clean(f.forRecipient, f.utf8)}>`;
  return `Received: ${from}\r\n\t${by}${forClause};\r\n\t${rfc5322Date(f.nowMs)}\r\n`;
}

/** `[192.0.2.1]` or `[IPv6:2001:db8::1]`; IPv4-mapped IPv6 is shown as IPv4. */
export function ipLiteral(ip: string): string {
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(ip);
  if (mapped) return `[${mapped[1]}]`;
  return ip.includes(':') ? `[IPv6:${ip}]` : `[${ip}]`;
}

function clean(text: string, utf8: boolean): string {
  const allowed = utf8 ? /[^\x21-\x7e\u0080-\u{10ffff}]/gu : /[^\x21-\x7e]/g;
  return text.replace(allowed, '?').replace(/[()<>\\]/g, '?').slice(0, 255);
}
