// Drift guard: the message body schemas of docs/protocol.md exist twice, as TypeBox schemas in
// ts/wire/schemas.ts (the controller validates what ranks send) and as BODY_SCHEMAS, BYE_REASONS
// and the socket/direction type sets in python/dmfr/wire.py (the ranks validate what the
// controller sends). This test reads the Python tables from a real Python process, walks the
// TypeBox schemas (plain JSON Schema objects), and fails naming each message type and field where
// the two part: a field or type only one side has, required vs optional, nullable or not, kinds
// that do not correspond, a socket/direction set or a bye reason that differs.
import { Type } from '@sinclair/typebox';
import { describe, expect, it } from 'vitest';
import { Bodies, CHANNELS } from '../../ts/wire/schemas.ts';
import { HAVE_PYTHON, pythonJson } from './helpers.ts';

/** One body field as both sides can describe it; `kind` uses the Python names. */
interface Field {
  kind: string;
  required: boolean;
  nullable: boolean;
}

/** Both sides brought to one shape. Channel sets are keyed by the TS CHANNELS names. */
interface Wire {
  bodies: Record<string, Record<string, Field>>;
  channels: Record<string, string[]>;
  byeReasons: string[] | null; // null: `bye.reason` is not a union of string literals
}

/** The TS CHANNELS name ↔ the Python set that lists the same socket and direction. */
const CHANNEL_NAMES: Record<string, string> = {
  controlFromRank: 'RANK_CONTROL_TYPES',
  controlToRank: 'CONTROLLER_TYPES',
  eventsFromRank: 'RANK_EVENT_TYPES',
};

// `buffers` is framing, not a body field: it describes the binary frames after the body. Python
// keeps it out of BODY_SCHEMAS — `encode` writes it from the `buffers` argument and
// `_decode_buffers` checks it for every message type (a bad one is `malformed`) before
// `_check_body` sees the body. ts/wire/frame.ts does the same (`decodeBuffers` before the body
// schema, for every type); Bodies lists it, optional, on `ready` and `plan` only so that
// Body<'ready'>/Body<'plan'> type it. So a TS `buffers` field is skipped unless Python lists one
// too (then both are compared as usual). It must stay optional: Python accepts bodies without it.
const FRAMING_FIELDS = new Set(['buffers']);

// JSON Schema `type` (what TypeBox writes) → the Python BODY_SCHEMAS kind.
const KIND_OF_TYPE: Record<string, string> = {
  integer: 'int',
  number: 'number',
  string: 'str',
  boolean: 'bool',
  object: 'object', // Type.Object and Type.Record (patternProperties) alike
  array: 'array',
};
const KIND_OF_CONST: Record<string, string> = { string: 'str', number: 'number', boolean: 'bool' };

type Schema = Record<string, unknown>;

/** The Python kind of one non-null schema, or `unsupported(…)` for what Python has no kind for. */
function kindOf(s: Schema): string {
  if (Array.isArray(s.anyOf)) {
    const kinds = [...new Set((s.anyOf as Schema[]).map(kindOf))];
    return kinds.length === 1 ? kinds[0]! : kinds.join('|');
  }
  if (typeof s.type === 'string' && s.type in KIND_OF_TYPE) return KIND_OF_TYPE[s.type]!;
  if ('const' in s) {
    const k = KIND_OF_CONST[typeof s.const];
    if (k) return Number.isInteger(s.const) ? 'int' : k;
  }
  return `unsupported(${JSON.stringify(s)})`;
}

/** One TypeBox property: nullable when an anyOf member is {type: 'null'}. */
function tsField(s: Schema, required: boolean): Field {
  const members = Array.isArray(s.anyOf) ? (s.anyOf as Schema[]) : [s];
  const nonNull = members.filter((m) => m.type !== 'null');
  const nullable = nonNull.length < members.length;
  const kind = nonNull.length === 0 ? 'null' : kindOf(nonNull.length === 1 ? nonNull[0]! : { anyOf: nonNull });
  return { kind, required, nullable };
}

/** The TS side: Bodies and CHANNELS of ts/wire/schemas.ts, walked as JSON Schema. */
function fromTypeBox(bodies: Record<string, Schema>, channels: Record<string, readonly string[]>): Wire {
  const out: Wire = { bodies: {}, channels: {}, byeReasons: null };
  for (const [type, schema] of Object.entries(bodies)) {
    const required = new Set((schema.required as string[] | undefined) ?? []);
    const props = (schema.properties ?? {}) as Record<string, Schema>;
    out.bodies[type] = Object.fromEntries(Object.entries(props).map(([name, s]) => [name, tsField(s, required.has(name))]));
  }
  for (const [name, types] of Object.entries(channels)) out.channels[name] = [...types];
  const reason = ((bodies.bye?.properties ?? {}) as Record<string, Schema>).reason;
  const literals = reason && (Array.isArray(reason.anyOf) ? (reason.anyOf as Schema[]) : [reason]);
  if (literals && literals.every((m) => typeof m.const === 'string')) out.byeReasons = literals.map((m) => m.const as string);
  return out;
}

