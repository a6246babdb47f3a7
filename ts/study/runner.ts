// StudyRunner: runs a study's cells through the run controller (ts/controller), up to `parallel`
// at once, then has Python evaluate each finished cell once and compute the report
// (python/dmfr/analysis/study_*.py). Every cell is a normal run directory keyed by its config
// hash, so a second run of the same spec skips finished cells and resumes unfinished ones from
// their latest checkpoint; a failed cell is retried once, then recorded as failed with its cause.
import { EventEmitter } from 'node:events';
import { execFileSync } from 'node:child_process';
import { cpus } from 'node:os';
import { existsSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { RunController } from '../controller/index.ts';
import { newRunId } from '../controller/ids.ts';
import { terminate } from '../controller/processes.ts';
import type { RunConfig } from '../config/schema.ts';
import { log as rootLog, type Logger } from '../log.ts';
import { evalThreads, evaluateCell, studyReport, type ReportResult } from './evaluate.ts';
import { expandCells, finalCheckpoint, pretrainCells, type CellSpec, type StudySpec } from './spec.ts';
import { latestCheckpoint, readJson, writeJsonAtomic, type CellRecord, type CellState, type StudyFile } from './state.ts';

export interface StudyRunOptions {
  spec: StudySpec;
  /** Study directory (default studies/<name>). */
  outDir?: string;
  /** Cells trained at once (default: defaultParallel). */
  parallel?: number;
  logger?: Logger;
  /** Extra environment for every cell's ranks. */
  env?: Record<string, string>;
}

export interface StudySummary {
  status: 'completed' | 'failed' | 'canceled';
  cells: number;
  completed: number;
  failed: number;
  report: string | null;
}

/** Attempts per cell and study run: the first, then one retry (issue #10). */
const ATTEMPTS = 2;

/** Visible CUDA devices (nvidia-smi -L), 0 where there is none. */
function cudaDevices(): number {
  try {
    return execFileSync('nvidia-smi', ['-L'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).split('\n').filter((l) => l.startsWith('GPU ')).length;
  } catch {
    return 0;
  }
}

/**
 * Cells at once: one per free GPU on a CUDA host (per train.nproc GPUs for multi-rank cells); on a CPU host as many as the cores hold at the
 * cells' rank count (bench/study_speed.ts measured 2 cells × 1 rank against 1 cell × 2 ranks on
 * 2 cores: docs/studies.md "Speed").
 */
export function defaultParallel(config: RunConfig): number {
  if (config.runtime.device === 'cuda') return Math.max(1, Math.floor(cudaDevices() / config.train.nproc));
  return Math.max(1, Math.floor(cpus().length / (config.train.nproc * config.runtime.threads_per_rank)));
}

class Canceled extends Error {}

export class StudyRunner extends EventEmitter {
  readonly outDir: string;
  readonly pretrainDir: string;
  readonly cells: CellSpec[];
  private readonly spec: StudySpec;
  private readonly log: Logger;
  private readonly parallel: number;
  private readonly records = new Map<string, CellRecord>();
  private readonly pretrains: CellSpec[];
  private readonly pretrainState = new Map<string, { state: CellState; cause: string | null }>();
  private readonly active = new Set<RunController>();
  private canceled: string | null = null;
  /** Wall seconds of each cell's training and evaluation and of the report (bench/study_speed.ts). */
  readonly timings: { cells: Array<{ hash: string; train_s: number; eval_s: number }>; report_s: number } = { cells: [], report_s: 0 };

  constructor(private readonly opts: StudyRunOptions) {
    super();
    this.spec = opts.spec;
    this.outDir = resolve(opts.outDir ?? join('studies', opts.spec.name));
    this.pretrainDir = opts.spec.pretrainCache ?? join(dirname(this.outDir), 'pretrain');
    this.log = (opts.logger ?? rootLog).child({ study: opts.spec.name });
    this.cells = expandCells(opts.spec, (h) => join(this.pretrainDir, h));
    this.pretrains = pretrainCells(opts.spec);
    this.parallel = opts.parallel ?? defaultParallel(this.cells[0]!.config);
    for (const c of this.cells) {
      const stored = readJson<CellRecord>(join(this.cellDir(c.hash), 'cell.json'));
      this.records.set(c.hash, {
        hash: c.hash, arm: c.arm, levels: c.levels, seed: c.seed, pretrain: c.pretrain,
        state: stored?.state ?? 'pending', attempts: stored?.attempts ?? 0, cause: stored?.cause ?? null, runs: stored?.runs ?? [],
      });
    }
  }

  cellDir(hash: string): string {
    return join(this.outDir, 'cells', hash);
  }

  /** Ends the study: running cells stop with a checkpoint (resumable), no new cell starts. */
  cancel(reason = 'canceled'): void {
    if (this.canceled) return;
    this.canceled = reason;
    for (const c of this.active) c.cancel(reason, { checkpoint: true });
  }

  async run(): Promise<StudySummary> {
    this.writeStudy();
    writeJsonAtomic(join(this.outDir, 'eval.json'), this.spec.eval);
    await this.pool(this.pretrains, (c) => this.runPretrain(c));
    // Cells that share a config (two arms with the same overrides) are one cell.
    // Seed-major order: a study stopped early holds whole seeds (every arm of seed 0, then of
    // seed 1, …), which is what paired comparisons need, rather than whole arms.
    const seedRank = new Map(this.spec.seeds.map((s, i) => [s, i]));
    const unique = [...new Map(this.cells.map((c) => [c.hash, c])).values()]
      .map((c, i) => ({ c, i }))
      .sort((a, b) => seedRank.get(a.c.seed)! - seedRank.get(b.c.seed)! || a.i - b.i)
      .map(({ c }) => c);
    await this.pool(unique, (c) => this.runCell(c));
    const records = [...this.records.values()];
    const completed = records.filter((r) => r.state === 'evaluated').length;
    const failed = records.filter((r) => r.state === 'failed').length;
    let report: string | null = null;
    if (!this.canceled && completed > 0) {
      try {
        const t0 = performance.now();
        report = (await this.report()).report;
        this.timings.report_s = (performance.now() - t0) / 1000;
      } catch (e) {
        this.log.error({ err: (e as Error).message }, 'report failed');
      }
    }
    const status = this.canceled ? 'canceled' : failed > 0 || completed < records.length ? 'failed' : 'completed';
    return { status, cells: this.cells.length, completed: this.cells.filter((c) => this.records.get(c.hash)!.state === 'evaluated').length, failed: this.cells.filter((c) => this.records.get(c.hash)!.state === 'failed').length, report };
  }

  /** report.json, report.md and figures from the stored metrics (Python, no training). */
  report(): Promise<ReportResult> {
    return studyReport(this.outDir);
  }

  private async pool<T>(items: T[], work: (item: T, slot: number) => Promise<void>): Promise<void> {
    let next = 0;
    const worker = async (slot: number) => {
      while (!this.canceled && next < items.length) await work(items[next++]!, slot);
    };
    await Promise.all(Array.from({ length: Math.min(this.parallel, items.length) }, (_, slot) => worker(slot)));
  }

  private slotEnv(config: RunConfig, slot: number): Record<string, string> {
    const env = { ...(this.opts.env ?? {}) };
    // One cell per free GPU (or per train.nproc GPUs): slot k sees devices k·nproc … k·nproc + nproc − 1.
    if (config.runtime.device === 'cuda' && this.parallel > 1 && !process.env.CUDA_VISIBLE_DEVICES) {
      const n = config.train.nproc;
      env.CUDA_VISIBLE_DEVICES = Array.from({ length: n }, (_, i) => slot * n + i).join(',');
    }
    return env;
  }

  private writeStudy(): void {
    const file: StudyFile = {
      version: 1,
      name: this.spec.name,
      spec_file: resolve(this.spec.file),
      baseline: this.spec.baseline,
      seeds: this.spec.seeds,
      arms: this.spec.arms.map((a) => a.name),
      factors: this.spec.factors,
      eval: this.spec.eval,
      pretrain_dir: this.pretrains.length ? this.pretrainDir : null,
      pretrain: this.pretrains.map((p) => ({ seed: p.seed, hash: p.hash, ...(this.pretrainState.get(p.hash) ?? { state: 'pending' as CellState, cause: null }) })),
      // Two arms that resolve to the same config share one cell (one record): each keeps its name here.
      cells: this.cells.map((c) => ({ ...this.records.get(c.hash)!, arm: c.arm, levels: c.levels, seed: c.seed })),
    };
    writeJsonAtomic(join(this.outDir, 'study.json'), file);
  }

  private setCell(rec: CellRecord, patch: Partial<CellRecord>): void {
    Object.assign(rec, patch);
    writeJsonAtomic(join(this.cellDir(rec.hash), 'cell.json'), rec);
    this.writeStudy();
    this.emit('cell', rec);
  }

  private async runPretrain(cell: CellSpec): Promise<void> {
    const dir = join(this.pretrainDir, cell.hash);
    const rec = readJson<CellRecord>(join(dir, 'cell.json')) ?? { hash: cell.hash, arm: 'pretrain', levels: {}, seed: cell.seed, state: 'pending', attempts: 0, cause: null, runs: [], pretrain: null };
    let cause: string | null = null;
    for (let attempt = 0; attempt < ATTEMPTS && !this.canceled; attempt++) {
      try {
        await this.train(cell, dir, rec, 0, (r) => writeJsonAtomic(join(dir, 'cell.json'), r));
        this.pretrainState.set(cell.hash, { state: 'trained', cause: null });
        this.writeStudy();
        return;
      } catch (e) {
        if (e instanceof Canceled) return;
        cause = (e as Error).message;
        this.log.warn({ pretrain: cell.hash, seed: cell.seed, cause }, 'pretraining failed');
      }
    }
    if (!this.canceled) {
      this.pretrainState.set(cell.hash, { state: 'failed', cause });
      this.writeStudy();
    }
  }

  private async runCell(cell: CellSpec, slot = 0): Promise<void> {
    const rec = this.records.get(cell.hash)!;
    const dir = this.cellDir(cell.hash);
    if (rec.state === 'evaluated' && existsSync(join(dir, 'eval', 'metrics.json'))) return;
    if (cell.pretrain) {
      const pre = this.pretrainState.get(cell.pretrain);
      if (pre?.state !== 'trained') {
        this.setCell(rec, { state: 'failed', cause: `pretraining (seed ${cell.seed}, ${cell.pretrain}) did not finish: ${pre?.cause ?? 'canceled'}` });
        return;
      }
    }
    let cause: string | null = null;
    for (let attempt = 0; attempt < ATTEMPTS && !this.canceled; attempt++) {
      try {
        const t0 = performance.now();
        const checkpoint = await this.train(cell, dir, rec, slot, (r) => this.setCell(r, {}));
        this.setCell(rec, { state: 'trained', cause: null });
        const t1 = performance.now();
        await evaluateCell(this.outDir, dir, checkpoint, evalThreads(cell.config));
        this.timings.cells.push({ hash: cell.hash, train_s: (t1 - t0) / 1000, eval_s: (performance.now() - t1) / 1000 });
        this.setCell(rec, { state: 'evaluated', cause: null });
        return;
      } catch (e) {
        if (e instanceof Canceled) return;
        cause = (e as Error).message;
        this.log.warn({ cell: cell.hash, arm: cell.arm, seed: cell.seed, attempt: attempt + 1, cause }, 'cell failed');
      }
    }
    if (!this.canceled) this.setCell(rec, { state: 'failed', cause });
  }

  /** Trains a cell to its last step (or finds it trained); resolves with the final checkpoint. */
  private async train(cell: CellSpec, dir: string, rec: CellRecord, slot: number, save: (r: CellRecord) => void): Promise<string> {
    const final = finalCheckpoint(dir, cell.config.train.steps);
    if (existsSync(final)) return final;
    // Processes of an earlier attempt that outlived a killed study (they would stop on their own
    // after runtime.controller_timeout_s) are ended first, so they cannot write into this run dir.
    for (const old of rec.runs) await terminate({ runId: old, groups: [] }, cell.config.runtime.stop_grace_s);
    const resumeFrom = latestCheckpoint(dir);
    const runId = newRunId();
    rec.runs.push(runId);
    rec.attempts += 1;
    rec.state = 'training';
    save(rec);
    const controller = new RunController({ config: cell.config, outDir: dir, runId, resumeFrom, env: this.slotEnv(cell.config, slot), logger: this.log });
    this.active.add(controller);
    this.emit('start', rec, resumeFrom);
    if (this.canceled) controller.cancel(this.canceled, { checkpoint: true });
    const summary = await controller.start().finally(() => this.active.delete(controller));
    if (summary.status === 'canceled' && this.canceled) throw new Canceled(this.canceled);
    if (summary.status !== 'completed') throw new Error(`training ${summary.status}${summary.cause ? `: ${summary.cause}` : ''} (run ${runId}, ${dir}/ranks.log)`);
    if (!existsSync(final)) throw new Error(`training completed but ${final} is missing`);
    return final;
  }
}
