// The service's experiment store: SQLite (better-sqlite3, WAL) in the data directory.
// Schema changes are numbered migrations (ts/store/sqlite.ts applies them; an older dmfr refuses a
// newer store).
import type Database from 'better-sqlite3';
import { nestMetrics } from '../store/metric-names.ts';
import { openDatabase } from '../store/sqlite.ts';
import type { State } from './states.ts';

const MIGRATIONS: string[] = [
  // 1: experiments, their event log (state transitions, metrics, checkpoints), artifacts.
  `CREATE TABLE experiments (
     id TEXT PRIMARY KEY,
     name TEXT NOT NULL,
     config TEXT NOT NULL,
     state TEXT NOT NULL,
     priority INTEGER NOT NULL DEFAULT 0,
     nproc INTEGER NOT NULL,
     max_restarts INTEGER NOT NULL DEFAULT 0,
     checkpoint_policy TEXT,
     restarts INTEGER NOT NULL DEFAULT 0,
     run_dir TEXT NOT NULL,
     devices TEXT,
     pid INTEGER,
     cause TEXT,
     summary TEXT,
     created_at TEXT NOT NULL,
     updated_at TEXT NOT NULL
   );
   CREATE TABLE events (
     id INTEGER PRIMARY KEY AUTOINCREMENT,
     experiment_id TEXT NOT NULL,
     kind TEXT NOT NULL,
     data TEXT NOT NULL,
     at TEXT NOT NULL
   );
   CREATE INDEX events_by_experiment ON events (experiment_id, id);
   CREATE TABLE metrics (
     experiment_id TEXT NOT NULL,
     step INTEGER NOT NULL,
     name TEXT NOT NULL,
     value REAL NOT NULL,
     PRIMARY KEY (experiment_id, name, step)
   ) WITHOUT ROWID;
   CREATE TABLE checkpoints (
     experiment_id TEXT NOT NULL,
     step INTEGER NOT NULL,
     path TEXT NOT NULL,
     bytes INTEGER NOT NULL,
     metric REAL,
     created_at TEXT NOT NULL,
     PRIMARY KEY (experiment_id, step)
   );
   CREATE TABLE evaluations (
     id TEXT PRIMARY KEY,
     experiment_id TEXT NOT NULL,
     checkpoint_step INTEGER,
     protocol TEXT NOT NULL,
     args TEXT NOT NULL,
     status TEXT NOT NULL,
     result TEXT,
     error TEXT,
     created_at TEXT NOT NULL
   );
   CREATE TABLE datasets (
     id TEXT PRIMARY KEY,
     name TEXT NOT NULL UNIQUE,
     path TEXT NOT NULL,
     info TEXT,
     created_at TEXT NOT NULL
   );`,
  // 2: studies (docs/studies.md, "Through the service") and their cells, one row per distinct
  // config hash of a study (kind 'cell') or per pretraining run it needs (kind 'pretrain').
  `CREATE TABLE studies (
     id TEXT PRIMARY KEY,
     name TEXT NOT NULL,
     spec TEXT NOT NULL,
     layout TEXT NOT NULL,
     state TEXT NOT NULL,
     dir TEXT NOT NULL,
     cause TEXT,
     report TEXT,
     created_at TEXT NOT NULL,
     updated_at TEXT NOT NULL
   );
   CREATE TABLE study_cells (
     study_id TEXT NOT NULL,
     kind TEXT NOT NULL,
     hash TEXT NOT NULL,
     seed INTEGER NOT NULL,
     pretrain TEXT,
     config TEXT NOT NULL,
     run_dir TEXT NOT NULL,
     state TEXT NOT NULL,
     attempts INTEGER NOT NULL DEFAULT 0,
     failures INTEGER NOT NULL DEFAULT 0,
     cause TEXT,
     experiment_id TEXT,
     experiments TEXT NOT NULL DEFAULT '[]',
     PRIMARY KEY (study_id, kind, hash)
   );
   CREATE INDEX study_cells_by_experiment ON study_cells (experiment_id);
   CREATE INDEX study_cells_by_hash ON study_cells (hash, kind);`,
];


export interface ExperimentRow {
  id: string;
  name: string;
  config: unknown;
  state: State;
  priority: number;
  nproc: number;
  max_restarts: number;
  checkpoint_policy: { keep_latest: number; keep_best: number; metric: string | null; smaller_is_better: boolean } | null;
  restarts: number;
  run_dir: string;
  devices: number[] | null;
  pid: number | null;
  cause: string | null;
  summary: unknown;
  created_at: string;
  updated_at: string;
}

