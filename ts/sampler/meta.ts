// `meta` (paper: Meta-learning-based DMFR, "Domain-based Sampling"): each step one generative
// domain is held out as meta-test; meta-train is the real domain plus the other generative
// domains, so the real domain is always in meta-train.
//
// Composition (docs/sampling.md): with N = 1 + G domains, every generative domain gets
// c = ⌊B / N⌋ samples per step, whatever its role, and the real domain the rest (B − G·c ≥ c);
// every domain walks its own epochs. The meta-test domain of step k comes from a permutation of
// the generative domains keyed by (seed, ⌊k / G⌋): random, and each domain held out exactly once
// every G steps. Domains are interleaved so every rank's shard holds meta-train and meta-test
// samples (checked when the sampler is built).
import type { RunConfig } from '../config/schema.ts';
import { BaseSampler, domainsOf } from './base.ts';
import { SamplerError } from './errors.ts';
import { GroupedDraw, STREAM } from './groups.ts';
import { hashTuple, shuffled } from './prng.ts';
import { makeStream, type SampleStream } from './streams.ts';
import type { DatasetMeta, GlobalBatch } from './types.ts';
import { generativeDomainIds, samplesWhere, type Geometry } from './validate.ts';

const META_TEST_GROUP = 1; // group 0: real; 1: meta-test; 2…: the other generative domains

export class MetaSampler extends BaseSampler {
  private readonly gens: number[];
  private readonly real: SampleStream;
  private readonly genStreams = new Map<number, SampleStream>();
  private readonly draw: GroupedDraw;
  private readonly seed: number;

  constructor(cfg: RunConfig, private readonly meta: DatasetMeta, geometry: Geometry) {
    super(geometry);
    this.seed = cfg.seed;
    this.gens = generativeDomainIds(meta);
    const g = this.gens.length;
    if (g === 0) throw new SamplerError(`sampler.kind 'meta' needs at least one generative domain; the dataset has none`);
    const balanced = cfg.sampler.identity_balanced;
    const realPool = samplesWhere(meta, (i) => meta.sampleDomains[i] === 0);
    if (realPool.length === 0) throw new SamplerError(`sampler.kind 'meta': the real domain (0) has no samples`);
    this.real = makeStream(realPool, meta.labels, balanced, cfg.seed, STREAM.real);
    for (const id of this.gens) {
      const pool = samplesWhere(meta, (i) => meta.sampleDomains[i] === id);
      if (pool.length === 0) throw new SamplerError(`sampler.kind 'meta': generative domain ${id} has no samples`);
      this.genStreams.set(id, makeStream(pool, meta.labels, balanced, cfg.seed, STREAM.domain(id)));
    }
    const perDomain = Math.floor(this.globalBatch / (g + 1));
    if (perDomain < 1) {
      throw new SamplerError(`sampler.kind 'meta': train.batch_size (${this.globalBatch}) must be at least the number of domains (${g + 1})`);
    }
    this.draw = new GroupedDraw([this.globalBatch - g * perDomain, ...this.gens.map(() => perDomain)]);
    this.checkEveryShardHasBothRoles();
  }

  private checkEveryShardHasBothRoles(): void {
    const { group } = this.draw.layout;
    const s = this.shardSize;
    for (let r = 0; r < this.worldSize; r++) {
      const shard = group.subarray(r * s, (r + 1) * s);
      const test = shard.filter((x) => x === META_TEST_GROUP).length;
      if (test === 0 || test === s) {
        throw new SamplerError(
          `sampler.kind 'meta': a shard of ${s} samples (train.batch_size ${this.globalBatch} over ${this.worldSize} ranks) ` +
            `cannot hold both meta-train and meta-test samples with ${this.gens.length + 1} domains; use a larger batch or fewer ranks`,
        );
      }
    }
  }

  /** The generative domain held out as meta-test at step k. */
  metaTestAt(k: number): number {
    const g = this.gens.length;
    const round = Math.floor(k / g);
    const order = shuffled(Int32Array.from(this.gens), hashTuple(this.seed, STREAM.metaTestDraw, round));
    return order[k - round * g]!;
  }

  protected compute(k: number): GlobalBatch {
    const test = this.metaTestAt(k);
    const streams = [this.real, this.genStreams.get(test)!, ...this.gens.filter((d) => d !== test).map((d) => this.genStreams.get(d)!)];
    const indices = new Int32Array(this.globalBatch);
    this.draw.fill(k, streams, indices);
    return { indices, domains: domainsOf(indices, this.meta.sampleDomains), pair: null, metaTest: test };
  }
}
