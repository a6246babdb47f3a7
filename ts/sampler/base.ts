// What every sampler shares: the geometry, random access to step k, and cutting a rank's
// `PlanChunk` (docs/protocol.md, `plan`) out of global batches.
import { SamplerError } from './errors.ts';
import type { GlobalBatch, PlanChunk, Sampler } from './types.ts';
import type { Geometry } from './validate.ts';

export abstract class BaseSampler implements Sampler {
  readonly worldSize: number;
  readonly globalBatch: number;
  readonly shardSize: number;
  readonly totalSteps: number;
  // The controller asks for the same steps once per rank: keep recent global batches.
  private readonly recent = new Map<number, GlobalBatch>();
  private static readonly RECENT_STEPS = 256;

  constructor(geometry: Geometry) {
    this.worldSize = geometry.worldSize;
    this.globalBatch = geometry.globalBatch;
    this.shardSize = geometry.shardSize;
    this.totalSteps = geometry.totalSteps;
  }

  /** The global batch of step k, split into shards in order (rank r gets slice r). */
  step(k: number): GlobalBatch {
    if (!Number.isSafeInteger(k) || k < 0) throw new SamplerError(`step must be a non-negative integer, got ${k}`);
    return this.compute(k);
  }

  protected abstract compute(k: number): GlobalBatch;

  private cached(k: number): GlobalBatch {
    let batch = this.recent.get(k);
    if (!batch) {
      batch = this.step(k);
      this.recent.set(k, batch);
      if (this.recent.size > BaseSampler.RECENT_STEPS) this.recent.delete(this.recent.keys().next().value!);
    }
    return batch;
  }

  chunk(firstStep: number, numSteps: number, rank: number): PlanChunk {
    if (!Number.isSafeInteger(rank) || rank < 0 || rank >= this.worldSize) {
      throw new SamplerError(`rank must be an integer in [0, ${this.worldSize}), got ${rank}`);
    }
    if (!Number.isSafeInteger(firstStep) || firstStep < 0 || !Number.isSafeInteger(numSteps) || numSteps < 1 ||
        firstStep + numSteps > this.totalSteps) {
      throw new SamplerError(`plan chunk [${firstStep}, ${firstStep + numSteps}) is not a non-empty range within [0, train.steps = ${this.totalSteps})`);
    }
    const s = this.shardSize;
    const lo = rank * s;
    const indices = new Int32Array(numSteps * s);
    const domains = new Int16Array(numSteps * s);
    let pair: Int32Array | null = null;
    let metaTest: number[] | null = null;
    for (let t = 0; t < numSteps; t++) {
      const b = this.cached(firstStep + t);
      indices.set(b.indices.subarray(lo, lo + s), t * s);
      domains.set(b.domains.subarray(lo, lo + s), t * s);
      if (b.pair) (pair ??= new Int32Array(numSteps * s)).set(b.pair.subarray(lo, lo + s), t * s);
      if (b.metaTest !== null) (metaTest ??= []).push(b.metaTest);
    }
    if (metaTest && metaTest.length !== numSteps) throw new Error('internal: meta-test set on some steps only');
    return {
      firstStep,
      numSteps,
      shardSize: s,
      last: firstStep + numSteps === this.totalSteps,
      indices,
      domains,
      pair,
      metaTest,
    };
  }
}

/** Fills `domains` from the dataset's per-sample domain table. */
export function domainsOf(indices: Int32Array, sampleDomains: Int16Array): Int16Array {
  const out = new Int16Array(indices.length);
  for (let i = 0; i < indices.length; i++) out[i] = sampleDomains[indices[i]!]!;
  return out;
}
