import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ConfigError, loadConfig, parseSet, scheduleWarnings } from '../../ts/config/load.ts';
import { METHOD_SAMPLER } from '../../ts/config/presets.ts';
import { RunConfig } from '../../ts/config/schema.ts';
import { Kind, type TSchema } from '@sinclair/typebox';
import { REPO_ROOT } from '../../ts/controller/launch.ts';

const dir = mkdtempSync(join(tmpdir(), 'dmfr-config-'));
function file(name: string, text: string): string {
  const p = join(dir, name);
  writeFileSync(p, text);
  return p;
}
function issues(fn: () => unknown) {
  try {
    fn();
  } catch (e) {
    expect(e).toBeInstanceOf(ConfigError);
    return (e as ConfigError).issues;
  }
  throw new Error('expected a ConfigError');
}

describe('loadConfig', () => {
  it('fills every default from the schema', () => {
    const cfg = loadConfig();
    expect(cfg.method.name).toBe('real');
    expect(cfg.head).toMatchObject({ type: 'cosface', s: 64, m: 0.4 });
    expect(cfg.train.steps).toBe(100);
    expect(cfg.sampler).toMatchObject({ kind: 'real', chunk_steps: 8, credit: 4 });
    expect(cfg.runtime).toMatchObject({ bind: '127.0.0.1', rank_timeout_s: 60, controller_timeout_s: 15 });
    expect(cfg.data.procedural.identities).toBe(64);
  });

  it('quick preset: a tiny CPU model on procedural data with 2 ranks', () => {
    const cfg = loadConfig({ preset: 'quick' });
    expect(cfg.model).toMatchObject({ arch: 'r_tiny', width: 0.25 });
    expect(cfg.data).toMatchObject({ kind: 'procedural', image_size: 32 });
    expect(cfg.train.nproc).toBe(2);
    expect(cfg.runtime.device).toBe('cpu');
  });

  it("paper preset: the paper's recipe", () => {
    const cfg = loadConfig({ preset: 'paper', method: 'meta' });
    expect(cfg.model.arch).toBe('r100');
    expect(cfg.train).toMatchObject({ batch_size: 1024, nproc: 8 });
    expect(cfg.optim).toMatchObject({ lr: 0.01, gamma: 0.1, milestones: [50_000, 70_000, 80_000], weight_decay: 5e-4, momentum: 0.9 });
    expect(cfg.head).toMatchObject({ type: 'cosface', m: 0.4 });
    expect(cfg.method).toMatchObject({ name: 'meta', lambda_meta: 0.5, lambda_disen: 1, lambda_flt: 1 });
  });

  it('layers: preset < file < shorthands < --set', () => {
    const f = file('layers.yaml', 'train:\n  steps: 7\n  batch_size: 32\nmodel:\n  width: 0.5\n');
    const cfg = loadConfig({ preset: 'quick', file: f, steps: 9, sets: ['model.width=0.75', 'name=hello'] });
    expect(cfg.train.steps).toBe(9);
    expect(cfg.train.batch_size).toBe(32);
    expect(cfg.model.width).toBe(0.75);
    expect(cfg.model.arch).toBe('r_tiny'); // from the preset
    expect(cfg.name).toBe('hello'); // not JSON: kept as a string
    expect(loadConfig({ file: f }).train.steps).toBe(7);
  });

  it('reads JSON files', () => {
    const f = file('c.json', JSON.stringify({ train: { steps: 3 } }));
    expect(loadConfig({ file: f }).train.steps).toBe(3);
  });

  it('the method picks its sampler unless one is named', () => {
    for (const [method, kind] of Object.entries(METHOD_SAMPLER)) {
      expect(loadConfig({ method }).sampler.kind).toBe(kind);
    }
    expect(METHOD_SAMPLER).toMatchObject({ disentangle: 'mix', dul: 'mix', url: 'mix', filter: 'filter' });
    expect(loadConfig({ method: 'meta', sets: ['sampler.kind=real'] }).sampler.kind).toBe('real');
  });

  it('--set values parse as JSON when they can', () => {
    expect(parseSet('sampler.mix_ratio=[1,2]').value).toEqual({ sampler: { mix_ratio: [1, 2] } });
    expect(parseSet('train.deterministic=true').value).toEqual({ train: { deterministic: true } });
    expect(parseSet('data.path=/x/y').value).toEqual({ data: { path: '/x/y' } });
    expect(loadConfig({ sets: ['optim.milestones=[10,20]'] }).optim.milestones).toEqual([10, 20]);
  });

  it('unknown --set paths are errors naming the path', () => {
    const [i] = issues(() => loadConfig({ sets: ['train.stepz=5'] }));
    expect(i).toMatchObject({ source: '--set train.stepz=5', path: 'train.stepz' });
    expect(i!.message).toMatch(/no field 'stepz' in train/);
    expect(issues(() => loadConfig({ sets: ['train.steps.x=1'] }))[0]!.message).toMatch(/has no fields/);
    expect(issues(() => loadConfig({ sets: ['novalue'] }))[0]!.message).toMatch(/path.to.key=value/);
  });

  it('errors name the file, the field and what was expected', () => {
    const f = file('bad.yaml', 'train:\n  steps: -3\n  nproc: two\nmodel:\n  arch: r1000\n  colour: red\n');
    const found = issues(() => loadConfig({ file: f }));
    const byPath = Object.fromEntries(found.map((i) => [i.path, i]));
    expect(Object.keys(byPath).sort()).toEqual(['model.arch', 'model.colour', 'train.nproc', 'train.steps']);
    for (const i of found) expect(i.source).toBe(f);
    expect(byPath['train.steps']!.message).toMatch(/minimum 1.*got -3/);
    expect(byPath['train.nproc']!.message).toMatch(/integer.*got "two"/);
    expect(byPath['model.arch']!.message).toMatch(/one of "r18".*got "r1000"/);
    expect(byPath['model.colour']!.message).toBe('unknown field');
    expect(() => loadConfig({ file: f })).toThrow(new RegExp(`${f}: train.steps`));
  });

  it('errors from flags name the flag', () => {
    expect(issues(() => loadConfig({ method: 'bogus' }))[0]).toMatchObject({ source: '--method', path: 'method.name' });
    expect(issues(() => loadConfig({ sets: ['train.steps="ten"'] }))[0]).toMatchObject({ source: '--set train.steps="ten"', path: 'train.steps' });
    expect(issues(() => loadConfig({ preset: 'fast' }))[0]!.message).toMatch(/unknown preset 'fast'.*quick, paper/);
  });

  it('cross-field checks: equal shards per rank', () => {
    const [i] = issues(() => loadConfig({ nproc: 3 }));
    expect(i).toMatchObject({ path: 'train.batch_size' });
    expect(i!.message).toMatch(/multiple of train.nproc \(3\)/);
  });

  it('syntax errors name the file and the position', () => {
    const y = file('broken.yaml', 'train:\n  steps: [1, 2\n');
    expect(issues(() => loadConfig({ file: y }))[0]).toMatchObject({ source: y });
    expect(issues(() => loadConfig({ file: y }))[0]!.message).toMatch(/invalid YAML.*line/s);
    const j = file('broken.json', '{"train": ');
    expect(issues(() => loadConfig({ file: j }))[0]!.message).toMatch(/invalid JSON/);
    expect(issues(() => loadConfig({ file: file('list.yaml', '- 1\n- 2\n') }))[0]!.message).toMatch(/mapping/);
    expect(issues(() => loadConfig({ file: join(dir, 'missing.yaml') }))[0]!.message).toMatch(/cannot read/);
  });
});

