/**
 * @module admin/timeseries
 * AdminApiV1.timeseries(): per minute over the last hour, the queue depth and the recipients
 * delivered, deferred and bounced, for the web page's two charts.
 *
 * A ring of 60 one-minute slots in memory, so it costs nothing to keep and nothing to read:
 * - outcome(state, at): main.ts feeds it every recorded recipient outcome from the queue manager
 *   (beside the metrics). delivered → delivered; deferred and ambiguous → deferred (both wait
 *   for a retry); bounced and expired → bounced (both owe the sender a DSN); held is not counted.
 * - the depth: recipients not yet final (queued, deferred, held, ambiguous; one countByState),
 *   sampled at start(), then once a minute on the injected clock, and again at each read so the
 *   newest point is live. A minute without a sample (the timer ran late) repeats the previous.
 * The series starts when this process started recording (start()), so after a restart it has
 * fewer than 60 minutes, and the counts are this node's own outcomes (on a shared queue, each
 * node charts what it delivered; the depth is the whole queue's).
 *
 * Failure: a failed depth sample is logged and skipped (the previous value is repeated); a
 * failed read-time sample likewise. Nothing here throws into the queue manager.
 */
import type { TimeseriesV1 } from '../api/index.js';
import type { Logger } from '../obs/index.js';
import { isFinal } from '../queue/index.js';
import type { QueueStore, RecipientState } from '../queue/index.js';
import type { Clock, Timer } from '../util/index.js';

const MINUTE = 60_000;
/** Slots in the ring: one hour. */
export const TIMESERIES_MINUTES = 60;

interface Slot {
  /** The minute (ms since the epoch / 60,000, floored) this slot holds; -1 when never used. */
  minute: number;
  delivered: number;
  deferred: number;
  bounced: number;
  /** The last depth sampled in this minute. */
  depth: number | undefined;
}

export interface TimeseriesRecorder {
  /** One recorded recipient outcome at time `at` (the queue manager's onOutcome). Never throws. */
  outcome(state: string, at: number): void;
  /** Take the first depth sample and sample once a minute until stop(). Idempotent. */
  start(): void;
  stop(): void;
  /** AdminApiV1.timeseries(). */
  timeseries(): Promise<TimeseriesV1>;
}

export interface TimeseriesDeps {
  readonly store: Pick<QueueStore, 'countByState'>;
  readonly clock: Clock;
  readonly log?: Logger;
}

const BUCKET: Readonly<Record<string, 'delivered' | 'deferred' | 'bounced'>> = {
  delivered: 'delivered',
  deferred: 'deferred',
  ambiguous: 'deferred',
  bounced: 'bounced',
  expired: 'bounced',
};

export function createTimeseries(deps: TimeseriesDeps): TimeseriesRecorder {
  const ring: Slot[] = Array.from({ length: TIMESERIES_MINUTES }, () => ({ minute: -1, delivered: 0, deferred: 0, bounced: 0, depth: undefined }));
  let firstMinute: number | undefined;
  let timer: Timer | undefined;

  const minuteOf = (ms: number): number => Math.floor(ms / MINUTE);
  /** The slot for `minute`, emptied first if it still holds an older minute. */
  const slotFor = (minute: number): Slot => {
    const slot = ring[((minute % TIMESERIES_MINUTES) + TIMESERIES_MINUTES) % TIMESERIES_MINUTES] as Slot;
    if (slot.minute !== minute) Object.assign(slot, { minute, delivered: 0, deferred: 0, bounced: 0, depth: undefined });
    return slot;
  };
  /** The depth now, filed under the minute it was asked in (the read may finish in the next). */
  const sample = async (): Promise<void> => {
    const minute = minuteOf(deps.clock.now());
    try {
      const counts = await deps.store.countByState();
      let depth = 0;
      for (const [state, n] of Object.entries(counts) as Array<[RecipientState, number]>) if (!isFinal(state)) depth += n;
      slotFor(minute).depth = depth;
    } catch (err) {
      deps.log?.warn({ err: String(err) }, 'timeseries: queue depth sample failed');
    }
  };

  return {
    outcome(state, at) {
      const bucket = BUCKET[state];
      if (bucket === undefined || !Number.isFinite(at)) return;
      const minute = minuteOf(at);
      // An outcome older than the ring (a clock step back) would overwrite a newer minute.
      if (minute <= minuteOf(deps.clock.now()) - TIMESERIES_MINUTES) return;
      slotFor(minute)[bucket]++;
    },
    start() {
      if (timer !== undefined) return;
      firstMinute ??= minuteOf(deps.clock.now());
      void sample();
      timer = deps.clock.setTimer(MINUTE, () => {
        timer?.refresh();
        void sample();
      });
    },
    stop() {
      timer?.cancel();
      timer = undefined;
    },
    async timeseries() {
      await sample();
      const now = minuteOf(deps.clock.now());
      const from = Math.max(now - TIMESERIES_MINUTES + 1, firstMinute ?? now);
      const minutes: Array<TimeseriesV1['minutes'][number]> = [];
      let depth = 0;
      for (let m = from; m <= now; m++) {
        const slot = ring[m % TIMESERIES_MINUTES] as Slot;
        const here = slot.minute === m ? slot : undefined;
        depth = here?.depth ?? depth;
        minutes.push({
          at: new Date(m * MINUTE).toISOString(),
          queueDepth: depth,
          delivered: here?.delivered ?? 0,
          deferred: here?.deferred ?? 0,
          bounced: here?.bounced ?? 0,
        });
      }
      return { minutes };
    },
  };
}