export interface EventRow {
  id: number;
  experiment_id: string;
  kind: 'state' | 'metrics' | 'checkpoint' | 'log';
  data: Record<string, unknown>;
  at: string;
}

type RawExperiment = Omit<ExperimentRow, 'config' | 'devices' | 'summary' | 'checkpoint_policy'> & {
  config: string;
  devices: string | null;
  summary: string | null;
  checkpoint_policy: string | null;
};

const now = () => new Date().toISOString();

function parseExperiment(r: RawExperiment | undefined): ExperimentRow | undefined {
  if (!r) return undefined;
  return {
    ...r,
    config: JSON.parse(r.config),
    devices: r.devices ? JSON.parse(r.devices) : null,
    summary: r.summary ? JSON.parse(r.summary) : null,
    checkpoint_policy: r.checkpoint_policy ? JSON.parse(r.checkpoint_policy) : null,
  };
}

export class ServiceStore {
  readonly db: Database.Database;

  constructor(file: string) {
    this.db = openDatabase(file, MIGRATIONS);
  }

  close(): void {
    this.db.close();
  }

  createExperiment(e: {
    id: string;
    name: string;
    config: unknown;
    priority: number;
    nproc: number;
    maxRestarts: number;
    runDir: string;
    checkpointPolicy: ExperimentRow['checkpoint_policy'];
  }): ExperimentRow {
    const at = now();
    this.db.transaction(() => {
      this.db
        .prepare(
          `INSERT INTO experiments (id, name, config, state, priority, nproc, max_restarts, checkpoint_policy, run_dir, created_at, updated_at)
           VALUES (?, ?, ?, 'QUEUED', ?, ?, ?, ?, ?, ?, ?)`,
        )
        .run(e.id, e.name, JSON.stringify(e.config), e.priority, e.nproc, e.maxRestarts, e.checkpointPolicy ? JSON.stringify(e.checkpointPolicy) : null, e.runDir, at, at);
      this.appendEvent(e.id, 'state', { from: null, to: 'QUEUED' });
    })();
    return this.getExperiment(e.id)!;
  }

  getExperiment(id: string): ExperimentRow | undefined {
    return parseExperiment(this.db.prepare('SELECT * FROM experiments WHERE id = ?').get(id) as RawExperiment | undefined);
  }

  listExperiments(q: { state?: string; name?: string; limit: number; offset: number }): { items: ExperimentRow[]; total: number } {
    const where: string[] = [];
    const args: unknown[] = [];
    if (q.state) (where.push('state = ?'), args.push(q.state));
    if (q.name) (where.push('name LIKE ?'), args.push(`%${q.name}%`));
    const clause = where.length ? `WHERE ${where.join(' AND ')}` : '';
    const total = (this.db.prepare(`SELECT COUNT(*) AS n FROM experiments ${clause}`).get(...args) as { n: number }).n;
    const rows = this.db
      .prepare(`SELECT * FROM experiments ${clause} ORDER BY created_at DESC, id DESC LIMIT ? OFFSET ?`)
      .all(...args, q.limit, q.offset) as RawExperiment[];
    return { items: rows.map((r) => parseExperiment(r)!), total };
  }

  /** Persist a state transition and its event in one transaction; returns the event. */
  transition(id: string, from: State, to: State, fields: { cause?: string | null; summary?: unknown; devices?: number[] | null; pid?: number | null } = {}): EventRow {
    return this.db.transaction(() => {
      const sets = ['state = ?', 'updated_at = ?'];
      const args: unknown[] = [to, now()];
      if ('cause' in fields) (sets.push('cause = ?'), args.push(fields.cause ?? null));
      if ('summary' in fields) (sets.push('summary = ?'), args.push(JSON.stringify(fields.summary ?? null)));
      if ('devices' in fields) (sets.push('devices = ?'), args.push(fields.devices ? JSON.stringify(fields.devices) : null));
      if ('pid' in fields) (sets.push('pid = ?'), args.push(fields.pid ?? null));
      const changed = this.db.prepare(`UPDATE experiments SET ${sets.join(', ')} WHERE id = ? AND state = ?`).run(...args, id, from).changes;
      if (changed !== 1) throw new Error(`experiment ${id} is not in state ${from}`);
      return this.appendEvent(id, 'state', { from, to, ...(fields.cause ? { cause: fields.cause } : {}) });
    })();
  }

  /** How many times the experiment entered `to` (e.g. STARTING: its launch attempts so far). */
  countTransitions(id: string, to: State): number {
    return (
      this.db.prepare(`SELECT COUNT(*) AS n FROM events WHERE experiment_id = ? AND kind = 'state' AND json_extract(data, '$.to') = ?`).get(id, to) as {
        n: number;
      }
    ).n;
  }