describe('docs/config.md', () => {
  it('documents every config field', () => {
    const doc = readFileSync(join(REPO_ROOT, 'docs', 'config.md'), 'utf8');
    const paths: string[] = [];
    const walk = (schema: TSchema, prefix: string) => {
      if (schema[Kind] !== 'Object') return void paths.push(prefix);
      for (const [k, sub] of Object.entries(schema.properties as Record<string, TSchema>)) walk(sub, prefix ? `${prefix}.${k}` : k);
    };
    walk(RunConfig, '');
    expect(paths.length).toBeGreaterThan(60);
    const missing = paths.filter((p) => !doc.includes('`' + p + '`'));
    expect(missing).toEqual([]);
  });

  it('schedules follow --steps: preset milestones are fractions of the run; explicit ones win and are warned about past the end', () => {
    // paper: 50k/70k/80k of 90k; round(5/9 · 90000) = 50000 exactly, and × 9000 steps → 5000 …
    expect(loadConfig({ preset: 'paper' }).optim.milestones).toEqual([50_000, 70_000, 80_000]);
    expect(loadConfig({ preset: 'paper', steps: 9000 }).optim.milestones).toEqual([5000, 7000, 8000]);
    // quick: 3/4 of the run — the issue's `--steps 100` decays at 75, not at the unreachable 150
    const quick = loadConfig({ preset: 'quick', steps: 100 });
    expect(quick.optim.milestones).toEqual([75]);
    expect(scheduleWarnings(quick)).toEqual([]);
    // a tiny run still decays at a step ≥ 1
    expect(loadConfig({ preset: 'quick', steps: 1 }).optim.milestones).toEqual([1]);
    // explicit milestones (file or --set) replace the preset's fractions, which are cleared
    const f = file('ms.yaml', 'optim:\n  milestones: [150]\n');
    const explicit = loadConfig({ preset: 'quick', file: f, steps: 100 });
    expect(explicit.optim).toMatchObject({ milestones: [150], milestone_fractions: [] });
    expect(scheduleWarnings(explicit)).toEqual(['optim.milestones: 150 is at or beyond the last step (train.steps = 100): the lr never decays there']);
    expect(scheduleWarnings(loadConfig({ preset: 'quick', steps: 100, sets: ['optim.milestones=[50,100]'] }))).toEqual([
      'optim.milestones: 100 is at or beyond the last step (train.steps = 100): the lr never decays there',
    ]);
    // and a later layer's fractions replace earlier explicit milestones
    expect(loadConfig({ file: f, steps: 40, sets: ['optim.milestone_fractions=[0.5]'] }).optim.milestones).toEqual([20]);
    expect(() => loadConfig({ sets: ['optim.milestone_fractions=[0.8,0.5]'] })).toThrow(/optim\.milestone_fractions: expected increasing fractions/);
    expect(() => loadConfig({ sets: ['optim.milestone_fractions=[1.5]'] })).toThrow(/optim\.milestone_fractions\.0: Expected number to be less than 1/);
  });
});
