// Every method through the real path: `dmfr run --method M --preset quick --nproc 2` (here via
// the RunController the CLI uses) finishes with a finite, falling loss and logs its own terms.
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { loadConfig } from '../../ts/config/load.ts';
import { RunController, type MetricsEvent } from '../../ts/controller/index.ts';
import { HAVE_PYTHON } from './helpers.ts';

const TERMS: Record<string, string[]> = {
  real: ['L_cls'],
  mix: ['L_cls'],
  meta: ['L_tr', 'L_te'],
  disentangle: ['L_cls', 'L_recons'],
  filter: ['L_cls', 'L_flt'],
  dul: ['L_cls', 'KL'],
  url: ['L_cls'],
};
// Logged-step diagnostics (docs/methods.md): the quick preset clips, so every method also logs
// grad_norm and clip_fraction; meta its inner step's size. (Per-term norms come every
// train.term_grad_norm_every = 100 steps, after these 60.)
const DIAGNOSTICS = ['grad_norm', 'clip_fraction'];
const OWN_DIAGNOSTICS: Record<string, string[]> = { meta: ['meta_step_ratio'] };
const STEPS = 60;
const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;

describe.skipIf(!HAVE_PYTHON)('every method on the quick preset, 2 ranks', () => {
  for (const [method, terms] of Object.entries(TERMS)) {
    it(`${method}: completes with a finite, falling loss and its terms`, async () => {
      const out = join(mkdtempSync(join(tmpdir(), `dmfr-${method}-`)), 'run');
      const config = loadConfig({ preset: 'quick', method, steps: STEPS, nproc: 2 });
      const controller = new RunController({ config, outDir: out });
      const losses: number[] = [];
      const seenTerms = new Set<string>();
      controller.on('metrics', (m: MetricsEvent) => {
        losses.push(m.loss ?? Number.NaN);
        for (const k of Object.keys(m.terms ?? {})) seenTerms.add(k);
      });
      const summary = await controller.start();
      expect(summary.status, summary.cause ?? '').toBe('completed');
      expect(losses).toHaveLength(STEPS);
      expect(losses.every(Number.isFinite)).toBe(true);
      expect(mean(losses.slice(-10))).toBeLessThan(mean(losses.slice(0, 10)));
      expect([...seenTerms].sort()).toEqual([...terms, ...DIAGNOSTICS, ...(OWN_DIAGNOSTICS[method] ?? [])].sort());
    });
  }
});
