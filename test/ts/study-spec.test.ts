// Study specs (ts/study/spec.ts): the issue's tiny spec expands to 4 paired cells; every spec
// error names the file, the key path and what was expected, before anything trains.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ConfigError } from '../../ts/config/load.ts';
import { REPO_ROOT } from '../../ts/controller/launch.ts';
import { expandCells, pretrainCell, readStudySpec } from '../../ts/study/spec.ts';

const dir = mkdtempSync(join(tmpdir(), 'dmfr-spec-'));
let n = 0;
function specFile(text: string): string {
  const file = join(dir, `spec${n++}.yaml`);
  writeFileSync(file, text);
  return file;
}

const TINY = `name: tiny
base: { preset: quick, steps: 20 }
arms:
  - { name: mix, method: mix }
  - { name: filter, method: filter }
seeds: [0, 1]
baseline: mix
eval: { protocols: [general, cross_pose], fars: [1e-3, 1e-2] }
`;

function issues(text: string): ConfigError['issues'] {
  const file = specFile(text);
  try {
    readStudySpec(file);
  } catch (e) {
    expect(e).toBeInstanceOf(ConfigError);
    for (const i of (e as ConfigError).issues) expect(i.source).toBe(file);
    return (e as ConfigError).issues;
  }
  throw new Error('expected a spec error');
}

