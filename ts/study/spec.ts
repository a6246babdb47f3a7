// A study spec (docs/studies.md): reading, validation with file/key path/expected, and expansion
// into cells (arm × factor levels × seed), each a resolved RunConfig built with the same layers as
// `dmfr run` (ts/config/load.ts) and keyed by the hash of that config.
import { createHash } from 'node:crypto';
import { dirname, isAbsolute, resolve } from 'node:path';
import { Kind, type TSchema } from '@sinclair/typebox';
import { checkPath, ConfigError, loadConfig, readConfigFile, type ConfigIssue } from '../config/load.ts';
import type { ConfigLayer } from '../config/presets.ts';
import { RunConfig } from '../config/schema.ts';

export const PROCEDURAL_PROTOCOLS = ['general', 'cross_pose', 'cross_quality'] as const;

export interface EvalSpec {
  protocols: string[];
  fars: number[];
  /** `folds`: only these folds of the pairs file (LFW View 2 numbering, 1-based), e.g. the held-out 9 and 10. */
  verification: Array<{ name: string; pairs: string; images: string; folds?: number[] }>;
  templates: Array<{ name: string; media: string; pairs: string; images: string }>;
  similarity: boolean;
}

export interface StudySpec {
  file: string;
  name: string;
  base: { preset?: string; config?: string; layer: ConfigLayer };
  /** `levels`: the factor levels this arm runs at, when the arm narrows them (arms[].factors). */
  arms: Array<{ name: string; layer: ConfigLayer; levels?: Record<string, unknown[]> }>;
  seeds: number[];
  factors: Array<{ path: string; levels: unknown[] }>;
  baseline: string | null;
  pretrain: ConfigLayer | null;
  pretrainCache: string | null;
  eval: EvalSpec;
}

export interface CellSpec {
  hash: string;
  arm: string;
  /** Factor path → level. */
  levels: Record<string, unknown>;
  seed: number;
  config: RunConfig;
  /** The pretraining cell this cell starts from (its hash), if the spec has a pretrain stage. */
  pretrain: string | null;
}

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

/** Canonical JSON (sorted keys) → SHA-256, first 16 hex digits: the key of a cell. */
export function configHash(value: unknown): string {
  const canon = (v: unknown): unknown =>
    Array.isArray(v) ? v.map(canon) : isObject(v) ? Object.fromEntries(Object.keys(v).sort().map((k) => [k, canon(v[k])])) : v;
  return createHash('sha256').update(JSON.stringify(canon(value))).digest('hex').slice(0, 16);
}

function schemaAt(path: string): TSchema | null {
  let schema: TSchema = RunConfig;
  for (const part of path.split('.')) {
    if (schema[Kind] !== 'Object') return null;
    const next: TSchema | undefined = (schema.properties as Record<string, TSchema>)[part];
    if (!next) return null;
    schema = next;
  }
  return schema;
}

class Issues {
  readonly list: ConfigIssue[] = [];
  constructor(readonly file: string) {}
  add(path: string, message: string): void {
    this.list.push({ source: this.file, path, message });
  }
  throwIfAny(): void {
    if (this.list.length > 0) throw new ConfigError(this.list);
  }
}

const SHORTHANDS = ['method', 'steps', 'nproc'];

/**
 * Overrides (shorthands, nested or dotted config paths) → one config layer; every path is checked
 * against the RunConfig schema. `reserved` keys belong to the spec, not the config.
 */
