// Checks of the dataset tables (from rank 0's `ready`, docs/protocol.md) and of the batch geometry,
// with errors that name the field and the offending index.
import type { RunConfig } from '../config/schema.ts';
import { SamplerError } from './errors.ts';
import type { DatasetMeta } from './types.ts';

export function checkDatasetMeta(meta: DatasetMeta): void {
  const n = meta.numSamples;
  if (!Number.isSafeInteger(n) || n < 1) throw new SamplerError(`dataset num_samples must be a positive integer, got ${n}`);
  for (const [name, table] of [['labels', meta.labels], ['domains', meta.sampleDomains], ['pair', meta.pair]] as const) {
    if (table.length !== n) throw new SamplerError(`dataset table '${name}' has ${table.length} entries, expected num_samples = ${n}`);
  }
  const kinds = new Map<number, DatasetMeta['domains'][number]['kind']>();
  for (const d of meta.domains) {
    if (kinds.has(d.id)) throw new SamplerError(`dataset domains: id ${d.id} appears twice`);
    kinds.set(d.id, d.kind);
  }
  if (kinds.get(0) !== 'real') throw new SamplerError(`dataset domains: domain 0 must be the real domain (kind 'real')`);
  for (let i = 0; i < n; i++) {
    const label = meta.labels[i]!;
    if (label < 0 || label >= meta.numClasses) {
      throw new SamplerError(`dataset table 'labels'[${i}] = ${label} is outside [0, num_classes = ${meta.numClasses})`);
    }
    const d = meta.sampleDomains[i]!;
    if (!kinds.has(d)) throw new SamplerError(`dataset table 'domains'[${i}] = ${d} is not a declared domain id`);
    const p = meta.pair[i]!;
    if (p === -1) continue;
    if (p < 0 || p >= n) throw new SamplerError(`dataset table 'pair'[${i}] = ${p} is outside [-1, num_samples = ${n})`);
    if (kinds.get(d) !== 'generative') throw new SamplerError(`dataset table 'pair'[${i}] = ${p}: only generative samples have a Δc = 0 partner, sample ${i} is in domain ${d}`);
    if (meta.sampleDomains[p] !== 0) throw new SamplerError(`dataset table 'pair'[${i}] = ${p}: the partner must be a real (domain 0) sample, it is in domain ${meta.sampleDomains[p]}`);
    if (meta.labels[p] !== label) throw new SamplerError(`dataset table 'pair'[${i}] = ${p}: partner label ${meta.labels[p]} differs from the sample's label ${label}`);
  }
}

export interface Geometry {
  worldSize: number;
  globalBatch: number;
  shardSize: number;
  totalSteps: number;
}

export function checkGeometry(cfg: RunConfig, worldSize: number): Geometry {
  if (!Number.isSafeInteger(worldSize) || worldSize < 1) throw new SamplerError(`world size must be a positive integer, got ${worldSize}`);
  const globalBatch = cfg.train.batch_size;
  if (!Number.isSafeInteger(globalBatch) || globalBatch < 1) throw new SamplerError(`train.batch_size must be a positive integer, got ${globalBatch}`);
  if (globalBatch % worldSize !== 0) {
    throw new SamplerError(`train.batch_size (${globalBatch}) must be divisible by the number of ranks (${worldSize}) so every rank gets an equal shard`);
  }
  const totalSteps = cfg.train.steps;
  if (!Number.isSafeInteger(totalSteps) || totalSteps < 1) throw new SamplerError(`train.steps must be a positive integer, got ${totalSteps}`);
  return { worldSize, globalBatch, shardSize: globalBatch / worldSize, totalSteps };
}

/** The dataset samples of the given domains (ascending index). */
export function samplesWhere(meta: DatasetMeta, keep: (i: number) => boolean): Int32Array {
  let count = 0;
  for (let i = 0; i < meta.numSamples; i++) if (keep(i)) count++;
  const out = new Int32Array(count);
  for (let i = 0, j = 0; i < meta.numSamples; i++) if (keep(i)) out[j++] = i;
  return out;
}

export function generativeDomainIds(meta: DatasetMeta): number[] {
  return meta.domains.filter((d) => d.kind === 'generative').map((d) => d.id).sort((a, b) => a - b);
}