  bumpRestarts(id: string): number {
    this.db.prepare('UPDATE experiments SET restarts = restarts + 1 WHERE id = ?').run(id);
    return this.getExperiment(id)!.restarts;
  }

  /** Append one event; returns it as stored (for the live bus), without reading it back. */
  appendEvent(experimentId: string, kind: EventRow['kind'], data: Record<string, unknown>): EventRow {
    const at = now();
    const id = Number(this.db.prepare('INSERT INTO events (experiment_id, kind, data, at) VALUES (?, ?, ?, ?)').run(experimentId, kind, JSON.stringify(data), at).lastInsertRowid);
    return { id, experiment_id: experimentId, kind, data, at };
  }

  /** Record one step's metrics (and its event) in one transaction; returns the event. */
  recordMetrics(experimentId: string, step: number, values: Record<string, number>): EventRow {
    return this.db.transaction(() => {
      const put = this.db.prepare('INSERT OR REPLACE INTO metrics (experiment_id, step, name, value) VALUES (?, ?, ?, ?)');
      for (const [name, value] of Object.entries(values)) if (Number.isFinite(value)) put.run(experimentId, step, name, value);
      // The event nests the loss terms as the wire and the exports do (docs/service.md); a
      // non-finite value is null, as JSON cannot carry it.
      const finite = Object.fromEntries(Object.entries(values).map(([k, v]) => [k, Number.isFinite(v) ? v : null]));
      return this.appendEvent(experimentId, 'metrics', { step, ...nestMetrics(finite) });
    })();
  }

  eventsAfter(experimentId: string, afterId: number, limit = 1000): EventRow[] {
    const rows = this.db
      .prepare('SELECT * FROM events WHERE experiment_id = ? AND id > ? ORDER BY id LIMIT ?')
      .all(experimentId, afterId, limit) as (Omit<EventRow, 'data'> & { data: string })[];
    return rows.map((r) => ({ ...r, data: JSON.parse(r.data) }));
  }

  metrics(experimentId: string, q: { names?: string[]; fromStep?: number; toStep?: number }): Record<string, { step: number; value: number }[]> {
    const where = ['experiment_id = ?'];
    const args: unknown[] = [experimentId];
    if (q.names?.length) (where.push(`name IN (${q.names.map(() => '?').join(',')})`), args.push(...q.names));
    if (q.fromStep !== undefined) (where.push('step >= ?'), args.push(q.fromStep));
    if (q.toStep !== undefined) (where.push('step <= ?'), args.push(q.toStep));
    const rows = this.db.prepare(`SELECT name, step, value FROM metrics WHERE ${where.join(' AND ')} ORDER BY name, step`).all(...args) as {
      name: string;
      step: number;
      value: number;
    }[];
    const out: Record<string, { step: number; value: number }[]> = {};
    for (const r of rows) (out[r.name] ??= []).push({ step: r.step, value: r.value });
    return out;
  }

  addCheckpoint(experimentId: string, c: { step: number; path: string; bytes: number; metric?: number | null }): EventRow {
    return this.db.transaction(() => {
      this.db
        .prepare('INSERT OR REPLACE INTO checkpoints (experiment_id, step, path, bytes, metric, created_at) VALUES (?, ?, ?, ?, ?, ?)')
        .run(experimentId, c.step, c.path, c.bytes, c.metric ?? null, now());
      return this.appendEvent(experimentId, 'checkpoint', { step: c.step, bytes: c.bytes });
    })();
  }

  checkpoints(experimentId: string): { step: number; path: string; bytes: number; metric: number | null; created_at: string }[] {
    return this.db.prepare('SELECT step, path, bytes, metric, created_at FROM checkpoints WHERE experiment_id = ? ORDER BY step').all(experimentId) as never;
  }

  removeCheckpoint(experimentId: string, step: number): void {
    this.db.prepare('DELETE FROM checkpoints WHERE experiment_id = ? AND step = ?').run(experimentId, step);
  }

  deleteExperiment(id: string): void {
    this.db.transaction(() => {
      for (const t of ['events', 'metrics', 'checkpoints', 'evaluations']) this.db.prepare(`DELETE FROM ${t} WHERE experiment_id = ?`).run(id);
      this.db.prepare('DELETE FROM experiments WHERE id = ?').run(id);
    })();
  }
}

export interface EvaluationRow {
  id: string;
  experiment_id: string;
  checkpoint_step: number | null;
  protocol: string;
  /** The typed evaluation arguments (schemas.ts EvaluationArgs). */
  args: unknown;
  status: 'running' | 'completed' | 'failed';
  result: unknown;
  error: string | null;
  created_at: string;
}

