// The contract between the controller and the samplers (docs/sampling.md).
// A sampler is a pure function of (config, dataset tables, step): the global batch of step k is
// computable without replaying steps 0..k-1, which makes resume (also on another rank count)
// and random access exact.
import type { RunConfig } from '../config/schema.ts';

export interface DomainMeta {
  id: number; // 0 is the real domain
  name: string;
  kind: 'real' | 'generative';
  generator?: string;
}

/** What rank 0's `ready` message carries (docs/protocol.md). */
export interface DatasetMeta {
  numSamples: number;
  numClasses: number;
  domains: DomainMeta[];
  labels: Int32Array; // [numSamples]
  sampleDomains: Int16Array; // [numSamples]
  pair: Int32Array; // [numSamples]: Δc = 0 source real sample of a generative sample, else -1
}

/** One step's global batch, in the order it is split into shards (rank r gets slice r). */
export interface GlobalBatch {
  indices: Int32Array; // [globalBatch]
  domains: Int16Array; // [globalBatch]
  /** Position within the same shard of each sample's Δc = 0 partner, or -1 (filter sampler). */
  pair: Int32Array | null;
  /** The generative domain held out as meta-test at this step (meta sampler), else null. */
  metaTest: number | null;
}

/** The body of a `plan` message for one rank, before framing. */
export interface PlanChunk {
  firstStep: number;
  numSteps: number;
  shardSize: number;
  last: boolean;
  indices: Int32Array; // [numSteps * shardSize], row-major by step
  domains: Int16Array; // same shape
  pair: Int32Array | null; // same shape, or null
  metaTest: number[] | null; // [numSteps]
}

export interface Sampler {
  readonly worldSize: number;
  readonly globalBatch: number;
  readonly totalSteps: number;
  step(k: number): GlobalBatch;
  chunk(firstStep: number, numSteps: number, rank: number): PlanChunk;
}

export type SamplerFactory = (cfg: RunConfig, meta: DatasetMeta, worldSize: number) => Sampler;