function overridesLayer(value: Record<string, unknown>, where: string, issues: Issues, reserved: string[]): ConfigLayer {
  const layer: ConfigLayer = {};
  const put = (path: string, v: unknown) => {
    const parts = path.split('.');
    let cur = layer;
    for (const p of parts.slice(0, -1)) cur = (cur[p] = isObject(cur[p]) ? cur[p] : {}) as ConfigLayer;
    const last = parts.at(-1)!;
    cur[last] = isObject(v) && isObject(cur[last]) ? { ...(cur[last] as object), ...v } : v;
  };
  const walk = (path: string, v: unknown, keyPath: string) => {
    const bad = checkPath(path);
    if (bad) return issues.add(keyPath, bad);
    const schema = schemaAt(path)!;
    if (schema[Kind] === 'Object' && isObject(v)) {
      for (const [k, sub] of Object.entries(v)) walk(`${path}.${k}`, sub, `${keyPath}.${k}`);
    } else if (schema[Kind] === 'Object') {
      issues.add(keyPath, `expected a mapping of ${path}'s fields, got ${JSON.stringify(v)}`);
    } else {
      put(path, v);
    }
  };
  for (const [k, v] of Object.entries(value)) {
    if (reserved.includes(k)) continue;
    const keyPath = `${where}.${k}`;
    if (k === 'method') {
      if (typeof v === 'string') put('method.name', v);
      else if (isObject(v)) walk('method', v, keyPath);
      else issues.add(keyPath, `expected a method name or a mapping of method fields, got ${JSON.stringify(v)}`);
    } else if (k === 'steps' || k === 'nproc') {
      if (!Number.isInteger(v) || (v as number) < 1) issues.add(keyPath, `expected a positive integer, got ${JSON.stringify(v)}`);
      else put(`train.${k}`, v);
    } else {
      walk(k, v, keyPath);
    }
  }
  return layer;
}

const TOP_KEYS = ['name', 'base', 'arms', 'seeds', 'factors', 'baseline', 'pretrain', 'eval'];
const EVAL_KEYS = ['protocols', 'fars', 'verification', 'templates', 'similarity'];

/** Reads and validates a spec file; every problem is reported at once, before anything trains. */
export function readStudySpec(file: string): StudySpec {
  return parseStudySpec(readConfigFile(file), { source: file, baseDir: dirname(resolve(file)) }); // YAML/JSON with file-named errors
}

/**
 * Validates a spec given as an object (the service's POST /studies body): `source` names it in
 * every issue (a file, or `body`), relative files are taken from `baseDir`.
 */
