import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { describe, expect, it } from 'vitest';
import { MIGRATIONS, Store } from '../../ts/store/index.ts';

const fresh = () => join(mkdtempSync(join(tmpdir(), 'dmfr-store-')), 'run', 'dmfr.sqlite');

describe('Store', () => {
  it('creates the schema with WAL and migrates only once', () => {
    const path = fresh();
    const s = new Store(path);
    expect(s.schemaVersion).toBe(MIGRATIONS.length);
    expect(s.db.pragma('journal_mode', { simple: true })).toBe('wal');
    s.createExperiment('e1', 'exp', { a: 1 });
    s.close();
    const again = new Store(path); // re-open: no migration re-runs (it would fail on CREATE TABLE)
    expect(again.schemaVersion).toBe(MIGRATIONS.length);
    expect(again.db.prepare('SELECT name FROM experiments').all()).toEqual([{ name: 'exp' }]);
    again.close();
  });

  it('records runs and their state transitions with causes', () => {
    const s = new Store(fresh());
    s.createExperiment('e', 'exp', {});
    s.createRun({ id: 'r1', experimentId: 'e', runDir: '/tmp/r1', nproc: 2, config: { x: 1 } });
    s.transition('r1', 'starting');
    s.transition('r1', 'running');
    s.transition('r1', 'failed', 'rank 1 exited');
    const run = s.getRun('r1')!;
    expect(run).toMatchObject({ state: 'failed', cause: 'rank 1 exited', nproc: 2 });
    expect(run.ended_at).not.toBeNull();
    expect(s.transitions('r1').map((t) => [t.from_state, t.to_state, t.cause])).toEqual([
      [null, 'created', null],
      ['created', 'starting', null],
      ['starting', 'running', null],
      ['running', 'failed', 'rank 1 exited'],
    ]);
    expect(() => s.transition('nope', 'running')).toThrow(/no run nope/);
    s.close();
  });

  it('buffers metrics and writes them in one transaction per flush', () => {
    const path = fresh();
    const s = new Store(path);
    s.createExperiment('e', 'exp', {});
    s.createRun({ id: 'r', experimentId: 'e', runDir: '/tmp/r', nproc: 1, config: {} });
    for (let step = 0; step < 100; step++) s.addMetrics('r', step, { loss: 10 - step / 10, lr: 0.1 });
    expect(s.pendingMetrics).toBe(200);
    // Nothing is visible to another connection before the flush…
    const reader = new Database(path, { readonly: true });
    expect(reader.prepare('SELECT COUNT(*) AS n FROM metrics').get()).toEqual({ n: 0 });
    // …and the flush is one transaction: count the transactions the store opens.
    let commits = 0;
    const orig = s.db.transaction.bind(s.db);
    (s.db as unknown as { transaction: typeof orig }).transaction = ((fn: () => void) => {
      const t = orig(fn);
      return (() => {
        commits++;
        return t();
      }) as unknown as ReturnType<typeof orig>;
    }) as typeof orig;
    expect(s.flushMetrics()).toBe(200);
    expect(commits).toBe(1);
    expect(reader.prepare('SELECT COUNT(*) AS n FROM metrics').get()).toEqual({ n: 200 });
    expect(s.metrics('r', 'loss')).toHaveLength(100);
    expect(s.metrics('r', 'loss')[99]).toEqual({ step: 99, name: 'loss', value: expect.closeTo(0.1, 9) });
    // A repeated (run, step, name) keeps the first value.
    s.addMetrics('r', 0, { loss: 123 });
    s.flushMetrics();
    expect(s.metrics('r', 'loss')[0]!.value).toBe(10);
    reader.close();
    s.close();
  });

  it('stores null for non-finite values and the run summary', () => {
    const s = new Store(fresh());
    s.createExperiment('e', 'exp', {});
    s.createRun({ id: 'r', experimentId: 'e', runDir: '/tmp/r', nproc: 1, config: {} });
    s.addMetrics('r', 0, { loss: null });
    s.setSummary('r', { status: 'completed', steps: 1 });
    s.close(); // close flushes
    const again = new Store(s.path);
    expect(again.metrics('r')).toEqual([{ step: 0, name: 'loss', value: null }]);
    expect(JSON.parse(again.getRun('r')!.summary_json!)).toEqual({ status: 'completed', steps: 1 });
    again.close();
  });
});

describe('schema versions', () => {
  it('refuses a store written by a newer dmfr and leaves it as it was', async () => {
    const { readFileSync } = await import('node:fs');
    const file = join(mkdtempSync(join(tmpdir(), 'dmfr-newer-')), 'dmfr.sqlite');
    const raw = new Database(file);
    raw.pragma('user_version = 99');
    raw.close();
    const before = readFileSync(file);
    expect(() => new Store(file)).toThrow(/written by a newer dmfr \(schema 99/);
    expect(readFileSync(file).equals(before)).toBe(true);
  });
});
