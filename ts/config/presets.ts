// Named partial configs (`--preset NAME`). A preset is a layer under the config file: the file,
// the shorthands and `--set` override it. docs/config.md lists what each preset sets and why.
import type { MethodName } from './schema.ts';

export type ConfigLayer = Record<string, unknown>;

export const PRESETS: Record<string, ConfigLayer> = {
  // CPU smoke run on the built-in procedural data: a narrow, one-block-per-stage IResNet on
  // 32×32 inputs, so `dmfr run --preset quick --nproc 2` finishes in a couple of minutes on
  // 2 cores. Everything else keeps the paper's recipe (CosFace s=64, m=0.4; SGD, wd 5e-4).
  quick: {
    name: 'quick',
    method: { name: 'real' },
    data: {
      kind: 'procedural',
      image_size: 32,
      procedural: { seed: 0, identities: 32, images_per_identity: 8 },
    },
    model: { arch: 'r_tiny', width: 0.25, embedding_size: 64 },
    head: { type: 'cosface', s: 64, m: 0.4 },
    // decay ×0.1 at 3/4 of the run (step 150 of the default 200), rescaled by --steps
    optim: { lr: 0.1, momentum: 0.9, weight_decay: 5e-4, schedule: 'step', milestone_fractions: [0.75], gamma: 0.1 },
    train: { steps: 200, batch_size: 64, nproc: 2, log_every: 1 },
    runtime: { device: 'cpu', threads_per_rank: 1 },
  },
  // The paper's training recipe (§ Implementation Details, "Training" and "Hyperparameters"):
  // IResNet-100, 8 synchronized GPUs × 128 images, SGD with lr 0.01 reduced ×0.1 at 50k, 70k and
  // 80k, weight decay 5e-4, momentum 0.9; CosFace m = 0.4 (s = 64 as in arcface_torch's cosface
  // configs); λ_meta = 0.5, λ_disen = 1.0, λ_flt = 1.0. The paper gives no end step: we stop at
  // 90k, 10k after the last decay, as arcface_torch's step schedules do. The milestones are stated
  // as fractions of the run (50k/70k/80k of 90k), so `--steps` keeps the schedule's shape.
  paper: {
    name: 'paper',
    data: { image_size: 112 },
    model: { arch: 'r100', width: 1, embedding_size: 512 },
    head: { type: 'cosface', s: 64, m: 0.4 },
    optim: {
      lr: 0.01,
      momentum: 0.9,
      weight_decay: 5e-4,
      schedule: 'step',
      milestone_fractions: [50_000 / 90_000, 70_000 / 90_000, 80_000 / 90_000],
      gamma: 0.1,
    },
    train: { steps: 90_000, batch_size: 8 * 128, nproc: 8 },
    method: { lambda_meta: 0.5, lambda_disen: 1.0, lambda_flt: 1.0 },
    runtime: { device: 'cuda' },
  },
};

/** The sampler a method uses unless the config names one (docs/sampling.md). */
export const METHOD_SAMPLER: Record<MethodName, 'real' | 'mix' | 'meta' | 'filter'> = {
  real: 'real',
  mix: 'mix',
  meta: 'meta',
  filter: 'filter',
  disentangle: 'mix',
  dul: 'mix',
  url: 'mix',
};
