// Studies through the service (docs/studies.md, "Through the service"): every cell of a study (and
// first the pretraining run of each seed) becomes an experiment of the service's queue, so it gets
// the queue, the device slots, restarts from checkpoints and the store; a cell whose experiment
// completes is evaluated once (one evaluation at a time on this host), and when every cell is
// evaluated or failed the report is written. The study lives in the service's SQLite (StudyStore),
// so a restarted service picks it up where it was, and in <data-dir>/studies/<id>/ with the files of
// a local study (study.json, cells/<hash>/cell.json, eval/metrics.json, report.json), so that
// `dmfr study report|status DIR` work on it.
import { randomBytes } from 'node:crypto';
import { copyFileSync, existsSync, mkdirSync, readFileSync, symlinkSync } from 'node:fs';
import path from 'node:path';
import type { Logger } from 'pino';
import type { RunConfig } from '../config/schema.ts';
import { evalThreads, evaluateCell, studyReport } from '../study/evaluate.ts';
import { expandCells, finalCheckpoint, pretrainCells, type CellSpec, type StudySpec } from '../study/spec.ts';
import { readJson, writeJsonAtomic, type CellRecord, type CellState, type StudyFile } from '../study/state.ts';
import type { EventBus } from './bus.ts';
import type { ServiceStore, StudyCellRow, StudyRow, StudyStore } from './db.ts';
import { ApiError, conflict, notFound } from './errors.ts';
import { runPythonJson } from './python-cli.ts';
import { TERMINAL, type State } from './states.ts';
import type { Supervisor } from './supervisor.ts';

/** Failures per cell before it is failed: the first attempt, then one retry (issue #10). */
const ATTEMPTS = 2;
/** The most cells one study may expand to: each is an experiment row and a run directory. */
export const MAX_STUDY_CELLS = 1000;

const newId = (prefix: string) => `${prefix}-${Date.now().toString(36)}-${randomBytes(3).toString('hex')}`;

/** The first number in a config no rank can take exactly (ts/service/routes/experiments.ts). */
export type Unrepresentable = (value: unknown, at: string) => string | null;

export interface StudyManagerOptions {
  store: ServiceStore;
  studies: StudyStore;
  supervisor: Supervisor;
  bus: EventBus;
  dataDir: string;
  log: Logger;
  unrepresentable: Unrepresentable;
}

export class StudyManager {
  readonly studiesDir: string;
  /** Pretraining runs, shared by content hash by every study of this service (as a local
   *  study's default <out>/../pretrain). */
  readonly pretrainDir: string;
  private readonly evaluating = new Set<string>();
  private readonly reporting = new Set<string>();
  /** Evaluations run one at a time: each is a whole Python process embedding every test set. */
  private evaluations: Promise<void> = Promise.resolve();
  private closed = false;
  /** Ends a running evaluation or report when the service closes (redone at the next start). */
  private readonly abort = new AbortController();
  private readonly unsubscribe: () => void;

  constructor(private readonly o: StudyManagerOptions) {
    this.studiesDir = path.join(o.dataDir, 'studies');
    this.pretrainDir = path.join(this.studiesDir, 'pretrain');
    // A cell's experiment reached a terminal state: its study moves on (after the supervisor has
    // finished settling that experiment).
    this.unsubscribe = o.bus.subscribeAll((ev) => {
      if (ev.kind !== 'state' || !TERMINAL.has(ev.data.to as State)) return;
      for (const id of o.studies.studiesOfExperiment(ev.experiment_id)) setImmediate(() => this.advance(id));
    });
  }

  /** Start-up: every running study moves on from its stored state (after the supervisor's reconcile). */
  start(): void {
    for (const s of this.o.studies.studies({ state: 'running', limit: 1_000_000, offset: 0 }).items) this.advance(s.id);
  }

  close(): void {
    this.closed = true;
    this.unsubscribe();
    this.abort.abort();
  }

  private python(args: string[]) {
    return runPythonJson(args, undefined, this.abort.signal);
  }

