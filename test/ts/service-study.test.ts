// POST/GET /studies through Fastify's inject on a real SQLite store, with the host's only device
// held so that no ranks start: a spec error is a 400 naming the key path and stores nothing; a
// valid spec becomes a stored study whose cells are queued experiments with the study's layout on
// disk; cancel stops them. test/ts/service-study-e2e.test.ts trains a study for real.
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import fc from 'fast-check';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createService, type Service } from '../../ts/service/service.ts';
import type { StudyFile } from '../../ts/study/state.ts';
import { loadConfig } from '../../ts/config/load.ts';
import { ServiceStore } from '../../ts/service/db.ts';
import { HAVE_PYTHON, TINY_STUDY, waitFor } from './helpers.ts';

const TINY = TINY_STUDY;

describe('studies API', () => {
  let service: Service;
  const dataDir = mkdtempSync(path.join(tmpdir(), 'dmfr-study-api-'));
  const outside = mkdtempSync(path.join(tmpdir(), 'dmfr-outside-'));
  beforeAll(async () => {
    service = await createService({ dataDir, cpuSlots: 1, logger: pino({ level: 'silent' }) });
    service.scheduler.adopt('busy', [0]); // queued experiments stay QUEUED: no ranks start
  });
  afterAll(async () => {
    await service.close(1000);
    rmSync(dataDir, { recursive: true, force: true });
    rmSync(outside, { recursive: true, force: true });
  });
  const post = (payload: unknown) => service.app.inject({ method: 'POST', url: '/studies', payload: payload as object });

  it('refuses a bad spec with 400 naming the key path, and stores nothing', async () => {
    const cases: Array<[unknown, string, RegExp]> = [
      [{ ...TINY, colour: 'red' }, 'colour', /colour: unknown key \(expected one of name, base, arms/],
      [{ ...TINY, arms: [{ name: 'mix', method: 'mix' }, { name: 'mix', method: 'filter' }] }, 'arms[1].name', /arms\[1\]\.name: duplicate arm name 'mix'/],
      [{ ...TINY, baseline: 'nope' }, 'baseline', /baseline: expected the name of an arm \(mix, filter\), got "nope"/],
      [{ ...TINY, eval: { fars: [2] } }, 'eval.fars', /eval\.fars: expected a non-empty list of rates/],
      [{ ...TINY, base: { preset: 'quick', 'train.nope': 1 } }, 'base.train.nope', /base\.train\.nope: /],
      [{ ...TINY, pretrain: { steps: 2, cache: '/tmp/x' } }, 'pretrain.cache', /pretrain\.cache: the service keeps pretraining runs/],
    ];
    for (const [body, key, message] of cases) {
      const res = await post(body);
      expect(res.statusCode, key).toBe(400);
      expect(res.json().code, key).toBe('invalid_config');
      expect(res.json().message, key).toMatch(message);
    }
    // The spec's files are confined to the data roots, like every path a client names.
    const cfg = path.join(outside, 'base.yaml');
    writeFileSync(cfg, 'train: { steps: 3 }\n');
    const escaped = await post({ ...TINY, base: { config: cfg } });
    expect(escaped.statusCode).toBe(400);
    expect(escaped.json().message).toMatch(/^base\.config: .* lies outside the data roots/);
    const badBase = await post({ ...TINY, base_dir: outside });
    expect(badBase.statusCode).toBe(400);
    expect(badBase.json().message).toMatch(/^base_dir: .* lies outside the data roots/);
    expect((await post([1, 2])).statusCode).toBe(400);
    // Nothing stored: no study, no experiment, no directory.
    expect((await service.app.inject('/studies')).json()).toMatchObject({ items: [], total: 0 });
    expect((await service.app.inject('/experiments')).json().total).toBe(0);
    expect(existsSync(path.join(dataDir, 'studies'))).toBe(false);
    expect((await service.app.inject('/studies/study-nope')).statusCode).toBe(404);
  });

  it('stores a valid spec as a study whose cells are queued experiments, with a local study layout; cancel stops them', async () => {
    // A relative config file, taken from base_dir inside the data root.
    mkdirSync(path.join(dataDir, 'specs'), { recursive: true });
    writeFileSync(path.join(dataDir, 'specs', 'base.yaml'), 'train: { checkpoint_every: 2 }\n');
    const res = await post({ ...TINY, base: { ...TINY.base, config: 'base.yaml' }, base_dir: path.join(dataDir, 'specs') });
    expect(res.statusCode, res.body).toBe(201);
    const study = res.json();
    expect(study).toMatchObject({ name: 'tiny', state: 'running', counts: { cells: 4, completed: 0, failed: 0 }, report: null });
    expect(study.cells.map((c: { arm: string; seed: number }) => [c.arm, c.seed])).toEqual([['mix', 0], ['mix', 1], ['filter', 0], ['filter', 1]]);
    const got = (await service.app.inject(`/studies/${study.id}`)).json();
    expect(got.cells.every((c: { state: string; experiment_id: string }) => c.state === 'training' && c.experiment_id)).toBe(true);
    const exps = (await service.app.inject('/experiments')).json();
    expect(exps.total).toBe(4);
    for (const c of got.cells) {
      const e = exps.items.find((x: { id: string }) => x.id === c.experiment_id);
      expect(e).toMatchObject({ state: 'QUEUED', name: `tiny/${c.arm}/seed${c.seed}` });
      expect(e.config).toMatchObject({ seed: c.seed, method: { name: c.arm }, train: { steps: 4, nproc: 1, checkpoint_every: 2 } });
    }
    // The files of a local study: study.json with every cell, the eval section, each cell.json.
    const file = JSON.parse(readFileSync(path.join(got.dir, 'study.json'), 'utf8')) as StudyFile;
    expect(got.dir).toBe(path.join(dataDir, 'studies', study.id));
    expect(file).toMatchObject({ name: 'tiny', baseline: 'mix', seeds: [0, 1], arms: ['mix', 'filter'] });
    expect(file.cells.map((c) => [c.arm, c.seed, c.hash, c.state])).toEqual(got.cells.map((c: { arm: string; seed: number; hash: string }) => [c.arm, c.seed, c.hash, 'training']));
    expect(JSON.parse(readFileSync(path.join(got.dir, 'eval.json'), 'utf8'))).toMatchObject({ protocols: ['general'], fars: [0.01], similarity: false });
    for (const c of got.cells) expect(JSON.parse(readFileSync(path.join(got.dir, 'cells', c.hash, 'cell.json'), 'utf8'))).toMatchObject({ state: 'training', runs: [c.experiment_id] });
    const list = (await service.app.inject('/studies')).json();
    expect(list).toMatchObject({ total: 1, items: [{ id: study.id, counts: { cells: 4 } }] });

    const canceled = await service.app.inject({ method: 'POST', url: `/studies/${study.id}/cancel` });
    expect(canceled.statusCode).toBe(202);
    expect(canceled.json()).toMatchObject({ state: 'canceled', cause: 'canceled by request' });
    for (const c of got.cells) expect((await service.app.inject(`/experiments/${c.experiment_id}`)).json().state).toBe('CANCELED');
    const again = await service.app.inject({ method: 'POST', url: `/studies/${study.id}/cancel` });
    expect(again.statusCode).toBe(409);
    expect(again.json()).toMatchObject({ code: 'illegal_transition', state: 'canceled' });
    // Deleting a cell's experiment keeps the study's cell directory.
    const cell = got.cells[0];
    expect((await service.app.inject({ method: 'DELETE', url: `/experiments/${cell.experiment_id}` })).statusCode).toBe(204);
    expect(existsSync(path.join(got.dir, 'cells', cell.hash, 'cell.json'))).toBe(true);
  });

  it('answers any spec mutation with 201 or a 400 naming a key, never a 5xx', async () => {
    // The tiny spec with one key (top level, in an arm, in base or eval) replaced by arbitrary JSON.
    const keys: Array<Array<string | number>> = [...Object.keys(TINY), 'base_dir', 'colour'].map((k): Array<string | number> => [k]).concat(
      ['name', 'method', 'train.steps', 'data.procedural', 'head', 'sampler.ratio'].map((k) => ['arms', 0, k]),
      ['preset', 'steps', 'nproc', 'config', 'model'].map((k) => ['base', k]),
      ['protocols', 'fars', 'verification', 'templates', 'similarity'].map((k) => ['eval', k]),
    );
    const mutation = fc.record({ at: fc.constantFrom(...keys), value: fc.oneof(fc.jsonValue({ maxDepth: 3 }), fc.constantFrom<unknown>(-1, 0, 2 ** 53, 1e300, '', '..', '/etc/passwd', [], {}, [[]], null)) });
    const seen = new Set<number>();
    await fc.assert(
      fc.asyncProperty(mutation, async ({ at, value }) => {
        const body = structuredClone(TINY) as unknown as Record<string, unknown>;
        let cur = body as Record<string | number, unknown>;
        for (const k of at.slice(0, -1)) cur = cur[k] as Record<string | number, unknown>;
        cur[at.at(-1)!] = value;
        const res = await post(body);
        seen.add(res.statusCode);
        const where = `${JSON.stringify(at)} = ${JSON.stringify(value)?.slice(0, 200)} → ${res.statusCode} ${res.body.slice(0, 300)}`;
        expect([201, 400], where).toContain(res.statusCode);
        if (res.statusCode === 400) expect(['invalid_config', 'invalid_request'], where).toContain(res.json().code);
      }),
      { numRuns: 150, seed: Number(process.env.DMFR_FUZZ_SEED ?? Date.now() % 2 ** 31) },
    );
    expect([...seen].sort()).toEqual([201, 400]); // past validation too, not only refusals
  }, 120_000);

  it("trains each seed's pretraining run first, once for every study that needs it", async () => {
    const spec = { ...TINY, name: 'pre', pretrain: { method: 'real', steps: 2 } };
    const first = (await post(spec)).json();
    expect(first.pretrain.map((p: { arm: string; seed: number; state: string }) => [p.arm, p.seed, p.state])).toEqual([['pretrain', 0, 'training'], ['pretrain', 1, 'training']]);
    // The cells wait for their seed's pretraining run: no experiment yet.
    expect(first.cells.map((c: { state: string; experiment_id: string | null }) => [c.state, c.experiment_id])).toEqual(Array(4).fill(['pending', null]));
    for (const p of first.pretrain) {
      const e = (await service.app.inject(`/experiments/${p.experiment_id}`)).json();
      expect(e).toMatchObject({ name: `pre/pretrain/seed${p.seed}`, state: 'QUEUED', config: { seed: p.seed, method: { name: 'real' }, train: { steps: 2 } } });
    }
    const before = (await service.app.inject('/experiments')).json().total;
    // A second study with the same pretraining stage joins the same runs (same config hash).
    const second = (await post({ ...spec, name: 'pre2' })).json();
    expect(second.pretrain.map((p: { hash: string; experiment_id: string }) => [p.hash, p.experiment_id])).toEqual(first.pretrain.map((p: { hash: string; experiment_id: string }) => [p.hash, p.experiment_id]));
    expect((await service.app.inject('/experiments')).json().total).toBe(before);
    // Canceling it leaves the runs the first study still waits on.
    expect((await service.app.inject({ method: 'POST', url: `/studies/${second.id}/cancel` })).statusCode).toBe(202);
    for (const p of first.pretrain) expect((await service.app.inject(`/experiments/${p.experiment_id}`)).json().state).toBe('QUEUED');
  });

  it('documents the routes and schemas in /openapi.json', async () => {
    const spec = (await service.app.inject('/openapi.json')).json();
    expect(Object.keys(spec.paths)).toEqual(expect.arrayContaining(['/studies', '/studies/{id}', '/studies/{id}/cancel']));
    expect(Object.keys(spec.components.schemas)).toEqual(expect.arrayContaining(['CreateStudy', 'Study', 'StudyCell', 'StudyList']));
  });
});

describe.skipIf(!HAVE_PYTHON)('a failing study cell', () => {
  const dataDir = mkdtempSync(path.join(tmpdir(), 'dmfr-study-fail-'));
  let service: Service | undefined;
  afterAll(async () => {
    await service?.close(5000);
    rmSync(dataDir, { recursive: true, force: true });
  });

  it('is retried once as a new experiment, then failed with its cause; the study fails without a report', async () => {
    service = await createService({ dataDir, cpuSlots: 1, logger: pino({ level: 'silent' }) });
    // A dataset folder that does not exist: the spec is valid, the ranks fail building the data
    // (an input error: the experiment is not restarted, it goes to ERROR at once).
    const missing = path.join(dataDir, 'no-such-folder');
    const res = await service.app.inject({
      method: 'POST',
      url: '/studies',
      payload: { name: 'bad', base: { preset: 'quick', steps: 4, nproc: 1 }, arms: [{ name: 'missing', method: 'mix', 'data.kind': 'folder', 'data.path': missing }], eval: { verification: [] } },
    });
    expect(res.statusCode, res.body).toBe(201);
    const id = res.json().id;
    const t0 = Date.now();
    let study = res.json();
    while (study.state === 'running' && Date.now() - t0 < 10 * 60_000) {
      await new Promise((r) => setTimeout(r, 500));
      study = (await service.app.inject(`/studies/${id}`)).json();
    }
    expect(study).toMatchObject({ state: 'failed', cause: 'no cell was evaluated', counts: { cells: 1, completed: 0, failed: 1 }, report: null, report_path: null });
    const [cell] = study.cells;
    expect(cell).toMatchObject({ arm: 'missing', state: 'failed', attempts: 2 });
    expect(cell.experiments).toHaveLength(2);
    expect(cell.experiment_id).toBe(cell.experiments[1]);
    expect(cell.cause).toContain('no-such-folder');
    for (const e of cell.experiments) expect((await service.app.inject(`/experiments/${e}`)).json().state).toBe('ERROR');
    const file = JSON.parse(readFileSync(path.join(study.dir, 'study.json'), 'utf8')) as StudyFile;
    expect(file.cells[0]).toMatchObject({ state: 'failed', attempts: 2, runs: cell.experiments });
  }, 12 * 60_000);
});

describe('a restarted service', () => {
  it('completes, without launching ranks, an experiment whose final checkpoint was written before the restart', async () => {
    // What a study cell meets when the service stops right after the cell's last step: the
    // experiment was RUNNING, its final checkpoint is on disk. Launched again, it would have no step
    // left to plan and its ranks would wait forever.
    const dataDir = mkdtempSync(path.join(tmpdir(), 'dmfr-final-'));
    const store = new ServiceStore(path.join(dataDir, 'dmfr.sqlite'));
    const runDir = path.join(dataDir, 'experiments', 'exp-final');
    store.createExperiment({ id: 'exp-final', name: 'final', config: loadConfig({ preset: 'quick', steps: 4, nproc: 1 }), priority: 0, nproc: 1, maxRestarts: 2, runDir, checkpointPolicy: null });
    store.transition('exp-final', 'QUEUED', 'STARTING');
    store.transition('exp-final', 'STARTING', 'RUNNING');
    mkdirSync(path.join(runDir, 'checkpoints'), { recursive: true });
    const ckpt = path.join(runDir, 'checkpoints', 'step-00000004.pt');
    writeFileSync(ckpt, 'final');
    store.addCheckpoint('exp-final', { step: 4, path: ckpt, bytes: 5 });
    store.close();
    const service = await createService({ dataDir, cpuSlots: 1, logger: pino({ level: 'silent' }) });
    try {
      await waitFor(() => service.store.getExperiment('exp-final')?.state === 'COMPLETED', 5000, 'the experiment to complete');
      const states = service.store.eventsAfter('exp-final', 0).filter((e) => e.kind === 'state').map((e) => e.data.to);
      expect(states).toEqual(['QUEUED', 'STARTING', 'RUNNING', 'RESTARTING', 'STARTING', 'RUNNING', 'STOPPING_COMPLETED', 'COMPLETED']);
      expect(service.store.getExperiment('exp-final')!.summary).toMatchObject({ status: 'completed', steps: 4 });
      expect(existsSync(path.join(runDir, 'ranks.log'))).toBe(false);
      expect(service.scheduler.snapshot().free).toEqual([0]);
    } finally {
      await service.close(1000);
      rmSync(dataDir, { recursive: true, force: true });
    }
  });
});
