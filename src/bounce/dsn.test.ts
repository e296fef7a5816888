/**
 * @module bounce/dsn.test
 * What a DSN must be, checked by taking it apart again with a small MIME reader written here
 * (independent of dsn.ts): headers, boundaries, part types, the RFC 3464 fields per message and
 * per recipient, the remote reply verbatim (human part exact, Diagnostic-Code unfolded), NOTIFY
 * and null-sender rules, RET=FULL/HDRS, ENVID/ORCPT, the RFC 6533 forms for UTF-8 recipients on
 * an ASCII path and the global types for a UTF-8 sender.
 *
 * fast-check drives arbitrary replies, reasons, addresses and ORCPTs (controls, UTF-8, runs
 * longer than the line limit) and asserts every generated line ends in CRLF and stays within
 * 998 octets, and that the ASCII path stays ASCII. nodemailer's header helpers (a
 * devDependency; the test skips if it is absent) re-read Content-Type and the addresses; no full
 * MIME parser is installed (mailparser is not a dependency).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Buffer } from 'node:buffer';
import fc from 'fast-check';
import { decodeUtf8AddrXtext } from '../protocol/index.js';
import { buildDsn, planDsn, shouldNotify, streamDsn } from './index.js';
import type { Dsn, DsnInput, DsnRecipient } from './index.js';

// ---------------------------------------------------------------------------------------------
// A small MIME reader, enough to take a DSN apart again. Deliberately independent of dsn.ts.

interface Entity {
  readonly headers: ReadonlyArray<readonly [string, string]>;
  readonly body: Buffer;
}

function header(e: Entity, name: string): string | undefined {
  return e.headers.find(([n]) => n.toLowerCase() === name.toLowerCase())?.[1];
}

function headersAll(e: Entity, name: string): string[] {
  return e.headers.filter(([n]) => n.toLowerCase() === name.toLowerCase()).map(([, v]) => v);
}

/** Header section (unfolded: CRLF before WSP removed) and body. */
function parseEntity(bytes: Buffer): Entity {
  let end = bytes.indexOf('\r\n\r\n');
  let bodyStart: number;
  if (bytes.subarray(0, 2).toString('latin1') === '\r\n') {
    end = 0;
    bodyStart = 2;
  } else if (end < 0) {
    end = bytes.length;
    bodyStart = bytes.length;
  } else {
    bodyStart = end + 4;
  }
  const text = bytes.subarray(0, end).toString('utf8');
  const headers: Array<[string, string]> = [];
  for (const line of text.split('\r\n')) {
    if (line === '') continue;
    if (/^[ \t]/.test(line)) {
      const last = headers[headers.length - 1];
      assert.ok(last, `continuation line first: ${line}`);
      last[1] += line;
      continue;
    }
    const colon = line.indexOf(':');
    assert.ok(colon > 0, `not a header field: ${JSON.stringify(line)}`);
    headers.push([line.slice(0, colon), line.slice(colon + 1)]);
  }
  return { headers: headers.map(([n, v]) => [n, v.trim()] as const), body: bytes.subarray(bodyStart) };
}

function param(value: string, name: string): string | undefined {
  const m = new RegExp(`;\\s*${name}=(?:"([^"]*)"|([^;\\s]+))`, 'i').exec(value);
  return m ? (m[1] ?? m[2]) : undefined;
}

/** RFC 2046 §5.1.1: parts between `CRLF--boundary` delimiters, the close is `--boundary--`. */
function splitMultipart(body: Buffer, boundary: string): Buffer[] {
  const text = Buffer.concat([Buffer.from('\r\n'), body]);
  const delim = Buffer.from(`\r\n--${boundary}`);
  const starts: number[] = [];
  for (let at = text.indexOf(delim); at >= 0; at = text.indexOf(delim, at + 1)) {
    const after = text.subarray(at + delim.length, at + delim.length + 2).toString('latin1');
    if (after === '\r\n' || after === '--') starts.push(at);
  }
  const parts: Buffer[] = [];
  let closed = false;
  for (let i = 0; i < starts.length; i++) {
    const at = starts[i] ?? 0;
    const close = text.subarray(at + delim.length, at + delim.length + 2).toString('latin1') === '--';
    if (close) {
      closed = true;
      break;
    }
    const next = starts[i + 1] ?? text.length;
    parts.push(text.subarray(at + delim.length + 2, next));
  }
  assert.ok(closed, 'multipart has a closing delimiter');
  return parts;
}

