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