export function parseStudySpec(raw: Record<string, unknown>, opts: { source: string; baseDir: string }): StudySpec {
  const file = opts.source;
  const issues = new Issues(file);
  const rel = (p: string) => (isAbsolute(p) ? p : resolve(opts.baseDir, p));
  for (const k of Object.keys(raw)) {
    if (!TOP_KEYS.includes(k)) issues.add(k, `unknown key (expected one of ${TOP_KEYS.join(', ')})`);
  }
  const name = raw.name;
  if (typeof name !== 'string' || !/^[A-Za-z0-9._-]+$/.test(name)) {
    issues.add('name', `expected a name of letters, digits, '.', '_' or '-', got ${JSON.stringify(name)}`);
  }

  const baseRaw = raw.base ?? {};
  const base: StudySpec['base'] = { layer: {} };
  if (!isObject(baseRaw)) issues.add('base', `expected a mapping (preset, config, overrides), got ${JSON.stringify(baseRaw)}`);
  else {
    if (baseRaw.preset !== undefined) {
      if (typeof baseRaw.preset !== 'string') issues.add('base.preset', `expected a preset name, got ${JSON.stringify(baseRaw.preset)}`);
      else base.preset = baseRaw.preset;
    }
    if (baseRaw.config !== undefined) {
      if (typeof baseRaw.config !== 'string') issues.add('base.config', `expected a config file path, got ${JSON.stringify(baseRaw.config)}`);
      else base.config = rel(baseRaw.config);
    }
    base.layer = overridesLayer(baseRaw, 'base', issues, ['preset', 'config']);
  }

  const arms: StudySpec['arms'] = [];
  if (!Array.isArray(raw.arms) || raw.arms.length === 0) issues.add('arms', `expected a non-empty list of arms, got ${JSON.stringify(raw.arms)}`);
  else {
    const seen = new Set<string>();
    raw.arms.forEach((a, i) => {
      const where = `arms[${i}]`;
      if (!isObject(a)) return issues.add(where, `expected a mapping with a name and overrides, got ${JSON.stringify(a)}`);
      if (typeof a.name !== 'string' || a.name === '') return issues.add(`${where}.name`, `expected the arm's name (a non-empty string), got ${JSON.stringify(a.name)}`);
      if (seen.has(a.name)) issues.add(`${where}.name`, `duplicate arm name '${a.name}' (expected unique names)`);
      seen.add(a.name);
      arms.push({ name: a.name, layer: overridesLayer(a, where, issues, ['name', 'factors']) });
    });
  }

  let seeds: number[] = [0];
  if (raw.seeds !== undefined) {
    if (!Array.isArray(raw.seeds) || raw.seeds.length === 0 || !raw.seeds.every((s) => Number.isInteger(s))) {
      issues.add('seeds', `expected a non-empty list of integers, got ${JSON.stringify(raw.seeds)}`);
    } else if (new Set(raw.seeds).size !== raw.seeds.length) {
      issues.add('seeds', `expected distinct seeds, got ${JSON.stringify(raw.seeds)}`);
    } else seeds = raw.seeds as number[];
  }

  const factors: StudySpec['factors'] = [];
  if (raw.factors !== undefined) {
    if (!isObject(raw.factors)) issues.add('factors', `expected a mapping config.path: [levels], got ${JSON.stringify(raw.factors)}`);
    else {
      for (const [path, levels] of Object.entries(raw.factors)) {
        const bad = checkPath(path);
        if (bad) issues.add(`factors.${path}`, bad);
        else if (!Array.isArray(levels) || levels.length < 2) issues.add(`factors.${path}`, `expected a list of at least 2 levels, got ${JSON.stringify(levels)}`);
        else factors.push({ path, levels });
      }
    }
  }

  // An arm may run at a subset of a factor's levels (`factors: { path: [levels] }` inside the arm),
  // e.g. an arm the factor cannot change (real-only never reads the generative domains the
  // fingerprint strength changes), or a control measured at one level only to fit a budget.
  if (Array.isArray(raw.arms)) {
    raw.arms.forEach((a, i) => {
      if (!isObject(a) || a.factors === undefined) return;
      const arm = arms.find((x) => x.name === a.name);
      const where = `arms[${i}].factors`;
      if (!isObject(a.factors)) return issues.add(where, `expected a mapping factor path: [levels], got ${JSON.stringify(a.factors)}`);
      const levels: Record<string, unknown[]> = {};
      for (const [path, subset] of Object.entries(a.factors)) {
        const factor = factors.find((f) => f.path === path);
        if (!factor) {
          issues.add(`${where}.${path}`, `not a factor of the study (expected one of ${factors.map((f) => f.path).join(', ') || 'none: the study has no factors'})`);
          continue;
        }
        const key = (v: unknown) => JSON.stringify(v);
        if (!Array.isArray(subset) || subset.length === 0 || !subset.every((l) => factor.levels.some((fl) => key(fl) === key(l)))) {
          issues.add(`${where}.${path}`, `expected a non-empty list of the factor's levels ${JSON.stringify(factor.levels)}, got ${JSON.stringify(subset)}`);
          continue;
        }
        levels[path] = subset;
      }
      if (arm) arm.levels = levels;
    });
  }

  let baseline: string | null = null;
  if (raw.baseline !== undefined) {
    if (typeof raw.baseline !== 'string' || !arms.some((a) => a.name === raw.baseline)) {
      issues.add('baseline', `expected the name of an arm (${arms.map((a) => a.name).join(', ')}), got ${JSON.stringify(raw.baseline)}`);
    } else baseline = raw.baseline;
  }

  let pretrain: ConfigLayer | null = null;
  let pretrainCache: string | null = null;
  if (raw.pretrain !== undefined) {
    if (!isObject(raw.pretrain)) issues.add('pretrain', `expected a mapping of overrides (e.g. { method: real, steps: 200 }), got ${JSON.stringify(raw.pretrain)}`);
    else {
      pretrain = overridesLayer(raw.pretrain, 'pretrain', issues, ['cache']);
      if (raw.pretrain.cache !== undefined) {
        if (typeof raw.pretrain.cache !== 'string') issues.add('pretrain.cache', `expected a directory, got ${JSON.stringify(raw.pretrain.cache)}`);
        else pretrainCache = rel(raw.pretrain.cache);
      }
    }
  }

  const ev: EvalSpec = { protocols: [], fars: [1e-3, 1e-2], verification: [], templates: [], similarity: true };
  const evRaw = raw.eval ?? { protocols: [...PROCEDURAL_PROTOCOLS] };
  if (!isObject(evRaw)) issues.add('eval', `expected a mapping (${EVAL_KEYS.join(', ')}), got ${JSON.stringify(evRaw)}`);
  else {
    for (const k of Object.keys(evRaw)) if (!EVAL_KEYS.includes(k)) issues.add(`eval.${k}`, `unknown key (expected one of ${EVAL_KEYS.join(', ')})`);
    if (evRaw.protocols !== undefined) {
      const p = evRaw.protocols;
      if (!Array.isArray(p) || !p.every((x) => (PROCEDURAL_PROTOCOLS as readonly unknown[]).includes(x))) {
        issues.add('eval.protocols', `expected a list of ${PROCEDURAL_PROTOCOLS.join(', ')}, got ${JSON.stringify(p)}`);
      } else ev.protocols = p as string[];
    }
    if (evRaw.fars !== undefined) {
      const f = evRaw.fars;
      if (!Array.isArray(f) || f.length === 0 || !f.every((x) => typeof x === 'number' && x > 0 && x <= 1)) {
        issues.add('eval.fars', `expected a non-empty list of rates in (0, 1], got ${JSON.stringify(f)}`);
      } else ev.fars = f as number[];
    }
    if (evRaw.similarity !== undefined) {
      if (typeof evRaw.similarity !== 'boolean') issues.add('eval.similarity', `expected true or false, got ${JSON.stringify(evRaw.similarity)}`);
      else ev.similarity = evRaw.similarity;
    }
    const files = (key: 'verification' | 'templates', fields: string[], optional: string[] = []) => {
      const list = evRaw[key];
      if (list === undefined) return [];
      if (!Array.isArray(list)) return (issues.add(`eval.${key}`, `expected a list of { ${fields.join(', ')} }, got ${JSON.stringify(list)}`), []);
      const out: Record<string, unknown>[] = [];
      list.forEach((e, i) => {
        const where = `eval.${key}[${i}]`;
        if (!isObject(e)) return issues.add(where, `expected { ${fields.join(', ')} }, got ${JSON.stringify(e)}`);
        const known = [...fields, ...optional];
        for (const k of Object.keys(e)) if (!known.includes(k)) issues.add(`${where}.${k}`, `unknown key (expected ${known.join(', ')})`);
        const missing = fields.filter((f) => typeof e[f] !== 'string');
        if (missing.length > 0) return issues.add(where, `expected string fields ${missing.join(', ')}`);
        const entry: Record<string, unknown> = Object.fromEntries(fields.map((f) => [f, f === 'name' ? (e[f] as string) : rel(e[f] as string)]));
        if (e.folds !== undefined) {
          const f = e.folds;
          if (!Array.isArray(f) || f.length === 0 || !f.every((x) => Number.isInteger(x) && (x as number) >= 1)) {
            issues.add(`${where}.folds`, `expected a non-empty list of fold numbers (1-based), got ${JSON.stringify(f)}`);
          } else entry.folds = f;
        }
        out.push(entry);
      });
      return out;
    };
    ev.verification = files('verification', ['name', 'pairs', 'images'], ['folds']) as EvalSpec['verification'];
    ev.templates = files('templates', ['name', 'media', 'pairs', 'images']) as EvalSpec['templates'];
  }
  issues.throwIfAny();
  return { file, name: name as string, base, arms, seeds, factors, baseline, pretrain, pretrainCache, eval: ev };
}