function qpDecode(text: string): string {
  const joined = text.replace(/=\r\n/g, '');
  const bytes: number[] = [];
  for (let i = 0; i < joined.length; i++) {
    const c = joined[i] ?? '';
    if (c === '=' && /^[0-9A-F]{2}$/.test(joined.slice(i + 1, i + 3))) {
      bytes.push(parseInt(joined.slice(i + 1, i + 3), 16));
      i += 2;
    } else {
      bytes.push(...Buffer.from(c, 'utf8'));
    }
  }
  return Buffer.from(bytes).toString('utf8');
}

function decodedText(part: Entity): string {
  const cte = (header(part, 'Content-Transfer-Encoding') ?? '7bit').toLowerCase();
  return cte === 'quoted-printable' ? qpDecode(part.body.toString('latin1')) : part.body.toString('utf8');
}

/** Blocks of fields separated by empty lines (RFC 3464 §2.1), each unfolded. */
function statusBlocks(part: Entity): Entity[] {
  return part.body
    .toString('utf8')
    .split(/\r\n\r\n/)
    .filter((b) => b.trim() !== '')
    .map((b) => parseEntity(Buffer.from(`${b}\r\n\r\n`)));
}

interface Parsed {
  readonly top: Entity;
  readonly boundary: string;
  readonly parts: Entity[];
  readonly text: string;
  readonly perMessage: Entity;
  readonly perRecipient: Entity[];
  readonly original: Entity;
  readonly raw: Buffer;
}

async function collect(iter: AsyncIterable<Uint8Array>): Promise<Buffer> {
  const out: Buffer[] = [];
  for await (const chunk of iter) out.push(Buffer.from(chunk));
  return Buffer.concat(out);
}

async function* once(bytes: Buffer): AsyncGenerator<Uint8Array> {
  yield bytes;
}

async function render(dsn: Dsn, original: Buffer = ORIGINAL): Promise<Buffer> {
  return collect(streamDsn(dsn, once(original)));
}

function parseDsn(raw: Buffer): Parsed {
  const top = parseEntity(raw);
  const ct = header(top, 'Content-Type') ?? '';
  assert.match(ct, /^multipart\/report;/);
  const boundary = param(ct, 'boundary');
  assert.ok(boundary !== undefined, 'boundary parameter');
  const parts = splitMultipart(top.body, boundary).map(parseEntity);
  assert.equal(parts.length, 3, 'three parts');
  const [textPart, statusPart, original] = parts as [Entity, Entity, Entity];
  const blocks = statusBlocks(statusPart);
  assert.ok(blocks.length >= 2, 'per-message block and at least one recipient block');
  return {
    top,
    boundary,
    parts,
    text: decodedText(textPart),
    perMessage: blocks[0] as Entity,
    perRecipient: blocks.slice(1),
    original,
    raw,
  };
}

// ---------------------------------------------------------------------------------------------
// Fixtures.

const ORIGINAL_HEADERS = 'Received: from client.example.org\r\n\tby mta.example.net; Thu, 13 Feb 2025 09:05:00 +0000\r\nFrom: Alice <alice@example.org>\r\nTo: bob@example.com\r\nSubject: lunch\r\nMessage-ID: <m1@example.org>\r\n';
const ORIGINAL = Buffer.from(`${ORIGINAL_HEADERS}\r\nAre we still on for lunch?\r\n.dot line\r\n`);

const T0 = Date.UTC(2025, 1, 13, 9, 5, 0);
const REPLY_550 = '550-5.1.1 The email account that you tried to reach does not exist. Please try\n550-5.1.1 double-checking the recipient\'s email address for typos or\n550 5.1.1 unnecessary spaces. https://support.example.com/mail/?p=NoSuchUser x1si';

function input(over: Partial<DsnInput> = {}, envelope: Partial<DsnInput['envelope']> = {}): DsnInput {
  return {
    reportingMta: 'mta.example.net',
    queueId: '01JKQ3ZXM2',
    arrivalDate: T0,
    now: T0 + 3_600_000,
    messageIdDomain: 'mta.example.net',
    envelope: { sender: 'alice@example.org', smtputf8: false, body: '7BIT', ...envelope },
    recipients: [
      {
        address: 'bob@example.com',
        action: 'failed',
        status: '5.1.1',
        remoteMta: 'dns; mx.example.com',
        diagnosticCode: REPLY_550,
        lastAttemptDate: T0 + 60_000,
      },
    ],
    ...over,
  };
}

