// Property tests of the samplers' invariants (docs/sampling.md): determinism, random access,
// equal shards, epochs without loss or duplication, ratios, meta-test draws, Δc = 0 pairs, and
// resume on another rank count. Datasets are built by the test from fast-check's parameters.
import { Value } from '@sinclair/typebox/value';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { RunConfig } from '../../ts/config/schema.ts';
import { interleave } from '../../ts/sampler/layout.ts';
import { IncrementalShuffle } from '../../ts/sampler/prng.ts';
import { createSampler, SamplerError, type DatasetMeta, type GlobalBatch, type Sampler } from '../../ts/sampler/index.ts';

type Kind = RunConfig['sampler']['kind'];

interface DataShape {
  classes: number;
  maxPerClass: number;
  generators: number;
  dataSeed: number;
}

/** A long-tailed real domain plus `generators` generative domains made from it (some Δc = 0). */
function makeMeta({ classes, maxPerClass, generators, dataSeed }: DataShape): DatasetMeta {
  let s = dataSeed >>> 0 || 1;
  const rand = (n: number) => {
    s ^= s << 13; s >>>= 0; s ^= s >>> 17; s ^= s << 5; s >>>= 0;
    return s % n;
  };
  const labels: number[] = [];
  const domains: number[] = [];
  const pair: number[] = [];
  for (let c = 0; c < classes; c++) {
    const count = 1 + Math.floor(((maxPerClass - 1) * (rand(1000) / 1000) ** 3)); // long tail
    for (let i = 0; i < count; i++) { labels.push(c); domains.push(0); pair.push(-1); }
  }
  const numReal = labels.length;
  for (let g = 1; g <= generators; g++) {
    for (let r = 0; r < numReal; r++) {
      if (r > 0 && rand(3) === 0) continue;
      labels.push(labels[r]!);
      domains.push(g);
      pair.push(r === 0 || rand(2) === 0 ? r : -1); // Δc = 0 for about half
    }
  }
  return {
    numSamples: labels.length,
    numClasses: classes,
    domains: [
      { id: 0, name: 'real', kind: 'real' },
      ...Array.from({ length: generators }, (_, i) => ({ id: i + 1, name: `gen${i + 1}`, kind: 'generative' as const, generator: 'pose' })),
    ],
    labels: Int32Array.from(labels),
    sampleDomains: Int16Array.from(domains),
    pair: Int32Array.from(pair),
  };
}

function config(kind: Kind, batch: number, opts: { seed?: number; steps?: number; ratio?: [number, number]; balanced?: boolean } = {}): RunConfig {
  const cfg = Value.Create(RunConfig);
  cfg.seed = opts.seed ?? 0;
  cfg.train.batch_size = batch;
  cfg.train.steps = opts.steps ?? 1000;
  cfg.sampler.kind = kind;
  cfg.sampler.identity_balanced = opts.balanced ?? false;
  if (opts.ratio) cfg.sampler.mix_ratio = opts.ratio;
  return cfg;
}

const shape = fc.record({
  classes: fc.integer({ min: 2, max: 40 }),
  maxPerClass: fc.integer({ min: 1, max: 12 }),
  generators: fc.integer({ min: 2, max: 4 }),
  dataSeed: fc.integer({ min: 1, max: 2 ** 31 - 1 }),
});
// ≥ 2 × the number of domains (≤ 5), which meta needs to give every shard both roles.
const shardSize = fc.integer({ min: 10, max: 24 });
const worlds = fc.constantFrom(1, 2, 3, 4);
const seed = fc.integer({ min: -(2 ** 40), max: 2 ** 40 });
const runs = { numRuns: 40 };

const batchEqual = (a: GlobalBatch, b: GlobalBatch) => {
  expect(Array.from(a.indices)).toEqual(Array.from(b.indices));
  expect(Array.from(a.domains)).toEqual(Array.from(b.domains));
  expect(a.pair ? Array.from(a.pair) : null).toEqual(b.pair ? Array.from(b.pair) : null);
  expect(a.metaTest).toEqual(b.metaTest);
};

const ALL_KINDS: Kind[] = ['real', 'mix', 'meta', 'filter'];
/** The kinds whose global batch order does not depend on the rank count (filter's layout does). */
const ORDERED_KINDS: Kind[] = ['real', 'mix', 'meta'];