export interface DatasetRow {
  id: string;
  name: string;
  path: string;
  info: unknown;
  created_at: string;
}

type Raw<T, K extends keyof T> = Omit<T, K> & { [P in K]: string | null };

/** Evaluations and registered datasets: artifacts that live beside the experiments. */
export class ArtifactStore {
  constructor(private readonly db: Database.Database) {}

  createEvaluation(e: { id: string; experimentId: string; checkpointStep: number | null; protocol: string; args: unknown }): EvaluationRow {
    this.db
      .prepare(`INSERT INTO evaluations (id, experiment_id, checkpoint_step, protocol, args, status, created_at) VALUES (?, ?, ?, ?, ?, 'running', ?)`)
      .run(e.id, e.experimentId, e.checkpointStep, e.protocol, JSON.stringify(e.args), now());
    return this.evaluation(e.id)!;
  }

  finishEvaluation(id: string, outcome: { result: unknown } | { error: string }): void {
    if ('error' in outcome) this.db.prepare(`UPDATE evaluations SET status = 'failed', error = ? WHERE id = ?`).run(outcome.error, id);
    else this.db.prepare(`UPDATE evaluations SET status = 'completed', result = ? WHERE id = ?`).run(JSON.stringify(outcome.result), id);
  }

  evaluation(id: string): EvaluationRow | undefined {
    const r = this.db.prepare('SELECT * FROM evaluations WHERE id = ?').get(id) as Raw<EvaluationRow, 'args' | 'result'> | undefined;
    return r && { ...r, args: JSON.parse(r.args ?? '[]'), result: r.result ? JSON.parse(r.result) : null };
  }

  evaluations(experimentId: string): EvaluationRow[] {
    const ids = this.db.prepare('SELECT id FROM evaluations WHERE experiment_id = ? ORDER BY created_at').all(experimentId) as { id: string }[];
    return ids.map((r) => this.evaluation(r.id)!);
  }

  createDataset(d: { id: string; name: string; path: string; info: unknown }): DatasetRow {
    this.db.prepare('INSERT INTO datasets (id, name, path, info, created_at) VALUES (?, ?, ?, ?, ?)').run(d.id, d.name, d.path, JSON.stringify(d.info), now());
    return this.dataset(d.id)!;
  }

  dataset(idOrName: string): DatasetRow | undefined {
    const r = this.db.prepare('SELECT * FROM datasets WHERE id = ? OR name = ?').get(idOrName, idOrName) as Raw<DatasetRow, 'info'> | undefined;
    return r && { ...r, info: r.info ? JSON.parse(r.info) : null };
  }

  datasets(): DatasetRow[] {
    const ids = this.db.prepare('SELECT id FROM datasets ORDER BY name').all() as { id: string }[];
    return ids.map((r) => this.dataset(r.id)!);
  }
}

export type StudyState = 'running' | 'completed' | 'failed' | 'canceled';
export type StudyCellState = 'pending' | 'training' | 'trained' | 'evaluated' | 'failed';

/** Where each (arm, factor levels, seed) of a study lands: the cell of that config hash. */
export interface StudyLayoutEntry {
  arm: string;
  levels: Record<string, unknown>;
  seed: number;
  hash: string;
  pretrain: string | null;
}

export interface StudyRow {
  id: string;
  name: string;
  /** The spec as submitted (the POST body). */
  spec: Record<string, unknown>;
  layout: StudyLayoutEntry[];
  state: StudyState;
  /** The study directory, the layout of a local study (docs/studies.md "On disk"). */
  dir: string;
  cause: string | null;
  /** report.json once written. */
  report: string | null;
  created_at: string;
  updated_at: string;
}

export interface StudyCellRow {
  study_id: string;
  kind: 'cell' | 'pretrain';
  hash: string;
  seed: number;
  /** The pretraining cell (hash) a cell starts from. */
  pretrain: string | null;
  config: Record<string, unknown>;
  /** Where its training runs (or ran): its own cell directory, or the directory of another
   *  study's cell of the same config hash that it reuses. */
  run_dir: string;
  state: StudyCellState;
  /** Training experiments launched for it. */
  attempts: number;
  /** Failed attempts (training or evaluation): at 2 the cell is failed. */
  failures: number;
  cause: string | null;
  /** The experiment that trains it now (or last did). */
  experiment_id: string | null;
  experiments: string[];
}

type RawStudy = Omit<StudyRow, 'spec' | 'layout'> & { spec: string; layout: string };
type RawCell = Omit<StudyCellRow, 'config' | 'experiments'> & { config: string; experiments: string };

