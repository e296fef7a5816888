/**
 * @module queue/sqlite/turn-batch
 * The scheduling writes of one event-loop turn (claims, window marks, settles, attempt records,
 * lease renewals and releases) in one SQLite transaction instead of one each. A commit costs
 * the WAL frames of every page it dirtied: twenty deliveries finishing in one turn each used to
 * write the same few pages (the recipients table's, the attempts table's) twenty times. Measured
 * with `npm run bench -- relay` (docs/benchmarks.md): BEGIN/COMMIT was the largest single cost
 * of the SQLite share of the profile.
 *
 * Each operation runs inside its own savepoint (better-sqlite3 nests a transaction function
 * called inside another as SAVEPOINT … RELEASE), so one that throws (a lost lease, an invalid
 * argument) is rolled back alone and rejects alone; the others of the turn commit. Promises
 * settle only after the outer COMMIT: a caller that awaits a mark knows it is committed.
 *
 * Cost: one setImmediate of latency per operation (the batch runs in the check phase of the turn
 * that queued it, after every socket event of that poll). Durability is the caller's: a `durable`
 * operation still awaits IndexDb.durable() after its promise settles (one WAL fdatasync shared by
 * the turn).
 *
 * Failure: when the outer transaction itself fails (the COMMIT, or an error after which SQLite
 * has rolled the whole transaction back, such as SQLITE_FULL), every operation of the batch
 * rejects with that error (QUEUE_IO through sql-guard) and none of them is committed: the loop
 * stops at the first operation that leaves no transaction open, so nothing after it can run in
 * autocommit and outlive the rejection.
 */
import type Database from 'better-sqlite3';
import { guard } from './sql-guard.js';

interface Op {
  readonly fn: () => unknown;
  readonly resolve: (value: unknown) => void;
  readonly reject: (err: unknown) => void;
}

type Outcome = { readonly ok: true; readonly value: unknown } | { readonly ok: false; readonly error: unknown };

export class TurnBatch {
  #ops: Op[] = [];
  #scheduled = false;
  #transactions = 0;
  readonly #outer: (ops: readonly Op[]) => Outcome[];

  constructor(
    private readonly db: Database.Database,
    private readonly path: string,
  ) {
    this.#outer = db.transaction((ops: readonly Op[]): Outcome[] => {
      const outcomes: Outcome[] = [];
      for (const op of ops) {
        try {
          outcomes.push({ ok: true, value: op.fn() });
        } catch (error) {
          // SQLite rolled the whole transaction back (not just the savepoint): stop here and
          // fail the batch, so no later operation runs in autocommit behind our back.
          if (!this.db.inTransaction) throw error;
          outcomes.push({ ok: false, error });
        }
      }
      return outcomes;
    }).immediate;
  }

  /** Outer transactions committed so far (each covering one turn's operations): for tests and stats. */
  get transactions(): number {
    return this.#transactions;
  }

  /** Runs `fn` inside this turn's transaction; settles once that transaction has committed. */
  run<T>(fn: () => T): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      this.#ops.push({ fn, resolve: resolve as (value: unknown) => void, reject });
      if (this.#scheduled) return;
      this.#scheduled = true;
      setImmediate(() => this.flush());
    });
  }

  /** Commits what is queued now (the store calls it before closing the database). */
  flush(): void {
    this.#scheduled = false;
    const ops = this.#ops;
    if (ops.length === 0) return;
    this.#ops = [];
    let outcomes: Outcome[];
    try {
      outcomes = guard(this.path, () => this.#outer(ops));
      this.#transactions++;
    } catch (err) {
      for (const op of ops) op.reject(err);
      return;
    }
    outcomes.forEach((outcome, i) => {
      const op = ops[i] as Op;
      if (outcome.ok) op.resolve(outcome.value);
      else op.reject(outcome.error);
    });
  }
}