function built(i: DsnInput): Dsn {
  const dsn = buildDsn(i);
  assert.ok(dsn, 'a DSN is built');
  return dsn;
}

function rcpt(over: Partial<DsnRecipient> & Pick<DsnRecipient, 'address'>): DsnRecipient {
  return { action: 'failed', status: '5.0.0', ...over };
}

// ---------------------------------------------------------------------------------------------

test('structure: multipart/report with text, delivery-status and the original headers', async () => {
  const dsn = built(input());
  assert.equal(dsn.sender, '');
  assert.equal(dsn.recipient, 'alice@example.org');
  assert.equal(dsn.includeOriginal, 'headers');
  assert.equal(dsn.kind, 'failure');
  assert.equal(dsn.smtputf8, false);
  assert.equal(dsn.body, '7BIT');
  const p = parseDsn(await render(dsn));

  assert.equal(header(p.top, 'From'), 'Mail Delivery System <MAILER-DAEMON@mta.example.net>');
  assert.equal(header(p.top, 'To'), '<alice@example.org>');
  assert.equal(header(p.top, 'Subject'), 'Undelivered Mail Returned to Sender');
  assert.equal(header(p.top, 'Date'), 'Thu, 13 Feb 2025 10:05:00 +0000');
  assert.match(header(p.top, 'Message-ID') ?? '', /^<[^<>@\s]+@mta\.example\.net>$/);
  assert.equal(header(p.top, 'Message-ID'), dsn.messageId);
  assert.equal(header(p.top, 'Auto-Submitted'), 'auto-replied');
  assert.equal(header(p.top, 'MIME-Version'), '1.0');
  assert.equal(param(header(p.top, 'Content-Type') ?? '', 'report-type'), 'delivery-status');
  assert.match(p.boundary, /^=_/, 'boundary starts with =_ (impossible in QP and base64 text)');
  for (const name of ['From', 'To', 'Subject', 'Date', 'Message-ID', 'MIME-Version', 'Content-Type']) {
    assert.equal(headersAll(p.top, name).length, 1, `exactly one ${name}`);
  }

  const [text, status, original] = p.parts as [Entity, Entity, Entity];
  assert.match(header(text, 'Content-Type') ?? '', /^text\/plain; charset=us-ascii$/);
  assert.equal(header(status, 'Content-Type'), 'message/delivery-status');
  assert.equal(header(original, 'Content-Type'), 'text/rfc822-headers');
  assert.equal(original.body.toString('utf8'), ORIGINAL_HEADERS, 'exactly the header section, nothing of the body');

  assert.equal(header(p.perMessage, 'Reporting-MTA'), 'dns; mta.example.net');
  assert.equal(header(p.perMessage, 'Arrival-Date'), 'Thu, 13 Feb 2025 09:05:00 +0000');
  assert.equal(header(p.perMessage, 'X-Postwire-Queue-ID'), '01JKQ3ZXM2');
  assert.equal(header(p.perMessage, 'Original-Envelope-Id'), undefined, 'no ENVID, no field (RFC 3464 §2.2.1)');
  assert.equal(p.perRecipient.length, 1);
  const r = p.perRecipient[0] as Entity;
  assert.equal(header(r, 'Final-Recipient'), 'rfc822;bob@example.com');
  assert.equal(header(r, 'Original-Recipient'), undefined);
  assert.equal(header(r, 'Action'), 'failed');
  assert.equal(header(r, 'Status'), '5.1.1');
  assert.equal(header(r, 'Remote-MTA'), 'dns; mx.example.com');
  assert.match(header(r, 'Diagnostic-Code') ?? '', /^smtp; 550-5\.1\.1 /);
  assert.equal(header(r, 'Last-Attempt-Date'), 'Thu, 13 Feb 2025 09:06:00 +0000');
  assert.equal(header(r, 'Will-Retry-Until'), undefined, 'only for delayed recipients (RFC 3464 §2.3.8)');
  assert.match(p.text, /<bob@example\.com>: delivery failed permanently \(status 5\.1\.1\)/);
});