const parseStudy = (r: RawStudy | undefined): StudyRow | undefined => r && { ...r, spec: JSON.parse(r.spec), layout: JSON.parse(r.layout) };
const parseCell = (r: RawCell): StudyCellRow => ({ ...r, config: JSON.parse(r.config), experiments: JSON.parse(r.experiments) });

/** Studies and their cells (ts/service/studies.ts drives them). */
export class StudyStore {
  constructor(private readonly db: Database.Database) {}

  /** A study and all its cells, in one transaction: a study is stored whole or not at all. */
  createStudy(s: Pick<StudyRow, 'id' | 'name' | 'spec' | 'layout' | 'dir'>, cells: Array<Omit<StudyCellRow, 'study_id' | 'state' | 'attempts' | 'failures' | 'cause' | 'experiment_id' | 'experiments'>>): StudyRow {
    const at = now();
    this.db.transaction(() => {
      this.db
        .prepare(`INSERT INTO studies (id, name, spec, layout, state, dir, created_at, updated_at) VALUES (?, ?, ?, ?, 'running', ?, ?, ?)`)
        .run(s.id, s.name, JSON.stringify(s.spec), JSON.stringify(s.layout), s.dir, at, at);
      const put = this.db.prepare(
        `INSERT INTO study_cells (study_id, kind, hash, seed, pretrain, config, run_dir, state) VALUES (?, ?, ?, ?, ?, ?, ?, 'pending')`,
      );
      for (const c of cells) put.run(s.id, c.kind, c.hash, c.seed, c.pretrain, JSON.stringify(c.config), c.run_dir);
    })();
    return this.study(s.id)!;
  }

  study(id: string): StudyRow | undefined {
    return parseStudy(this.db.prepare('SELECT * FROM studies WHERE id = ?').get(id) as RawStudy | undefined);
  }

  studies(q: { state?: string; limit: number; offset: number }): { items: StudyRow[]; total: number } {
    const where = q.state ? 'WHERE state = ?' : '';
    const args = q.state ? [q.state] : [];
    const total = (this.db.prepare(`SELECT COUNT(*) AS n FROM studies ${where}`).get(...args) as { n: number }).n;
    const rows = this.db.prepare(`SELECT * FROM studies ${where} ORDER BY created_at DESC, id DESC LIMIT ? OFFSET ?`).all(...args, q.limit, q.offset) as RawStudy[];
    return { items: rows.map((r) => parseStudy(r)!), total };
  }

  setStudy(id: string, patch: Partial<Pick<StudyRow, 'state' | 'cause' | 'report'>>): void {
    const keys = Object.keys(patch) as (keyof typeof patch)[];
    if (!keys.length) return;
    this.db.prepare(`UPDATE studies SET ${keys.map((k) => `${k} = ?`).join(', ')}, updated_at = ? WHERE id = ?`).run(...keys.map((k) => patch[k] ?? null), now(), id);
  }

  cells(studyId: string): StudyCellRow[] {
    return (this.db.prepare(`SELECT * FROM study_cells WHERE study_id = ? ORDER BY kind DESC, rowid`).all(studyId) as RawCell[]).map(parseCell);
  }

  setCell(c: Pick<StudyCellRow, 'study_id' | 'kind' | 'hash'>, patch: Partial<Omit<StudyCellRow, 'study_id' | 'kind' | 'hash' | 'config'>>): void {
    const keys = Object.keys(patch) as (keyof typeof patch)[];
    if (!keys.length) return;
    const value = (k: keyof typeof patch) => (k === 'experiments' ? JSON.stringify(patch[k]) : (patch[k] ?? null));
    this.db
      .prepare(`UPDATE study_cells SET ${keys.map((k) => `${k} = ?`).join(', ')} WHERE study_id = ? AND kind = ? AND hash = ?`)
      .run(...keys.map(value), c.study_id, c.kind, c.hash);
  }

  /** The study ids whose cells an experiment trains. */
  studiesOfExperiment(experimentId: string): string[] {
    return (this.db.prepare('SELECT DISTINCT study_id FROM study_cells WHERE experiment_id = ?').all(experimentId) as { study_id: string }[]).map((r) => r.study_id);
  }

  /** Cells of other studies with the same config hash (for reuse), oldest first. */
  sameHash(c: Pick<StudyCellRow, 'study_id' | 'kind' | 'hash'>): StudyCellRow[] {
    return (this.db.prepare('SELECT * FROM study_cells WHERE hash = ? AND kind = ? AND study_id != ? ORDER BY rowid').all(c.hash, c.kind, c.study_id) as RawCell[]).map(parseCell);
  }
}
