// Experiment state in SQLite (better-sqlite3, WAL): experiments, runs, state transitions and
// per-step metrics. Metrics are buffered and written in one transaction per flush, not one per
// value, so a fast run does not turn into thousands of fsyncs.
import type Database from 'better-sqlite3';
import { MIGRATIONS } from './migrations.ts';
import { openDatabase } from './sqlite.ts';

export type RunState = 'created' | 'starting' | 'running' | 'stopping' | 'completed' | 'failed' | 'canceled';
export const TERMINAL_STATES: readonly RunState[] = ['completed', 'failed', 'canceled'];

export interface TransitionRow {
  id: number;
  run_id: string;
  from_state: RunState | null;
  to_state: RunState;
  at: string;
  cause: string | null;
}

export interface RunRow {
  id: string;
  experiment_id: string;
  state: RunState;
  run_dir: string;
  nproc: number;
  config_json: string;
  created_at: string;
  ended_at: string | null;
  cause: string | null;
  summary_json: string | null;
}

export interface MetricRow {
  step: number;
  name: string;
  value: number | null;
}

export class Store {
  readonly db: Database.Database;
  private pending: Array<[string, number, string, number | null]> = [];

  constructor(readonly path: string) {
    this.db = openDatabase(path, MIGRATIONS);
  }

  get schemaVersion(): number {
    return this.db.pragma('user_version', { simple: true }) as number;
  }

  createExperiment(id: string, name: string, config: unknown): void {
    this.db
      .prepare('INSERT INTO experiments (id, name, created_at, config_json) VALUES (?, ?, ?, ?)')
      .run(id, name, new Date().toISOString(), JSON.stringify(config));
  }

  /** Creates the experiment unless it exists (several runs, e.g. retries, may share one). */
  ensureExperiment(id: string, name: string, config: unknown): void {
    this.db
      .prepare('INSERT OR IGNORE INTO experiments (id, name, created_at, config_json) VALUES (?, ?, ?, ?)')
      .run(id, name, new Date().toISOString(), JSON.stringify(config));
  }

  createRun(run: { id: string; experimentId: string; runDir: string; nproc: number; config: unknown }): void {
    const now = new Date().toISOString();
    this.db.transaction(() => {
      this.db
        .prepare(
          'INSERT INTO runs (id, experiment_id, state, run_dir, nproc, config_json, created_at) VALUES (?, ?, ?, ?, ?, ?, ?)',
        )
        .run(run.id, run.experimentId, 'created', run.runDir, run.nproc, JSON.stringify(run.config), now);
      this.db
        .prepare('INSERT INTO transitions (run_id, from_state, to_state, at, cause) VALUES (?, NULL, ?, ?, NULL)')
        .run(run.id, 'created', now);
    })();
  }

  /** Records a state change; the run row and its transition are written together. */
  transition(runId: string, to: RunState, cause: string | null = null): void {
    const now = new Date().toISOString();
    this.db.transaction(() => {
      const row = this.db.prepare('SELECT state FROM runs WHERE id = ?').get(runId) as { state: RunState } | undefined;
      if (!row) throw new Error(`no run ${runId}`);
      const terminal = TERMINAL_STATES.includes(to);
      this.db
        .prepare('UPDATE runs SET state = ?, cause = COALESCE(?, cause), ended_at = CASE WHEN ? THEN ? ELSE ended_at END WHERE id = ?')
        .run(to, cause, terminal ? 1 : 0, now, runId);
      this.db
        .prepare('INSERT INTO transitions (run_id, from_state, to_state, at, cause) VALUES (?, ?, ?, ?, ?)')
        .run(runId, row.state, to, now, cause);
    })();
  }

  setSummary(runId: string, summary: unknown): void {
    this.db.prepare('UPDATE runs SET summary_json = ? WHERE id = ?').run(JSON.stringify(summary), runId);
  }

  /** Buffers one step's named values; `flushMetrics` writes them. */
  addMetrics(runId: string, step: number, values: Record<string, number | null>): void {
    for (const [name, value] of Object.entries(values)) this.pending.push([runId, step, name, value]);
  }

  get pendingMetrics(): number {
    return this.pending.length;
  }

  /** Writes every buffered value in one transaction. A repeated (run, step, name) keeps the first. */
  flushMetrics(): number {
    if (this.pending.length === 0) return 0;
    const rows = this.pending;
    this.pending = [];
    const insert = this.db.prepare('INSERT OR IGNORE INTO metrics (run_id, step, name, value) VALUES (?, ?, ?, ?)');
    this.db.transaction(() => {
      for (const r of rows) insert.run(...r);
    })();
    return rows.length;
  }

  getRun(runId: string): RunRow | undefined {
    return this.db.prepare('SELECT * FROM runs WHERE id = ?').get(runId) as RunRow | undefined;
  }

  transitions(runId: string): TransitionRow[] {
    return this.db.prepare('SELECT * FROM transitions WHERE run_id = ? ORDER BY id').all(runId) as TransitionRow[];
  }

  metrics(runId: string, name?: string): MetricRow[] {
    return (
      name === undefined
        ? this.db.prepare('SELECT step, name, value FROM metrics WHERE run_id = ? ORDER BY step, name').all(runId)
        : this.db.prepare('SELECT step, name, value FROM metrics WHERE run_id = ? AND name = ? ORDER BY step').all(runId, name)
    ) as MetricRow[];
  }

  close(): void {
    this.flushMetrics();
    this.db.close();
  }
}
