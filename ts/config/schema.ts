// The run configuration: one TypeBox schema that validates config files, CLI overrides and
// API bodies, and that the ranks receive whole in the `config` message (docs/protocol.md).
// Keys are snake_case as in arcface_torch's configs, so the same file reads naturally in Python.
// docs/config.md documents every field and where each default comes from.
import { Type, type Static } from '@sinclair/typebox';

const Positive = (description: string, extra: object = {}) =>
  Type.Integer({ minimum: 1, description, ...extra });

export const MethodName = Type.Union(
  ['real', 'mix', 'meta', 'disentangle', 'filter', 'dul', 'url'].map((m) => Type.Literal(m)),
  { $id: 'MethodName', description: 'training method (docs/methods.md)' },
);

export const MethodConfig = Type.Object(
  {
    name: MethodName,
    // meta (paper: Meta-learning-based DMFR): λ_meta and the inner step α on the prototypes.
    lambda_meta: Type.Number({ minimum: 0, maximum: 1, default: 0.5 }),
    meta_alpha: Type.Number({ exclusiveMinimum: 0, default: 0.1 }),
    // disentangle (paper: Disentangle-based DMFR): L = L_cls + λ_disen L_recons.
    lambda_disen: Type.Number({ minimum: 0, default: 1 }),
    disentangle_stage: Type.Integer({ minimum: 1, maximum: 4, default: 3, description: 'IResNet stage whose output map is split and rebuilt' }),
    // filter (paper: Filter-based DMFR): L = L_cls + λ_flt L_flt.
    lambda_flt: Type.Number({ minimum: 0, default: 1 }),
    filter_shared_classifier: Type.Boolean({ default: false, description: 'paper: separate classifiers for real and synthetic (false)' }),
    filter_detach_real: Type.Boolean({ default: true, description: 'stop the gradient of L_flt through the real target H(x_real)' }),
    filter_trains_backbone: Type.Boolean({ default: true, description: 'whether L_flt back-propagates into the backbone H' }),
    // dul (Chang et al. 2020), classification variant.
    kl_weight: Type.Number({ minimum: 0, default: 0.01 }),
    // url (Shi et al. 2020): K sub-embeddings with confidences.
    url_groups: Type.Integer({ minimum: 1, default: 16 }),
    url_decorrelation: Type.Boolean({ default: false }),
  },
  { $id: 'MethodConfig', additionalProperties: false },
);

export const DataConfig = Type.Object(
  {
    kind: Type.Union([Type.Literal('procedural'), Type.Literal('rec'), Type.Literal('folder'), Type.Literal('list')], {
      default: 'procedural',
    }),
    path: Type.Optional(Type.String({ minLength: 1, description: 'dataset path for rec/folder/list' })),
    generative: Type.Array(
      Type.Object(
        { name: Type.String({ minLength: 1 }), path: Type.String({ minLength: 1 }) },
        { additionalProperties: false },
      ),
      { default: [], description: 'generative domains (folder + manifest, docs/domains.md)' },
    ),
    image_size: Positive('square input size in pixels', { default: 112 }),
    skip_bad: Type.Boolean({ default: false, description: 'skip and count corrupt records instead of stopping' }),
    num_workers: Type.Integer({ minimum: 0, default: 0, description: 'DataLoader-style decode workers per rank' }),
    // Which identities of a folder/list dataset train (python/dmfr/data/selection.py, docs/data.md).
    select: Type.Object(
      {
        min_images: Positive('drop identities with fewer images', { default: 1 }),
        include: Type.Array(Type.String({ minLength: 1 }), { default: [], description: 'keep only these identities (empty: all)' }),
        exclude: Type.Array(Type.String({ minLength: 1 }), { default: [], description: 'drop these identities' }),
        exclude_pairs: Type.String({ default: '', description: 'LFW pairs file whose identities (in exclude_folds) are dropped' }),
        exclude_folds: Type.Array(Type.Integer({ minimum: 1 }), { default: [], description: '1-based folds of exclude_pairs; empty: every fold' }),
      },
      { additionalProperties: false, default: {} },
    ),
    // Crop or 5-point alignment before resizing, recorded in checkpoints (python/dmfr/data/preprocess.py).
    preprocess: Type.Object(
      {
        crop_center: Type.Array(Type.Integer({ minimum: 1 }), { default: [], maxItems: 2, description: '[w, h]: the centre box' }),
        crop_box: Type.Array(Type.Integer({ minimum: 0 }), { default: [], maxItems: 4, description: '[x, y, w, h] in source pixels' }),
        landmarks: Type.String({ default: '', description: "landmarks file ('image x1 y1 … x5 y5') for ArcFace-template alignment" }),
      },
      { additionalProperties: false, default: {} },
    ),
    // The built-in procedural benchmark (python/dmfr/data/procedural.py).
    procedural: Type.Object(
      {
        seed: Type.Integer({ default: 0 }),
        identities: Positive('training identities', { default: 64 }),
        images_per_identity: Positive('mean real images per identity', { default: 8 }),
        generators: Type.Array(Type.String(), { default: ['pose', 'quality'] }),
        fingerprint_strength: Type.Number({ minimum: 0, default: 1, description: 'generator modality ε strength (docs/domains.md); 0: none (the oracle row)' }),
        identity_loss: Type.Number({ minimum: 0, maximum: 1, default: 0.5, description: 'how far generators blend toward the mean face' }),
        test_identities: Type.Integer({ minimum: 0, default: 0, description: 'held-out test identities; 0: the benchmark default' }),
        min_far: Type.Number({ exclusiveMinimum: 0, maximum: 1, default: 1e-4, description: 'lowest FAR the test protocols must support' }),
      },
      { additionalProperties: false, default: {} },
    ),
  },
  { $id: 'DataConfig', additionalProperties: false },
);

