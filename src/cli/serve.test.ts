/**
 * @module cli/serve.test
 * serve's supervision with a fake main module and a fake signal source: one close on the first
 * signal, exit 1 at once on the second, handlers removed, startup/shutdown failures reported.
 * The last two tests go through runCli to the real main.ts (port already in use, spool under a
 * regular file) to check that real startup errors come out as `postwire: <what>: <why>`.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type Server as NetServer } from 'node:net';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { runCli, runServe, type CliIo, type MainModule, type RunningServer, type ServeDeps, type SignalSource } from './index.js';

type Listener = (signal: 'SIGTERM' | 'SIGINT') => void;

class FakeSignals implements SignalSource {
  readonly listeners = new Map<string, Set<Listener>>();
  on(signal: 'SIGTERM' | 'SIGINT', listener: Listener): void {
    const set = this.listeners.get(signal) ?? new Set<Listener>();
    set.add(listener);
    this.listeners.set(signal, set);
  }
  off(signal: 'SIGTERM' | 'SIGINT', listener: Listener): void {
    this.listeners.get(signal)?.delete(listener);
  }
  emit(signal: 'SIGTERM' | 'SIGINT'): void {
    for (const l of [...(this.listeners.get(signal) ?? [])]) l(signal);
  }
  count(): number {
    return [...this.listeners.values()].reduce((n, s) => n + s.size, 0);
  }
}

function deferred<T = void>() {
  let resolve!: (v: T) => void;
  let reject!: (e: unknown) => void;
  const promise = new Promise<T>((res, rej) => [resolve, reject] = [res, rej]);
  return { promise, resolve, reject };
}

/** A server whose close and closed the test settles by hand. */
function fakeServer() {
  const closing = deferred();
  const closed = deferred();
  const reasons: string[] = [];
  const server: RunningServer = {
    close: (reason) => {
      reasons.push(reason);
      return closing.promise;
    },
    closed: closed.promise,
  };
  return { server, closing, closed, reasons };
}

function capture() {
  const err: string[] = [];
  const out: string[] = [];
  const io: CliIo = { stdout: (s) => void out.push(s), stderr: (s) => void err.push(s), env: {}, hostname: 'mx.example.test' };
  return { io, err: () => err.join(''), out: () => out.join('') };
}

function deps(main: MainModule | Error, signals = new FakeSignals()): ServeDeps & { signals: FakeSignals; loads: () => number } {
  let loads = 0;
  return {
    loadMain: async () => {
      loads += 1;
      if (main instanceof Error) throw main;
      return main;
    },
    signals,
    hostname: 'mx.example.test',
    loads: () => loads,
  };
}

const tick = () => new Promise<void>((r) => setImmediate(r));

test('serve: starts with the loaded config, announces listeners, SIGTERM closes once, exit 0', async () => {
  const f = fakeServer();
  let seenPort = -1;
  const d = deps({
    startServer: async (config, options) => {
      seenPort = config.listen[0]?.port ?? -1;
      options.onReady?.({ listeners: [{ host: '127.0.0.1', port: 40000 }, { host: '::1', port: 40001 }] });
      return f.server;
    },
  });
  const c = capture();
  const run = runServe(['--listen', '127.0.0.1:0'], c.io, d);
  await tick();
  assert.equal(seenPort, 0);
  assert.equal(d.signals.count(), 3, 'SIGTERM and SIGINT stop, SIGHUP reloads');
  assert.match(c.err(), /^postwire: listening on 127\.0\.0\.1:40000, \[::1\]:40001\n/);
  d.signals.emit('SIGTERM');
  assert.deepEqual(f.reasons, ['shutdown']);
  f.closing.resolve();
  f.closed.resolve();
  assert.equal(await run, 0);
  assert.equal(d.signals.count(), 0, 'handlers removed after stopping');
  assert.match(c.err(), /postwire: SIGTERM: shutting down/);
});

