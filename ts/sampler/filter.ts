// `filter` (paper: Filter-based DMFR): the batch plus Δc = 0 pairs for L_flt.
//
// Composition (docs/sampling.md): P = ⌊B / 4⌋ pairs per step — a generative sample with Δc = 0
// (pair ≥ 0) and its real source sample — and B − 2P samples drawn as the `mix` sampler draws
// them (sampler.mix_ratio). The Δc = 0 samples walk their own pool's epochs. Rank r's shard gets
// pairs [⌊rP/W⌋, ⌊(r+1)P/W⌋) first, synthetic then real at positions (2q, 2q+1), and fills the
// rest of its shard with the next mix samples. `pair` is symmetric: each side points at the other.
// The set of samples and pairs of a step does not depend on W; their order within the batch does.
import type { RunConfig } from '../config/schema.ts';
import { BaseSampler, domainsOf } from './base.ts';
import { SamplerError } from './errors.ts';
import { STREAM } from './groups.ts';
import { MixDraw } from './mix.ts';
import { makeStream, type SampleStream } from './streams.ts';
import type { DatasetMeta, GlobalBatch } from './types.ts';
import { samplesWhere, type Geometry } from './validate.ts';

export class FilterSampler extends BaseSampler {
  readonly pairsPerStep: number;
  private readonly mix: MixDraw;
  private readonly pairs: SampleStream;
  private readonly pairStart: Int32Array; // [W + 1]: rank r holds pairs [pairStart[r], pairStart[r+1])

  constructor(cfg: RunConfig, private readonly meta: DatasetMeta, geometry: Geometry) {
    super(geometry);
    this.pairsPerStep = Math.floor(this.globalBatch / 4);
    if (this.pairsPerStep < this.worldSize) {
      throw new SamplerError(
        `sampler.kind 'filter' puts ⌊batch/4⌋ Δc = 0 pairs in a step and at least one in every shard: ` +
          `train.batch_size (${this.globalBatch}) must be at least 4 × the number of ranks (${this.worldSize})`,
      );
    }
    const pool = samplesWhere(meta, (i) => meta.pair[i]! >= 0);
    if (pool.length === 0) {
      throw new SamplerError(`sampler.kind 'filter' needs Δc = 0 pairs: no generative sample of the dataset has a 'pair' partner`);
    }
    this.pairs = makeStream(pool, meta.labels, cfg.sampler.identity_balanced, cfg.seed, STREAM.pairs);
    this.mix = new MixDraw(cfg, meta, this.globalBatch - 2 * this.pairsPerStep, 'filter');
    this.pairStart = Int32Array.from({ length: this.worldSize + 1 }, (_, r) => Math.floor((r * this.pairsPerStep) / this.worldSize));
  }

  protected compute(k: number): GlobalBatch {
    const s = this.shardSize;
    const p = this.pairsPerStep;
    const mixed = new Int32Array(this.globalBatch - 2 * p);
    this.mix.fill(k, mixed);
    const indices = new Int32Array(this.globalBatch);
    const pair = new Int32Array(this.globalBatch).fill(-1);
    let nextMixed = 0;
    for (let r = 0; r < this.worldSize; r++) {
      const base = r * s;
      const first = this.pairStart[r]!;
      const count = this.pairStart[r + 1]! - first;
      for (let q = 0; q < count; q++) {
        const syn = this.pairs.at(k * p + first + q);
        indices[base + 2 * q] = syn;
        indices[base + 2 * q + 1] = this.meta.pair[syn]!;
        pair[base + 2 * q] = 2 * q + 1;
        pair[base + 2 * q + 1] = 2 * q;
      }
      const rest = s - 2 * count;
      indices.set(mixed.subarray(nextMixed, nextMixed + rest), base + 2 * count);
      nextMixed += rest;
    }
    return { indices, domains: domainsOf(indices, this.meta.sampleDomains), pair, metaTest: null };
  }
}