function levelCombinations(factors: StudySpec['factors']): Record<string, unknown>[] {
  return factors.reduce<Record<string, unknown>[]>(
    (combos, f) => combos.flatMap((c) => f.levels.map((l) => ({ ...c, [f.path]: l }))),
    [{}],
  );
}

function dottedLayer(values: Record<string, unknown>): ConfigLayer {
  const layer: ConfigLayer = {};
  for (const [path, v] of Object.entries(values)) {
    const parts = path.split('.');
    let cur = layer;
    for (const p of parts.slice(0, -1)) cur = (cur[p] = isObject(cur[p]) ? cur[p] : {}) as ConfigLayer;
    cur[parts.at(-1)!] = v;
  }
  return layer;
}

function baseOptions(spec: StudySpec) {
  return { preset: spec.base.preset, file: spec.base.config };
}

/**
 * On a CPU host a study trains each cell on one rank (and several cells at once, ts/study/runner.ts
 * defaultParallel) unless the spec or its config file sets train.nproc: bench/study_speed.ts
 * measured 2 cells × 1 rank finishing the tiny study 1.76× sooner than 1 cell × 2 ranks on 2 cores
 * (docs/studies.md "Speed").
 */
export const CPU_CELL_NPROC = 1;

function setsNproc(spec: StudySpec, layers: ConfigLayer[]): boolean {
  const fromFile = spec.base.config ? (readConfigFile(spec.base.config).train as ConfigLayer | undefined)?.nproc : undefined;
  return fromFile !== undefined || layers.some((l) => (l.train as ConfigLayer | undefined)?.nproc !== undefined);
}