describe.each(ALL_KINDS)('%s sampler: shared invariants', (kind) => {
  it('is deterministic in the seed', () => {
    fc.assert(fc.property(shape, shardSize, worlds, seed, fc.integer({ min: 0, max: 500 }), fc.boolean(), (sh, s, w, sd, k, balanced) => {
      const meta = makeMeta(sh);
      const a = createSampler(config(kind, s * w, { seed: sd, balanced }), meta, w);
      const b = createSampler(config(kind, s * w, { seed: sd, balanced }), meta, w);
      batchEqual(a.step(k), b.step(k));
      expect(a.chunk(k, 3, w - 1)).toEqual(b.chunk(k, 3, w - 1));
    }), runs);
  });

  it('gives step k directly the same as after walking earlier steps', () => {
    fc.assert(fc.property(shape, shardSize, worlds, seed, fc.array(fc.integer({ min: 0, max: 300 }), { maxLength: 12 }), fc.integer({ min: 0, max: 300 }), fc.boolean(),
      (sh, s, w, sd, earlier, k, balanced) => {
        const meta = makeMeta(sh);
        const walked = createSampler(config(kind, s * w, { seed: sd, balanced }), meta, w);
        for (const e of earlier) walked.step(e);
        for (let e = 0; e < Math.min(k, 40); e++) walked.chunk(e, 1, e % w);
        const direct = createSampler(config(kind, s * w, { seed: sd, balanced }), meta, w);
        batchEqual(direct.step(k), walked.step(k));
      }), runs);
  });

  it('splits the global batch into equal shards, one per rank, in order', () => {
    fc.assert(fc.property(shape, shardSize, worlds, seed, fc.integer({ min: 0, max: 200 }), fc.integer({ min: 1, max: 6 }), (sh, s, w, sd, first, n) => {
      const sampler = createSampler(config(kind, s * w, { seed: sd, steps: first + n }), makeMeta(sh), w);
      const chunks = Array.from({ length: w }, (_, r) => sampler.chunk(first, n, r));
      for (const c of chunks) {
        expect(c.shardSize).toBe(s);
        expect(c.indices.length).toBe(n * s);
        expect(c.domains.length).toBe(n * s);
        expect(c.last).toBe(true);
      }
      for (let t = 0; t < n; t++) {
        const g = sampler.step(first + t);
        const joined = chunks.flatMap((c) => Array.from(c.indices.subarray(t * s, (t + 1) * s)));
        expect(joined).toEqual(Array.from(g.indices));
        const joinedDomains = chunks.flatMap((c) => Array.from(c.domains.subarray(t * s, (t + 1) * s)));
        expect(joinedDomains).toEqual(Array.from(g.domains));
      }
    }), runs);
  });

  it('carries each sample\'s own domain', () => {
    fc.assert(fc.property(shape, shardSize, worlds, seed, fc.integer({ min: 0, max: 200 }), (sh, s, w, sd, k) => {
      const meta = makeMeta(sh);
      const g = createSampler(config(kind, s * w, { seed: sd }), meta, w).step(k);
      g.indices.forEach((idx, j) => expect(g.domains[j]).toBe(meta.sampleDomains[idx]));
    }), runs);
  });
});

/** Concatenated indices of steps [0, steps). */
function flatten(sampler: Sampler, steps: number): number[] {
  const out: number[] = [];
  for (let k = 0; k < steps; k++) out.push(...sampler.step(k).indices);
  return out;
}

const realPool = (meta: DatasetMeta) => Array.from(meta.labels.keys()).filter((i) => meta.sampleDomains[i] === 0);

