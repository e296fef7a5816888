/**
 * @module queue/postgres/slots
 * Cluster-wide per-destination concurrency: a destination with limit N has N slots, slot i being
 * the PostgreSQL session advisory lock (hashtext(schema:destination), i). A node takes a slot with
 * pg_try_advisory_lock on one dedicated connection, never waiting inside the server, and gives it
 * back with pg_advisory_unlock. Two nodes can never hold the same slot, so at most N deliveries
 * to the destination run across the cluster. The qmgr port this implements is structural
 * (qmgr/cluster-windows.ts): acquire(destination, limit) → release.
 *
 * Why advisory locks (docs/queue.md has the measurements): no table, no WAL, no fsync per
 * take/give (a slots table with leases writes two rows per delivery); and the server drops a dead
 * node's locks with its connection, at once, with no lease to wait out. The price: a node waiting
 * for a slot sleeps until a release is announced (pg_notify on the schema's channel, which every
 * node LISTENs to, so a freed slot is retried at once) or a backoff (10 → 250 ms) passes; session
 * locks are re-entrant, so this node never tries a slot it already holds (it keeps its own list).
 *
 * Failure: when the dedicated connection dies, the server has already dropped every lock this
 * node held. Deliveries holding them run on (a short overshoot of N is possible while others take
 * the freed slots: stated, not hidden); their releases become no-ops (generation check); the next
 * acquire reconnects. While the database is unreachable, acquire keeps retrying (fail closed).
 */
import pg from 'pg';
import { checkSchemaName } from './db.js';

export interface SlotsOptions {
  readonly url: string;
  readonly schema: string;
  readonly node: string;
  readonly onError?: (err: Error) => void;
  /** Longest wait between two tries for a busy destination (default 100 ms). */
  readonly maxPollMs?: number;
}

export class PgDestinationSlots {
  private client: Promise<pg.Client> | undefined;
  private generation = 0;
  private held = new Map<string, Set<number>>();
  private closed = false;
  /** Woken when a slot of the destination may have come free (our release, or a NOTIFY from another node). */
  private readonly waiters = new Map<string, Set<() => void>>();
  /** Tries run one at a time: each must see the slots the previous one took (locks are re-entrant). */
  private turn: Promise<unknown> = Promise.resolve();
  /** Queries made (tries + releases), for the docs' cost figures and tests. */
  queries = 0;

  constructor(private readonly options: SlotsOptions) {
    checkSchemaName(options.schema);
  }

  /** Resolves with a release function once one of `limit` slots of `destination` is this node's. */
  async acquire(destination: string, limit: number): Promise<() => void> {
    let wait = 10;
    for (;;) {
      if (this.closed) throw new Error('destination slots: closed');
      const attempt = this.turn.then(() => this.tryTake(destination, Math.max(1, limit)));
      this.turn = attempt.catch(() => undefined);
      const taken = await attempt.catch((err: unknown) => {
        this.options.onError?.(err instanceof Error ? err : new Error(String(err)));
        return undefined;
      });
      if (taken !== undefined) return taken;
      await this.waitForFree(destination, wait + Math.floor(Math.random() * wait));
      wait = Math.min(wait * 2, this.options.maxPollMs ?? 250);
    }
  }

  /** Until a release of `destination` is heard of (here or by NOTIFY), or `ms` passed. */
  private waitForFree(destination: string, ms: number): Promise<void> {
    return new Promise((resolve) => {
      const set = this.waiters.get(destination) ?? new Set<() => void>();
      this.waiters.set(destination, set);
      const done = (): void => {
        clearTimeout(timer);
        set.delete(done);
        if (set.size === 0 && this.waiters.get(destination) === set) this.waiters.delete(destination);
        resolve();
      };
      const timer = setTimeout(done, ms);
      set.add(done);
    });
  }

  private wake(destination: string): void {
    for (const w of [...(this.waiters.get(destination) ?? [])]) w();
  }

  /** Slots this node holds for `destination` now. */
  heldFor(destination: string): number {
    return this.held.get(destination)?.size ?? 0;
  }

  async close(): Promise<void> {
    this.closed = true;
    const client = this.client;
    this.client = undefined;
    this.held = new Map();
    if (client) await client.then((c) => c.end()).catch(() => undefined);
  }

  private async tryTake(destination: string, limit: number): Promise<(() => void) | undefined> {
    const client = await this.connect();
    const generation = this.generation;
    const mine = this.held.get(destination) ?? new Set<number>();
    const free: number[] = [];
    for (let i = 0; i < limit; i++) if (!mine.has(i)) free.push(i);
    if (free.length === 0) return undefined;
    this.queries++;
    const r = await client.query<{ s: number }>(
      'SELECT s FROM unnest($2::int[]) AS s WHERE pg_try_advisory_lock(hashtext($1), s) LIMIT 1',
      [`${this.options.schema}:${destination}`, free],
    );
    const slot = r.rows[0]?.s;
    if (slot === undefined) return undefined;
    if (generation !== this.generation) return undefined; // the connection died meanwhile: the lock died with it
    mine.add(slot);
    this.held.set(destination, mine);
    let released = false;
    return () => {
      if (released) return;
      released = true;
      if (generation !== this.generation) return;
      this.queries++;
      // Forget the slot only once the server has unlocked it: until then no local try may take
      // it again (a second lock on the same session would only raise its count).
      // The NOTIFY wakes the other nodes' waiters for this destination at once (no polling lag).
      client.query('SELECT pg_advisory_unlock(hashtext($1), $2), pg_notify($3, $4)', [`${this.options.schema}:${destination}`, slot, this.channel, destination]).then(
        () => this.drop(generation, destination, slot),
        () => this.drop(generation, destination, slot),
      );
    };
  }

  private drop(generation: number, destination: string, slot: number): void {
    if (generation !== this.generation) return;
    const mine = this.held.get(destination);
    mine?.delete(slot);
    if (mine?.size === 0) this.held.delete(destination);
    this.wake(destination);
  }

  private get channel(): string {
    return `postwire_slots_${this.options.schema}`.slice(0, 63);
  }

  private connect(): Promise<pg.Client> {
    if (this.client) return this.client;
    const client = new pg.Client({
      connectionString: this.options.url,
      application_name: `postwire:${this.options.node}:slots`.slice(0, 63),
      connectionTimeoutMillis: 5_000,
    });
    const lost = (err?: Error): void => {
      if (this.client !== connecting) return;
      // The server dropped every lock of this session: start over with none.
      this.client = undefined;
      this.generation++;
      this.held = new Map();
      if (err) this.options.onError?.(err);
      client.end().catch(() => undefined);
    };
    client.on('error', (err) => lost(err));
    client.on('end', () => lost());
    client.on('notification', (msg) => {
      if (msg.payload !== undefined) this.wake(msg.payload);
    });
    const connecting = client.connect().then(() => client.query(`LISTEN ${this.channel}`)).then(() => client, (err: unknown) => {
      lost(err instanceof Error ? err : new Error(String(err)));
      throw err;
    });
    this.client = connecting;
    return connecting;
  }
}