  /** Stores a validated spec as a study and queues its first experiments. */
  create(spec: StudySpec, body: Record<string, unknown>): StudyRow {
    const total = spec.arms.length * spec.factors.reduce((n, f) => n * f.levels.length, 1) * spec.seeds.length;
    if (total > MAX_STUDY_CELLS) throw new ApiError(400, 'invalid_config', `the spec expands to ${total} cells (arms × factor levels × seeds); the service takes at most ${MAX_STUDY_CELLS}`);
    const cells = expandCells(spec, (h) => path.join(this.pretrainDir, h));
    const pretrains = pretrainCells(spec);
    for (const c of [...pretrains, ...cells]) {
      const bad = this.o.supervisor.misfit({ nproc: c.config.train.nproc, config: c.config }) ?? this.o.unrepresentable(c.config, '');
      if (bad) throw new ApiError(400, 'invalid_config', `${c.arm === 'pretrain' ? 'pretrain' : `arm ${c.arm}`} ${JSON.stringify(c.levels)} seed ${c.seed}: ${bad}`);
    }
    const id = newId('study');
    const dir = path.join(this.studiesDir, id);
    const unique = [...new Map(cells.map((c) => [c.hash, c])).values()];
    const row = this.o.studies.createStudy(
      { id, name: spec.name, spec: body, dir, layout: cells.map((c) => ({ arm: c.arm, levels: c.levels, seed: c.seed, hash: c.hash, pretrain: c.pretrain })) },
      [
        ...pretrains.map((c) => ({ kind: 'pretrain' as const, hash: c.hash, seed: c.seed, pretrain: null, config: c.config as never, run_dir: path.join(this.pretrainDir, c.hash) })),
        ...unique.map((c) => ({ kind: 'cell' as const, hash: c.hash, seed: c.seed, pretrain: c.pretrain, config: c.config as never, run_dir: path.join(dir, 'cells', c.hash) })),
      ],
    );
    writeJsonAtomic(path.join(dir, 'spec.json'), body);
    writeJsonAtomic(path.join(dir, 'eval.json'), spec.eval);
    const file: StudyFile = {
      version: 1,
      name: spec.name,
      spec_file: path.join(dir, 'spec.json'),
      baseline: spec.baseline,
      seeds: spec.seeds,
      arms: spec.arms.map((a) => a.name),
      factors: spec.factors,
      eval: spec.eval,
      pretrain_dir: pretrains.length ? this.pretrainDir : null,
      pretrain: [],
      cells: [],
    };
    writeJsonAtomic(path.join(dir, 'study.json'), file);
    this.advance(id);
    return this.o.studies.study(id)!;
  }

  /** Ends a running study: its own running experiments stop with a checkpoint; no new one starts. */
  cancel(id: string): StudyRow {
    const study = this.o.studies.study(id);
    if (!study) throw notFound('study', id);
    if (study.state !== 'running') throw conflict(`cannot cancel study ${id} in state ${study.state}`, study.state);
    this.o.studies.setStudy(id, { state: 'canceled', cause: 'canceled by request' });
    for (const r of this.o.studies.cells(id)) {
      if (r.state !== 'training') continue;
      this.o.studies.setCell(r, { state: 'pending' });
      const exp = r.experiment_id ? this.o.store.getExperiment(r.experiment_id) : undefined;
      // An experiment another running study waits on too (a shared pretraining run, a reused cell) keeps going.
      const shared = this.o.studies.studiesOfExperiment(exp?.id ?? '').some((s) => s !== id && this.o.studies.study(s)?.state === 'running');
      if (exp && !TERMINAL.has(exp.state) && !shared) {
        try {
          this.o.supervisor.stop(exp.id);
        } catch (e) {
          this.o.log.warn({ study: id, experiment: exp.id, err: (e as Error).message }, 'cannot stop a canceled study cell');
        }
      }
    }
    this.writeFiles(this.o.studies.study(id)!);
    return this.o.studies.study(id)!;
  }

  /** Moves a running study on from what the store says: idempotent, called on every change. */
  advance(id: string): void {
    if (this.closed) return;
    const study = this.o.studies.study(id);
    if (!study || study.state !== 'running') return;
    const rows = this.o.studies.cells(id);
    const pretrain = new Map(rows.filter((r) => r.kind === 'pretrain').map((r) => [r.hash, r]));
    for (const r of rows) {
      if (r.kind === 'cell' && r.pretrain) {
        const p = pretrain.get(r.pretrain)!;
        if (p.state === 'failed') {
          if (r.state !== 'failed') this.update(r, { state: 'failed', cause: `pretraining (seed ${r.seed}, ${r.pretrain}) did not finish: ${p.cause ?? 'failed'}` });
          continue;
        }
        if (p.state !== 'trained') continue;
      }
      this.train(study, r);
      if (r.kind === 'cell' && r.state === 'trained') this.evaluate(study, r);
    }
    this.writeFiles(study);
    const cells = rows.filter((r) => r.kind === 'cell');
    if (cells.every((r) => r.state === 'evaluated' || r.state === 'failed')) void this.finish(study, cells);
  }

  /** The study's own directory of a cell (`cells/<hash>`; a pretraining run's is shared). */
  private cellDir(study: StudyRow, r: StudyCellRow): string {
    return r.kind === 'pretrain' ? path.join(this.pretrainDir, r.hash) : path.join(study.dir, 'cells', r.hash);
  }

