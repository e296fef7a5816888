/**
 * @module protocol/command
 * One SMTP command line ⇄ a typed Command (RFC 5321 §4.1, plus BDAT RFC 3030, STARTTLS RFC 3207,
 * AUTH RFC 4954). Parsing is table-driven: one small parser per verb, no string dispatch.
 *
 * Who calls it: smtpd/connection parses every line the LineReader frames and hands the result to
 * the server session; the delivery client renders its commands with formatCommand.
 *
 * Failure behaviour: parseCommand never throws; it returns `{ok: false, reply}` with the reply to
 * send, and the verb when it was recognised (so the session can count it against that verb):
 *   500 5.5.2 invalid UTF-8 or a control character    500 5.5.1 unknown verb
 *   501 5.5.4 missing, extra or malformed argument    501 5.1.7 / 5.1.3 bad reverse/forward path
 *   555 5.5.4 unknown MAIL/RCPT parameter             501 5.5.4 bad or repeated parameter value
 * formatCommand throws ProtocolError BAD_COMMAND if a field would put CR, LF or NUL on the wire:
 * that is command injection, a bug upstream, never something to send.
 *
 * Trust: the line is already framed (no CRLF) but otherwise untrusted. Real-client leniencies,
 * deliberately: spaces after `FROM:`/`TO:`, runs of spaces between arguments, trailing spaces.
 */
import { formatPath, isPostmaster, parseForwardPath, parseReversePath } from './address.js';
import { bdatCommand } from './dot.js';
import { formatMailParams, formatRcptParams, parseMailParams, parseRcptParams } from './params.js';
import { ProtocolError, reply } from './reply.js';
import type { Command, Reply, Verb } from './types.js';

export type ParseResult =
  | { readonly ok: true; readonly command: Command }
  | { readonly ok: false; readonly reply: Reply; readonly verb?: Verb };

type Parser = (arg: string) => Command | Reply;

const utf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });
const CONTROL = /[\x00-\x08\x0a-\x1f\x7f]/;
const MECHANISM = /^[A-Za-z0-9_-]{1,20}$/;
const BASE64 = /^(?:[A-Za-z0-9+/]+={0,2}|=)$/;

const badArg = (text: string): Reply => reply(501, '5.5.4', text);

const noArgument =
  (verb: 'DATA' | 'RSET' | 'QUIT' | 'STARTTLS'): Parser =>
  (arg) =>
    arg === '' ? { verb } : badArg(`${verb} takes no argument`);

const requiredArgument =
  (verb: 'VRFY' | 'EXPN'): Parser =>
  (arg) =>
    arg === '' ? badArg(`${verb} needs an argument`) : { verb, argument: arg };

const hello =
  (verb: 'EHLO' | 'HELO'): Parser =>
  (arg) =>
    arg === '' || arg.includes(' ') ? badArg(`${verb} needs exactly one domain or address literal`) : { verb, domain: arg };

const PARSERS: Readonly<Record<Verb, Parser>> = {
  EHLO: hello('EHLO'),
  HELO: hello('HELO'),
  MAIL: parseMail,
  RCPT: parseRcpt,
  DATA: noArgument('DATA'),
  BDAT: parseBdat,
  RSET: noArgument('RSET'),
  NOOP: () => ({ verb: 'NOOP' }),
  QUIT: noArgument('QUIT'),
  VRFY: requiredArgument('VRFY'),
  EXPN: requiredArgument('EXPN'),
  HELP: (arg) => ({ verb: 'HELP', argument: arg }),
  STARTTLS: noArgument('STARTTLS'),
  AUTH: parseAuth,
};

function isVerb(word: string): word is Verb {
  return Object.hasOwn(PARSERS, word);
}

export function parseCommand(line: Uint8Array | string): ParseResult {
  const text = decode(line);
  if (text === undefined) return { ok: false, reply: reply(500, '5.5.2', 'Invalid UTF-8 in command') };
  if (CONTROL.test(text)) return { ok: false, reply: reply(500, '5.5.2', 'Control character in command') };
  const space = text.indexOf(' ');
  const word = (space < 0 ? text : text.slice(0, space)).toUpperCase();
  if (!isVerb(word)) {
    return { ok: false, reply: reply(500, '5.5.1', word === '' ? 'Empty command' : 'Command unrecognized') };
  }
  const arg = space < 0 ? '' : text.slice(space + 1).replace(/^[ \t]+|[ \t]+$/g, '');
  const result = PARSERS[word](arg);
  return 'verb' in result ? { ok: true, command: result } : { ok: false, reply: result, verb: word };
}

function decode(line: Uint8Array | string): string | undefined {
  if (typeof line === 'string') return line;
  try {
    return utf8.decode(line);
  } catch {
    return undefined;
  }
}

