/**
 * @module obs/top-n
 * Bounded label values for per-destination metrics: the N destinations with the most traffic
 * get their own label value, every other destination is summed under `other`. Destinations are
 * chosen by who the remote side is, so an unbounded label would let mail traffic grow the number
 * of series without limit; this keeps it at most N + 1 per counter.
 *
 * Counts are kept per destination (at most `track` of them; beyond that the smallest half is
 * folded into `other` for good) and ranked at scrape time. A destination that falls out of the
 * top N moves its count into `other`; since it falls out only when another one overtakes it,
 * `other` never goes down (no counter reset for rate()). Pure and synchronous.
 */
export const OTHER = 'other';

export interface LabelledCount {
  readonly destination: string;
  readonly key: string;
  readonly value: number;
}

export class TopN {
  readonly #counts = new Map<string, Map<string, number>>();
  readonly #totals = new Map<string, number>();
  readonly #folded = new Map<string, number>();
  readonly #track: number;

  /** `n` destinations get their own label (0: all are `other`); at most `track` are counted apart. */
  constructor(
    private readonly n: number,
    track = Math.max(1000, 10 * n),
  ) {
    this.#track = Math.max(track, n);
  }

  add(destination: string, key: string, amount = 1): void {
    let byKey = this.#counts.get(destination);
    if (byKey === undefined) {
      if (this.#counts.size >= this.#track) this.#fold();
      byKey = new Map();
      this.#counts.set(destination, byKey);
    }
    byKey.set(key, (byKey.get(key) ?? 0) + amount);
    this.#totals.set(destination, (this.#totals.get(destination) ?? 0) + amount);
  }

  /** One entry per (label value, key): the top N destinations by total, then `other`. */
  snapshot(): LabelledCount[] {
    const ranked = [...this.#totals].sort((a, b) => b[1] - a[1] || (a[0] < b[0] ? -1 : 1));
    const out: LabelledCount[] = [];
    const other = new Map(this.#folded);
    ranked.forEach(([destination], i) => {
      const byKey = this.#counts.get(destination);
      if (byKey === undefined) return;
      for (const [key, value] of byKey) {
        if (i < this.n) out.push({ destination, key, value });
        else other.set(key, (other.get(key) ?? 0) + value);
      }
    });
    for (const [key, value] of other) out.push({ destination: OTHER, key, value });
    return out;
  }

  /** Too many destinations to count apart: the smaller half goes into `other` for good. */
  #fold(): void {
    const ranked = [...this.#totals].sort((a, b) => a[1] - b[1]);
    for (const [destination] of ranked.slice(0, Math.ceil(ranked.length / 2))) {
      for (const [key, value] of this.#counts.get(destination) ?? []) this.#folded.set(key, (this.#folded.get(key) ?? 0) + value);
      this.#counts.delete(destination);
      this.#totals.delete(destination);
    }
  }
}
