// Drift guard: test/python/tiny_data.py's BASE_CONFIG is a hand copy of the schema defaults that
// every Python test runs on. This test resolves the defaults with the real loader
// (ts/config/load.ts), reads BASE_CONFIG from a real Python process, and fails naming each dotted
// path where the two part: a key only one side has, a value outside the SHRUNK allow-list, or a
// number that would reach Python as int on one side and float on the other.
import { isDeepStrictEqual } from 'node:util';
import { describe, expect, it } from 'vitest';
import { loadConfig, resolveLayers } from '../../ts/config/load.ts';
import { HAVE_PYTHON, pythonJson } from './helpers.ts';

// The fields BASE_CONFIG deliberately sets away from the schema defaults, and why. Keep it
// minimal: an entry whose value no longer differs fails the test, so remove it then.
const SHRUNK: Record<string, string> = {
  // A CPU-sized network: one block per stage, 1/8 of the channels, a short embedding.
  'model.arch': 'CPU-sized model',
  'model.width': 'CPU-sized model',
  'model.embedding_size': 'CPU-sized model',
  // Small inputs and a small procedural dataset with no synthetic domains (tests that need
  // generators name them).
  'data.image_size': 'small inputs',
  'data.procedural.identities': 'small dataset',
  'data.procedural.images_per_identity': 'small dataset',
  'data.procedural.generators': 'real-only dataset unless a test adds generators',
  // Short runs, and plans short enough that a 10-step run spans several chunks.
  'train.steps': 'short run',
  'train.batch_size': 'small batch',
  'sampler.chunk_steps': 'several plan chunks in a short run',
  // CPU ranks, one torch thread each (2-core CI), and heartbeats frequent enough that a
  // few-step worker run sends one (test_worker.py asserts it).
  'runtime.device': 'tests run on CPU',
  'runtime.threads_per_rank': 'one thread per rank on a 2-core machine',
  'runtime.heartbeat_s': 'a heartbeat within a short run',
};

type Json = null | boolean | number | string | Json[] | { [k: string]: Json };
const isObject = (v: unknown): v is Record<string, Json> => typeof v === 'object' && v !== null && !Array.isArray(v);
const show = (v: unknown) => JSON.stringify(v);

/** Flattens to dotted path → value; objects are listed and recursed into, arrays are values. */
function flatten(value: Json, prefix = '', out = new Map<string, Json>()): Map<string, Json> {
  if (!isObject(value)) return out;
  for (const [k, v] of Object.entries(value)) {
    const path = prefix ? `${prefix}.${k}` : k;
    out.set(path, v);
    flatten(v, path, out);
  }
  return out;
}

/** Every JSON number under `value` with its path (`a.b[1]` inside arrays). */
function numbers(value: Json, path: string, out: Array<[string, number]> = []): Array<[string, number]> {
  if (typeof value === 'number') out.push([path, value]);
  else if (Array.isArray(value)) value.forEach((v, i) => numbers(v, `${path}[${i}]`, out));
  else if (isObject(value)) for (const [k, v] of Object.entries(value)) numbers(v, path ? `${path}.${k}` : k, out);
  return out;
}

const parentOf = (path: string) => path.slice(0, Math.max(0, path.lastIndexOf('.')));

/**
 * The differences between the schema defaults and BASE_CONFIG, one line each, naming the dotted
 * path. `pyFloats`: the paths where BASE_CONFIG holds a Python float (JSON loses int vs float).
 */
