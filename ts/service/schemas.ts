// Request and response schemas of the HTTP API. The same TypeBox objects validate requests,
// shape responses, generate GET /openapi.json (named by $id) and type the TypeScript client.
import { Type, type Static } from '@sinclair/typebox';
import { STATES } from './states.ts';

// Bounds (issue #12, item 7): every integer a client sends is a safe integer (≤ 2^53 − 1, which
// SQLite's 64-bit integers and Python's ints hold exactly), every list and string has a length cap.
const MAX_INT = Number.MAX_SAFE_INTEGER;
/** An integer a client may send: bounded below by `minimum`, above by 2^53 − 1 unless told. */
export const Count = (minimum: number, opts: { maximum?: number; default?: number; description?: string } = {}) =>
  Type.Integer({ minimum, maximum: MAX_INT, ...opts });
export const MAX_SETS = 256;
export const PRIORITY_RANGE = 1000;

export const ExperimentId = Type.String({ pattern: '^[a-z0-9][a-z0-9-]{0,63}$', description: 'experiment id' });

export const StateSchema = Type.Union(
  STATES.map((s) => Type.Literal(s)),
  { $id: 'State' },
);

export const CheckpointPolicy = Type.Object(
  {
    keep_latest: Count(1, { maximum: 100_000, default: 3 }),
    keep_best: Count(0, { maximum: 100_000, default: 0 }),
    metric: Type.Union([Type.String({ maxLength: 200 }), Type.Null()], { default: null, description: 'metric name reported with checkpoints' }),
    smaller_is_better: Type.Boolean({ default: true }),
  },
  { $id: 'CheckpointPolicy', additionalProperties: false },
);

export const CreateExperiment = Type.Object(
  {
    name: Type.Optional(Type.String({ minLength: 1, maxLength: 200 })),
    config: Type.Optional(Type.Record(Type.String(), Type.Unknown(), { description: 'a run config (docs/config.md), partial' })),
    preset: Type.Optional(Type.String({ maxLength: 100, description: 'quick | paper' })),
    method: Type.Optional(Type.String({ maxLength: 100 })),
    steps: Type.Optional(Count(1)),
    nproc: Type.Optional(Count(1, { maximum: 4096 })),
    set: Type.Optional(
      Type.Array(Type.String({ maxLength: 4096 }), { maxItems: MAX_SETS, description: `overrides as path.to.key=value, like --set (at most ${MAX_SETS})` }),
    ),
    priority: Type.Optional(Type.Integer({ minimum: -PRIORITY_RANGE, maximum: PRIORITY_RANGE, default: 0, description: 'higher first' })),
    max_restarts: Type.Optional(Count(0, { maximum: 100, default: 2 })),
    checkpoint_policy: Type.Optional(CheckpointPolicy),
  },
  { $id: 'CreateExperiment', additionalProperties: false },
);
export type CreateExperiment = Static<typeof CreateExperiment>;

export const Experiment = Type.Object(
  {
    id: Type.String(),
    name: Type.String(),
    state: Type.String(),
    priority: Type.Integer(),
    nproc: Type.Integer(),
    max_restarts: Type.Integer(),
    restarts: Type.Integer(),
    devices: Type.Union([Type.Array(Type.Integer()), Type.Null()]),
    cause: Type.Union([Type.String(), Type.Null()]),
    config: Type.Unknown(),
    summary: Type.Unknown(),
    checkpoint_policy: Type.Unknown(),
    created_at: Type.String(),
    updated_at: Type.String(),
  },
  { $id: 'Experiment' },
);
export type Experiment = Static<typeof Experiment>;

export const ExperimentList = Type.Object(
  { items: Type.Array(Type.Ref(Experiment)), total: Type.Integer(), limit: Type.Integer(), offset: Type.Integer() },
  { $id: 'ExperimentList' },
);

export const ListQuery = Type.Object(
  {
    state: Type.Optional(StateSchema),
    name: Type.Optional(Type.String({ maxLength: 200 })),
    limit: Type.Integer({ minimum: 1, maximum: 500, default: 50 }),
    offset: Count(0, { default: 0 }),
  },
  { additionalProperties: false },
);

export const IdParams = Type.Object({ id: ExperimentId });