describe('real sampler', () => {
  it('uses only real samples and each real sample exactly once per epoch', () => {
    fc.assert(fc.property(shape, fc.integer({ min: 1, max: 64 }), seed, (sh, b, sd) => {
      const meta = makeMeta(sh);
      const pool = realPool(meta);
      const n = pool.length;
      const sampler = createSampler(config('real', b, { seed: sd }), meta, 1);
      const seq = flatten(sampler, Math.ceil((3 * n) / b));
      for (let e = 0; e < 3; e++) {
        expect(seq.slice(e * n, (e + 1) * n).sort((x, y) => x - y)).toEqual(pool);
      }
    }), runs);
  });

  it('draws a different order in each epoch and under each seed', () => {
    const meta = makeMeta({ classes: 50, maxPerClass: 10, generators: 0, dataSeed: 7 });
    const n = realPool(meta).length;
    const a = flatten(createSampler(config('real', n), meta, 1), 2);
    const b = flatten(createSampler(config('real', n, { seed: 1 }), meta, 1), 1);
    expect(a.slice(0, n)).not.toEqual(a.slice(n));
    expect(a.slice(0, n)).not.toEqual(b);
  });

  it('identity-balanced: every identity once per epoch, every image of an identity once per c visits', () => {
    fc.assert(fc.property(shape, fc.integer({ min: 1, max: 32 }), seed, (sh, b, sd) => {
      const meta = makeMeta(sh);
      const pool = realPool(meta);
      const byLabel = new Map<number, number[]>();
      for (const i of pool) byLabel.set(meta.labels[i]!, [...(byLabel.get(meta.labels[i]!) ?? []), i]);
      const ids = byLabel.size;
      const maxImages = Math.max(...[...byLabel.values()].map((v) => v.length));
      const epochs = maxImages;
      const sampler = createSampler(config('real', b, { seed: sd, balanced: true }), meta, 1);
      const seq = flatten(sampler, Math.ceil((epochs * ids) / b)).slice(0, epochs * ids);
      for (let e = 0; e < epochs; e++) {
        const labels = seq.slice(e * ids, (e + 1) * ids).map((i) => meta.labels[i]!).sort((x, y) => x - y);
        expect(labels).toEqual([...byLabel.keys()].sort((x, y) => x - y));
      }
      for (const [label, images] of byLabel) {
        const visits = seq.filter((i) => meta.labels[i] === label).slice(0, images.length);
        expect(visits.sort((x, y) => x - y)).toEqual(images);
      }
    }), runs);
  });
});

describe('resume on another rank count', () => {
  it.each(ORDERED_KINDS)('%s: the same global batch for the same step', (kind) => {
    fc.assert(fc.property(shape, fc.integer({ min: 1, max: 4 }), seed, fc.integer({ min: 0, max: 300 }), (sh, unit, sd, k) => {
      const meta = makeMeta(sh);
      const batch = unit * 120; // divisible by 1, 2, 3, 4, 6, 8; shards ≥ 2 × domains (meta)
      const base = createSampler(config(kind, batch, { seed: sd }), meta, 1).step(k);
      for (const w of [2, 3, 4, 6, 8]) batchEqual(createSampler(config(kind, batch, { seed: sd }), meta, w).step(k), base);
    }), runs);
  });
});

/** The samples of each step matching `keep`, in batch order, concatenated over steps. */
function subsequence(sampler: Sampler, steps: number, keep: (g: GlobalBatch, j: number) => boolean): number[] {
  const out: number[] = [];
  for (let k = 0; k < steps; k++) {
    const g = sampler.step(k);
    g.indices.forEach((idx, j) => { if (keep(g, j)) out.push(idx); });
  }
  return out;
}

const sorted = (a: number[]) => a.slice().sort((x, y) => x - y);
const poolOf = (meta: DatasetMeta, keep: (i: number) => boolean) => Array.from(meta.labels.keys()).filter(keep);

/** Each of the first `epochs` epochs of `seq` (epoch length = pool size) is exactly the pool. */
function expectEpochs(seq: number[], pool: number[], epochs: number) {
  const n = pool.length;
  expect(seq.length).toBeGreaterThanOrEqual(epochs * n);
  for (let e = 0; e < epochs; e++) expect(sorted(seq.slice(e * n, (e + 1) * n))).toEqual(pool);
}

