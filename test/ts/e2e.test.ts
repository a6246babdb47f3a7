// End to end: the real controller launches a real 2-rank torchrun on CPU (gloo) that trains from
// TypeScript-made plans. Hostile messages fired at the controller mid-run are counted and change
// nothing.
import { createHmac, randomBytes } from 'node:crypto';
import { mkdtempSync, readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import * as zmq from 'zeromq';
import { describe, expect, it } from 'vitest';
import { loadConfig } from '../../ts/config/load.ts';
import { RunController, runPids, type MetricsEvent } from '../../ts/controller/index.ts';
import { DELIMITER } from '../../ts/wire/index.ts';
import { HAVE_PYTHON } from './helpers.ts';

const STEPS = 60;

describe.skipIf(!HAVE_PYTHON)('dmfr run end to end (2 ranks, CPU)', () => {
  it(`trains ${STEPS} steps from TypeScript plans; metrics arrive once; SQLite agrees with the summary`, async () => {
    const out = join(mkdtempSync(join(tmpdir(), 'dmfr-e2e-')), 'run');
    const config = loadConfig({ preset: 'quick', steps: STEPS, nproc: 2, sets: ['optim.milestones=[]'] });
    const controller = new RunController({ config, outDir: out });
    const seen = new Map<number, number>();
    const losses: number[] = [];
    let attacked = false;
    const pending: Promise<void>[] = [];
    controller.on('metrics', (m: MetricsEvent) => {
      seen.set(m.step, (seen.get(m.step) ?? 0) + 1);
      losses[m.step - 1] = m.loss!; // m.step counts steps completed: 1 … STEPS
      if (m.step === 10 && !attacked) {
        attacked = true;
        pending.push(attack(controller.endpoints, controller.runId));
      }
    });
    const summary = await controller.start();
    await Promise.all(pending);

    process.stderr.write(`e2e: ${summary.steps} steps, ${summary.steps_per_s?.toFixed(2)} steps/s, ${summary.samples_per_s?.toFixed(0)} samples/s, plan wait ${((summary.plan_wait_fraction ?? 0) * 100).toFixed(3)}%\n`);
    expect(summary.status, summary.cause ?? '').toBe('completed');
    expect(summary.steps).toBe(STEPS);
    expect(summary.run_dir).toBe(out);
    // Every step's metrics exactly once, numbered by steps completed (1 … STEPS).
    expect([...seen.keys()].sort((a, b) => a - b)).toEqual(Array.from({ length: STEPS }, (_, i) => i + 1));
    expect([...seen.values()].every((n) => n === 1)).toBe(true);
    expect(summary.metrics_duplicates).toBe(0);
    // Rank 0's own training time came with its bye: at most the span the controller saw.
    expect(summary.train_time_s).toBeGreaterThan(0);
    expect(summary.train_time_s!).toBeLessThan(summary.duration_s);
    // The loss fell.
    const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
    expect(mean(losses.slice(-10))).toBeLessThan(0.7 * mean(losses.slice(0, 10)));
    expect(summary.final_loss).toBe(losses[STEPS - 1]);
    // The garbage was counted and did no harm.
    expect(summary.wire_rejected).toEqual({ bad_signature: 2, malformed: 1 });
    expect(summary.plan_wait_fraction).not.toBeNull();
    expect(summary.steps_per_s).toBeGreaterThan(0);

    // SQLite (read through a separate connection) agrees with the JSON summary.
    const db = new Database(join(out, 'dmfr.sqlite'), { readonly: true });
    const run = db.prepare('SELECT * FROM runs WHERE id = ?').get(summary.run_id) as Record<string, string>;
    expect(run.state).toBe('completed');
    expect(JSON.parse(run.summary_json!)).toEqual(summary);
    const rows = db.prepare("SELECT step, value FROM metrics WHERE run_id = ? AND name = 'loss' ORDER BY step").all(summary.run_id) as Array<{ step: number; value: number }>;
    expect(rows.map((r) => r.step)).toEqual(Array.from({ length: STEPS }, (_, i) => i + 1));
    expect(rows.map((r) => r.value)).toEqual(losses);
    expect(rows.at(-1)!.value).toBe(summary.final_loss);
    const states = db.prepare('SELECT from_state, to_state FROM transitions WHERE run_id = ? ORDER BY id').all(summary.run_id);
    expect(states).toEqual([
      { from_state: null, to_state: 'created' },
      { from_state: 'created', to_state: 'starting' },
      { from_state: 'starting', to_state: 'running' },
      { from_state: 'running', to_state: 'completed' },
    ]);
    expect(db.pragma('journal_mode', { simple: true })).toBe('wal');
    db.close();
    expect(runPids(summary.run_id)).toEqual([]);
  }, 120_000);
});

describe.skipIf(!HAVE_PYTHON)('resume (2 ranks, CPU)', () => {
  it('a run resumed from a checkpoint is planned from the ranks’ start_step and keeps the weights', async () => {
    const root = mkdtempSync(join(tmpdir(), 'dmfr-resume-'));
    const first = new RunController({ config: loadConfig({ preset: 'quick', steps: 16 }), outDir: join(root, 'a') });
    const firstLosses: number[] = [];
    first.on('metrics', (m: MetricsEvent) => firstLosses.push(m.loss!));
    const a = await first.start();
    expect(a.status, a.cause ?? '').toBe('completed');
    const checkpoints = readdirSync(join(root, 'a', 'checkpoints')).sort();
    expect(checkpoints.at(-1)).toBe('step-00000016.pt');

    const second = new RunController({
      config: loadConfig({ preset: 'quick', steps: 32 }),
      outDir: join(root, 'b'),
      resumeFrom: join(root, 'a', 'checkpoints', checkpoints.at(-1)!),
    });
    const steps: number[] = [];
    const losses: number[] = [];
    second.on('metrics', (m: MetricsEvent) => {
      steps.push(m.step);
      losses.push(m.loss!);
    });
    const b = await second.start();
    expect(b.status, b.cause ?? '').toBe('completed');
    expect(b.steps).toBe(32);
    expect(steps).toEqual(Array.from({ length: 16 }, (_, i) => 17 + i)); // steps completed 17 … 32
    // Trained weights came back: the resumed run starts far below a fresh run's first loss.
    expect(losses[0]!).toBeLessThan(0.7 * firstLosses[0]!);
  }, 150_000);
});

async function attack(endpoints: { control: string; events: string }, runId: string): Promise<void> {
  // linger > 0: closing right after sending must not drop what is still queued.
  const push = new zmq.Push({ linger: 2000 });
  const dealer = new zmq.Dealer({ routingId: `${runId}/0/intruder`, linger: 2000 });
  push.connect(endpoints.events);
  dealer.connect(endpoints.control);
  const h = Buffer.from(JSON.stringify({ version: '1.0', msg_id: 'x', msg_type: 'metrics', run_id: runId, rank: 0, session: 'intruder', date: '' }));
  const b = Buffer.from(JSON.stringify({ step: 3, loss: 0, lr: 0, samples_per_s: 0, plan_wait_s: 0, step_time_s: 0, terms: {} }));
  const wrongKeySig = createHmac('sha256', randomBytes(32)).update(h).update(b).digest('hex');
  await push.send([Buffer.from(DELIMITER), Buffer.from(wrongKeySig), h, b]); // a forged metrics message
  await dealer.send([Buffer.from(DELIMITER), Buffer.from('f'.repeat(64)), Buffer.from('{}'), Buffer.from('{}')]);
  await push.send(randomBytes(100));
  push.close();
  dealer.close();
}