function compareDefaults(ts: Json, py: Json, pyFloats: string[], shrunk: Record<string, string>): string[] {
  const t = flatten(ts);
  const p = flatten(py);
  const problems: string[] = [];
  // Keys: report the topmost path only (a missing section is one line, not one per field).
  for (const [path, v] of t) {
    if (!p.has(path) && (parentOf(path) === '' || p.has(parentOf(path)))) {
      problems.push(`${path}: in the schema defaults (${show(v)}), missing from BASE_CONFIG`);
    }
  }
  for (const [path, v] of p) {
    if (!t.has(path) && (parentOf(path) === '' || t.has(parentOf(path)))) {
      problems.push(`${path}: in BASE_CONFIG (${show(v)}), not in the schema defaults`);
    }
  }
  // Values: leaves (and arrays) present on both sides.
  const floats = new Set(pyFloats);
  for (const [path, tv] of t) {
    if (!p.has(path) || isObject(tv)) continue;
    const pv = p.get(path)!;
    const allowed = path in shrunk;
    if (!allowed && !isDeepStrictEqual(tv, pv)) {
      problems.push(`${path}: schema default ${show(tv)}, BASE_CONFIG ${show(pv)} (not in the SHRUNK allow-list)`);
    } else if (allowed && isDeepStrictEqual(tv, pv)) {
      problems.push(`${path}: in the SHRUNK allow-list but equal to the schema default ${show(tv)}; remove it from the list`);
    }
    if (allowed || !isDeepStrictEqual(tv, pv)) continue;
    // The ranks json.loads what the controller sends: a number without '.'/exponent is an int.
    for (const [at, n] of numbers(tv, path)) {
      const wireInt = /^-?\d+$/.test(JSON.stringify(n));
      if (wireInt === floats.has(at)) {
        problems.push(`${at}: the ranks receive ${show(n)} as ${wireInt ? 'int' : 'float'}, BASE_CONFIG holds a Python ${wireInt ? 'float' : 'int'}`);
      }
    }
  }
  for (const path of Object.keys(shrunk)) {
    if (!t.has(path)) problems.push(`${path}: in the SHRUNK allow-list but not a schema field`);
  }
  return problems;
}

// Prints {"config": BASE_CONFIG, "floats": [paths of Python floats]} as strict JSON.
const PRINT_BASE_CONFIG = `
import json, sys
sys.path.insert(0, "test/python")
from tiny_data import BASE_CONFIG

def floats(v, path, out):
    if isinstance(v, float):
        out.append(path)
    elif isinstance(v, (list, tuple)):
        for i, x in enumerate(v):
            floats(x, f"{path}[{i}]", out)
    elif isinstance(v, dict):
        for k, x in v.items():
            floats(x, f"{path}.{k}" if path else k, out)
    return out

print(json.dumps({"config": BASE_CONFIG, "floats": floats(BASE_CONFIG, "", [])}, allow_nan=False))
`;

function readBaseConfig(): { config: Json; floats: string[] } {
  return pythonJson(PRINT_BASE_CONFIG);
}

describe('compareDefaults', () => {
  it('names missing, extra and changed dotted paths with both values', () => {
    const ts = { a: 1, sec: { x: 0.5, y: [1, 1], sub: { z: 'k' } }, gone: { q: 1 }, s: 2 };
    const py = { a: 1, sec: { x: 0.25, y: [1, 1], sub: {}, extra: true }, s: 3 };
    expect(compareDefaults(ts, py, ['sec.x'], { s: 'shrunk', a: 'stale' })).toEqual([
      'sec.sub.z: in the schema defaults ("k"), missing from BASE_CONFIG',
      'gone: in the schema defaults ({"q":1}), missing from BASE_CONFIG',
      'sec.extra: in BASE_CONFIG (true), not in the schema defaults',
      'a: in the SHRUNK allow-list but equal to the schema default 1; remove it from the list',
      'sec.x: schema default 0.5, BASE_CONFIG 0.25 (not in the SHRUNK allow-list)',
    ]);
  });

  it('names a number that is an int on the wire but a float in BASE_CONFIG, and the reverse', () => {
    expect(compareDefaults({ n: 1, r: [1, 0.5] }, { n: 1, r: [1, 0.5] }, ['n', 'r[0]'], {})).toEqual([
      'n: the ranks receive 1 as int, BASE_CONFIG holds a Python float',
      'r[0]: the ranks receive 1 as int, BASE_CONFIG holds a Python float',
      'r[1]: the ranks receive 0.5 as float, BASE_CONFIG holds a Python int',
    ]);
  });
});

describe.skipIf(!HAVE_PYTHON)('test/python/tiny_data.py BASE_CONFIG', () => {
  const base = HAVE_PYTHON ? readBaseConfig() : { config: {}, floats: [] };

  it('matches the schema defaults the loader resolves, but for the SHRUNK fields', () => {
    const defaults = loadConfig() as unknown as Json;
    const problems = compareDefaults(defaults, base.config, base.floats, SHRUNK);
    expect(problems, `BASE_CONFIG drifted from ts/config/schema.ts:\n${problems.join('\n')}`).toEqual([]);
  });

  it('is a config the controller accepts, with nothing left to default', () => {
    const resolved = resolveLayers([{ source: 'test/python/tiny_data.py BASE_CONFIG', value: base.config as Record<string, unknown> }]);
    expect(resolved).toEqual(base.config);
  });
});
