// TypeBox schemas for every message of docs/protocol.md: the header and one body per msg_type.
// Bodies allow extra fields (a newer minor version may add some); what is listed is required.
import { Type, type Static, type TSchema } from '@sinclair/typebox';

export const PROTOCOL_VERSION = '1.0';
export const DELIMITER = '<DMFR|MSG>';
/** Default cap on all frames of one message together (docs/protocol.md, "oversized"). */
export const DEFAULT_MAX_MESSAGE_BYTES = 64 * 1024 * 1024;

const Int = (min?: number) => Type.Integer(min === undefined ? {} : { minimum: min });
const Rank = Int(0);
const Step = Int(-1);

export const Header = Type.Object({
  version: Type.String({ pattern: '^[0-9]+\\.[0-9]+$' }),
  msg_id: Type.String({ minLength: 1 }),
  msg_type: Type.String({ minLength: 1 }),
  run_id: Type.String({ minLength: 1 }),
  rank: Type.Union([Rank, Type.Null()]),
  session: Type.String({ minLength: 1 }),
  date: Type.String({ minLength: 1 }),
});
export type Header = Static<typeof Header>;

export const DTYPES = ['uint8', 'int8', 'int16', 'int32', 'int64', 'float32', 'float64'] as const;
export type DType = (typeof DTYPES)[number];

export const BufferSpec = Type.Object({
  name: Type.String({ minLength: 1 }),
  dtype: Type.Union(DTYPES.map((d) => Type.Literal(d))),
  shape: Type.Array(Int(0)),
});
export type BufferSpec = Static<typeof BufferSpec>;
const Buffers = Type.Optional(Type.Array(BufferSpec));

export const Domain = Type.Object({
  id: Int(0),
  name: Type.String(),
  kind: Type.Union([Type.Literal('real'), Type.Literal('generative')]),
  generator: Type.Optional(Type.String()),
});

export const Bodies = {
  hello: Type.Object({
    rank: Rank,
    local_rank: Rank,
    world_size: Int(1),
    host: Type.String(),
    pid: Int(1),
    device: Type.String({ minLength: 1 }),
    torch_version: Type.String(),
    python_version: Type.String(),
  }),
  config: Type.Object({
    config: Type.Record(Type.String(), Type.Unknown()),
    resume: Type.Union([Type.Null(), Type.Object({ checkpoint: Type.String({ minLength: 1 }) })]),
  }),
  ready: Type.Object({
    rank: Rank,
    num_samples: Int(0),
    num_classes: Int(0),
    domains: Type.Array(Domain),
    start_step: Int(0),
    buffers: Buffers,
  }),
  credit: Type.Object({ chunks: Int(1) }),
  plan: Type.Object({
    first_step: Int(0),
    num_steps: Int(1),
    shard_size: Int(1),
    last: Type.Boolean(),
    meta_test: Type.Union([Type.Null(), Type.Array(Type.Integer())]),
    buffers: Buffers,
  }),
  // `loss` is null when the step's loss was not finite (JSON has no NaN/Infinity).
  metrics: Type.Object({
    step: Int(0),
    loss: Type.Union([Type.Number(), Type.Null()]),
    lr: Type.Number(),
    samples_per_s: Type.Number({ minimum: 0 }),
    plan_wait_s: Type.Number({ minimum: 0 }),
    step_time_s: Type.Number({ minimum: 0 }),
    terms: Type.Record(Type.String(), Type.Union([Type.Number(), Type.Null()])),
  }),
  // A rank sends {"step": k}; the controller sends {}.
  heartbeat: Type.Object({ step: Type.Optional(Step) }),
  'checkpoint-saved': Type.Object({ step: Step, path: Type.String({ minLength: 1 }), bytes: Int(0) }),
  stop: Type.Object({ reason: Type.String(), final_step: Step, checkpoint: Type.Optional(Type.Boolean()) }),
  error: Type.Object({
    message: Type.String(),
    type: Type.String(),
    traceback: Type.String(),
    step: Type.Union([Step, Type.Null()]),
    // true: a ConfigError/DataError, the same on every launch (not retried); docs/protocol.md
    input_error: Type.Optional(Type.Boolean()),
  }),
  bye: Type.Object({
    reason: Type.Union(['completed', 'stopped', 'error', 'controller_lost'].map((r) => Type.Literal(r))),
    last_step: Step,
    // the rank's own wall time from its first step to its last (sent when it trained to the end
    // or to a stop); the same clock `--local-plans` reports, so the two loops compare directly
    train_time_s: Type.Optional(Type.Number({ minimum: 0 })),
  }),
} satisfies Record<string, TSchema>;

export type MsgType = keyof typeof Bodies;
export type Body<T extends MsgType> = Static<(typeof Bodies)[T]>;
export const MSG_TYPES = Object.keys(Bodies) as MsgType[];

/** Which types may arrive on which socket in which direction (docs/protocol.md, "Sockets"). */
export const CHANNELS = {
  controlFromRank: ['hello', 'ready', 'credit'],
  controlToRank: ['config', 'plan', 'stop', 'heartbeat'],
  eventsFromRank: ['metrics', 'heartbeat', 'checkpoint-saved', 'error', 'bye'],
} as const satisfies Record<string, readonly MsgType[]>;
export type Channel = keyof typeof CHANNELS;
