// Request and response schemas of the HTTP API. The same TypeBox objects validate requests,
// shape responses, generate GET /openapi.json (named by $id) and type the TypeScript client.
import { Type, type Static } from '@sinclair/typebox';
import { STATES } from './states.ts';

export const ExperimentId = Type.String({ pattern: '^[a-z0-9][a-z0-9-]{0,63}$', description: 'experiment id' });

export const StateSchema = Type.Union(
  STATES.map((s) => Type.Literal(s)),
  { $id: 'State' },
);

export const CheckpointPolicy = Type.Object(
  {
    keep_latest: Type.Integer({ minimum: 1, default: 3 }),
    keep_best: Type.Integer({ minimum: 0, default: 0 }),
    metric: Type.Union([Type.String(), Type.Null()], { default: null, description: 'metric name reported with checkpoints' }),
    smaller_is_better: Type.Boolean({ default: true }),
  },
  { $id: 'CheckpointPolicy', additionalProperties: false },
);

export const CreateExperiment = Type.Object(
  {
    name: Type.Optional(Type.String({ minLength: 1, maxLength: 200 })),
    config: Type.Optional(Type.Record(Type.String(), Type.Unknown(), { description: 'a run config (docs/config.md), partial' })),
    preset: Type.Optional(Type.String({ description: 'quick | paper' })),
    method: Type.Optional(Type.String()),
    steps: Type.Optional(Type.Integer({ minimum: 1 })),
    nproc: Type.Optional(Type.Integer({ minimum: 1 })),
    set: Type.Optional(Type.Array(Type.String(), { description: 'overrides as path.to.key=value, like --set' })),
    priority: Type.Optional(Type.Integer({ default: 0 })),
    max_restarts: Type.Optional(Type.Integer({ minimum: 0, default: 2 })),
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
    name: Type.Optional(Type.String()),
    limit: Type.Integer({ minimum: 1, maximum: 500, default: 50 }),
    offset: Type.Integer({ minimum: 0, default: 0 }),
  },
  { additionalProperties: false },
);

export const IdParams = Type.Object({ id: ExperimentId });

export const MetricsQuery = Type.Object(
  {
    names: Type.Optional(Type.String({ description: 'comma-separated metric names' })),
    from: Type.Optional(Type.Integer({ minimum: 0 })),
    to: Type.Optional(Type.Integer({ minimum: 0 })),
    last_event_id: Type.Optional(Type.Integer({ minimum: 0, description: 'SSE replay start when the Last-Event-ID header cannot be set' })),
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

export const CreateEvaluation = Type.Object(
  {
    protocol: Type.Union([Type.Literal('verification'), Type.Literal('templates'), Type.Literal('identification')]),
    checkpoint_step: Type.Optional(Type.Integer({ minimum: 0, description: 'default: the latest checkpoint' })),
    args: Type.Array(Type.String(), { default: [], description: 'protocol arguments as on the CLI, e.g. ["--bin", "/data/lfw.bin"]' }),
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
  { name: Type.String({ minLength: 1, maxLength: 200 }), path: Type.String({ minLength: 1 }) },
  { $id: 'CreateDataset', additionalProperties: false },
);

export const Dataset = Type.Object(
  { id: Type.String(), name: Type.String(), path: Type.String(), info: Type.Unknown(), created_at: Type.String() },
  { $id: 'Dataset' },
);