/**
 * Splits `<path> params` at the `>` that closes the path, skipping any `>` inside a quoted local
 * part. Returns undefined when there is no closing bracket or no space before the parameters.
 */
function splitPath(text: string): { path: string; params: string } | undefined {
  let quoted = false;
  for (let i = 1; i < text.length; i++) {
    const c = text[i];
    if (c === '\\' && quoted) i++;
    else if (c === '"') quoted = !quoted;
    else if (c === '>' && !quoted) {
      const params = text.slice(i + 1);
      if (params !== '' && !params.startsWith(' ')) return undefined;
      return { path: text.slice(0, i + 1), params };
    }
  }
  return undefined;
}

/** `FROM:` / `TO:`, optional spaces, then `<…>`; undefined if the keyword is missing. */
function afterKeyword(arg: string, keyword: string): string | undefined {
  if (arg.slice(0, keyword.length).toUpperCase() !== keyword) return undefined;
  return arg.slice(keyword.length).replace(/^ +/, '');
}

function parseMail(arg: string): Command | Reply {
  const rest = afterKeyword(arg, 'FROM:');
  if (rest === undefined) return badArg('Syntax: MAIL FROM:<address> [parameters]');
  const split = rest.startsWith('<') ? splitPath(rest) : undefined;
  if (split === undefined) return reply(501, '5.1.7', 'Bad sender address syntax: use MAIL FROM:<address>');
  const from = parseReversePath(split.path);
  if (!from.ok) return reply(501, '5.1.7', `Bad sender address syntax: ${from.reason}`);
  const params = parseMailParams(split.params);
  if (!params.ok) return params.reply;
  return { verb: 'MAIL', from: from.path, params: params.params };
}

function parseRcpt(arg: string): Command | Reply {
  const rest = afterKeyword(arg, 'TO:');
  if (rest === undefined) return badArg('Syntax: RCPT TO:<address> [parameters]');
  const split = rest.startsWith('<') ? splitPath(rest) : undefined;
  if (split === undefined) return reply(501, '5.1.3', 'Bad recipient address syntax: use RCPT TO:<address>');
  const to = parseForwardPath(split.path);
  if (!to.ok) return reply(501, '5.1.3', `Bad recipient address syntax: ${to.reason}`);
  const params = parseRcptParams(split.params);
  if (!params.ok) return params.reply;
  return { verb: 'RCPT', to: to.path, params: params.params, postmaster: isPostmaster(to.path) };
}

function parseBdat(arg: string): Command | Reply {
  const m = /^(\d+)(?: +(LAST))?$/i.exec(arg);
  const size = m ? Number(m[1]) : NaN;
  if (!m || !Number.isSafeInteger(size)) return badArg('Syntax: BDAT <decimal size> [LAST]');
  return { verb: 'BDAT', size, last: m[2] !== undefined };
}

function parseAuth(arg: string): Command | Reply {
  const [mechanism = '', initialResponse, ...extra] = arg.split(/ +/);
  if (!MECHANISM.test(mechanism) || extra.length > 0) return badArg('Syntax: AUTH <mechanism> [initial-response]');
  if (initialResponse === undefined) return { verb: 'AUTH', mechanism: mechanism.toUpperCase() };
  // RFC 4954 §4: a response that is not base64 is 501 5.5.2, the same as in the exchange.
  if (!BASE64.test(initialResponse)) return reply(501, '5.5.2', 'AUTH initial response must be base64 or =');
  return { verb: 'AUTH', mechanism: mechanism.toUpperCase(), initialResponse };
}

/** The wire form of a command, CRLF included. */
export function formatCommand(command: Command): string {
  const text = commandText(command);
  if (/[\r\n\0]/.test(text)) throw new ProtocolError('BAD_COMMAND', `refusing to send ${command.verb} with CR, LF or NUL in it`);
  return `${text}\r\n`;
}

function commandText(c: Command): string {
  switch (c.verb) {
    case 'EHLO':
    case 'HELO':
      return `${c.verb} ${c.domain}`;
    case 'MAIL':
      return withParams(`MAIL FROM:${formatPath(c.from)}`, formatMailParams(c.params));
    case 'RCPT':
      return withParams(`RCPT TO:${formatPath(c.to)}`, formatRcptParams(c.params));
    case 'BDAT':
      return bdatCommand(c.size, c.last).slice(0, -2);
    case 'VRFY':
    case 'EXPN':
    case 'HELP':
      return withParams(c.verb, c.argument);
    case 'AUTH':
      return withParams(`AUTH ${c.mechanism}`, c.initialResponse ?? '');
    case 'DATA':
    case 'RSET':
    case 'NOOP':
    case 'QUIT':
    case 'STARTTLS':
      return c.verb;
  }
}

function withParams(head: string, params: string): string {
  return params === '' ? head : `${head} ${params}`;
}
