/**
 * Runs every test/dialogues/*.smtp transcript against a real Postwire on port 0 (chasquid .cmy,
 * OpenSMTPD smtpscript). Transcript lines:
 *   c -> TEXT      send TEXT + CRLF; consecutive `c ->`/`c =>` lines go out in ONE write (a pipelined packet)
 *   c => TEXT      send TEXT raw, no CRLF added
 *   c <~ PREFIX    the next reply's first line, as `CODE TEXT`, starts with PREFIX
 *   c <~ closed    the server has closed the connection
 *   store N        the queue holds N messages
 *   store-body N TEXT   message N (0-based) stored body, after our Received: line, equals TEXT
 *   # flags: ...   serve flags for this transcript (first lines only); other # lines are comments
 * Escapes in TEXT: \r \n \t \0 \xHH \\ ; `{repeat:N:TEXT}` expands to TEXT repeated N times.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { join } from 'node:path';
import { RawClient } from '../support/raw-client.js';
import { startTestServer, withoutTraceHeader } from '../support/server.js';

const DIR = fileURLToPath(new URL('../../../test/dialogues/', import.meta.url));

/** Transcript text to bytes: literal text as UTF-8, escapes as the raw bytes they name. */
function unescape(text: string): Buffer {
  const repeated = text.replace(/\{repeat:(\d+):([^}]*)\}/g, (_m, n: string, t: string) => t.repeat(Number(n)));
  const parts: Buffer[] = [];
  let last = 0;
  for (const m of repeated.matchAll(/\\(r|n|t|0|\\|x[0-9a-fA-F]{2})/g)) {
    parts.push(Buffer.from(repeated.slice(last, m.index), 'utf8'));
    const e = m[1] ?? '';
    const byte = e === 'r' ? 13 : e === 'n' ? 10 : e === 't' ? 9 : e === '0' ? 0 : e === '\\' ? 92 : parseInt(e.slice(1), 16);
    parts.push(Buffer.of(byte));
    last = (m.index ?? 0) + m[0].length;
  }
  parts.push(Buffer.from(repeated.slice(last), 'utf8'));
  return Buffer.concat(parts);
}

async function runTranscript(file: string): Promise<void> {
  const lines = readFileSync(join(DIR, file), 'utf8').split('\n');
  const flags = lines.filter((l) => l.startsWith('# flags:')).flatMap((l) => l.slice('# flags:'.length).trim().split(/\s+/).filter(Boolean));
  const server = await startTestServer(flags);
  const client = await RawClient.connect(server.port);
  let outgoing: Buffer[] = [];
  const flush = async (): Promise<void> => {
    if (outgoing.length === 0) return;
    await client.write(Buffer.concat(outgoing));
    outgoing = [];
  };
  try {
    for (const [index, raw] of lines.entries()) {
      const line = raw.replace(/\r$/, '');
      const where = `${file}:${index + 1}`;
      if (line.trim() === '' || line.startsWith('#')) continue;
      const m = /^(c ->|c =>|c <~|store-body|store) ?(.*)$/.exec(line);
      if (!m) throw new Error(`${where}: cannot read ${JSON.stringify(line)}`);
      const [, op, arg = ''] = m;
      if (op === 'c ->') outgoing.push(unescape(arg), Buffer.from('\r\n'));
      else if (op === 'c =>') outgoing.push(unescape(arg));
      else {
        await flush();
        if (op === 'c <~' && arg === 'closed') await client.waitClosed();
        else if (op === 'c <~') {
          const r = await client.reply();
          const first = `${r.code} ${r.lines[0] ?? ''}`;
          assert.ok(first.startsWith(arg), `${where}: expected a reply starting ${JSON.stringify(arg)}, got ${JSON.stringify(first)}`);
        } else if (op === 'store') {
          assert.equal((await server.messages()).length, Number(arg), `${where}: messages in the queue`);
        } else {
          const [n, ...rest] = arg.split(' ');
          const stored = (await server.messages())[Number(n)];
          assert.ok(stored, `${where}: no message ${n}`);
          assert.deepEqual(withoutTraceHeader(stored.body), unescape(rest.join(' ')), `${where}: stored body`);
        }
      }
    }
    await flush();
  } finally {
    client.close();
    await server.stop();
  }
}

describe('dialogues', () => {
  for (const file of readdirSync(DIR).filter((f) => f.endsWith('.smtp')).sort()) {
    it(file, () => runTranscript(file));
  }
});