export const ModelConfig = Type.Object(
  {
    arch: Type.Union(['r18', 'r34', 'r50', 'r100', 'r200', 'r_tiny'].map((a) => Type.Literal(a)), { default: 'r18' }),
    width: Type.Number({ exclusiveMinimum: 0, maximum: 4, default: 1, description: 'channel multiplier (narrow CPU variants < 1)' }),
    embedding_size: Positive('feature dimension', { default: 512 }),
    dropout: Type.Number({ minimum: 0, maximum: 1, default: 0 }),
  },
  { $id: 'ModelConfig', additionalProperties: false },
);

export const HeadConfig = Type.Object(
  {
    type: Type.Union(['softmax', 'cosface', 'arcface', 'combined'].map((h) => Type.Literal(h)), { default: 'cosface' }),
    s: Type.Number({ exclusiveMinimum: 0, default: 64 }),
    m: Type.Number({ minimum: 0, default: 0.4, description: 'CosFace m (paper: 0.4) or ArcFace m' }),
    m1: Type.Number({ default: 1 }),
    m2: Type.Number({ default: 0 }),
    m3: Type.Number({ default: 0 }),
    straight_through: Type.Boolean({ default: false, description: "ArcFace: arcface_torch's straight-through margin (forward exact, gradient of the plain cosine)" }),
    partial_fc_sample_rate: Type.Number({ exclusiveMinimum: 0, maximum: 1, default: 1 }),
  },
  { $id: 'HeadConfig', additionalProperties: false },
);

export const OptimConfig = Type.Object(
  {
    lr: Type.Number({ exclusiveMinimum: 0, default: 0.1 }),
    momentum: Type.Number({ minimum: 0, maximum: 1, default: 0.9 }),
    weight_decay: Type.Number({ minimum: 0, default: 5e-4 }),
    no_bn_decay: Type.Boolean({ default: false }),
    schedule: Type.Union([Type.Literal('step'), Type.Literal('poly'), Type.Literal('constant')], { default: 'step' }),
    milestones: Type.Array(Type.Integer({ minimum: 1 }), { default: [] }),
    // Milestones as fractions of train.steps (the presets' form, so --steps rescales them);
    // resolved into `milestones` by ts/config/load.ts unless a later layer sets milestones.
    milestone_fractions: Type.Array(Type.Number({ exclusiveMinimum: 0, exclusiveMaximum: 1 }), { default: [] }),
    gamma: Type.Number({ exclusiveMinimum: 0, default: 0.1 }),
    warmup_steps: Type.Integer({ minimum: 0, default: 0 }),
    clip_grad_norm: Type.Number({ minimum: 0, default: 5, description: 'arcface_torch clips at 5; 0 disables' }),
  },
  { $id: 'OptimConfig', additionalProperties: false },
);