describe('study spec', () => {
  it('expands the tiny spec into arms × seeds, paired by seed', () => {
    const spec = readStudySpec(specFile(TINY));
    const cells = expandCells(spec, (h) => join(dir, h));
    expect(cells.map((c) => [c.arm, c.seed])).toEqual([['mix', 0], ['mix', 1], ['filter', 0], ['filter', 1]]);
    expect(new Set(cells.map((c) => c.hash)).size).toBe(4);
    for (const c of cells) {
      expect(c.config.train.steps).toBe(20);
      expect(c.config.method.name).toBe(c.arm);
      expect(c.config.sampler.kind).toBe(c.arm); // the method picks its sampler, as in `dmfr run`
      expect(c.config.seed).toBe(c.seed);
      expect(c.config.train.nproc).toBe(1); // the CPU host default: one rank per cell (quick sets 2)
    }
    // paired: the arms of one seed differ only in the method (and its sampler)
    const [mix0, , filter0] = cells;
    expect({ ...mix0!.config, method: null, sampler: null }).toEqual({ ...filter0!.config, method: null, sampler: null });
    expect(spec.eval).toMatchObject({ protocols: ['general', 'cross_pose'], fars: [1e-3, 1e-2] });
    // the hash is the config's: expanding again gives the same keys
    expect(expandCells(spec, (h) => join(dir, h)).map((c) => c.hash)).toEqual(cells.map((c) => c.hash));
  });

  it('crosses factors with the arms and applies dotted and nested overrides', () => {
    const spec = readStudySpec(specFile(`name: f
base: { preset: quick, steps: 20, train.checkpoint_every: 5 }
arms:
  - { name: mix, method: mix }
  - { name: filter, method: { name: filter, lambda_flt: 2 }, head: { m: 0.3 } }
seeds: [3]
factors: { data.procedural.fingerprint_strength: [0, 2] }
baseline: mix
pretrain: { method: real, steps: 30 }
`));
    const cells = expandCells(spec, (h) => join('/cache', h));
    expect(cells.map((c) => [c.arm, c.levels['data.procedural.fingerprint_strength']])).toEqual([['mix', 0], ['mix', 2], ['filter', 0], ['filter', 2]]);
    const f2 = cells[3]!.config;
    expect(f2.data.procedural.fingerprint_strength).toBe(2);
    expect(f2.method.lambda_flt).toBe(2);
    expect(f2.head.m).toBe(0.3);
    expect(f2.train.checkpoint_every).toBe(5);
    expect(f2.train.nproc).toBe(1);
    // a spec that names train.nproc keeps it
    const two = readStudySpec(specFile(TINY.replace('steps: 20 }', 'steps: 20, nproc: 2 }')));
    expect(expandCells(two, (h) => h).map((c) => c.config.train.nproc)).toEqual([2, 2, 2, 2]);
    expect(f2.train.init).toBe(join('/cache', cells[3]!.pretrain!, 'checkpoints', 'step-00000030.pt'));
    expect(new Set(cells.map((c) => c.pretrain)).size).toBe(1); // one pretraining per seed
  });

  it('names the file, the key path and what was expected', () => {
    expect(issues(`${TINY}colour: red\n`)).toEqual([expect.objectContaining({ path: 'colour', message: expect.stringContaining('unknown key') })]);
    expect(issues(TINY.replace('{ name: filter, method: filter }', '{ method: filter }'))).toEqual([
      expect.objectContaining({ path: 'arms[1].name', message: expect.stringContaining("expected the arm's name") }),
    ]);
    expect(issues(TINY.replace('name: filter', 'name: mix'))).toEqual([
      expect.objectContaining({ path: 'arms[1].name', message: expect.stringContaining("duplicate arm name 'mix'") }),
    ]);
    expect(issues(TINY.replace('{ name: filter, method: filter }', '{ name: filter, optim.lr_max: 1 }'))).toEqual([
      expect.objectContaining({ path: 'arms[1].optim.lr_max', message: expect.stringContaining("unknown config path: no field 'lr_max' in optim") }),
    ]);
    expect(issues(TINY.replace('{ name: filter, method: filter }', '{ name: filter, head: { tpye: arcface } }'))).toEqual([
      expect.objectContaining({ path: 'arms[1].head.tpye', message: expect.stringContaining("no field 'tpye' in head") }),
    ]);
    expect(issues(TINY.replace('baseline: mix', 'baseline: real'))).toEqual([
      expect.objectContaining({ path: 'baseline', message: expect.stringContaining('expected the name of an arm (mix, filter), got "real"') }),
    ]);
    expect(issues(`${TINY}factors: { data.procedural.strength: [0, 2] }\n`)).toEqual([
      expect.objectContaining({ path: 'factors.data.procedural.strength', message: expect.stringContaining("no field 'strength'") }),
    ]);
    expect(issues(TINY.replace('fars: [1e-3, 1e-2]', 'fars: [0.001, 2]'))).toEqual([
      expect.objectContaining({ path: 'eval.fars', message: expect.stringContaining('rates in (0, 1]') }),
    ]);
    expect(issues(TINY.replace('protocols: [general, cross_pose]', 'protocols: [general, profile]'))).toEqual([
      expect.objectContaining({ path: 'eval.protocols' }),
    ]);
    // several problems are all reported at once
    expect(issues(TINY.replace('name: filter', 'name: mix').replace('baseline: mix', 'baseline: nope')).map((i) => i.path)).toEqual(['arms[1].name', 'baseline']);
  });

  it('lets an arm narrow a factor to some of its levels, and names a bad narrowing', () => {
    const spec = readStudySpec(specFile(`${TINY}factors: { data.procedural.fingerprint_strength: [0, 2] }\n`
      .replace('{ name: filter, method: filter }', '{ name: filter, method: filter, factors: { data.procedural.fingerprint_strength: [2] } }')));
    const cells = expandCells(spec, (h) => h);
    expect(cells.filter((c) => c.arm === 'mix')).toHaveLength(4); // 2 levels × 2 seeds
    const filter = cells.filter((c) => c.arm === 'filter');
    expect(filter).toHaveLength(2);
    expect(filter.every((c) => c.levels['data.procedural.fingerprint_strength'] === 2 && c.config.data.procedural!.fingerprint_strength === 2)).toBe(true);
    const narrow = (f: string) => issues(`${TINY}factors: { data.procedural.fingerprint_strength: [0, 2] }\n`
      .replace('{ name: filter, method: filter }', `{ name: filter, method: filter, factors: ${f} }`));
    expect(narrow('{ data.procedural.fingerprint_strength: [1] }')).toEqual([expect.objectContaining({
      path: 'arms[1].factors.data.procedural.fingerprint_strength',
      message: expect.stringMatching(/expected a non-empty list of the factor's levels \[0,2\], got \[1\]/) })]);
    expect(narrow('{ optim.lr: [0.1] }').map((i) => i.path)).toEqual(['arms[1].factors.optim.lr']);
  });

  it('shares one pretraining across seeds when the pretrain stage names its own seed', () => {
    const per = readStudySpec(specFile(`${TINY}pretrain: { method: real, steps: 5 }\n`));
    expect(new Set([0, 1].map((s) => pretrainCell(per, s)!.hash)).size).toBe(2);
    const shared = readStudySpec(specFile(`${TINY}pretrain: { method: real, steps: 5, seed: 7 }\n`));
    const pre = [0, 1].map((s) => pretrainCell(shared, s)!);
    expect(pre[0]!.hash).toBe(pre[1]!.hash);
    expect(pre[0]!.config.seed).toBe(7);
    const cells = expandCells(shared, (h) => join(dir, h));
    expect(new Set(cells.map((c) => c.pretrain))).toEqual(new Set([pre[0]!.hash]));
    expect(new Set(cells.map((c) => c.config.seed))).toEqual(new Set([0, 1])); // the arms keep their own seeds
  });

  it('takes the folds of a verification pairs file, and names a bad folds list', () => {
    const ev = (folds: string) => TINY.replace('eval: { protocols: [general, cross_pose], fars: [1e-3, 1e-2] }',
      `eval: { verification: [{ name: lfw, pairs: p.txt, images: img${folds} }] }`);
    const spec = readStudySpec(specFile(ev(', folds: [9, 10]')));
    expect(spec.eval.verification[0]).toMatchObject({ name: 'lfw', folds: [9, 10] });
    expect(spec.eval.verification[0]!.pairs).toBe(join(dir, 'p.txt'));
    const bad = issues(ev(', folds: [0, x]'));
    expect(bad.map((i) => i.path)).toEqual(['eval.verification[0].folds']);
    expect(bad[0]!.message).toMatch(/expected a non-empty list of fold numbers \(1-based\), got \[0,"x"\]/);
    expect(issues(ev(', fold: [9]')).map((i) => i.path)).toEqual(['eval.verification[0].fold']);
  });

  it('reports a bad value at expansion with the layer that set it', () => {
    const spec = readStudySpec(specFile(TINY.replace('{ name: filter, method: filter }', '{ name: filter, method: filter, train.steps: 0 }')));
    expect(() => expandCells(spec, (h) => h)).toThrowError(/arms \(filter\): train\.steps: .*minimum 1/);
  });
});

describe('shipped studies', () => {
  it('studies/paper.yaml (the README command) loads and expands: 4 methods × 2 strengths + 5 controls at strength 1, × 5 seeds, fine-tunes at lr 0.01 from a pretraining at 0.1', () => {
    const spec = readStudySpec(join(__dirname, '..', '..', 'studies', 'paper.yaml'));
    const cells = expandCells(spec, (h) => join(dir, h));
    expect(cells).toHaveLength(65);
    expect(new Set(cells.map((c) => c.hash)).size).toBe(65);
    expect(new Set(cells.map((c) => c.pretrain)).size).toBe(5);
    expect(new Set(cells.map((c) => c.config.optim.lr))).toEqual(new Set([0.01]));
    expect(pretrainCell(spec, 0)!.config.optim.lr).toBe(0.1);
    expect(pretrainCell(spec, 0)!.config.method.name).toBe('real');
    const arm = (name: string) => cells.find((c) => c.arm === name)!.config;
    expect(arm('mix-1:2').sampler.mix_ratio).toEqual([1, 2]);
    expect(arm('arcface-mix').head).toMatchObject({ type: 'arcface', m: 0.5 });
    expect(cells.every((c) => c.config.train.nproc === 1 && c.config.data.procedural!.min_far === 1e-5)).toBe(true);
  });

  it('studies/lfw.yaml loads and expands: 6 arms × 3 seeds on LFW folds 1–8, the oracle on strength-0 domains', () => {
    const spec = readStudySpec(join(__dirname, '..', '..', 'studies', 'lfw.yaml'));
    const cells = expandCells(spec, (h) => join(dir, h));
    expect(cells).toHaveLength(18);
    const oracle = cells.find((c) => c.arm === 'oracle')!.config;
    expect(oracle.data.generative!.map((g) => g.path)).toEqual(['data/lfw-pose-s0', 'data/lfw-quality-s0']);
    expect(cells.find((c) => c.arm === 'mix')!.config.data.select).toMatchObject({ min_images: 2, exclude_folds: [9, 10] });
    expect(spec.eval.verification[0]).toMatchObject({ name: 'lfw', folds: [9, 10] });
  });
});

describe('dmfr study (CLI)', () => {
  const cli = (args: string[]) => spawnSync(process.execPath, [join(REPO_ROOT, 'bin', 'dmfr.js'), ...args], { cwd: REPO_ROOT, encoding: 'utf8' });

  it('rejects a bad spec before anything trains: exit 2, the file, the key path and what was expected', () => {
    const file = specFile(TINY.replace('baseline: mix', 'baseline: real'));
    const out = join(dir, 'never');
    const r = cli(['study', 'run', file, '--out', out]);
    expect(r.status).toBe(2);
    expect(r.stderr).toContain(`${file}: baseline: expected the name of an arm (mix, filter), got "real"`);
    expect(existsSync(out)).toBe(false);
  });

  it('names a wrong verb or a missing study directory', () => {
    const verb = cli(['study', 'walk']);
    expect(verb.status).toBe(2);
    expect(verb.stderr).toMatch(/unknown study verb 'walk' \(expected run, report or status\)[\s\S]*usage: dmfr study/);
    const missing = cli(['study', 'status', join(dir, 'nothing')]);
    expect(missing.status).toBe(1);
    expect(missing.stderr).toContain(`${join(dir, 'nothing', 'study.json')}: no study here`);
  });
});
