/**
 * @module cli/send
 * `postwire send [-f SENDER] [-t] [-i|-oi] [--server HOST:PORT] [--config FILE] [--] RCPT...`:
 * sendmail-compatible submission. Reads a message from stdin and submits it over SMTP to the
 * running relay, so applications that call sendmail can use Postwire unchanged.
 *
 * sendmail semantics kept: LF line ends become CRLF (CRLF stays CRLF); without -i / -oi a line
 * holding a single `.` ends the input (the rest is ignored), with them it is an ordinary line;
 * -t takes recipients from To, Cc and Bcc and removes the Bcc header; recipients named on the
 * command line are added to them (Postfix's behaviour); -f (or -r) sets the envelope sender, `<>`
 * or an empty value is the null sender; without -f the sender is $USER@<hostname>. The body is
 * sent as is (8-bit included, with BODY=8BITMIME when offered), dot-stuffed here.
 *
 * The server: --server, or else the first --listen address of the same configuration `serve`
 * reads (POSTWIRE_* environment and --config file), with a wildcard address (0.0.0.0, ::) taken
 * as loopback.
 *
 * All or nothing: a recipient refused stops the transaction before DATA, so either every
 * recipient got the message queued or none did, and the exit code says which.
 * Exit codes: 0 accepted (queued); 75 (EX_TEMPFAIL) a 4xx reply, try again later; 2 usage or
 * configuration error (including no recipients); 1 any other failure (a 5xx reply, no connection).
 */
import { hostname as osHostname, userInfo } from 'node:os';
import { formatHostPort, loadConfig, parseHostPort } from '../config/index.js';
import { EXIT_FAILURE, EXIT_OK, EXIT_USAGE, reportErrors, systemHostname, type CliIo } from './io.js';
import { submit } from './send-client.js';

/** sendmail's EX_TEMPFAIL (sysexits.h): a temporary failure, the caller should retry. */
export const EX_TEMPFAIL = 75;

export interface SendOptions {
  sender: string | undefined;
  fromHeaders: boolean;
  /** -i / -oi: a line with a single dot is not the end of input. */
  ignoreDots: boolean;
  server: string | undefined;
  config: string | undefined;
  recipients: string[];
}

const USAGE = 'usage: postwire send [-f SENDER] [-t] [-i|-oi] [--server HOST:PORT] [--config FILE] [--] RCPT...';

export function parseSendArgs(args: readonly string[]): SendOptions | { error: string } {
  const o: SendOptions = { sender: undefined, fromHeaders: false, ignoreDots: false, server: undefined, config: undefined, recipients: [] };
  for (let i = 0; i < args.length; i++) {
    const a = args[i] ?? '';
    const value = (name: string): string | { error: string } => {
      const v = args[++i];
      return v === undefined ? { error: `${name} needs a value` } : v;
    };
    if (a === '--') {
      o.recipients.push(...args.slice(i + 1));
      break;
    } else if (a === '-t') o.fromHeaders = true;
    else if (a === '-i' || a === '-oi') o.ignoreDots = true;
    else if (a === '-f' || a === '-r') {
      const v = value(a);
      if (typeof v !== 'string') return v;
      o.sender = v;
    } else if ((a.startsWith('-f') || a.startsWith('-r')) && !a.startsWith('--')) o.sender = a.slice(2);
    else if (a === '--server' || a === '--config') {
      const v = value(a);
      if (typeof v !== 'string') return v;
      if (a === '--server') o.server = v;
      else o.config = v;
    } else if (a.startsWith('--server=')) o.server = a.slice('--server='.length);
    else if (a.startsWith('--config=')) o.config = a.slice('--config='.length);
    else if (a.startsWith('-') && a !== '-') return { error: `unknown option ${a}` };
    else o.recipients.push(a);
  }
  return o;
}

