// The matched control arms of ts/config/arms.ts (issue #10 §3): each resolves over the quick
// preset, and `mix` trained on a method's batches sees exactly that method's samples, domains and
// pairs at every step; the arms that need the Python side train through the real controller.
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { MATCHED_ARMS } from '../../ts/config/arms.ts';
import { loadConfig } from '../../ts/config/load.ts';
import type { RunConfig } from '../../ts/config/schema.ts';
import { RunController } from '../../ts/controller/index.ts';
import { createSampler, type DatasetMeta } from '../../ts/sampler/index.ts';
import { HAVE_PYTHON } from './helpers.ts';

const withArm = (arm: string, extra: string[] = []): RunConfig =>
  loadConfig({ preset: 'quick', sets: extra, layers: [{ source: `arm ${arm}`, value: MATCHED_ARMS[arm]! }] });

/** The quick preset's shape: 32 identities × 8 real images, two generative domains made from every
 * real image, a quarter of them Δc = 0 (procedural.ZERO_DELTA_FRACTION). */
function quickMeta(): DatasetMeta {
  const labels: number[] = [];
  const domains: number[] = [];
  const pair: number[] = [];
  for (let c = 0; c < 32; c++) for (let i = 0; i < 8; i++) { labels.push(c); domains.push(0); pair.push(-1); }
  for (let g = 1; g <= 2; g++) {
    for (let r = 0; r < 256; r++) { labels.push(labels[r]!); domains.push(g); pair.push(r % 4 === g ? r : -1); }
  }
  return {
    numSamples: labels.length,
    numClasses: 32,
    domains: [
      { id: 0, name: 'real', kind: 'real' },
      { id: 1, name: 'pose', kind: 'generative', generator: 'pose' },
      { id: 2, name: 'quality', kind: 'generative', generator: 'quality' },
    ],
    labels: Int32Array.from(labels),
    sampleDomains: Int16Array.from(domains),
    pair: Int32Array.from(pair),
  };
}

const realCount = (domains: ArrayLike<number>) => Array.from(domains).filter((d) => d === 0).length;

describe('matched control arms', () => {
  const meta = quickMeta();

  it('train mix on exactly the batches of meta and of filter', () => {
    for (const [arm, method] of [['mix-meta-batches', 'meta'], ['mix-filter-batches', 'filter']] as const) {
      const armCfg = withArm(arm);
      const methodCfg = loadConfig({ preset: 'quick', method });
      expect(armCfg.method.name).toBe('mix');
      expect(armCfg.sampler.kind).toBe(method);
      for (const world of [1, 2]) {
        const a = createSampler(armCfg, meta, world);
        const m = createSampler(methodCfg, meta, world);
        for (let k = 0; k < 40; k += 7) expect(a.step(k), `${arm} step ${k} on ${world} ranks`).toEqual(m.step(k));
      }
    }
  });

  it('give the compositions docs/sampling.md states for the quick preset (B = 64)', () => {
    const steps = (cfg: RunConfig) => Array.from({ length: 5 }, (_, k) => createSampler(cfg, meta, 2).step(k));
    // meta: ⌊64/3⌋ = 21 per generative domain, 22 real; mix 1:2: 64/3 rounded = 21 real, 43 synthetic
    expect(steps(withArm('mix-meta-batches')).map((b) => realCount(b.domains))).toEqual([22, 22, 22, 22, 22]);
    expect(steps(withArm('mix-1:2')).map((b) => realCount(b.domains))).toEqual([21, 21, 21, 21, 21]);
    expect(steps(loadConfig({ preset: 'quick', method: 'mix' })).map((b) => realCount(b.domains))).toEqual([32, 32, 32, 32, 32]);
    // filter: 16 pairs (16 real + 16 synthetic), the other 32 mixed 1:1
    for (const b of steps(withArm('mix-filter-batches'))) {
      expect(Array.from(b.pair!).filter((p) => p >= 0)).toHaveLength(32);
      expect(realCount(b.domains)).toBe(32);
    }
  });

  it('arcface-mix is mix with the ArcFace head at arcface_torch\'s margin', () => {
    const cfg = withArm('arcface-mix');
    expect([cfg.method.name, cfg.sampler.kind, cfg.head.type, cfg.head.m, cfg.head.s]).toEqual(['mix', 'mix', 'arcface', 0.5, 64]);
  });
});

describe.skipIf(!HAVE_PYTHON)('matched control arms through the controller', () => {
  for (const arm of ['mix-meta-batches', 'mix-filter-batches', 'arcface-mix']) {
    it(`${arm}: a short quick run completes`, async () => {
      const out = join(mkdtempSync(join(tmpdir(), `dmfr-${arm}-`)), 'run');
      const config = withArm(arm, ['train.steps=4', 'train.nproc=1']);
      const summary = await new RunController({ config, outDir: out }).start();
      expect(summary.status, summary.cause ?? '').toBe('completed');
      expect(summary.steps).toBe(4);
      expect(Number.isFinite(summary.final_loss)).toBe(true);
    });
  }
});
