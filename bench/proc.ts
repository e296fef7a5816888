/**
 * @module bench/proc
 * CPU and memory of a target's whole process tree, from /proc (Linux): Postwire is one process,
 * Postfix a master with daemons it forks and reaps, so both are counted the same way: user +
 * system time of the root, of the children it has reaped (cutime/cstime) and of every live
 * descendant. Sampled before and after a run, the difference is the run's CPU.
 */
import { readdir, readFile } from 'node:fs/promises';

export interface TreeSample {
  /** User + system seconds of the tree (reaped children included). */
  readonly cpuSeconds: number;
  /** The largest peak RSS (VmHWM) of any live process of the tree, KiB. */
  readonly peakKiB: number;
  /** The current RSS (VmRSS) of that same largest process, KiB. */
  readonly rssKiB: number;
}

const TICKS_PER_SECOND = 100;

interface Stat {
  readonly pid: number;
  readonly ppid: number;
  readonly ticks: number;
}

async function readStat(pid: number): Promise<Stat | undefined> {
  const text = await readFile(`/proc/${pid}/stat`, 'utf8').catch(() => undefined);
  // The command name may hold spaces and parentheses: the fields start after the last ')'.
  const fields = text?.slice(text.lastIndexOf(')') + 2).split(' ');
  if (fields === undefined) return undefined;
  const n = (i: number): number => Number(fields[i] ?? 0);
  return { pid, ppid: n(1), ticks: n(11) + n(12) + n(13) + n(14) };
}

async function memory(pid: number): Promise<{ hwm: number; rss: number }> {
  const status = await readFile(`/proc/${pid}/status`, 'utf8').catch(() => '');
  return { hwm: Number(/VmHWM:\s+(\d+)/.exec(status)?.[1] ?? 0), rss: Number(/VmRSS:\s+(\d+)/.exec(status)?.[1] ?? 0) };
}

export async function sampleTree(root: number): Promise<TreeSample> {
  const pids = (await readdir('/proc')).filter((name) => /^\d+$/.test(name)).map(Number);
  const stats = (await Promise.all(pids.map(readStat))).filter((s): s is Stat => s !== undefined);
  const children = new Map<number, Stat[]>();
  for (const s of stats) children.set(s.ppid, [...(children.get(s.ppid) ?? []), s]);
  const rootStat = stats.find((s) => s.pid === root);
  if (rootStat === undefined) throw new Error(`process ${root} is gone`);
  const tree: Stat[] = [];
  const todo = [rootStat];
  for (let s = todo.pop(); s !== undefined; s = todo.pop()) {
    tree.push(s);
    todo.push(...(children.get(s.pid) ?? []));
  }
  let peakKiB = 0;
  let rssKiB = 0;
  for (const s of tree) {
    const m = await memory(s.pid);
    if (m.hwm > peakKiB) {
      peakKiB = m.hwm;
      rssKiB = m.rss;
    }
  }
  return { cpuSeconds: tree.reduce((sum, s) => sum + s.ticks, 0) / TICKS_PER_SECOND, peakKiB, rssKiB };
}