export const MetricsQuery = Type.Object(
  {
    names: Type.Optional(Type.String({ maxLength: 4096, description: 'comma-separated metric names' })),
    from: Type.Optional(Count(0)),
    to: Type.Optional(Count(0)),
    last_event_id: Type.Optional(Count(0, { description: 'SSE replay start when the Last-Event-ID header cannot be set' })),
  },
  { additionalProperties: false },
);

export const MetricSeries = Type.Record(Type.String(), Type.Array(Type.Object({ step: Type.Integer(), value: Type.Number() })), {
  $id: 'MetricSeries',
});

export const EventSchema = Type.Object(
  { id: Type.Integer(), experiment_id: Type.String(), kind: Type.String(), data: Type.Unknown(), at: Type.String() },
  { $id: 'Event' },
);

export const Checkpoint = Type.Object(
  { step: Type.Integer(), bytes: Type.Integer(), metric: Type.Union([Type.Number(), Type.Null()]), created_at: Type.String() },
  { $id: 'Checkpoint' },
);

const FilePath = (description: string) => Type.String({ minLength: 1, maxLength: 4096, description: `${description}; inside a data root` });
const Fractions = (description: string) =>
  Type.Array(Type.Number({ exclusiveMinimum: 0, maximum: 1 }), { minItems: 1, maxItems: 32, description });

/** The options of `dmfr eval <protocol>` the service accepts (docs/evaluation.md), as typed fields:
 *  never a pass-through of CLI arguments. The checkpoint, the device and the output are the
 *  service's; files are confined to the data roots. Which fields each protocol takes:
 *  ts/service/evaluation-args.ts. */
export const EvaluationArgs = Type.Object(
  {
    bin: Type.Optional(FilePath('verification: insightface .bin pack')),
    pairs: Type.Optional(FilePath('verification: LFW pairs.txt; templates: lines "template1 template2 label"')),
    images: Type.Optional(FilePath('images root for pairs / media / probe and gallery lists')),
    folds: Type.Optional(Type.Integer({ minimum: 2, maximum: 100, description: 'verification: cross-validation folds' })),
    pca: Type.Optional(Type.Integer({ minimum: 0, maximum: 4096, description: 'verification: PCA dimensions (0: none)' })),
    media: Type.Optional(FilePath('templates: lines "image template media [detector_score]"')),
    no_norm_weight: Type.Optional(Type.Boolean({ description: 'templates: average unit features without norm weighting' })),
    detector_weight: Type.Optional(Type.Union([Type.Literal('auto'), Type.Literal('on'), Type.Literal('off')])),
    fars: Type.Optional(Fractions('templates: target FARs')),
    attributes: Type.Optional(FilePath('templates: per-image attribute table')),
    rule: Type.Optional(Type.Union([Type.Literal('yaw'), Type.Literal('quality')])),
    gallery_threshold: Type.Optional(Type.Number({ minimum: -1e6, maximum: 1e6 })),
    probe_threshold: Type.Optional(Type.Number({ minimum: -1e6, maximum: 1e6 })),
    probes: Type.Optional(FilePath('identification: lines "key identity"')),
    gallery: Type.Optional(FilePath('identification: lines "key identity"')),
    distractors: Type.Optional(FilePath('identification: lines "key"')),
    max_rank: Type.Optional(Type.Integer({ minimum: 1, maximum: 100_000 })),
    fpirs: Type.Optional(Fractions('identification: target FPIRs')),
    batch_size: Type.Optional(Type.Integer({ minimum: 1, maximum: 4096 })),
  },
  { $id: 'EvaluationArgs', additionalProperties: false },
);
export type EvaluationArgs = Static<typeof EvaluationArgs>;

export const CreateEvaluation = Type.Object(
  {
    protocol: Type.Union([Type.Literal('verification'), Type.Literal('templates'), Type.Literal('identification')]),
    checkpoint_step: Type.Optional(Count(0, { description: 'default: the latest checkpoint' })),
    args: Type.Optional(EvaluationArgs),
  },
  { $id: 'CreateEvaluation', additionalProperties: false },
);

export const Evaluation = Type.Object(
  {
    id: Type.String(),
    experiment_id: Type.String(),
    checkpoint_step: Type.Union([Type.Integer(), Type.Null()]),
    protocol: Type.String(),
    args: Type.Unknown(),
    status: Type.String(),
    result: Type.Unknown(),
    error: Type.Union([Type.String(), Type.Null()]),
    created_at: Type.String(),
  },
  { $id: 'Evaluation' },
);