/** loadConfig over the spec's layers, with the CPU host default for train.nproc (above). */
function resolveCell(spec: StudySpec, layers: Array<{ source: string; value: ConfigLayer }>): RunConfig {
  const config = loadConfig({ ...baseOptions(spec), layers });
  if (config.runtime.device !== 'cpu' || config.train.nproc === CPU_CELL_NPROC || setsNproc(spec, layers.map((l) => l.value))) return config;
  return loadConfig({ ...baseOptions(spec), layers: [{ source: 'study: CPU default train.nproc', value: { train: { nproc: CPU_CELL_NPROC } } }, ...layers] });
}

/**
 * The pretraining cell of one seed: base + pretrain overrides + the seed. A `seed` in the pretrain
 * stage makes one pretraining shared by every seed of the study (the arms of seed s still differ
 * in their own seed: head, sampling, flips): cheaper, and the comparison is then conditional on
 * that one pretrained model, which the report's intervals do not cover.
 */
export function pretrainCell(spec: StudySpec, seed: number): CellSpec | null {
  if (!spec.pretrain) return null;
  const shared = spec.pretrain.seed !== undefined;
  const layers = [
    { source: `${spec.file}: base`, value: spec.base.layer },
    { source: `${spec.file}: seeds`, value: { seed } },
    { source: `${spec.file}: pretrain`, value: spec.pretrain },
  ];
  const config = resolveCell(spec, shared ? layers : [layers[0]!, layers[2]!, layers[1]!]);
  return { hash: configHash(config), arm: 'pretrain', levels: {}, seed, config, pretrain: null };
}

/** The study's distinct pretraining cells (one per seed, or one in all when the stage has its own seed). */
export function pretrainCells(spec: StudySpec): CellSpec[] {
  const cells = spec.seeds.map((s) => pretrainCell(spec, s)).filter((c): c is CellSpec => c !== null);
  return [...new Map(cells.map((c) => [c.hash, c])).values()];
}

/** Where a finished run's last checkpoint is: <run_dir>/checkpoints/step-%08d.pt (python/dmfr/checkpoint.py). */
export function finalCheckpoint(runDir: string, steps: number): string {
  return resolve(runDir, 'checkpoints', `step-${String(steps).padStart(8, '0')}.pt`);
}

/** Every cell of the study: arms × factor level combinations × seeds (arm-major). */
export function expandCells(spec: StudySpec, pretrainDir: (hash: string) => string): CellSpec[] {
  const cells: CellSpec[] = [];
  const combos = levelCombinations(spec.factors);
  for (const arm of spec.arms) {
    const allowed = (levels: Record<string, unknown>) =>
      Object.entries(arm.levels ?? {}).every(([path, subset]) => subset.some((l) => JSON.stringify(l) === JSON.stringify(levels[path])));
    for (const levels of combos.filter(allowed)) {
      for (const seed of spec.seeds) {
        const pre = pretrainCell(spec, seed);
        const layers = [
          { source: `${spec.file}: base`, value: spec.base.layer },
          { source: `${spec.file}: arms (${arm.name})`, value: arm.layer },
          { source: `${spec.file}: factors`, value: dottedLayer(levels) },
          { source: `${spec.file}: seeds`, value: { seed } },
        ];
        if (pre) layers.push({ source: `${spec.file}: pretrain`, value: { train: { init: finalCheckpoint(pretrainDir(pre.hash), pre.config.train.steps) } } });
        const config = resolveCell(spec, layers);
        cells.push({ hash: configHash(config), arm: arm.name, levels, seed, config, pretrain: pre?.hash ?? null });
      }
    }
  }
  return cells;
}
