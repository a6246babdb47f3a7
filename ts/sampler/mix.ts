// `mix`: real and synthetic samples at sampler.mix_ratio (paper Fig. 6: 1:1 and 1:2). Each step
// takes round(B · a/(a+b)) real samples (largest remainder) and the rest synthetic; the real pool
// (domain 0) and the synthetic pool (all generative domains together) each walk their own epochs.
import type { RunConfig } from '../config/schema.ts';
import { BaseSampler, domainsOf } from './base.ts';
import { SamplerError } from './errors.ts';
import { GroupedDraw, STREAM } from './groups.ts';
import { apportion } from './layout.ts';
import { makeStream, type SampleStream } from './streams.ts';
import type { DatasetMeta, GlobalBatch } from './types.ts';
import { generativeDomainIds, samplesWhere, type Geometry } from './validate.ts';

/** The real and synthetic streams and their per-step counts for `total` samples, shared with `filter`. */
export class MixDraw {
  readonly draw: GroupedDraw;
  readonly streams: SampleStream[];

  constructor(cfg: RunConfig, meta: DatasetMeta, total: number, who: string) {
    const [a, b] = cfg.sampler.mix_ratio;
    if (!(a >= 0 && b >= 0 && a + b > 0)) {
      throw new SamplerError(`sampler.mix_ratio must be two non-negative numbers, not both 0, got [${a}, ${b}]`);
    }
    const counts = apportion(total, [a, b]);
    const real = samplesWhere(meta, (i) => meta.sampleDomains[i] === 0);
    const generative = new Set(generativeDomainIds(meta));
    const synthetic = samplesWhere(meta, (i) => generative.has(meta.sampleDomains[i]!));
    if (counts[0]! > 0 && real.length === 0) throw new SamplerError(`sampler.kind '${who}': the real domain (0) has no samples`);
    if (counts[1]! > 0 && synthetic.length === 0) {
      throw new SamplerError(`sampler.kind '${who}': sampler.mix_ratio asks for synthetic samples but the dataset has no generative domain samples`);
    }
    const balanced = cfg.sampler.identity_balanced;
    this.streams = [
      makeStream(real, meta.labels, balanced, cfg.seed, STREAM.real),
      makeStream(synthetic, meta.labels, balanced, cfg.seed, STREAM.synthetic),
    ];
    this.draw = new GroupedDraw(counts);
  }

  fill(k: number, out: Int32Array, offset = 0): void {
    this.draw.fill(k, this.streams, out, offset);
  }
}

export class MixSampler extends BaseSampler {
  private readonly mix: MixDraw;

  constructor(cfg: RunConfig, private readonly meta: DatasetMeta, geometry: Geometry) {
    super(geometry);
    this.mix = new MixDraw(cfg, meta, this.globalBatch, 'mix');
  }

  /** Real and synthetic samples per step. */
  get counts(): readonly number[] {
    return this.mix.draw.counts;
  }

  protected compute(k: number): GlobalBatch {
    const indices = new Int32Array(this.globalBatch);
    this.mix.fill(k, indices);
    return { indices, domains: domainsOf(indices, this.meta.sampleDomains), pair: null, metaTest: null };
  }
}