test('serve: a second signal returns 1 at once, without a second close', async () => {
  const f = fakeServer();
  const d = deps({ startServer: async () => f.server });
  const c = capture();
  const run = runServe([], c.io, d);
  await tick();
  d.signals.emit('SIGINT');
  d.signals.emit('SIGTERM');
  assert.equal(await run, 1);
  assert.deepEqual(f.reasons, ['shutdown']);
  assert.match(c.err(), /postwire: SIGTERM again: stopping without waiting/);
  assert.equal(d.signals.count(), 0, 'a third signal gets the default action');
});

test('serve: startup failure prints what failed and why, exit 1, no handlers left', async () => {
  const c = capture();
  const cause = Object.assign(new Error('listen EADDRINUSE: address already in use 127.0.0.1:2525'), { code: 'EADDRINUSE' });
  const d = deps({ startServer: async () => { throw new Error('cannot listen', { cause }); } });
  assert.equal(await runServe([], c.io, d), 1);
  assert.equal(c.err(), 'postwire: cannot listen: listen EADDRINUSE: address already in use 127.0.0.1:2525\n');
  assert.equal(d.signals.count(), 0);
});

test('serve: main cannot be loaded → exit 1', async () => {
  const c = capture();
  assert.equal(await runServe([], c.io, deps(new Error('boom'))), 1);
  assert.equal(c.err(), 'postwire: cannot load the server: boom\n');
});

test('serve: config errors exit 2 before main is loaded', async () => {
  const c = capture();
  const d = deps({ startServer: async () => fakeServer().server });
  assert.equal(await runServe(['--max-recipients', 'abc'], c.io, d), 2);
  assert.equal(d.loads(), 0);
  assert.equal(c.err(), 'postwire: --max-recipients: "abc" is not a whole number (expected 1..100000)\n');
});

test('serve: the server stopping unasked, failing, or failing to shut down → exit 1', async () => {
  const a = fakeServer();
  const ca = capture();
  const runA = runServe([], ca.io, deps({ startServer: async () => a.server }));
  await tick();
  a.closed.resolve();
  assert.equal(await runA, 1);
  assert.match(ca.err(), /postwire: the server stopped unexpectedly/);

  const b = fakeServer();
  const cb = capture();
  const runB = runServe([], cb.io, deps({ startServer: async () => b.server }));
  await tick();
  b.closed.reject(new Error('queue store lost'));
  assert.equal(await runB, 1);
  assert.match(cb.err(), /postwire: server failed: queue store lost/);

  const e = fakeServer();
  const ce = capture();
  const de = deps({ startServer: async () => e.server });
  const runE = runServe([], ce.io, de);
  await tick();
  de.signals.emit('SIGTERM');
  e.closing.reject(new Error('flush failed'));
  assert.equal(await runE, 1);
  assert.match(ce.err(), /postwire: shutdown failed: flush failed/);
});

test('serve through runCli with the real main: a port in use exits 1 naming it', async () => {
  const blocker: NetServer = createServer();
  await new Promise<void>((r) => blocker.listen(0, '127.0.0.1', r));
  const address = blocker.address();
  const port = typeof address === 'object' && address !== null ? address.port : 0;
  const spool = mkdtempSync(join(tmpdir(), 'postwire-serve-'));
  const c = capture();
  try {
    const code = await runCli(['serve', '--listen', `127.0.0.1:${port}`, '--admin', 'off', '--spool', spool, '--log-level', 'fatal'], c.io);
    assert.equal(code, 1);
    assert.match(c.err(), /^postwire: .*EADDRINUSE/);
  } finally {
    await new Promise<void>((r) => blocker.close(() => r()));
    rmSync(spool, { recursive: true, force: true });
  }
});

test('serve through runCli with the real main: an unusable spool exits 1 naming it', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'postwire-serve-'));
  const notADir = join(dir, 'file');
  writeFileSync(notADir, '');
  const c = capture();
  try {
    const code = await runCli(['serve', '--listen', '127.0.0.1:0', '--admin', 'off', '--spool', join(notADir, 'spool'), '--log-level', 'fatal'], c.io);
    assert.equal(code, 1);
    assert.match(c.err(), /^postwire: .*spool.*(ENOTDIR|not a directory)/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