test('the remote reply is quoted verbatim, multi-line included', async () => {
  const p = parseDsn(await render(built(input())));
  for (const line of REPLY_550.split('\n')) {
    assert.ok(p.text.includes(`\r\n        ${line}\r\n`), `human part quotes: ${line}`);
  }
  const diag = header(p.perRecipient[0] as Entity, 'Diagnostic-Code') ?? '';
  // Each reply line begins a folded line; unfolding joins them with one space.
  assert.equal(diag, `smtp; ${REPLY_550.split('\n').join(' ')}`);
  const rawStatus = p.raw.toString('utf8');
  for (const line of REPLY_550.split('\n').slice(1)) assert.ok(rawStatus.includes(`\r\n ${line.split(' ')[0]}`), 'reply line starts a folded line');
});

test('the operator reason is shown in the human part', async () => {
  const p = parseDsn(await render(built(input({ reason: 'Bounced by the postmaster:\nspam run from a compromised account' }))));
  assert.ok(p.text.includes('    Bounced by the postmaster:\r\n    spam run from a compromised account\r\n'));
});

test('NOTIFY=NEVER: no DSN; NEVER on one recipient leaves the others', () => {
  const never = input({ recipients: [rcpt({ address: 'bob@example.com', notify: 'NEVER' })] });
  assert.equal(buildDsn(never), undefined);
  assert.deepEqual(planDsn(never), { send: false, reason: 'nothing-to-report' });
  const mixed = input({
    recipients: [rcpt({ address: 'bob@example.com', notify: 'NEVER' }), rcpt({ address: 'carol@example.com' })],
  });
  assert.deepEqual(built(mixed).reported, ['carol@example.com']);
});

test('null sender: no DSN, ever (nothing bounces a bounce)', () => {
  const i = input({}, { sender: '' });
  assert.equal(buildDsn(i), undefined);
  assert.deepEqual(planDsn(i), { send: false, reason: 'null-sender' });
  const withSuccess = input({ recipients: [rcpt({ address: 'b@example.com', notify: ['SUCCESS', 'FAILURE', 'DELAY'] })] }, { sender: '' });
  assert.equal(buildDsn(withSuccess), undefined);
});

test('NOTIFY rules: FAILURE and DELAY by default, SUCCESS only when asked, NEVER never', () => {
  const cases: Array<[Parameters<typeof shouldNotify>[0], Parameters<typeof shouldNotify>[1], boolean]> = [
    [undefined, 'failed', true],
    [undefined, 'delayed', true],
    [undefined, 'delivered', false],
    [undefined, 'relayed', false],
    [undefined, 'expanded', false],
    [['FAILURE'], 'failed', true],
    [['FAILURE'], 'delayed', false],
    [['DELAY'], 'delayed', true],
    [['DELAY'], 'failed', false],
    [['SUCCESS'], 'delivered', true],
    [['SUCCESS'], 'relayed', true],
    [['SUCCESS'], 'expanded', true],
    [['SUCCESS'], 'failed', false],
    [['FAILURE', 'DELAY'], 'delivered', false],
    ['NEVER', 'failed', false],
    ['NEVER', 'delayed', false],
    ['NEVER', 'delivered', false],
  ];
  for (const [notify, action, want] of cases) {
    assert.equal(shouldNotify(notify, action), want, `${JSON.stringify(notify)} ${action}`);
  }
});

test('DELAY: a delay report only when NOTIFY allows it, with Will-Retry-Until', async () => {
  const delayed = (notify?: DsnRecipient['notify']): DsnInput =>
    input({
      recipients: [
        {
          address: 'bob@example.com',
          action: 'delayed',
          status: '4.4.1',
          diagnosticCode: 'connect to mx.example.com[192.0.2.1]:25: Connection timed out',
          willRetryUntil: T0 + 5 * 86_400_000,
          lastAttemptDate: T0 + 3_500_000,
          ...(notify === undefined ? {} : { notify }),
        },
      ],
    });
  assert.equal(buildDsn(delayed(['FAILURE'])), undefined);
  assert.equal(buildDsn(delayed(['SUCCESS', 'FAILURE'])), undefined);
  const dsn = built(delayed(['DELAY']));
  assert.equal(dsn.kind, 'delay');
  assert.ok(buildDsn(delayed()), 'the default allows delay reports');
  const p = parseDsn(await render(dsn));
  assert.equal(header(p.top, 'Subject'), 'Delayed Mail (still being retried)');
  const r = p.perRecipient[0] as Entity;
  assert.equal(header(r, 'Action'), 'delayed');
  assert.equal(header(r, 'Status'), '4.4.1');
  assert.equal(header(r, 'Will-Retry-Until'), 'Tue, 18 Feb 2025 09:05:00 +0000');
  assert.match(p.text, /still being retried/);
});

