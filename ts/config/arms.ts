// Study arms that control for the sampler (issue #10 §3): each is a name and its config overrides
// (the shape of a `dmfr study` arm), laid over the study's base config. A DMFR method's batch
// differs from naive mixing's (meta: one share per domain, so real:synthetic 1:G; filter: a quarter
// of the batch in Δc = 0 pairs), so `mix` is also trained on exactly the method's batches: a
// difference between a method and its arm is then the method's, not the sampler's.
// docs/sampling.md ("Matched controls") gives the same overrides as `--set` lines.
import type { ConfigLayer } from './presets.ts';

export const MATCHED_ARMS: Record<string, ConfigLayer> = {
  // Naive mixing at real:synthetic 1:2 (paper Fig. 6's green curve).
  'mix-1:2': { method: { name: 'mix' }, sampler: { kind: 'mix', mix_ratio: [1, 2] } },
  // Plain classification on meta's own batches (sampler.kind meta: the same samples at every step).
  'mix-meta-batches': { method: { name: 'mix' }, sampler: { kind: 'meta' } },
  // Plain classification on filter's own batches (⌊B/4⌋ Δc = 0 pairs + the mixed rest).
  'mix-filter-batches': { method: { name: 'mix' }, sampler: { kind: 'filter' } },
  // Paper Table 3's "ArcFace" row (synthetic samples in the batch, ArcFace loss): arcface_torch's
  // ArcFace margin m = 0.5 at s = 64 (its configs' margin_list (1.0, 0.5, 0.0)).
  'arcface-mix': { method: { name: 'mix' }, head: { type: 'arcface', s: 64, m: 0.5 } },
};