/** stdin → CRLF lines; without ignoreDots, a lone `.` line ends the message. No stuffing yet. */
export function readMessage(input: Buffer, ignoreDots: boolean): Buffer[] {
  const lines: Buffer[] = [];
  let start = 0;
  while (start < input.length) {
    let end = input.indexOf(0x0a, start);
    const last = end < 0;
    if (last) end = input.length;
    let line = input.subarray(start, end);
    if (line.length > 0 && line[line.length - 1] === 0x0d) line = line.subarray(0, line.length - 1);
    if (!ignoreDots && line.length === 1 && line[0] === 0x2e) break;
    lines.push(line);
    start = end + 1;
  }
  return lines;
}

/** The header block's end: index of the first empty line, or lines.length when there is none. */
function headerEnd(lines: readonly Buffer[]): number {
  const i = lines.findIndex((l) => l.length === 0);
  return i < 0 ? lines.length : i;
}

/**
 * -t: recipients from To, Cc and Bcc (unfolded), and the lines without the Bcc field.
 * Addresses: `a@b`, `Name <a@b>`, `"Quoted, Name" <a@b>`, comments, and groups `g: a@b, c@d;`.
 */
export function recipientsFromHeaders(lines: readonly Buffer[]): { recipients: string[]; lines: Buffer[] } {
  const end = headerEnd(lines);
  const fields: Array<{ name: string; start: number; stop: number; value: string }> = [];
  for (let i = 0; i < end; i++) {
    const text = (lines[i] ?? Buffer.alloc(0)).toString('utf8');
    const folded = /^[ \t]/.test(text);
    const current = fields[fields.length - 1];
    if (folded && current) {
      current.stop = i + 1;
      current.value += ` ${text.trim()}`;
      continue;
    }
    const colon = text.indexOf(':');
    fields.push({ name: colon > 0 ? text.slice(0, colon).trim().toLowerCase() : '', start: i, stop: i + 1, value: colon > 0 ? text.slice(colon + 1) : '' });
  }
  const recipients = fields.filter((f) => ['to', 'cc', 'bcc'].includes(f.name)).flatMap((f) => parseAddressList(f.value));
  const drop = new Set(fields.filter((f) => f.name === 'bcc').flatMap((f) => Array.from({ length: f.stop - f.start }, (_, k) => f.start + k)));
  return { recipients, lines: lines.filter((_, i) => !drop.has(i)) };
}