test('RET=FULL returns the whole message as message/rfc822; HDRS and the default only headers', async () => {
  const full = built(input({}, { dsnRet: 'FULL' }));
  assert.equal(full.includeOriginal, 'full');
  const pf = parseDsn(await render(full));
  assert.equal(header(pf.original, 'Content-Type'), 'message/rfc822');
  assert.equal(pf.original.body.toString('utf8'), ORIGINAL.toString('utf8'), 'the original, byte for byte');
  assert.match(pf.text, /Your message is attached\./);

  for (const ret of ['HDRS', undefined] as const) {
    const dsn = built(input({}, ret === undefined ? {} : { dsnRet: ret }));
    assert.equal(dsn.includeOriginal, 'headers');
    const p = parseDsn(await render(dsn));
    assert.equal(header(p.original, 'Content-Type'), 'text/rfc822-headers');
    assert.equal(p.original.body.toString('utf8'), ORIGINAL_HEADERS);
  }

  // RET is about failure reports: a delay warning carries headers only.
  const delay = built(input({ recipients: [rcpt({ address: 'b@example.com', action: 'delayed', status: '4.4.1' })] }, { dsnRet: 'FULL' }));
  assert.equal(delay.includeOriginal, 'headers');
  // A BINARYMIME original cannot travel as message/rfc822: headers, and the text says why.
  const binary = built(input({}, { dsnRet: 'FULL', body: 'BINARYMIME' }));
  assert.equal(binary.includeOriginal, 'headers');
  assert.match(parseDsn(await render(binary)).text, /BINARYMIME/);
});

test('8-bit originals are labelled 8bit and make the DSN BODY=8BITMIME', async () => {
  const dsn = built(input({}, { body: '8BITMIME', dsnRet: 'FULL' }));
  assert.equal(dsn.body, '8BITMIME');
  const p = parseDsn(await render(dsn, Buffer.from('Subject: caf\u00e9\r\n\r\nna\u00efve\r\n')));
  assert.equal(header(p.original, 'Content-Transfer-Encoding'), '8bit');
  assert.equal(header(p.top, 'Content-Transfer-Encoding'), '8bit');
  const seven = parseDsn(await render(built(input())));
  assert.equal(header(seven.original, 'Content-Transfer-Encoding'), '7bit');
  assert.equal(header(seven.top, 'Content-Transfer-Encoding'), '7bit');
});

test('ENVID and ORCPT round-trip into Original-Envelope-Id and Original-Recipient', async () => {
  const dsn = built(
    input(
      {
        recipients: [
          rcpt({ address: 'list-member@example.com', orcpt: 'rfc822;list@example.org', status: '5.2.2' }),
          rcpt({ address: 'plus@example.com', orcpt: 'rfc822;a+tag=x@example.org' }),
          rcpt({ address: 'u1@example.jp', orcpt: 'utf-8;u1@例え.jp' }),
          rcpt({ address: 'u2@example.jp', orcpt: 'utf-8;u2@\\x{4F8B}\\x{3048}.jp' }),
          rcpt({ address: 'x4@example.com', orcpt: 'x400;/G=Bob/S=Smith/O=Example/' }),
        ],
      },
      { dsnEnvid: 'QQ314159 batch 7' },
    ),
  );
  const p = parseDsn(await render(dsn));
  assert.equal(header(p.perMessage, 'Original-Envelope-Id'), 'QQ314159 batch 7');
  const orig = p.perRecipient.map((r) => header(r, 'Original-Recipient'));
  assert.deepEqual(orig, [
    'rfc822;list@example.org',
    'rfc822;a+tag=x@example.org',
    'utf-8;u1@\\x{4F8B}\\x{3048}.jp',
    'utf-8;u2@\\x{4F8B}\\x{3048}.jp',
    'x400;/G=Bob/S=Smith/O=Example/',
  ]);
  assert.equal(decodeUtf8AddrXtext((orig[2] ?? '').slice('utf-8;'.length)), 'u1@例え.jp');
  assert.match(p.text, /\(originally addressed to list@example\.org\)/);
  // An ENVID that is not printable ASCII goes back to xtext rather than break the field.
  const odd = parseDsn(await render(built(input({}, { dsnEnvid: 'id\r\nX-Injected: 1' }))));
  assert.equal(header(odd.perMessage, 'Original-Envelope-Id'), 'id+0D+0AX-Injected:+201');
  assert.equal(header(odd.perMessage, 'X-Injected'), undefined);
});