export const TrainConfig = Type.Object(
  {
    steps: Positive('optimizer steps', { default: 100 }),
    batch_size: Positive('global batch per step (split equally over ranks)', { default: 64 }),
    nproc: Positive('ranks (torchrun --nproc-per-node)', { default: 1 }),
    amp: Type.Union([Type.Literal('none'), Type.Literal('fp16'), Type.Literal('bf16')], { default: 'none' }),
    channels_last: Type.Boolean({ default: false }),
    grad_accum: Positive('micro-batches per optimizer step', { default: 1 }),
    log_every: Positive('steps between metrics messages', { default: 1 }),
    checkpoint_every: Type.Integer({ minimum: 0, default: 0, description: '0: only at the end' }),
    term_grad_norm_every: Type.Integer({ minimum: 0, default: 100, description: 'steps between per-loss-term gradient norms (an extra backward per term; docs/methods.md, Diagnostics); 0: never' }),
    keep_last: Positive('checkpoints kept', { default: 3 }),
    init: Type.Optional(Type.String({ description: 'checkpoint or arcface_torch backbone.pth to start from' })),
    deterministic: Type.Boolean({ default: false }),
    tensorboard: Type.Boolean({ default: true, description: 'rank 0 writes TensorBoard event files to <run_dir>/tensorboard' }),
  },
  { $id: 'TrainConfig', additionalProperties: false },
);

export const SamplerConfig = Type.Object(
  {
    kind: Type.Union(['real', 'mix', 'meta', 'filter'].map((k) => Type.Literal(k)), {
      default: 'real',
      description: 'domain sampling (docs/sampling.md); the method picks a sensible default',
    }),
    mix_ratio: Type.Tuple([Type.Number({ minimum: 0 }), Type.Number({ minimum: 0 })], {
      default: [1, 1],
      description: 'real : synthetic samples per batch (paper Fig. 6: 1:1 and 1:2)',
    }),
    identity_balanced: Type.Boolean({ default: false }),
    chunk_steps: Positive('steps per plan message', { default: 8 }),
    credit: Positive('plan chunks a rank may hold ahead', { default: 4 }),
  },
  { $id: 'SamplerConfig', additionalProperties: false },
);

export const RuntimeConfig = Type.Object(
  {
    device: Type.Union([Type.Literal('auto'), Type.Literal('cpu'), Type.Literal('cuda')], { default: 'auto' }),
    bind: Type.String({ default: '127.0.0.1', description: 'address the controller binds its sockets to' }),
    nnodes: Type.Integer({ minimum: 1, default: 1, description: 'hosts the run spans; train.nproc ranks in all, split equally (docs/multinode.md)' }),
    advertise: Type.String({ default: '', description: 'address other nodes reach the controller and rank 0 at; empty: runtime.bind' }),
    curve: Type.Boolean({ default: false, description: 'encrypt the ranks\' ZeroMQ traffic with CURVE (for ranks on other hosts); messages are HMAC-signed either way' }),
    master_port: Type.Integer({ minimum: 0, maximum: 65535, default: 0, description: "torchrun's rendezvous port for nnodes > 1; 0: a free port" }),
    heartbeat_s: Type.Number({ exclusiveMinimum: 0, default: 1 }),
    rank_timeout_s: Type.Number({ exclusiveMinimum: 0, default: 60 }),
    startup_timeout_s: Type.Number({
      exclusiveMinimum: 0,
      default: 120,
      description: "from torchrun's launch to every rank's hello (importing torch; with nnodes > 1 also waiting for the other nodes to join)",
    }),
    controller_timeout_s: Type.Number({ exclusiveMinimum: 0, default: 15 }),
    stop_grace_s: Type.Number({ minimum: 0, default: 10 }),
    threads_per_rank: Type.Integer({ minimum: 0, default: 0, description: 'torch threads per rank; 0: cores / nproc' }),
  },
  { $id: 'RuntimeConfig', additionalProperties: false },
);

export const RunConfig = Type.Object(
  {
    name: Type.String({ minLength: 1, default: 'run' }),
    seed: Type.Integer({ default: 0 }),
    method: MethodConfig,
    data: DataConfig,
    model: ModelConfig,
    head: HeadConfig,
    optim: OptimConfig,
    train: TrainConfig,
    sampler: SamplerConfig,
    runtime: RuntimeConfig,
  },
  { $id: 'RunConfig', additionalProperties: false },
);

export type RunConfig = Static<typeof RunConfig>;
export type MethodName = Static<typeof MethodName>;
