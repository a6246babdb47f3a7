// Versioned schema migrations, applied in order; `PRAGMA user_version` holds the last applied.
// Never edit a shipped migration: add the next one.
export const MIGRATIONS: string[] = [
  // 1: experiments, runs, state transitions, per-step metrics.
  `
  CREATE TABLE experiments (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL,
    created_at  TEXT NOT NULL,
    config_json TEXT NOT NULL
  );
  CREATE TABLE runs (
    id            TEXT PRIMARY KEY,
    experiment_id TEXT NOT NULL REFERENCES experiments(id),
    state         TEXT NOT NULL,
    run_dir       TEXT NOT NULL,
    nproc         INTEGER NOT NULL,
    config_json   TEXT NOT NULL,
    created_at    TEXT NOT NULL,
    ended_at      TEXT,
    cause         TEXT,
    summary_json  TEXT
  );
  CREATE TABLE transitions (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    run_id     TEXT NOT NULL REFERENCES runs(id),
    from_state TEXT,
    to_state   TEXT NOT NULL,
    at         TEXT NOT NULL,
    cause      TEXT
  );
  CREATE INDEX transitions_run ON transitions(run_id, id);
  CREATE TABLE metrics (
    run_id TEXT NOT NULL REFERENCES runs(id),
    step   INTEGER NOT NULL,
    name   TEXT NOT NULL,
    value  REAL,
    PRIMARY KEY (run_id, step, name)
  ) WITHOUT ROWID;
  `,
];