/** What the Python process prints (see PRINT_WIRE). */
interface PyWire {
  body_schemas: Record<string, Record<string, [string, boolean, boolean]>>;
  bye_reasons: string[];
  sets: Record<string, string[]>;
}

/** The Python side in the shared shape. */
function fromPython(py: PyWire): Wire {
  const bodies: Wire['bodies'] = {};
  for (const [type, fields] of Object.entries(py.body_schemas)) {
    bodies[type] = Object.fromEntries(
      Object.entries(fields).map(([name, [kind, required, nullable]]) => [name, { kind, required, nullable }]),
    );
  }
  const channels = Object.fromEntries(Object.entries(CHANNEL_NAMES).map(([ts, pyName]) => [ts, py.sets[pyName] ?? []]));
  return { bodies, channels, byeReasons: py.bye_reasons };
}

const TS = 'TS (ts/wire/schemas.ts)';
const PY = 'Python (python/dmfr/wire.py)';
const req = (f: Field) => (f.required ? 'required' : 'optional');
const nul = (f: Field) => (f.nullable ? 'nullable' : 'not nullable');
const describeField = (f: Field) => `${f.kind}, ${req(f)}, ${nul(f)}`;

/** The differences between the two sides, one line each, naming type, field and both sides. */
function compareWire(ts: Wire, py: Wire): string[] {
  const problems: string[] = [];
  for (const type of Object.keys(ts.bodies)) {
    if (!(type in py.bodies)) problems.push(`${type}: message type in ${TS} Bodies, missing from ${PY} BODY_SCHEMAS`);
  }
  for (const type of Object.keys(py.bodies)) {
    if (!(type in ts.bodies)) problems.push(`${type}: message type in ${PY} BODY_SCHEMAS, missing from ${TS} Bodies`);
  }
  for (const [type, tFields] of Object.entries(ts.bodies)) {
    const pFields = py.bodies[type];
    if (!pFields) continue;
    for (const [name, t] of Object.entries(tFields)) {
      const at = `${type}.${name}`;
      const p = pFields[name];
      if (!p) {
        if (!FRAMING_FIELDS.has(name)) problems.push(`${at}: in ${TS} (${describeField(t)}), missing from ${PY} BODY_SCHEMAS`);
        else if (t.required) problems.push(`${at}: framing field required in ${TS}, but ${PY} never requires it`);
        continue;
      }
      if (t.kind !== p.kind) problems.push(`${at}: kind ${t.kind} in ${TS}, ${p.kind} in ${PY}`);
      if (t.required !== p.required) problems.push(`${at}: ${req(t)} in ${TS}, ${req(p)} in ${PY}`);
      if (t.nullable !== p.nullable) problems.push(`${at}: ${nul(t)} in ${TS}, ${nul(p)} in ${PY}`);
    }
    for (const [name, p] of Object.entries(pFields)) {
      if (!(name in tFields)) problems.push(`${type}.${name}: in ${PY} BODY_SCHEMAS (${describeField(p)}), missing from ${TS}`);
    }
  }
  for (const [channel, pyName] of Object.entries(CHANNEL_NAMES)) {
    const t = new Set(ts.channels[channel] ?? []);
    const p = new Set(py.channels[channel] ?? []);
    for (const type of t) if (!p.has(type)) problems.push(`${type}: in ${TS} CHANNELS.${channel}, missing from ${PY} ${pyName}`);
    for (const type of p) if (!t.has(type)) problems.push(`${type}: in ${PY} ${pyName}, missing from ${TS} CHANNELS.${channel}`);
  }
  if (ts.byeReasons === null) {
    problems.push(`bye.reason: not a union of string literals in ${TS}; ${PY} BYE_REASONS is ${JSON.stringify(py.byeReasons)}`);
  } else {
    const p = new Set(py.byeReasons ?? []);
    const t = new Set(ts.byeReasons);
    for (const r of t) if (!p.has(r)) problems.push(`bye.reason: "${r}" in the ${TS} literal union, missing from ${PY} BYE_REASONS`);
    for (const r of p) if (!t.has(r)) problems.push(`bye.reason: "${r}" in ${PY} BYE_REASONS, missing from the ${TS} literal union`);
  }
  return problems;
}

// Prints the rank side's tables as JSON (tuples become lists, frozensets sorted lists).
const PRINT_WIRE = `
import json
from dmfr import wire
print(json.dumps({
    "body_schemas": wire.BODY_SCHEMAS,
    "bye_reasons": list(wire.BYE_REASONS),
    "sets": {name: sorted(getattr(wire, name)) for name in ("RANK_CONTROL_TYPES", "RANK_EVENT_TYPES", "CONTROLLER_TYPES")},
}))
`;

