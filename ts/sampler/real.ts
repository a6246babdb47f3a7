// `real`: the real domain (domain 0) only — the paper's "w/o synthetic samples" baseline.
import type { RunConfig } from '../config/schema.ts';
import { BaseSampler, domainsOf } from './base.ts';
import { SamplerError } from './errors.ts';
import { GroupedDraw, STREAM } from './groups.ts';
import { makeStream, type SampleStream } from './streams.ts';
import type { DatasetMeta, GlobalBatch } from './types.ts';
import { samplesWhere, type Geometry } from './validate.ts';

export class RealSampler extends BaseSampler {
  private readonly stream: SampleStream;
  private readonly draw: GroupedDraw;

  constructor(cfg: RunConfig, private readonly meta: DatasetMeta, geometry: Geometry) {
    super(geometry);
    const pool = samplesWhere(meta, (i) => meta.sampleDomains[i] === 0);
    if (pool.length === 0) throw new SamplerError(`sampler.kind 'real': the real domain (0) has no samples`);
    this.stream = makeStream(pool, meta.labels, cfg.sampler.identity_balanced, cfg.seed, STREAM.real);
    this.draw = new GroupedDraw([this.globalBatch]);
  }

  protected compute(k: number): GlobalBatch {
    const indices = new Int32Array(this.globalBatch);
    this.draw.fill(k, [this.stream], indices);
    return { indices, domains: domainsOf(indices, this.meta.sampleDomains), pair: null, metaTest: null };
  }
}
