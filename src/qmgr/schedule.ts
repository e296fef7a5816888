/**
 * @module qmgr/schedule
 * When a deferred message is tried next, and when it is given up: pure functions of the attempt
 * count, the message's age, the retry policy and a random source (the clock and randomness are
 * injected, so a schedule is reproducible in tests; chasquid's nextDelay read the wall clock).
 *
 * Policy (`--retry 1m,5m,15m,1h,4h`, `--max-age 5d`): after the n-th failed attempt the delay is
 * retry[n-1], the last entry repeating; a jitter of ±10% spreads a burst of deferrals so they do
 * not all come due in the same second. A message whose next attempt would fall after
 * receivedAt + maxAge is not tried again: it expires (its recipients are bounced with the last
 * reply, DESIGN §4). The attempt exactly at the boundary is still made, so a message always gets
 * at least one attempt.
 */
export interface RetryPolicy {
  /** Delays in ms after the 1st, 2nd, … failed attempt; the last repeats. Never empty. */
  readonly retry: readonly number[];
  /** Give up this long after the message was received. */
  readonly maxAge: number;
}

/** Fraction of the delay added or removed at random. */
export const RETRY_JITTER = 0.1;

export type NextStep = { readonly kind: 'retry'; readonly at: number } | { readonly kind: 'expire'; readonly reason: string };

/** The delay after `failedAttempts` failed attempts (≥ 1), before jitter. */
export function retryDelay(policy: RetryPolicy, failedAttempts: number): number {
  if (policy.retry.length === 0) throw new RangeError('retry policy has no delays');
  const index = Math.min(Math.max(failedAttempts, 1), policy.retry.length) - 1;
  return policy.retry[index] as number;
}

/**
 * What to do after an attempt that left recipients deferred: `failedAttempts` counts this one.
 * `random` returns [0, 1).
 */
export function nextStep(policy: RetryPolicy, input: { receivedAt: number; now: number; failedAttempts: number }, random: () => number): NextStep {
  const base = retryDelay(policy, input.failedAttempts);
  const jitter = base * RETRY_JITTER * (2 * random() - 1);
  const at = Math.round(input.now + base + jitter);
  const deadline = input.receivedAt + policy.maxAge;
  if (input.now >= deadline || at > deadline) {
    return { kind: 'expire', reason: `gave up after ${input.failedAttempts} attempt(s): the message is older than the maximum queue age` };
  }
  return { kind: 'retry', at };
}