function readPythonWire(): PyWire {
  return pythonJson(PRINT_WIRE);
}

const f = (kind: string, required = true, nullable = false): Field => ({ kind, required, nullable });

describe('compareWire', () => {
  const base = (): Wire => ({
    bodies: { plan: { n: f('int'), m: f('array', true, true), buffers: f('array', false) }, credit: { chunks: f('int') } },
    channels: { controlFromRank: ['credit'], controlToRank: ['plan'], eventsFromRank: [] },
    byeReasons: ['completed', 'error'],
  });

  it('finds nothing when the sides agree, skipping an optional TS-only framing field', () => {
    const py = base();
    delete py.bodies.plan!.buffers;
    expect(compareWire(base(), py)).toEqual([]);
  });

  it('names each differing type, field, channel and bye reason with both sides', () => {
    const ts = base();
    const py = base();
    ts.bodies.plan!.extra = f('str', false);
    ts.bodies.plan!.buffers = f('array', true);
    py.bodies.plan!.n = f('number', false);
    py.bodies.plan!.m = f('array', true, false);
    py.bodies.plan!.only_py = f('bool');
    delete py.bodies.plan!.buffers;
    delete py.bodies.credit;
    py.bodies.bye = {};
    py.channels.controlToRank = ['plan', 'stop'];
    ts.channels.eventsFromRank = ['bye'];
    py.byeReasons = ['completed', 'stopped'];
    expect(compareWire(ts, py)).toEqual([
      `credit: message type in ${TS} Bodies, missing from ${PY} BODY_SCHEMAS`,
      `bye: message type in ${PY} BODY_SCHEMAS, missing from ${TS} Bodies`,
      `plan.n: kind int in ${TS}, number in ${PY}`,
      `plan.n: required in ${TS}, optional in ${PY}`,
      `plan.m: nullable in ${TS}, not nullable in ${PY}`,
      `plan.buffers: framing field required in ${TS}, but ${PY} never requires it`,
      `plan.extra: in ${TS} (str, optional, not nullable), missing from ${PY} BODY_SCHEMAS`,
      `plan.only_py: in ${PY} BODY_SCHEMAS (bool, required, not nullable), missing from ${TS}`,
      `stop: in ${PY} CONTROLLER_TYPES, missing from ${TS} CHANNELS.controlToRank`,
      `bye: in ${TS} CHANNELS.eventsFromRank, missing from ${PY} RANK_EVENT_TYPES`,
      `bye.reason: "error" in the ${TS} literal union, missing from ${PY} BYE_REASONS`,
      `bye.reason: "stopped" in ${PY} BYE_REASONS, missing from the ${TS} literal union`,
    ]);
  });
});

describe('fromTypeBox', () => {
  it('reads kind, required and nullable from TypeBox schemas of each form schemas.ts uses', () => {
    const bodies = {
      m: Type.Object({
        i: Type.Integer({ minimum: 0 }),
        n: Type.Union([Type.Number(), Type.Null()]),
        s: Type.Optional(Type.String()),
        b: Type.Boolean(),
        rec: Type.Record(Type.String(), Type.Unknown()),
        obj: Type.Union([Type.Null(), Type.Object({ x: Type.String() })]),
        arr: Type.Optional(Type.Array(Type.Integer())),
        lit: Type.Union([Type.Literal('a'), Type.Literal('b')]),
        mixed: Type.Union([Type.Integer(), Type.String()]),
        any: Type.Unknown(),
      }),
      bye: Type.Object({ reason: Type.Union([Type.Literal('x'), Type.Literal('y')]) }),
    };
    const ts = fromTypeBox(bodies, { controlFromRank: ['m'] });
    expect(ts.bodies.m).toEqual({
      i: f('int'),
      n: f('number', true, true),
      s: f('str', false),
      b: f('bool'),
      rec: f('object'),
      obj: f('object', true, true),
      arr: f('array', false),
      lit: f('str'),
      mixed: f('int|str'),
      any: f('unsupported({})'),
    });
    expect(ts.byeReasons).toEqual(['x', 'y']);
    expect(ts.channels).toEqual({ controlFromRank: ['m'] });
    expect(fromTypeBox({ bye: Type.Object({ reason: Type.String() }) }, {}).byeReasons).toBeNull();
  });
});

describe.skipIf(!HAVE_PYTHON)('python/dmfr/wire.py body schemas', () => {
  it('agree with ts/wire/schemas.ts: types, channels, fields, kinds, required, nullable, bye reasons', () => {
    const problems = compareWire(fromTypeBox(Bodies, CHANNELS), fromPython(readPythonWire()));
    expect(problems, `the wire schemas drifted apart:\n${problems.join('\n')}`).toEqual([]);
  });
});