test('UTF-8 recipient to an ASCII sender: an all-ASCII DSN with RFC 6533 forms, QP text', async () => {
  const dsn = built(
    input(
      {
        recipients: [
          rcpt({
            address: 'jürgen@bücher.example',
            orcpt: 'utf-8;jürgen@bücher.example',
            status: '5.1.1',
            remoteMta: 'dns; mx.bücher.example',
            diagnosticCode: '550 5.1.1 <jürgen@bücher.example>: Empfänger unbekannt',
          }),
        ],
      },
      { smtputf8: true, body: '8BITMIME' },
    ),
  );
  assert.equal(dsn.smtputf8, false, 'the DSN itself needs no SMTPUTF8');
  // Every line we generate is ASCII; the returned original is the sender's own bytes.
  const generated = Buffer.concat([dsn.head, dsn.tail]);
  assert.ok(generated.every((b) => b < 0x80), 'head and tail are pure ASCII');
  const p = parseDsn(await render(dsn, Buffer.from('Subject: Grüße\r\n\r\nHallo\r\n')));
  assert.equal(header(p.top, 'Content-Type')?.includes('report-type=delivery-status'), true);
  const [text, status, original] = p.parts as [Entity, Entity, Entity];
  assert.equal(header(text, 'Content-Transfer-Encoding'), 'quoted-printable');
  assert.match(header(text, 'Content-Type') ?? '', /charset=utf-8/);
  assert.equal(header(status, 'Content-Type'), 'message/delivery-status');
  assert.equal(header(original, 'Content-Type'), 'message/global-headers', 'SMTPUTF8 headers (RFC 6533 §6.3)');
  const r = p.perRecipient[0] as Entity;
  assert.equal(header(r, 'Final-Recipient'), 'utf-8;j\\x{FC}rgen@b\\x{FC}cher.example');
  assert.equal(header(r, 'Original-Recipient'), 'utf-8;j\\x{FC}rgen@b\\x{FC}cher.example');
  assert.equal(decodeUtf8AddrXtext((header(r, 'Final-Recipient') ?? '').slice(6)), 'jürgen@bücher.example');
  assert.equal(header(r, 'Diagnostic-Code'), 'smtp; 550 5.1.1 <j\\x{FC}rgen@b\\x{FC}cher.example>: Empf\\x{E4}nger unbekannt');
  assert.ok(p.text.includes('<jürgen@bücher.example>: delivery failed'), 'the human part has the real address');
  assert.ok(p.text.includes('        550 5.1.1 <jürgen@bücher.example>: Empfänger unbekannt\r\n'), 'and the reply verbatim');
});

test('UTF-8 sender: the DSN needs SMTPUTF8 and uses the global types (RFC 6533 §6)', async () => {
  const dsn = built(
    input(
      { recipients: [rcpt({ address: '用户@example.net', status: '5.1.1', diagnosticCode: '550 5.1.1 用户不存在' })] },
      { sender: 'jürgen@example.org', smtputf8: true, body: '8BITMIME', dsnRet: 'FULL' },
    ),
  );
  assert.equal(dsn.smtputf8, true);
  assert.equal(dsn.recipient, 'jürgen@example.org');
  const p = parseDsn(await render(dsn, Buffer.from('From: jürgen@example.org\r\nSubject: Grüße\r\n\r\nHallo\r\n')));
  assert.equal(header(p.top, 'To'), '<jürgen@example.org>');
  assert.equal(param(header(p.top, 'Content-Type') ?? '', 'report-type'), 'global-delivery-status');
  const [text, status, original] = p.parts as [Entity, Entity, Entity];
  assert.equal(header(text, 'Content-Transfer-Encoding'), '8bit');
  assert.equal(header(status, 'Content-Type'), 'message/global-delivery-status');
  assert.equal(header(original, 'Content-Type'), 'message/global');
  const r = p.perRecipient[0] as Entity;
  assert.equal(header(r, 'Final-Recipient'), 'utf-8;用户@example.net');
  assert.equal(header(r, 'Diagnostic-Code'), 'smtp; 550 5.1.1 用户不存在');
});

