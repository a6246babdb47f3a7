// Loads a run config: built-in defaults ← preset ← file (YAML or JSON) ← shorthands (--method,
// --steps, --nproc) ← `--set path=value`, then TypeBox defaults and validation. Every error names
// its source (the file, the flag), the field's path and what was expected.
import { readFileSync } from 'node:fs';
import { Kind, type TSchema } from '@sinclair/typebox';
import { Value, type ValueError } from '@sinclair/typebox/value';
import { parseDocument } from 'yaml';
import { METHOD_SAMPLER, PRESETS, type ConfigLayer } from './presets.ts';
import { RunConfig, type MethodName } from './schema.ts';

export interface ConfigIssue {
  source: string; // 'config.yaml', '--set train.steps=x', 'preset quick', …
  path: string; // dotted path, e.g. 'train.steps' ('' for the whole config)
  message: string;
}

export class ConfigError extends Error {
  constructor(readonly issues: ConfigIssue[]) {
    super(issues.map((i) => `${i.source}: ${i.path ? `${i.path}: ` : ''}${i.message}`).join('\n'));
    this.name = 'ConfigError';
  }
}

export interface LoadOptions {
  file?: string;
  preset?: string;
  method?: string;
  steps?: number;
  nproc?: number;
  /** `path.to.key=value` strings, as given to `--set`. */
  sets?: string[];
  /** Extra layers from an API caller, applied last. */
  layers?: Array<{ source: string; value: ConfigLayer }>;
}

interface Layer {
  source: string;
  value: ConfigLayer;
}

const BASE: ConfigLayer = { method: { name: 'real' } };

const isObject = (v: unknown): v is Record<string, unknown> =>
  typeof v === 'object' && v !== null && !Array.isArray(v);

/** Objects merge key by key; arrays and scalars replace. */
export function deepMerge(base: ConfigLayer, over: ConfigLayer): ConfigLayer {
  const out: ConfigLayer = { ...base };
  for (const [k, v] of Object.entries(over)) {
    out[k] = isObject(v) && isObject(out[k]) ? deepMerge(out[k] as ConfigLayer, v) : structuredClone(v);
  }
  return out;
}

/** Creates the nested objects Value.Default cannot (it fills only properties with a default). */
function ensureObjects(schema: TSchema, value: Record<string, unknown>): void {
  if (schema[Kind] !== 'Object') return;
  for (const [k, sub] of Object.entries(schema.properties as Record<string, TSchema>)) {
    if (sub[Kind] !== 'Object') continue;
    if (value[k] === undefined) value[k] = {};
    if (isObject(value[k])) ensureObjects(sub, value[k] as Record<string, unknown>);
  }
}

function withDefaults(value: ConfigLayer): ConfigLayer {
  const v = structuredClone(value);
  ensureObjects(RunConfig, v);
  return Value.Default(RunConfig, v) as ConfigLayer;
}

function dotted(pointer: string): string {
  return pointer.split('/').slice(1).map((p) => p.replaceAll('~1', '/').replaceAll('~0', '~')).join('.');
}

function describe(e: ValueError): string {
  const got = `got ${JSON.stringify(e.value)}`;
  if (e.message === 'Unexpected property') return 'unknown field';
  const options = e.schema.anyOf as TSchema[] | undefined;
  if (options && options.every((s) => 'const' in s)) {
    return `expected one of ${options.map((s) => JSON.stringify(s.const)).join(', ')}, ${got}`;
  }
  const bounds = ['minimum', 'maximum', 'exclusiveMinimum', 'exclusiveMaximum', 'minLength']
    .filter((b) => b in e.schema)
    .map((b) => `${b} ${e.schema[b]}`);
  return `${e.message}${bounds.length ? ` (${bounds.join(', ')})` : ''}, ${got}`;
}

function issuesOf(value: unknown, source: string): ConfigIssue[] {
  const seen = new Set<string>();
  const out: ConfigIssue[] = [];
  for (const e of Value.Errors(RunConfig, value)) {
    const path = dotted(e.path);
    if (seen.has(path)) continue; // a union reports the same field once per branch
    seen.add(path);
    out.push({ source, path, message: describe(e) });
  }
  return out;
}

