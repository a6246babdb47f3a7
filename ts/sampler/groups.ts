// A batch drawn from several streams in fixed per-step counts: group g takes positions
// [k·c_g, (k+1)·c_g) of its stream at step k, laid out by `interleave` (layout.ts). Because every
// stream advances by a fixed count per step, step k needs no replay of earlier steps.
import { interleave, type Interleave } from './layout.ts';
import type { SampleStream } from './streams.ts';

// Stream ids keep the permutations of different pools independent under one seed.
export const STREAM = {
  real: 1,
  synthetic: 2,
  pairs: 3,
  metaTestDraw: 4,
  domain: (id: number) => 1000 + id,
} as const;

export class GroupedDraw {
  readonly layout: Interleave;

  constructor(readonly counts: readonly number[]) {
    this.layout = interleave(counts);
  }

  /** Writes step k's samples into out[offset …]; `streams[g]` serves group g at this step. */
  fill(k: number, streams: readonly SampleStream[], out: Int32Array, offset = 0): void {
    const { group, ordinal } = this.layout;
    for (let j = 0; j < group.length; j++) {
      const g = group[j]!;
      out[offset + j] = streams[g]!.at(k * this.counts[g]! + ordinal[j]!);
    }
  }
}
