/**
 * @module cli/send.test
 * The pure parts of `postwire send`: argument parsing (sendmail spellings), the end-of-input
 * rule, -t header extraction and dot-stuffing. The binary end to end is test/e2e/send.test.ts.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { encodeData, runSend, parseAddressList, parseSendArgs, readMessage, recipientsFromHeaders } from './send.js';

test('sendmail argument spellings', () => {
  assert.deepEqual(parseSendArgs(['-fapp@x.test', '-oi', '-t', 'a@b.test', '--', '-odd@b.test']), {
    sender: 'app@x.test', fromHeaders: true, ignoreDots: true, server: undefined, config: undefined, recipients: ['a@b.test', '-odd@b.test'],
  });
  assert.equal((parseSendArgs(['-r', 'r@x.test']) as { sender: string }).sender, 'r@x.test');
  assert.deepEqual(parseSendArgs(['-f']), { error: '-f needs a value' });
});

test('address lists: display names, quotes, comments, groups', () => {
  assert.deepEqual(parseAddressList(' "Doe, Jane" <jane@x.test>, bob@x.test (Bob, the builder), team: c@x.test, d@x.test;, undisclosed-recipients:;'),
    ['jane@x.test', 'bob@x.test', 'c@x.test', 'd@x.test']);
});

test('end of input, header extraction and stuffing', () => {
  const lines = readMessage(Buffer.from('To: a@x.test\r\nBcc: b@x.test,\n  c@x.test\n\n.x\n.\nafter'), false);
  assert.deepEqual(lines.map(String), ['To: a@x.test', 'Bcc: b@x.test,', '  c@x.test', '', '.x']);
  const t = recipientsFromHeaders(lines);
  assert.deepEqual(t.recipients, ['a@x.test', 'b@x.test', 'c@x.test']);
  assert.equal(encodeData(t.lines).toString(), 'To: a@x.test\r\n\r\n..x\r\n.\r\n');
});

test('send --help prints the usage on stdout and exits 0', async () => {
  let out = '';
  assert.equal(await runSend(['--help'], { stdout: (t) => (out += t), stderr: () => undefined }), 0);
  assert.match(out, /^usage: postwire send /);
});