export function readConfigFile(file: string): ConfigLayer {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (e) {
    throw new ConfigError([{ source: file, path: '', message: `cannot read: ${(e as Error).message}` }]);
  }
  let value: unknown;
  if (file.endsWith('.json')) {
    try {
      value = JSON.parse(text);
    } catch (e) {
      throw new ConfigError([{ source: file, path: '', message: `invalid JSON: ${(e as Error).message}` }]);
    }
  } else {
    const doc = parseDocument(text, { prettyErrors: true });
    if (doc.errors.length > 0) {
      throw new ConfigError(doc.errors.map((err) => ({ source: file, path: '', message: `invalid YAML: ${err.message}` })));
    }
    value = doc.toJS();
  }
  if (value === null || value === undefined) return {};
  if (!isObject(value)) throw new ConfigError([{ source: file, path: '', message: 'expected a mapping of config fields at the top level' }]);
  return value;
}

/** Resolves a dotted path against the schema; returns an error message when it does not exist. */
export function checkPath(path: string): string | null {
  let schema: TSchema = RunConfig;
  const parts = path.split('.');
  for (const [i, part] of parts.entries()) {
    if (schema[Kind] !== 'Object') return `'${parts.slice(0, i).join('.')}' has no fields`;
    const next = (schema.properties as Record<string, TSchema>)[part];
    if (!next) {
      const where = parts.slice(0, i).join('.') || 'the config';
      const known = Object.keys(schema.properties as object).join(', ');
      return `unknown config path: no field '${part}' in ${where} (known: ${known})`;
    }
    schema = next;
  }
  return null;
}

/** Parses `path.to.key=value`; the value is JSON when it parses as JSON, else a string. */
export function parseSet(spec: string): Layer {
  const source = `--set ${spec}`;
  const eq = spec.indexOf('=');
  if (eq <= 0) throw new ConfigError([{ source, path: '', message: 'expected path.to.key=value' }]);
  const path = spec.slice(0, eq).trim();
  const raw = spec.slice(eq + 1);
  const bad = checkPath(path);
  if (bad) throw new ConfigError([{ source, path, message: bad }]);
  let value: unknown;
  try {
    value = JSON.parse(raw);
  } catch {
    value = raw;
  }
  const layer: ConfigLayer = {};
  let cur = layer;
  const parts = path.split('.');
  parts.slice(0, -1).forEach((p) => {
    cur[p] = {};
    cur = cur[p] as ConfigLayer;
  });
  cur[parts.at(-1)!] = value;
  return { source, value: layer };
}

function hasPath(layer: ConfigLayer, path: string[]): boolean {
  let cur: unknown = layer;
  for (const p of path) {
    if (!isObject(cur) || !(p in cur)) return false;
    cur = cur[p];
  }
  return true;
}

export function loadConfig(opts: LoadOptions = {}): RunConfig {
  const layers: Layer[] = [];
  if (opts.preset !== undefined) {
    const preset = PRESETS[opts.preset];
    if (!preset) {
      throw new ConfigError([{ source: '--preset', path: '', message: `unknown preset '${opts.preset}' (known: ${Object.keys(PRESETS).join(', ')})` }]);
    }
    layers.push({ source: `preset ${opts.preset}`, value: preset });
  }
  if (opts.file !== undefined) layers.push({ source: opts.file, value: readConfigFile(opts.file) });
  if (opts.method !== undefined) layers.push({ source: '--method', value: { method: { name: opts.method } } });
  if (opts.steps !== undefined) layers.push({ source: '--steps', value: { train: { steps: opts.steps } } });
  if (opts.nproc !== undefined) layers.push({ source: '--nproc', value: { train: { nproc: opts.nproc } } });
  for (const s of opts.sets ?? []) layers.push(parseSet(s));
  layers.push(...(opts.layers ?? []));
  return resolveLayers(layers);
}

