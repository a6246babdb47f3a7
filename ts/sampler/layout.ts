// The order of a global batch made of several groups (real / synthetic, one per domain, …).
// Groups are interleaved smoothly (stride scheduling: the m-th of a group's c samples sits at key
// (m + ½) / c), so any contiguous slice — in particular every rank's shard — holds each group in
// close to its batch proportion. The order depends only on the counts, never on the rank count,
// so a resumed run on another number of ranks sees the same global batch in the same order.

export interface Interleave {
  /** Group of each batch position. */
  group: Int32Array;
  /** Which of its group's samples (0-based, in stream order) each position holds. */
  ordinal: Int32Array;
}

export function interleave(counts: readonly number[]): Interleave {
  const slots: Array<{ key: number; g: number; m: number }> = [];
  counts.forEach((c, g) => {
    for (let m = 0; m < c; m++) slots.push({ key: (m + 0.5) / c, g, m });
  });
  slots.sort((x, y) => x.key - y.key || x.g - y.g);
  return {
    group: Int32Array.from(slots, (s) => s.g),
    ordinal: Int32Array.from(slots, (s) => s.m),
  };
}

/** Splits `total` into parts proportional to `weights` (largest remainder; ties to the first). */
export function apportion(total: number, weights: readonly number[]): number[] {
  const sum = weights.reduce((a, b) => a + b, 0);
  const exact = weights.map((w) => (total * w) / sum);
  const parts = exact.map(Math.floor);
  let left = total - parts.reduce((a, b) => a + b, 0);
  const order = exact.map((e, i) => ({ i, frac: e - Math.floor(e) })).sort((a, b) => b.frac - a.frac || a.i - b.i);
  for (const { i } of order) {
    if (left-- <= 0) break;
    parts[i]!++;
  }
  return parts;
}