test('mixed outcomes: one report lists failed and delayed recipients; success reports need SUCCESS', async () => {
  const dsn = built(
    input({
      recipients: [
        rcpt({ address: 'a@example.com', status: '5.1.1' }),
        rcpt({ address: 'b@example.com', action: 'delayed', status: '4.2.2' }),
        rcpt({ address: 'c@example.com', action: 'delivered', status: '2.0.0' }),
        rcpt({ address: 'd@example.com', action: 'relayed', status: '2.0.0', notify: ['SUCCESS'] }),
      ],
    }),
  );
  assert.equal(dsn.kind, 'failure');
  assert.deepEqual(dsn.reported, ['a@example.com', 'b@example.com', 'd@example.com']);
  const p = parseDsn(await render(dsn));
  assert.deepEqual(p.perRecipient.map((r) => header(r, 'Action')), ['failed', 'delayed', 'relayed']);
  const success = built(input({ recipients: [rcpt({ address: 'c@example.com', action: 'delivered', status: '2.0.0', notify: ['SUCCESS'] })] }));
  assert.equal(success.kind, 'success');
  assert.equal(header(parseDsn(await render(success)).top, 'Subject'), 'Successful Mail Delivery Report');
  // A malformed status is replaced by the action's generic code rather than passed on.
  const odd = parseDsn(await render(built(input({ recipients: [rcpt({ address: 'a@example.com', status: 'bogus\r\nX: y' })] }))));
  assert.equal(header(odd.perRecipient[0] as Entity, 'Status'), '5.0.0');
});

test('deterministic: same input, same bytes; the boundary moves when a reply quotes it', () => {
  const a = built(input());
  const b = built(input());
  assert.deepEqual(a.head, b.head);
  assert.deepEqual(a.tail, b.tail);
  const boundary = /boundary="([^"]+)"/.exec(a.head.toString('latin1'))?.[1] ?? '';
  assert.notEqual(boundary, '');
  const later = built(input({ now: T0 + 3_600_001 }));
  assert.ok(!later.head.includes(boundary), 'another time, another boundary');
  const hostile = built(input({ recipients: [rcpt({ address: 'x@example.com', diagnosticCode: `550 no\n--${boundary}\n--${boundary}--` })] }));
  assert.ok(!hostile.tail.includes(boundary), 'a boundary quoted by the remote reply is not used');
  assert.ok(hostile.head.includes(`--${boundary}`), 'the quote is still there, verbatim');
});

test('long diagnostic tokens are folded or hard-broken, never over 998 octets', async () => {
  const long = `550 ${'x'.repeat(3000)} ${'word '.repeat(400)}`;
  const p = parseDsn(await render(built(input({ recipients: [rcpt({ address: 'a@example.com', diagnosticCode: long })] }))));
  assertLines(Buffer.concat([p.raw]));
  const diag = header(p.perRecipient[0] as Entity, 'Diagnostic-Code') ?? '';
  assert.equal(diag.replace(/ /g, ''), `smtp;${long.replace(/ /g, '')}`, 'nothing lost but spaces');
  assert.ok(p.text.includes(`        ${long.trimEnd()}`) || p.text.includes(`        ${long}`), 'the human part keeps it whole');
});

/** Every line ends with CRLF (no bare CR or LF) and is at most 998 octets. */
function assertLines(bytes: Buffer): void {
  let lineStart = 0;
  for (let i = 0; i < bytes.length; i++) {
    const b = bytes[i];
    if (b === 0x0d) {
      assert.equal(bytes[i + 1], 0x0a, `bare CR at ${i}`);
      assert.ok(i - lineStart <= 998, `line of ${i - lineStart} octets at ${lineStart}`);
      i++;
      lineStart = i + 1;
    } else if (b === 0x0a) {
      assert.fail(`bare LF at ${i}`);
    }
  }
  assert.equal(lineStart, bytes.length, 'ends with CRLF');
}

const anyText = fc.string({ unit: 'binary', maxLength: 1500 });
const lineyText = fc.array(fc.oneof(fc.string({ unit: 'grapheme', maxLength: 200 }), fc.constantFrom('\r', '\n', '\r\n', ' ', '\t', '\x00', 'ü', '--=_')), { maxLength: 60 }).map((a) => a.join(''));
/** Runs with no white space around the folding limits: only a hard break can keep them legal. */
const longToken = fc.tuple(fc.integer({ min: 960, max: 2100 }), fc.constantFrom('x', 'é', '語')).map(([n, c]) => c.repeat(n));
const address = fc.oneof(
  longToken.map((t) => `${t}@example.com`),
  fc.emailAddress(),
  fc.tuple(fc.string({ unit: 'grapheme', minLength: 1, maxLength: 64 }), fc.domain()).map(([l, d]) => `${l}@${d}`),
  fc.string({ unit: 'binary', minLength: 1, maxLength: 1200 }),
);