describe('mix sampler', () => {
  const ratio = fc.constantFrom<[number, number]>([1, 1], [1, 2], [2, 1], [3, 1], [1, 0], [0.3, 0.7]);

  it('respects sampler.mix_ratio in every step, spread over every shard', () => {
    fc.assert(fc.property(shape, shardSize, worlds, seed, ratio, fc.integer({ min: 0, max: 300 }), (sh, s, w, sd, [a, b], k) => {
      const batch = s * w;
      const sampler = createSampler(config('mix', batch, { seed: sd, ratio: [a, b] }), makeMeta(sh), w);
      const g = sampler.step(k);
      const real = g.domains.filter((d) => d === 0).length;
      const want = (batch * a) / (a + b);
      expect(Math.abs(real - want)).toBeLessThanOrEqual(0.5);
      for (let r = 0; r < w; r++) {
        const shardReal = g.domains.subarray(r * s, (r + 1) * s).filter((d) => d === 0).length;
        expect(Math.abs(shardReal - (s * real) / batch)).toBeLessThan(2);
      }
    }), runs);
  });

  it('walks the real and the synthetic pool each through whole epochs', () => {
    fc.assert(fc.property(shape, fc.integer({ min: 2, max: 40 }), seed, ratio.filter(([, b]) => b > 0), (sh, b, sd, r) => {
      const meta = makeMeta(sh);
      const sampler = createSampler(config('mix', b, { seed: sd, ratio: r }), meta, 1);
      const real = poolOf(meta, (i) => meta.sampleDomains[i] === 0);
      const syn = poolOf(meta, (i) => meta.sampleDomains[i] !== 0);
      const [nr, ns] = [Math.round((b * r[0]) / (r[0] + r[1])), b - Math.round((b * r[0]) / (r[0] + r[1]))];
      const steps = Math.ceil(Math.max(nr > 0 ? (2 * real.length) / nr : 0, (2 * syn.length) / Math.max(ns, 1)));
      if (nr > 0) expectEpochs(subsequence(sampler, steps, (g, j) => g.domains[j] === 0), real, 2);
      if (ns > 0) expectEpochs(subsequence(sampler, steps, (g, j) => g.domains[j] !== 0), syn, 2);
    }), { numRuns: 25 });
  });

  it('1:2 (paper Fig. 6) takes a third of the batch from the real domain', () => {
    const meta = makeMeta({ classes: 20, maxPerClass: 6, generators: 2, dataSeed: 11 });
    const g = createSampler(config('mix', 96, { ratio: [1, 2] }), meta, 4).step(3);
    expect(g.domains.filter((d) => d === 0).length).toBe(32);
  });
});

describe('meta sampler', () => {
  it('holds out exactly one generative domain per step; the real domain is always in meta-train', () => {
    fc.assert(fc.property(shape, shardSize, worlds, seed, fc.integer({ min: 0, max: 300 }), (sh, s, w, sd, k) => {
      const meta = makeMeta(sh);
      const gens = meta.domains.filter((d) => d.kind === 'generative').map((d) => d.id);
      const batch = s * w;
      const g = createSampler(config('meta', batch, { seed: sd }), meta, w).step(k);
      expect(gens).toContain(g.metaTest);
      const perDomain = Math.floor(batch / (gens.length + 1));
      for (const d of gens) expect(g.domains.filter((x) => x === d).length).toBe(perDomain);
      expect(g.domains.filter((x) => x === 0).length).toBe(batch - gens.length * perDomain);
      for (let r = 0; r < w; r++) {
        const shard = Array.from(g.domains.subarray(r * s, (r + 1) * s));
        expect(shard.some((d) => d === g.metaTest)).toBe(true); // meta-test present
        expect(shard.some((d) => d !== g.metaTest)).toBe(true); // meta-train present
      }
    }), runs);
  });

  it('holds each generative domain out once every G steps, in a seeded random order', () => {
    const meta = makeMeta({ classes: 20, maxPerClass: 6, generators: 3, dataSeed: 5 });
    const sampler = createSampler(config('meta', 40), meta, 2);
    const held = Array.from({ length: 60 }, (_, k) => sampler.step(k).metaTest!);
    for (let round = 0; round < 20; round++) expect(sorted(held.slice(3 * round, 3 * round + 3))).toEqual([1, 2, 3]);
    expect(held.slice(0, 3 * 10).join()).not.toEqual([1, 2, 3].join().repeat(10));
    const chunk = sampler.chunk(5, 4, 1);
    expect(chunk.metaTest).toEqual(held.slice(5, 9));
  });

  it('walks every domain through whole epochs', () => {
    fc.assert(fc.property(shape, fc.integer({ min: 10, max: 40 }), seed, (sh, b, sd) => {
      const meta = makeMeta(sh);
      const sampler = createSampler(config('meta', b, { seed: sd }), meta, 1);
      for (const d of meta.domains) {
        const pool = poolOf(meta, (i) => meta.sampleDomains[i] === d.id);
        const per = Math.floor(b / meta.domains.length);
        const count = d.id === 0 ? b - (meta.domains.length - 1) * per : per;
        expectEpochs(subsequence(sampler, Math.ceil((2 * pool.length) / count), (g, j) => g.domains[j] === d.id), pool, 2);
      }
    }), { numRuns: 25 });
  });

  it('gives every shard both roles whenever the shard holds at least 2 × the domains', () => {
    // The layout meta uses (layout.ts), checked exhaustively over N domains, W ranks, shard size S ≥ 2N.
    for (let n = 2; n <= 6; n++) for (let w = 1; w <= 16; w++) for (let s = 2 * n; s <= 2 * n + 24; s++) {
      const b = s * w;
      const c = Math.floor(b / n);
      const { group } = interleave([b - (n - 1) * c, ...Array<number>(n - 1).fill(c)]);
      for (let r = 0; r < w; r++) {
        const test = group.subarray(r * s, (r + 1) * s).filter((g) => g === 1).length;
        expect(test > 0 && test < s, `N=${n} W=${w} S=${s} rank ${r}`).toBe(true);
      }
    }
  });

  it('refuses shards too small to hold both meta-train and meta-test samples', () => {
    const meta = makeMeta({ classes: 20, maxPerClass: 6, generators: 3, dataSeed: 5 });
    expect(() => createSampler(config('meta', 8), meta, 4)).toThrow(/cannot hold both meta-train and meta-test/);
    expect(() => createSampler(config('meta', 3), meta, 1)).toThrow(/at least the number of domains \(4\)/);
    expect(() => createSampler(config('meta', 8), makeMeta({ classes: 4, maxPerClass: 2, generators: 0, dataSeed: 1 }), 1)).toThrow(/at least one generative domain/);
  });
});