export const CreateDataset = Type.Object(
  { name: Type.String({ minLength: 1, maxLength: 200 }), path: Type.String({ minLength: 1, maxLength: 4096, description: 'inside a data root' }) },
  { $id: 'CreateDataset', additionalProperties: false },
);

export const Dataset = Type.Object(
  { id: Type.String(), name: Type.String(), path: Type.String(), info: Type.Unknown(), created_at: Type.String() },
  { $id: 'Dataset' },
);

/** A study spec (docs/studies.md, "The spec") as JSON: the keys of the YAML spec, checked by the
 *  same validator as `dmfr study run` (ts/study/spec.ts parseStudySpec), which names the key path
 *  of every problem; here only their shapes are sketched, for the docs. */
export const CreateStudy = Type.Object(
  {
    name: Type.Optional(Type.Unknown({ description: "the study's name: letters, digits, '.', '_' or '-'" })),
    base: Type.Optional(Type.Unknown({ description: 'the config every cell starts from: preset, config (a file), method, steps, nproc, config paths' })),
    arms: Type.Optional(Type.Unknown({ description: 'a non-empty list of { name, overrides… }' })),
    seeds: Type.Optional(Type.Unknown({ description: 'distinct integers (default [0])' })),
    factors: Type.Optional(Type.Unknown({ description: 'config.path: [level, …], crossed with the arms' })),
    baseline: Type.Optional(Type.Unknown({ description: 'the arm every other arm is compared with' })),
    pretrain: Type.Optional(Type.Unknown({ description: 'overrides of a per-seed pretraining run every arm starts from' })),
    eval: Type.Optional(Type.Unknown({ description: 'protocols, fars, verification, templates, similarity' })),
    base_dir: Type.Optional(Type.String({ minLength: 1, maxLength: 4096, description: 'where relative files of the spec are taken from (default the data directory); inside a data root' })),
  },
  // Unknown keys reach the spec validator, which names them with the keys it expects.
  { $id: 'CreateStudy', additionalProperties: true },
);
export type CreateStudy = Static<typeof CreateStudy>;

const Nullable = <T extends ReturnType<typeof Type.String>>(t: T) => Type.Union([t, Type.Null()]);

export const StudyCell = Type.Object(
  {
    arm: Type.String({ description: "the arm's name, or 'pretrain'" }),
    levels: Type.Record(Type.String(), Type.Unknown(), { description: 'factor path → level' }),
    seed: Type.Integer(),
    hash: Type.String({ description: "the resolved config's hash: the cell's key" }),
    state: Type.String({ description: 'pending | training | trained | evaluated | failed' }),
    attempts: Type.Integer({ description: 'training experiments launched' }),
    experiment_id: Nullable(Type.String({ description: 'the experiment that trains it (or last did)' })),
    experiments: Type.Array(Type.String()),
    cause: Nullable(Type.String()),
  },
  { $id: 'StudyCell' },
);

export const Study = Type.Object(
  {
    id: Type.String(),
    name: Type.String(),
    state: Type.String({ description: 'running | completed | failed | canceled' }),
    cause: Nullable(Type.String()),
    dir: Type.String({ description: 'the study directory on the service host (dmfr study report|status DIR)' }),
    counts: Type.Object({ cells: Type.Integer(), completed: Type.Integer(), failed: Type.Integer() }),
    cells: Type.Array(Type.Ref(StudyCell)),
    pretrain: Type.Array(Type.Ref(StudyCell)),
    report_path: Nullable(Type.String({ description: 'report.json on the service host, once written' })),
    report: Type.Unknown({ description: 'report.json (arms[], comparisons[], interactions[], sentences[]) once written, else null' }),
    created_at: Type.String(),
    updated_at: Type.String(),
  },
  { $id: 'Study' },
);
export type Study = Static<typeof Study>;

export const StudyList = Type.Object(
  { items: Type.Array(Type.Ref(Study)), total: Type.Integer(), limit: Type.Integer(), offset: Type.Integer() },
  { $id: 'StudyList' },
);

export const StudyListQuery = Type.Object(
  {
    state: Type.Optional(Type.Union(['running', 'completed', 'failed', 'canceled'].map((s) => Type.Literal(s)))),
    limit: Type.Integer({ minimum: 1, maximum: 500, default: 50 }),
    offset: Count(0, { default: 0 }),
  },
  { additionalProperties: false },
);
