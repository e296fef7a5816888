/**
 * @module qmgr/destinations
 * Per-destination concurrency windows (Postfix qmgr's per-destination concurrency): at most N
 * deliveries to one next hop at once, so one slow domain holds N slots and no more, and the
 * others keep flowing. Waiters are served first-in first-out.
 *
 * The destination key comes from routing (`mx:example.com`, `smarthost:host:port`). A window
 * exists only while it has holders or waiters, so the map stays as small as the active set.
 * Slow start and the dead-destination cache of Postfix's qmgr_feedback are not built yet.
 */
interface Window {
  active: number;
  readonly waiting: Array<() => void>;
}

export class DestinationWindows {
  private readonly windows = new Map<string, Window>();

  constructor(private readonly defaultLimit: number) {}

  /** Resolves with a release function once a slot of `destination` is ours. */
  async acquire(destination: string, limit: number = this.defaultLimit): Promise<() => void> {
    const window = this.windows.get(destination) ?? { active: 0, waiting: [] };
    this.windows.set(destination, window);
    if (window.active >= Math.max(1, limit)) await new Promise<void>((resolve) => window.waiting.push(resolve));
    else window.active++;
    let released = false;
    return () => {
      if (released) return;
      released = true;
      const next = window.waiting.shift();
      if (next) next(); // the slot passes straight to the next waiter
      else if (--window.active === 0) this.windows.delete(destination);
    };
  }

  /** Deliveries waiting for a slot of `destination`. */
  waitingFor(destination: string): number {
    return this.windows.get(destination)?.waiting.length ?? 0;
  }

  /** Deliveries in progress to `destination`. */
  activeFor(destination: string): number {
    return this.windows.get(destination)?.active ?? 0;
  }
}