test('fast-check: every generated line is CRLF-terminated and ≤ 998 octets; the report always parses', async () => {
  await fc.assert(
    fc.asyncProperty(
      fc.record({
        diag: fc.oneof(anyText, lineyText, longToken.map((t) => `550 ${t}`)),
        reason: fc.option(fc.oneof(anyText, lineyText), { nil: undefined }),
        rcpt: address,
        orcpt: fc.option(fc.tuple(fc.constantFrom('rfc822', 'utf-8', 'x400', ''), address).map(([t, a]) => `${t};${a}`), { nil: undefined }),
        sender: address,
        remoteMta: fc.option(anyText, { nil: undefined }),
        envid: fc.option(anyText, { nil: undefined }),
        smtputf8: fc.boolean(),
        action: fc.constantFrom('failed', 'delayed') as fc.Arbitrary<'failed' | 'delayed'>,
        ret: fc.constantFrom('FULL', 'HDRS', undefined),
      }),
      async (v) => {
        const dsn = buildDsn(
          input(
            {
              ...(v.reason === undefined ? {} : { reason: v.reason }),
              recipients: [
                {
                  address: v.rcpt,
                  action: v.action,
                  status: v.action === 'failed' ? '5.1.1' : '4.4.1',
                  diagnosticCode: v.diag,
                  ...(v.orcpt === undefined ? {} : { orcpt: v.orcpt }),
                  ...(v.remoteMta === undefined ? {} : { remoteMta: v.remoteMta }),
                  willRetryUntil: T0 + 86_400_000,
                },
              ],
            },
            { sender: v.sender, smtputf8: v.smtputf8, ...(v.envid === undefined ? {} : { dsnEnvid: v.envid }), ...(v.ret === undefined ? {} : { dsnRet: v.ret }) },
          ),
        );
        assert.ok(dsn);
        assertLines(dsn.head);
        assertLines(dsn.tail.subarray(2));
        if (!dsn.smtputf8) assert.ok(Buffer.concat([dsn.head, dsn.tail]).every((b) => b < 0x80), 'ASCII DSN stays ASCII');
        const p = parseDsn(await render(dsn));
        const r = p.perRecipient[0] as Entity;
        assert.equal(header(r, 'Action'), v.action);
        assert.ok(header(r, 'Final-Recipient') !== undefined);
        // The human part quotes every reply line exactly (QP keeps even stray CRs and NULs).
        const lines = v.diag.split(/\r?\n/);
        if (lines.length > 1 && lines[lines.length - 1] === '') lines.pop();
        if (v.diag !== '') for (const line of lines) assert.ok(p.text.includes(`        ${line}\r\n`), `quoted: ${JSON.stringify(line)}`);
      },
    ),
    { numRuns: 300 },
  );
});

test("nodemailer's header parsers read the report's headers", async (t) => {
  // nodemailer ships no full MIME parser (mailparser is separate and not installed); its header
  // helpers still check our Content-Type parameters and address syntax independently.
  const funcsSpec = 'nodemailer/lib/mime-funcs';
  const addrSpec = 'nodemailer/lib/addressparser';
  let funcs: { parseHeaderValue(s: string): { value: string; params: Record<string, string> } };
  let addressparser: (s: string) => Array<{ name: string; address?: string }>;
  try {
    funcs = (await import(funcsSpec)) as typeof funcs;
    const mod = (await import(addrSpec)) as { default: typeof addressparser };
    addressparser = mod.default;
  } catch {
    t.skip('nodemailer is not installed');
    return;
  }
  const dsn = built(input());
  const p = parseDsn(await render(dsn));
  const ct = funcs.parseHeaderValue(header(p.top, 'Content-Type') ?? '');
  assert.equal(ct.value, 'multipart/report');
  assert.equal(ct.params['report-type'], 'delivery-status');
  assert.equal(ct.params.boundary, p.boundary);
  const from = addressparser(header(p.top, 'From') ?? '');
  assert.deepEqual(from.map((a) => [a.name, a.address]), [['Mail Delivery System', 'MAILER-DAEMON@mta.example.net']]);
  const to = addressparser(header(p.top, 'To') ?? '');
  assert.deepEqual(to.map((a) => a.address), ['alice@example.org']);
  const textCt = funcs.parseHeaderValue(header(p.parts[0] as Entity, 'Content-Type') ?? '');
  assert.equal(textCt.params.charset, 'us-ascii');
});