  private update(r: StudyCellRow, patch: Partial<StudyCellRow>): void {
    this.o.studies.setCell(r, patch);
    Object.assign(r, patch);
  }

  private fail(r: StudyCellRow, cause: string, patch: Partial<StudyCellRow> = {}): void {
    const failures = r.failures + 1;
    this.o.log.warn({ study: r.study_id, cell: r.hash, kind: r.kind, failures, cause }, 'study cell failed');
    this.update(r, { ...patch, failures, cause, state: failures >= ATTEMPTS ? 'failed' : patch.state ?? r.state });
  }

  /** Pending or training → trained (found trained, reused, or its experiment completed), or a new
   *  experiment, or failed after ATTEMPTS failures. */
  private train(study: StudyRow, r: StudyCellRow): void {
    if (r.state !== 'pending' && r.state !== 'training') return;
    const steps = (r.config as unknown as RunConfig).train.steps;
    const own = this.cellDir(study, r);
    // 'training' follows experiment_id; once its end is counted the cell is pending (or failed)
    // and experiment_id stays, naming the last experiment, until a new one replaces it.
    if (r.experiment_id && r.state === 'training') {
      const exp = this.o.store.getExperiment(r.experiment_id);
      if (exp && !TERMINAL.has(exp.state)) return; // still queued or training
      if (exp?.state === 'COMPLETED' && existsSync(finalCheckpoint(r.run_dir, steps))) return this.update(r, { state: 'trained', cause: null });
      const cause = !exp
        ? `experiment ${r.experiment_id} was deleted`
        : exp.state === 'COMPLETED'
          ? `experiment ${exp.id} completed but ${finalCheckpoint(r.run_dir, steps)} is missing`
          : `experiment ${exp.id} ended ${exp.state}${exp.cause ? `: ${exp.cause}` : ''}`;
      this.fail(r, cause, { run_dir: own, state: 'pending' });
      if (r.failures >= ATTEMPTS) return;
    }
    if (existsSync(finalCheckpoint(r.run_dir, steps))) return this.update(r, { state: 'trained', cause: null });
    // The same config trained (or training) for another study: not trained again. (Also after a
    // failure: two studies waiting on one pretraining run that failed retry it as one experiment,
    // the second joining the first's retry, never two runs in one directory.)
    for (const other of this.o.studies.sameHash(r)) {
      const exp = other.experiment_id ? this.o.store.getExperiment(other.experiment_id) : undefined;
      const active = exp !== undefined && !TERMINAL.has(exp.state);
      if (!active && existsSync(finalCheckpoint(other.run_dir, steps))) {
        this.update(r, { run_dir: other.run_dir, state: 'trained', cause: null });
        this.reuseEvaluation(study, r, other);
        return;
      }
      if (active && !r.experiments.includes(exp.id)) {
        return this.update(r, { run_dir: other.run_dir, experiment_id: exp.id, experiments: [...r.experiments, exp.id], state: 'training' });
      }
    }
    const id = newId('exp');
    const config = r.config as unknown as RunConfig;
    const arms = [...new Set(study.layout.filter((l) => l.hash === r.hash).map((l) => l.arm))].join('+');
    try {
      this.o.supervisor.create({
        id,
        name: `${study.name}/${r.kind === 'pretrain' ? 'pretrain' : arms}/seed${r.seed}`,
        config: r.config,
        nproc: config.train.nproc,
        priority: 0,
        maxRestarts: 2,
        checkpointPolicy: null,
        runDir: own,
      });
    } catch (e) {
      // The host changed since the study was accepted (fewer devices): it can never train here.
      return this.update(r, { state: 'failed', cause: `cannot queue its experiment: ${(e as Error).message}` });
    }
    this.update(r, { state: 'training', run_dir: own, experiment_id: id, experiments: [...r.experiments, id], attempts: r.attempts + 1 });
  }

  /** A reused cell whose source was evaluated on the same eval section: its metrics are this one's. */
  private reuseEvaluation(study: StudyRow, r: StudyCellRow, other: StudyCellRow): void {
    if (r.kind !== 'cell' || other.kind !== 'cell' || other.state !== 'evaluated') return;
    const otherDir = this.o.studies.study(other.study_id)?.dir;
    if (!otherDir) return;
    const read = (dir: string) => (existsSync(path.join(dir, 'eval.json')) ? readFileSync(path.join(dir, 'eval.json'), 'utf8') : null);
    const metrics = path.join(otherDir, 'cells', other.hash, 'eval', 'metrics.json');
    if (read(otherDir) === null || read(otherDir) !== read(study.dir) || !existsSync(metrics)) return;
    const dir = this.cellDir(study, r);
    linkRun(r.run_dir, dir);
    mkdirSync(path.join(dir, 'eval'), { recursive: true });
    copyFileSync(metrics, path.join(dir, 'eval', 'metrics.json'));
    this.update(r, { state: 'evaluated', cause: null });
  }