/** Merges layers over the built-in defaults and validates each one, then the result. */
export function resolveLayers(layers: Layer[]): RunConfig {
  // Each layer alone over the defaults: errors are then attributable to the layer that has them.
  const issues = layers.flatMap((l) => issuesOf(withDefaults(deepMerge(BASE, l.value)), l.source));
  if (issues.length > 0) throw new ConfigError(issues);

  let merged = layers.reduce((acc, l) => deepMerge(acc, l.value), BASE);
  // The method picks its sampler unless some layer named one.
  if (!layers.some((l) => hasPath(l.value, ['sampler', 'kind']))) {
    const method = (merged.method as { name: MethodName }).name;
    merged = deepMerge(merged, { sampler: { kind: METHOD_SAMPLER[method] } });
  }
  merged = resolveMilestones(merged, layers);
  const config = withDefaults(merged);
  const combined = issuesOf(config, layers.map((l) => l.source).join(' + ') || 'defaults');
  if (combined.length > 0) throw new ConfigError(combined);
  const cfg = config as RunConfig;
  const cross = crossChecks(cfg, layers.map((l) => l.source).join(' + ') || 'defaults');
  if (cross.length > 0) throw new ConfigError(cross);
  return cfg;
}

/**
 * `optim.milestone_fractions` → `optim.milestones` = round(fraction × train.steps) (at least 1), so
 * a preset's schedule follows `--steps`. Whichever of the two a later layer sets wins: explicit
 * milestones from the file or `--set` replace the preset's fractions (which are then cleared).
 */
function resolveMilestones(merged: ConfigLayer, layers: Layer[]): ConfigLayer {
  const lastIndex = (key: string) => layers.map((l) => hasPath(l.value, ['optim', key])).lastIndexOf(true);
  const fractionsAt = lastIndex('milestone_fractions');
  const explicitAt = lastIndex('milestones');
  if (fractionsAt < 0) return merged;
  if (explicitAt > fractionsAt) return deepMerge(merged, { optim: { milestone_fractions: [] } });
  const fractions = (merged.optim as { milestone_fractions: unknown }).milestone_fractions;
  const steps = (merged.train as { steps?: unknown } | undefined)?.steps ?? (withDefaults(merged).train as { steps: number }).steps;
  if (!Array.isArray(fractions) || typeof steps !== 'number') return merged; // validation names the problem
  const milestones = fractions.map((f) => (typeof f === 'number' ? Math.max(1, Math.round(f * steps)) : f));
  return deepMerge(merged, { optim: { milestones } });
}

/**
 * What is valid but probably not meant: a step-schedule milestone at or beyond the last step never
 * applies (the lr at 0-based step k is lr · gamma^(milestones ≤ k), python/dmfr/optim.py).
 */
export function scheduleWarnings(cfg: RunConfig): string[] {
  if (cfg.optim.schedule !== 'step') return [];
  return cfg.optim.milestones
    .filter((m) => m >= cfg.train.steps)
    .map((m) => `optim.milestones: ${m} is at or beyond the last step (train.steps = ${cfg.train.steps}): the lr never decays there`);
}

function crossChecks(cfg: RunConfig, source: string): ConfigIssue[] {
  const out: ConfigIssue[] = [];
  if (cfg.train.nproc % cfg.runtime.nnodes !== 0) {
    out.push({ source, path: 'train.nproc', message: `expected a multiple of runtime.nnodes (${cfg.runtime.nnodes}): every node runs the same number of ranks, got ${cfg.train.nproc}` });
  }
  if (cfg.runtime.nnodes > 1 && ['0.0.0.0', '::'].includes(cfg.runtime.bind) && !cfg.runtime.advertise) {
    out.push({ source, path: 'runtime.advertise', message: `expected the address other nodes reach this host at when runtime.bind is ${cfg.runtime.bind}` });
  }
  if (cfg.train.batch_size % cfg.train.nproc !== 0) {
    out.push({ source, path: 'train.batch_size', message: `expected a multiple of train.nproc (${cfg.train.nproc}) so every rank gets an equal shard, got ${cfg.train.batch_size}` });
  }
  if (cfg.data.kind !== 'procedural' && cfg.data.path === undefined) {
    out.push({ source, path: 'data.path', message: `required when data.kind is '${cfg.data.kind}'` });
  }
  const fractions = cfg.optim.milestone_fractions;
  if (fractions.some((f, i) => i > 0 && f <= fractions[i - 1]!)) {
    out.push({ source, path: 'optim.milestone_fractions', message: `expected increasing fractions, got ${JSON.stringify(fractions)}` });
  }
  const sorted = [...cfg.optim.milestones].sort((a, b) => a - b);
  if (sorted.some((m, i) => m !== cfg.optim.milestones[i])) {
    out.push({ source, path: 'optim.milestones', message: `expected increasing steps, got ${JSON.stringify(cfg.optim.milestones)}` });
  }
  return out;
}