describe('filter sampler', () => {
  it('keeps every Δc = 0 pair in one shard with both positions right, at least one pair per shard', () => {
    fc.assert(fc.property(shape, shardSize, worlds, seed, fc.integer({ min: 0, max: 300 }), (sh, s, w, sd, k) => {
      const meta = makeMeta(sh);
      const batch = s * w;
      const sampler = createSampler(config('filter', batch, { seed: sd }), meta, w);
      const g = sampler.step(k);
      expect(g.pair).not.toBeNull();
      let pairs = 0;
      for (let r = 0; r < w; r++) {
        const c = sampler.chunk(k, 1, r);
        const shardPairs = Array.from(c.pair!).filter((p, j) => p >= 0 && c.domains[j] !== 0).length;
        expect(shardPairs).toBeGreaterThanOrEqual(1);
        pairs += shardPairs;
        c.pair!.forEach((p, j) => {
          if (p < 0) return;
          expect(p).toBeLessThan(s);
          expect(c.pair![p]).toBe(j); // symmetric
          const [syn, real] = c.domains[j] !== 0 ? [j, p] : [p, j];
          expect(c.domains[real]).toBe(0);
          expect(c.domains[syn]).not.toBe(0);
          expect(meta.pair[c.indices[syn]!]).toBe(c.indices[real]); // the Δc = 0 source
        });
      }
      expect(pairs).toBe(Math.floor(batch / 4));
    }), runs);
  });

  it('walks the Δc = 0 pool through whole epochs', () => {
    fc.assert(fc.property(shape, fc.integer({ min: 1, max: 4 }), fc.integer({ min: 4, max: 12 }), seed, (sh, w, s, sd) => {
      const meta = makeMeta(sh);
      const b = w * s;
      const sampler = createSampler(config('filter', b, { seed: sd }), meta, w);
      const pool = poolOf(meta, (i) => meta.pair[i]! >= 0);
      const seq = subsequence(sampler, Math.ceil((2 * pool.length) / Math.floor(b / 4)), (g, j) => g.pair![j]! >= 0 && g.domains[j] !== 0);
      expectEpochs(seq, pool, 2);
    }), { numRuns: 25 });
  });

  it('resumes on another rank count with the same samples and the same pairs', () => {
    fc.assert(fc.property(shape, fc.integer({ min: 1, max: 4 }), seed, fc.integer({ min: 0, max: 300 }), (sh, unit, sd, k) => {
      const meta = makeMeta(sh);
      const batch = unit * 32;
      const summary = (g: GlobalBatch, shard: number) => ({
        samples: sorted(Array.from(g.indices)),
        // (synthetic, real partner) as one number; the partner sits at (shard start + pair[j]).
        pairs: sorted(Array.from(g.pair!).flatMap((p, j) =>
          p >= 0 && g.domains[j] !== 0 ? [g.indices[j]! * 1e7 + g.indices[j - (j % shard) + p]!] : [])),
      });
      const base = summary(createSampler(config('filter', batch, { seed: sd }), meta, 1).step(k), batch);
      for (const w of [2, 4, 8]) expect(summary(createSampler(config('filter', batch, { seed: sd }), meta, w).step(k), batch / w)).toEqual(base);
    }), runs);
  });
});

