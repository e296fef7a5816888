/**
 * The operator's view of a shared queue (issue 7, part 3): two real `postwire serve` nodes on one
 * PostgreSQL queue, each with its admin listener, delivering to a sink that holds every
 * end-of-data reply for a while, so the messages are being delivered (leased) when we look.
 * Asserted: either node's API lists the whole queue (both messages, whichever node took them in);
 * `postwire queue list` and `show` against one node name the node that holds each message;
 * `/metrics` on either node counts the whole queue by state; afterwards both are delivered, as
 * both nodes report.
 */
import { it } from 'node:test';
import assert from 'node:assert/strict';
import { startFakeSmtp } from '../fakes/fake-smtp-server.js';
import { startCluster } from '../support/cluster.js';
import type { Cluster } from '../support/cluster.js';
import { described, runPostwire } from '../support/cli.js';
import { sendMessage } from '../support/submit.js';
import { until } from '../support/wait.js';
import type { MessageDetailV1, MessageListV1 } from '../../src/api/index.js';

const SLOW_MS = 3000;

it('either node of a shared queue lists, shows and counts the whole queue, naming the node that holds each message', { timeout: 60_000 }, async () => {
  const sink = await startFakeSmtp({ slowMs: SLOW_MS });
  const adminPorts: Array<number | undefined> = [];
  let cluster: Cluster | undefined;
  try {
    cluster = await startCluster(
      2,
      ['--delivery', 'on', '--smarthost', `127.0.0.1:${sink.port}`, '--admin', '127.0.0.1:0', '--lease-time', '30s'],
      (node, line) => {
        const m = /"admin":\{"host":"127\.0\.0\.1","port":(\d+)\}/.exec(line);
        if (m) adminPorts[node] = Number(m[1]);
      },
    );
    const c = cluster;
    const admins = await until('both admin listeners', () => (adminPorts[0] && adminPorts[1] ? adminPorts.map((p) => `127.0.0.1:${p}`) : undefined));
    const smtp = c.nodes.map((n) => n?.port ?? 0);
    const queued = async (port: number, rcpt: string): Promise<string> => {
      const reply = await sendMessage(port, 'ops@src.test', [rcpt], `Subject: ${rcpt}\r\n\r\nbody\r\n`);
      const id = /queued as (\S+)/.exec(reply)?.[1];
      assert.ok(id, reply);
      return id;
    };
    const ids = [await queued(smtp[0] ?? 0, 'slow-a@dest.test'), await queued(smtp[1] ?? 0, 'slow-b@dest.test')];
    const nodeNames = [c.nodeName(0), c.nodeName(1)];
    const api = async <T>(node: number, path: string): Promise<T> => (await (await fetch(`http://${admins[node]}/api/v1${path}`)).json()) as T;

    // Both messages leased (being delivered) and visible from node 0, wherever they came in.
    const listed = await until('both messages in delivery, seen from node 0', async () => {
      const list = await api<MessageListV1>(0, '/messages');
      return list.messages.length === 2 && list.messages.every((m) => m.lease !== undefined) ? list : undefined;
    });
    assert.deepEqual(listed.messages.map((m) => m.id).sort(), [...ids].sort());
    for (const m of listed.messages) assert.ok(nodeNames.includes(m.lease?.owner ?? ''), `held by a node of the cluster: ${m.lease?.owner}`);

    // The CLI against node 1 names the holder of each, in the table and in show.
    const table = await runPostwire(['queue', 'list', '--admin', admins[1] ?? '']);
    assert.equal(table.code, 0, described(table));
    for (const m of listed.messages) assert.match(table.stdout, new RegExp(`${m.id}.*delivering on ${m.lease?.owner}`));
    const shown = await runPostwire(['queue', 'show', ids[0] ?? '', '--admin', admins[1] ?? '', '--json']);
    assert.equal(shown.code, 0, described(shown));
    const detail = JSON.parse(shown.stdout) as MessageDetailV1;
    assert.ok(nodeNames.includes(detail.lease?.owner ?? ''), described(shown));
    assert.match(detail.next.why, new RegExp(`being delivered now by ${detail.lease?.owner}`));

    // /metrics on either node counts the shared queue: two recipients not yet delivered.
    for (const admin of admins) {
      const text = await (await fetch(`http://${admin}/metrics`)).text();
      assert.equal(Number(/^postwire_queue_recipients\{state="queued"\} (\d+)$/m.exec(text)?.[1]), 2, `${admin}: ${text.slice(0, 200)}`);
    }

    // And when the sink answers, both nodes see both delivered.
    for (const node of [0, 1]) {
      await until(`node ${node} reports both delivered`, async () => {
        const list = await api<MessageListV1>(node, '/messages?state=delivered');
        return list.messages.length === 2 ? true : undefined;
      }, 30_000);
    }
    assert.deepEqual(await c.stop(), [0, 0]);
  } finally {
    await cluster?.destroy();
    await sink.close();
  }
});
