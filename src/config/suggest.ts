/**
 * @module config/suggest
 * "Did you mean …?" for misspelt flags, environment variables, config-file keys and subcommands.
 * Callers: load.ts (flags, POSTWIRE_* names, file keys) and cli/ (subcommand names).
 *
 * A suggestion is offered only when it is close (edit distance ≤ 2, or ≤ a third of the word for
 * long names) or when the word is a known name in another spelling (`maxRecipients`,
 * `MAX_RECIPIENTS`, `max_recipients` all suggest `max-recipients`): a far-fetched guess misleads
 * more than it helps, so `colour` suggests nothing.
 *
 * Pure and total: any strings in, a candidate or undefined out.
 */

function editDistance(a: string, b: string): number {
  let prev = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const row = [i];
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      row.push(Math.min((prev[j] ?? 0) + 1, (row[j - 1] ?? 0) + 1, (prev[j - 1] ?? 0) + cost));
    }
    prev = row;
  }
  return prev[b.length] ?? Math.max(a.length, b.length);
}

/** `maxRecipients`, `MAX_RECIPIENTS`, `max_recipients` → `max-recipients`. */
function kebab(word: string): string {
  return word.replace(/([a-z0-9])([A-Z])/g, '$1-$2').replaceAll('_', '-').toLowerCase();
}

/** The closest of `candidates` to `word`, or undefined when none is close enough to help. */
export function didYouMean(word: string, candidates: readonly string[]): string | undefined {
  const same = candidates.find((c) => kebab(c) === kebab(word));
  if (same !== undefined && same !== word) return same;
  let best: string | undefined;
  let bestScore = Infinity;
  for (const c of candidates) {
    const d = editDistance(kebab(word), kebab(c));
    if (d < bestScore) [best, bestScore] = [c, d];
  }
  const limit = Math.max(2, Math.floor(word.length / 3));
  return bestScore <= limit && best !== word ? best : undefined;
}
