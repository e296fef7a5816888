/**
 * @module cli/format
 * Human output of `postwire queue` and `postwire explain`: a compact table for list, a readable
 * page for show (envelope, headers, every attempt with its reply verbatim, what happens next and
 * why), one line per message for actions, and the decision path for explain. `--json` bypasses
 * all of this and prints the API's JSON. Pure: API values and `now` in, text out.
 */
import type { ActionResultV1, ExplainV1, MessageDetailV1, MessageListV1 } from '../api/index.js';
import { formatRate } from '../config/index.js';
import { formatDuration } from '../util/index.js';

const REPLY_WIDTH = 48;

/** A duration to the second (under a minute) or the minute: `42s`, `1h5m`. */
function rough(ms: number): string {
  const r = ms < 60_000 ? Math.floor(ms / 1000) * 1000 : Math.floor(ms / 60_000) * 60_000;
  return r <= 0 ? '0s' : formatDuration(r);
}

export function age(iso: string, now: number): string {
  return rough(Math.max(0, now - Date.parse(iso)));
}

function when(iso: string | undefined, now: number): string {
  if (iso === undefined) return '-';
  const ms = Date.parse(iso) - now;
  return ms <= 0 ? 'now' : `in ${rough(ms)}`;
}

function clip(text: string, width: number): string {
  const one = text.replace(/\s*\n\s*/g, ' | ');
  return one.length > width ? `${one.slice(0, width - 1)}…` : one;
}

export function listTable(list: MessageListV1, now: number): string {
  const rows = list.messages.map((m) => {
    const last = m.recipients.map((r) => r.lastReply).find((r) => r !== undefined) ?? '';
    return [
      m.id,
      age(m.receivedAt, now),
      String(m.size),
      m.sender === '' ? '<>' : m.sender,
      m.recipients.map((r) => `${r.address}:${r.state}`).join(','),
      // On a shared queue the lease says which node is delivering it.
      m.lease !== undefined ? `delivering on ${m.lease.owner}` : when(m.nextAttemptAt, now),
      clip(last, REPLY_WIDTH),
    ];
  });
  const head = ['ID', 'AGE', 'SIZE', 'SENDER', 'RECIPIENTS', 'NEXT', 'LAST REPLY'];
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: readonly string[]): string => cells.map((c, i) => (i === cells.length - 1 ? c : c.padEnd(widths[i] ?? 0))).join('  ').trimEnd();
  return [line(head), ...rows.map(line)].join('\n') + '\n';
}

function indent(text: string, pad: string): string {
  return text.split('\n').map((l) => pad + l).join('\n');
}

export function showPage(d: MessageDetailV1, now: number): string {
  const out: string[] = [];
  out.push(`Message ${d.id}`);
  out.push(`  received   ${d.receivedAt} (${age(d.receivedAt, now)} ago), ${d.size} bytes, ${d.attempts} attempt(s)`);
  out.push(`  sender     <${d.sender}>`);
  out.push(`  client     ${d.client.ip} (HELO ${d.client.helo}, ${d.client.protocol}${d.client.user !== undefined ? `, user ${d.client.user}` : ''})`);
  out.push(`  body       ${d.body}${d.smtputf8 ? ', SMTPUTF8' : ''}${d.dsn.ret ? `, RET=${d.dsn.ret}` : ''}${d.dsn.envid !== undefined ? `, ENVID=${d.dsn.envid}` : ''}`);
  if (d.lease) out.push(`  lease      ${d.lease.owner} until ${d.lease.until}`);
  out.push('Recipients');
  const w = Math.max(...d.recipients.map((r) => r.address.length));
  for (const r of d.recipients) out.push(`  ${r.address.padEnd(w)}  ${r.state.padEnd(9)}${r.lastReply !== undefined ? `  ${clip(r.lastReply, 100)}` : ''}`.trimEnd());
  out.push('Headers');
  for (const h of d.headers) out.push(`  ${h.name}: ${h.value}`);
  out.push('History');
  if (d.history.length === 0) out.push('  (no attempt yet)');
  for (const h of d.history) {
    out.push(`  ${h.at}  ${h.note !== undefined && h.nextHop === '' ? h.note : `via ${h.nextHop === '' ? '(no connection)' : h.nextHop}`}`);
    for (const r of h.results) {
      out.push(`    ${r.recipient} → ${r.state}`);
      out.push(indent(r.reply, '      '));
    }
    if (h.note !== undefined && h.nextHop !== '') out.push(`    note: ${h.note}`);
    if (h.nextAttemptAt !== undefined) out.push(`    next attempt ${h.nextAttemptAt}`);
  }
  out.push(`Next: ${d.next.why}`);
  return out.join('\n') + '\n';
}

export function actionLines(r: ActionResultV1): string {
  const verb = r.dryRun ? 'would change' : 'changed';
  const lines = r.results.map((x) => `${x.id}  ${x.changed ? verb : 'unchanged'}${x.detail !== undefined ? `: ${x.detail}` : ''}`);
  const changed = r.results.filter((x) => x.changed).length;
  lines.push(`${r.action}${r.dryRun ? ' (dry run, nothing changed)' : ''}: ${r.matched} matched, ${changed} ${verb}, ${r.results.length - changed} unchanged`);
  return lines.join('\n') + '\n';
}

export function explainPage(e: ExplainV1): string {
  const out: string[] = [`${e.kind === 'address' ? 'Address' : 'Message'} ${e.target}`];
  for (const d of e.destinations) {
    out.push(`Destination ${d.destination}: ${d.recipients.join(', ')}`);
    out.push(`  route    ${d.route.kind}: ${d.route.detail}`);
    if (d.hosts.length === 0) out.push('  hosts    (none)');
    d.hosts.forEach((h, i) => {
      const pref = h.preference !== undefined ? ` preference ${h.preference}` : '';
      const addrs = h.addresses !== undefined ? ` → ${h.addresses.join(', ')}` : '';
      out.push(`  ${i === 0 ? 'hosts  ' : '       '}  ${i + 1}. ${h.host}:${h.port}${pref}${addrs}${h.error !== undefined ? ` (${h.error})` : ''}`);
    });
    out.push(`  tls      ${d.tls.policy}: ${d.tls.why}`);
    out.push(`  window   ${d.window.active} delivering, ${d.window.waiting} waiting, limit ${d.window.concurrency}`);
    if (d.rate) {
      const from = d.rate.source === 'route' ? 'the route' : '--destination-rate';
      const now = d.rate.tokens === undefined ? 'the bucket cannot be read now' : `${Math.floor(d.rate.tokens)} may start now`;
      out.push(`  rate     ${formatRate(d.rate)} (${from}): ${now}, ${d.rate.waiting} waiting for a token`);
    }
    if (d.lastReply !== undefined) out.push(`  reply    ${indent(d.lastReply, '           ').trimStart()}`);
    out.push(`  next     ${d.why}`);
  }
  return out.join('\n') + '\n';
}