describe('incremental epoch shuffles', () => {
  it('give the same permutation however the work is split', () => {
    fc.assert(fc.property(fc.integer({ min: 1, max: 500 }), fc.integer(), fc.array(fc.integer({ min: 0, max: 600 })), (n, key, splits) => {
      const base = Int32Array.from({ length: n }, (_, i) => i * 3);
      const whole = new IncrementalShuffle(base, key).finish();
      const pieces = new IncrementalShuffle(base, key);
      for (const s of splits) pieces.advanceTo(s);
      expect(Array.from(pieces.finish())).toEqual(Array.from(whole));
      expect(sorted(Array.from(whole))).toEqual(Array.from(base));
    }), runs);
  });
});

describe('large pools (the next epoch shuffled in bursts while the current one is drawn)', () => {
  it('walking through epoch boundaries equals direct access, each epoch complete', () => {
    const n = 100_003; // > the prefetch burst, so the next epoch is built in several pieces
    const meta: DatasetMeta = {
      numSamples: n, numClasses: 1000, domains: [{ id: 0, name: 'real', kind: 'real' }],
      labels: Int32Array.from({ length: n }, (_, i) => i % 1000), sampleDomains: new Int16Array(n), pair: new Int32Array(n).fill(-1),
    };
    const b = 4096;
    const walked = createSampler(config('real', b, { seed: 42 }), meta, 4);
    const seq = flatten(walked, Math.ceil((2 * n) / b) + 1);
    expectEpochs(seq, Array.from({ length: n }, (_, i) => i), 2);
    for (const k of [24, 25, 48, 30]) {
      const direct = createSampler(config('real', b, { seed: 42 }), meta, 4).step(k);
      expect(Array.from(direct.indices)).toEqual(seq.slice(k * b, (k + 1) * b));
    }
  });
});

describe('errors and plan chunks', () => {
  const meta = makeMeta({ classes: 10, maxPerClass: 5, generators: 2, dataSeed: 3 });

  it('rejects a batch that does not split equally over the ranks', () => {
    expect(() => createSampler(config('real', 10), meta, 3)).toThrow(SamplerError);
    expect(() => createSampler(config('real', 10), meta, 3)).toThrow(/train\.batch_size \(10\) must be divisible by the number of ranks \(3\)/);
  });

  it('rejects dataset tables that disagree, naming the table and index', () => {
    const bad = { ...meta, labels: meta.labels.slice(1) };
    expect(() => createSampler(config('real', 8), bad, 1)).toThrow(/table 'labels' has/);
    const badPair = { ...meta, pair: meta.pair.slice() };
    badPair.pair[0] = 1; // a real sample cannot have a partner
    expect(() => createSampler(config('real', 8), badPair, 1)).toThrow(/'pair'\[0\] = 1/);
  });

  it('marks the chunk holding the last step and refuses chunks past train.steps', () => {
    const sampler = createSampler(config('real', 8, { steps: 20 }), meta, 2);
    expect(sampler.chunk(0, 8, 0).last).toBe(false);
    expect(sampler.chunk(8, 8, 1).last).toBe(false);
    expect(sampler.chunk(16, 4, 1).last).toBe(true);
    expect(() => sampler.chunk(16, 8, 0)).toThrow(/train\.steps = 20/);
    expect(() => sampler.chunk(0, 1, 2)).toThrow(/rank must be/);
    expect(sampler.chunk(0, 1, 0).pair).toBeNull();
    expect(sampler.chunk(0, 1, 0).metaTest).toBeNull();
  });
});