export function parseAddressList(value: string): string[] {
  // Comments out (outside quotes), then split on commas outside quotes and angle brackets.
  let text = '';
  let depth = 0;
  let quoted = false;
  for (let i = 0; i < value.length; i++) {
    const c = value[i] ?? '';
    if (c === '\\' && (quoted || depth > 0)) {
      if (depth === 0) text += c + (value[i + 1] ?? '');
      i++;
      continue;
    }
    if (c === '"' && depth === 0) quoted = !quoted;
    if (!quoted && c === '(') depth++;
    else if (!quoted && c === ')' && depth > 0) depth--;
    else if (depth === 0) text += c;
  }
  const items: string[] = [];
  let item = '';
  let angle = false;
  quoted = false;
  for (const c of text) {
    if (c === '"') quoted = !quoted;
    if (!quoted && c === '<') angle = true;
    if (!quoted && c === '>') angle = false;
    if (!quoted && !angle && (c === ',' || c === ';')) {
      items.push(item);
      item = '';
      continue;
    }
    item += c;
  }
  items.push(item);
  const out: string[] = [];
  for (let raw of items) {
    raw = raw.trim();
    const bracket = /<([^>]*)>/.exec(raw);
    let address = bracket ? (bracket[1] ?? '') : raw;
    // A group's display name: `friends: a@b` → a@b.
    if (!bracket && /^[^"@]*:/.test(address)) address = address.slice(address.indexOf(':') + 1);
    address = address.trim();
    if (address.includes('@')) out.push(address);
  }
  return out;
}

/** CRLF every line, stuff leading dots, terminate with `.` CRLF. */
export function encodeData(lines: readonly Buffer[]): Buffer {
  const parts: Buffer[] = [];
  const CRLF = Buffer.from('\r\n');
  for (const line of lines) {
    if (line[0] === 0x2e) parts.push(Buffer.from('.'));
    parts.push(line, CRLF);
  }
  parts.push(Buffer.from('.\r\n'));
  return Buffer.concat(parts);
}

export async function runSend(args: readonly string[], io: CliIo): Promise<number> {
  if (args[0] === '--help' || args[0] === '-h') {
    io.stdout(`${USAGE}\n  -f, -r SENDER   envelope sender (<> for the null sender; default $USER@hostname)\n  -t              recipients from To, Cc and Bcc (Bcc is removed), added to those named\n  -i, -oi         a line holding only "." does not end the input\n  --server H:P    submit here instead of the configuration's first listen address\nExit codes: 0 queued, 75 temporary refusal (4xx), 1 permanent refusal (5xx) or no connection, 2 usage.\n`);
    return EXIT_OK;
  }
  const parsed = parseSendArgs(args);
  if ('error' in parsed) {
    io.stderr(`postwire send: ${parsed.error}\n${USAGE}\n`);
    return EXIT_USAGE;
  }
  const server = resolveServer(parsed, io);
  if ('errors' in server) return reportErrors(io, server.errors);
  if (io.readStdin === undefined) {
    io.stderr('postwire send: no standard input to read\n');
    return EXIT_FAILURE;
  }
  let lines = readMessage(await io.readStdin(), parsed.ignoreDots);
  const recipients = [...parsed.recipients];
  if (parsed.fromHeaders) {
    const fromHeaders = recipientsFromHeaders(lines);
    lines = fromHeaders.lines;
    for (const r of fromHeaders.recipients) if (!recipients.includes(r)) recipients.push(r);
  }
  if (recipients.length === 0) {
    io.stderr(`postwire send: no recipients${parsed.fromHeaders ? ' (none on the command line, none in To, Cc or Bcc)' : ' (name them, or use -t)'}\n${USAGE}\n`);
    return EXIT_USAGE;
  }
  const sender = parsed.sender === undefined ? defaultSender(io, server.helo) : parsed.sender === '<>' ? '' : parsed.sender.replace(/^<(.*)>$/, '$1');
  const data = encodeData(lines);
  const result = await submit({
    host: server.host,
    port: server.port,
    helo: server.helo,
    sender,
    recipients,
    data,
    eightBit: data.some((b) => b > 0x7f),
    utf8: [sender, ...recipients].some((a) => /[^\x00-\x7f]/.test(a)),
  });
  if (result.ok) return EXIT_OK;
  const { code, text } = result.reply;
  const reply = code === 0 ? text : `${code} ${text.replaceAll('\n', ' / ')}`;
  io.stderr(`postwire send: ${result.stage}: ${reply}; the message was not sent\n`);
  return code >= 400 && code < 500 ? EX_TEMPFAIL : EXIT_FAILURE;
}

function resolveServer(o: SendOptions, io: CliIo): { host: string; port: number; helo: string } | { errors: string[] } {
  if (o.server !== undefined) {
    const hp = parseHostPort(o.server, { portZero: false, ipOnly: false });
    if (!hp.ok) return { errors: [`send: --server: ${hp.reason}`] };
    return { ...hp.value, helo: systemHostname(io) };
  }
  const loaded = loadConfig({ argv: o.config === undefined ? [] : ['--config', o.config], env: io.env ?? {}, hostname: systemHostname(io) });
  if (!loaded.ok) return { errors: loaded.errors };
  const first = loaded.config.listen[0];
  if (first === undefined) return { errors: ['send: the configuration has no --listen address; use --server HOST:PORT'] };
  if (first.port === 0) return { errors: [`send: the configured listener ${formatHostPort(first)} has port 0; use --server HOST:PORT`] };
  const host = first.host === '0.0.0.0' ? '127.0.0.1' : first.host === '::' ? '::1' : first.host;
  return { host, port: first.port, helo: loaded.config.hostname };
}

function defaultSender(io: CliIo, host: string): string {
  const user = io.env?.['USER'] ?? io.env?.['LOGNAME'] ?? safeUser();
  return `${user}@${host.replace(/^\[|\]$/g, '') || osHostname()}`;
}

function safeUser(): string {
  try {
    return userInfo().username;
  } catch {
    return 'postwire';
  }
}
