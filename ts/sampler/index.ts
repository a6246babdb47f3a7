// createSampler: the one entry point the controller uses (docs/sampling.md).
import type { RunConfig } from '../config/schema.ts';
import { SamplerError } from './errors.ts';
import { FilterSampler } from './filter.ts';
import { MetaSampler } from './meta.ts';
import { MixSampler } from './mix.ts';
import { RealSampler } from './real.ts';
import type { DatasetMeta, Sampler, SamplerFactory } from './types.ts';
import { checkDatasetMeta, checkGeometry } from './validate.ts';

export { SamplerError } from './errors.ts';
export type { DatasetMeta, DomainMeta, GlobalBatch, PlanChunk, Sampler, SamplerFactory } from './types.ts';

export const createSampler: SamplerFactory = (cfg: RunConfig, meta: DatasetMeta, worldSize: number): Sampler => {
  const geometry = checkGeometry(cfg, worldSize);
  checkDatasetMeta(meta);
  switch (cfg.sampler.kind) {
    case 'real':
      return new RealSampler(cfg, meta, geometry);
    case 'mix':
      return new MixSampler(cfg, meta, geometry);
    case 'meta':
      return new MetaSampler(cfg, meta, geometry);
    case 'filter':
      return new FilterSampler(cfg, meta, geometry);
    default:
      throw new SamplerError(`sampler.kind '${String(cfg.sampler.kind)}' is not one of real, mix, meta, filter`);
  }
};
