/**
 * @module cli/serve
 * `postwire serve [flags]`: load the configuration, start the relay through main.ts (the
 * composition root, imported lazily so that `help` or a config error never loads the server),
 * and supervise it until it stops.
 *
 * Exit codes: 2 when the configuration is bad (every error printed, nothing started), or a file
 * it names (certificate, key, user file) cannot be used; 1 when
 * startup fails (`postwire: <what failed>: <why>`: port in use, spool not writable...), when the
 * server stops without being asked, or when a second signal cuts the shutdown short; 0 after a
 * clean shutdown.
 *
 * Signals: the first SIGTERM or SIGINT calls server.close('shutdown') once (stop accepting,
 * finish or 421 the sessions, let deliveries end). A second one returns 1 at once without
 * waiting; the handlers are removed then, so a third falls through to the default action.
 * SIGHUP loads the configuration again (same flags, environment and file) and hands it to the
 * server's reload, which applies what can change live and logs the rest (main.ts).
 * This module never calls process.exit: the bin turns the returned code into the exit status.
 * Signals and the main module are injected (ServeDeps) so tests drive both in-process.
 */
import { formatHostPort, loadConfig, type Config, type LoadResult } from '../config/index.js';
import { EXIT_FAILURE, EXIT_OK, EXIT_USAGE, explainError, reportErrors, systemHostname, type CliIo } from './io.js';

/** What serve needs of a running server (main.ts's Server). */
export interface RunningServer {
  close(reason: string): Promise<void>;
  readonly closed: Promise<void>;
  /** SIGHUP: apply a configuration loaded again (main logs what changed, or every error). */
  reload?(loaded: LoadResult): { readonly ok: boolean };
}

export interface ReadyInfo {
  readonly listeners: ReadonlyArray<{ readonly host: string; readonly port: number }>;
  /** The implicit-TLS submission listener, when configured. */
  readonly submission?: { readonly host: string; readonly port: number };
}

export interface MainModule {
  startServer(config: Config, options: { onReady?: (info: ReadyInfo) => void }): Promise<RunningServer>;
}

type StopSignal = 'SIGTERM' | 'SIGINT';
type Signal = StopSignal | 'SIGHUP';

export interface SignalSource {
  on(signal: Signal, listener: (signal: Signal) => void): void;
  off(signal: Signal, listener: (signal: Signal) => void): void;
}

export interface ServeDeps {
  loadMain(): Promise<MainModule>;
  readonly signals: SignalSource;
  readonly hostname: string;
}

const STOP_SIGNALS: readonly StopSignal[] = ['SIGTERM', 'SIGINT'];

export function defaultServeDeps(io: CliIo): ServeDeps {
  return {
    // Typed against main.ts: a change to startServer's shape fails the build here, not at run time.
    loadMain: async (): Promise<MainModule> => await import('../main.js'),
    signals: {
      on: (signal, listener) => void process.on(signal, listener),
      off: (signal, listener) => void process.off(signal, listener),
    },
    hostname: systemHostname(io),
  };
}

export async function runServe(args: readonly string[], io: CliIo, deps: ServeDeps = defaultServeDeps(io)): Promise<number> {
  const loaded = loadConfig({ argv: args, env: io.env ?? {}, hostname: deps.hostname });
  if (!loaded.ok) return reportErrors(io, loaded.errors);
  let main: MainModule;
  try {
    main = await deps.loadMain();
  } catch (err) {
    io.stderr(`postwire: cannot load the server: ${explainError(err)}\n`);
    return EXIT_FAILURE;
  }
  let server: RunningServer;
  let ready: ReadyInfo | undefined;
  try {
    server = await main.startServer(loaded.config, { onReady: (info) => (ready = info) });
  } catch (err) {
    // main's errors name what failed ("cannot listen: …", "spool directory ./spool: …").
    // A file a setting names that cannot be used (certificate, user file) is a configuration error.
    const isConfig = err instanceof Error && 'code' in err && err.code === 'POSTWIRE_CONFIG';
    io.stderr(`postwire: ${isConfig && err instanceof Error ? err.message : explainError(err)}\n`);
    return isConfig ? EXIT_USAGE : EXIT_FAILURE;
  }
  const reload = (): void => {
    // The same flags and environment as at start: the file is what an operator edits.
    const again = loadConfig({ argv: args, env: io.env ?? {}, hostname: deps.hostname });
    const result = server.reload?.(again);
    if (!again.ok) io.stderr(`postwire: SIGHUP: configuration has ${again.errors.length} error(s); the running configuration stays (see the log)\n`);
    else if (result?.ok === true) io.stderr('postwire: SIGHUP: configuration reloaded\n');
  };
  deps.signals.on('SIGHUP', reload);
  try {
    // The handlers go in before the "listening" line: whoever waits for that line (a supervisor,
    // a test) may signal at once, and must not meet the default action (an instant exit).
    const supervised = supervise(server, io, deps.signals);
    if (ready !== undefined) announce(io, ready);
    return await supervised;
  } finally {
    deps.signals.off('SIGHUP', reload);
  }
}

/** One stable line when listening: with port 0, the only way a caller learns the real port. */
function announce(io: CliIo, info: ReadyInfo): void {
  const list = info.listeners.map((l) => formatHostPort(l)).join(', ');
  io.stderr(`postwire: listening on ${list}\n`);
  if (info.submission !== undefined) io.stderr(`postwire: submission (implicit TLS) on ${formatHostPort(info.submission)}\n`);
}

function supervise(server: RunningServer, io: CliIo, signals: SignalSource): Promise<number> {
  return new Promise<number>((resolve) => {
    let signalled = 0;
    let done = false;
    const finish = (code: number, message?: string): void => {
      if (done) return;
      done = true;
      for (const s of STOP_SIGNALS) signals.off(s, onSignal);
      if (message !== undefined) io.stderr(`postwire: ${message}\n`);
      resolve(code);
    };
    const onSignal = (signal: Signal): void => {
      signalled += 1;
      if (signalled > 1) return finish(EXIT_FAILURE, `${signal} again: stopping without waiting for shutdown`);
      io.stderr(`postwire: ${signal}: shutting down (send it again to stop at once)\n`);
      server.close('shutdown').then(
        () => finish(EXIT_OK),
        (err: unknown) => finish(EXIT_FAILURE, `shutdown failed: ${explainError(err)}`),
      );
    };
    for (const s of STOP_SIGNALS) signals.on(s, onSignal);
    server.closed.then(
      // Unasked, a stopped daemon is a failure: supervisors restart on a non-zero status.
      () => finish(signalled > 0 ? EXIT_OK : EXIT_FAILURE, signalled > 0 ? undefined : 'the server stopped unexpectedly'),
      (err: unknown) => finish(EXIT_FAILURE, `server failed: ${explainError(err)}`),
    );
  });
}