  /** Queues the cell's evaluation (once: a second call while it is queued or running does nothing). */
  private evaluate(study: StudyRow, r: StudyCellRow): void {
    const key = `${study.id}/${r.hash}`;
    if (this.evaluating.has(key)) return;
    this.evaluating.add(key);
    const dir = this.cellDir(study, r);
    const checkpoint = finalCheckpoint(r.run_dir, (r.config as unknown as RunConfig).train.steps);
    const job = async () => {
      try {
        if (this.closed || this.o.studies.study(study.id)?.state !== 'running') return;
        try {
          if (r.run_dir !== dir) linkRun(r.run_dir, dir);
          await evaluateCell(study.dir, dir, checkpoint, evalThreads(r.config as unknown as RunConfig), (args) => this.python(args));
          if (this.closed) return; // the store may be closed; the next start evaluates it again
          this.update(r, { state: 'evaluated', cause: null });
        } catch (e) {
          if (this.closed) return;
          const fresh = this.o.studies.cells(study.id).find((c) => c.kind === r.kind && c.hash === r.hash)!;
          this.fail(fresh, `evaluation failed: ${(e as Error).message}`);
        }
      } finally {
        this.evaluating.delete(key); // before advance(), which queues the retry of a failed evaluation
      }
      this.advance(study.id);
    };
    this.evaluations = this.evaluations.then(job).catch((e: Error) => this.o.log.error({ study: study.id, cell: r.hash, err: e.message }, 'study evaluation step failed'));
  }

  /** Every cell is evaluated or failed: the report (when a cell was evaluated) and the study's end. */
  private async finish(study: StudyRow, cells: StudyCellRow[]): Promise<void> {
    if (this.reporting.has(study.id)) return;
    this.reporting.add(study.id);
    try {
      const completed = cells.filter((c) => c.state === 'evaluated').length;
      const failed = cells.length - completed;
      let report: string | null = null;
      let cause: string | null = failed > 0 ? `${failed} of ${cells.length} cell(s) failed` : null;
      if (completed > 0) {
        try {
          report = (await studyReport(study.dir, (args) => this.python(args))).report;
        } catch (e) {
          if (this.closed) return; // redone at the next start
          this.o.log.error({ study: study.id, err: (e as Error).message }, 'study report failed');
          cause = `report failed: ${(e as Error).message}`;
        }
      } else cause = 'no cell was evaluated';
      if (this.closed || this.o.studies.study(study.id)?.state !== 'running') return;
      this.o.studies.setStudy(study.id, { state: failed > 0 || !report ? 'failed' : 'completed', cause, report });
      this.o.log.info({ study: study.id, completed, failed, report }, 'study ended');
    } finally {
      this.reporting.delete(study.id);
    }
  }

  /** study.json and each cell.json, from the store (the files of a local study). */
  private writeFiles(study: StudyRow): void {
    const file = readJson<StudyFile>(path.join(study.dir, 'study.json'));
    if (!file) return;
    const rows = this.o.studies.cells(study.id);
    const byHash = new Map(rows.filter((r) => r.kind === 'cell').map((r) => [r.hash, r]));
    const record = (r: StudyCellRow, arm: string, levels: Record<string, unknown>): CellRecord => ({
      hash: r.hash, arm, levels, seed: r.seed, state: r.state as CellState, attempts: r.attempts, cause: r.cause, runs: r.experiments, pretrain: r.pretrain,
    });
    file.cells = study.layout.map((l) => record(byHash.get(l.hash)!, l.arm, l.levels));
    file.pretrain = rows.filter((r) => r.kind === 'pretrain').map((r) => ({ seed: r.seed, hash: r.hash, state: r.state as CellState, cause: r.cause }));
    writeJsonAtomic(path.join(study.dir, 'study.json'), file);
    for (const r of rows) {
      const first = study.layout.find((l) => l.hash === r.hash);
      writeJsonAtomic(path.join(this.cellDir(study, r), 'cell.json'), record(r, first?.arm ?? 'pretrain', first?.levels ?? {}));
    }
  }
}

/** A cell that reuses another study's training: its directory links that run's store, log and
 *  checkpoints (what the evaluation and `dmfr study status` read) and keeps its own eval/. */
function linkRun(runDir: string, cellDir: string): void {
  mkdirSync(cellDir, { recursive: true });
  for (const name of ['dmfr.sqlite', 'ranks.log', 'checkpoints']) {
    if (existsSync(path.join(runDir, name)) && !existsSync(path.join(cellDir, name))) symlinkSync(path.join(runDir, name), path.join(cellDir, name));
  }
}
