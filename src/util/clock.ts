/**
 * @module util/clock
 * Time is injected: modules take a Clock instead of calling Date.now() or setTimeout, so tests
 * drive time and schedules are reproducible (chasquid's nextDelay used time.Since; that is why).
 */
export interface Timer {
  cancel(): void;
  /** Push the deadline out to `ms` from now (an idle timer reset on activity). */
  refresh(): void;
}

export interface Clock {
  now(): number;
  setTimer(ms: number, onFire: () => void): Timer;
}

export const systemClock: Clock = {
  now: () => Date.now(),
  setTimer(ms, onFire) {
    const handle = setTimeout(onFire, ms);
    handle.unref?.();
    return {
      cancel: () => clearTimeout(handle),
      refresh: () => void handle.refresh(),
    };
  },
};

/** A wait on the clock that someone else may end early: `done` resolves at `ms` or at cancel(), whichever is first. */
export interface Sleep {
  readonly done: Promise<void>;
  /** End the wait now; idempotent. */
  cancel(): void;
}

export function sleepOn(clock: Clock, ms: number): Sleep {
  let cancel!: () => void;
  const done = new Promise<void>((resolve) => {
    const timer = clock.setTimer(ms, resolve);
    cancel = () => {
      timer.cancel();
      resolve();
    };
  });
  return { done, cancel };
}
