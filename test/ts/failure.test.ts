// Failure and cancellation with real ranks: SIGKILL of one rank mid-run ends the run as failed
// with the cause recorded, every other process of the run is gone within 30 s, nothing is
// orphaned; a graceful cancel stops every rank at the same planned step.
import { existsSync, mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { describe, expect, it } from 'vitest';
import { loadConfig } from '../../ts/config/load.ts';
import { spawn } from 'node:child_process';
import { isAlive, REPO_ROOT, RunController, runPids, type MetricsEvent } from '../../ts/controller/index.ts';
import { HAVE_PYTHON, waitFor } from './helpers.ts';

function longRun(sets: string[] = []) {
  const out = join(mkdtempSync(join(tmpdir(), 'dmfr-fail-')), 'run');
  const config = loadConfig({ preset: 'quick', steps: 5000, nproc: 2, sets });
  return new RunController({ config, outDir: out });
}

describe.skipIf(!HAVE_PYTHON)('supervision (2 ranks, CPU)', () => {
  it('SIGKILL of one rank: run failed with the cause, all other processes gone, no orphans', async () => {
    const controller = longRun();
    const summaryPromise = controller.start();
    let killedAt = 0;
    let victim = 0;
    const pids: number[] = [];
    controller.on('metrics', (m: MetricsEvent) => {
      if (m.step !== 5 || killedAt) return;
      pids.push(controller.pid!, ...[...controller.ranks.values()].map((r) => r.pid));
      pids.push(...runPids(controller.runId)); // torchrun, both ranks, anything they started
      victim = controller.ranks.get(1)!.pid;
      process.kill(victim, 'SIGKILL');
      killedAt = Date.now();
    });
    const summary = await summaryPromise;
    const tookS = (Date.now() - killedAt) / 1000;
    expect(killedAt).toBeGreaterThan(0);
    expect(summary.status).toBe('failed');
    // Whoever noticed first — the controller seeing the process gone, rank 0's failed collective,
    // or torchrun's exit report — the cause names rank 1 and its pid first.
    expect(summary.cause).toMatch(new RegExp(`^(torchrun [^:]*: )?rank 1 \\(pid ${victim}\\) (exited without saying bye|exitcode -9: Signal 9 \\(SIGKILL\\))`));
    expect(summary.steps).toBeGreaterThanOrEqual(5); // killed once 5 steps had completed
    expect(summary.steps).toBeLessThan(5000);
    expect(tookS).toBeLessThan(30);
    expect(new Set(pids).size).toBeGreaterThanOrEqual(3);
    for (const pid of pids) expect(isAlive(pid), `pid ${pid} still alive`).toBe(false);
    expect(runPids(controller.runId)).toEqual([]);
    // No process group of the run has a member left: torchrun's and each rank's (own session).
    const groups = [controller.pid!, ...[...controller.ranks.values()].map((r) => r.pid)];
    const groupAlive = (g: number) => {
      try {
        process.kill(-g, 0);
        return true;
      } catch {
        return false;
      }
    };
    for (const g of groups) expect(groupAlive(g), `process group ${g} still has members`).toBe(false);

    const db = new Database(join(summary.run_dir, 'dmfr.sqlite'), { readonly: true });
    const last = db.prepare('SELECT to_state, cause FROM transitions WHERE run_id = ? ORDER BY id DESC LIMIT 1').get(summary.run_id);
    expect(last).toEqual({ to_state: 'failed', cause: summary.cause });
    db.close();
  }, 120_000);

  it('cancel: every rank stops at the last step planned to all, the run ends canceled', async () => {
    const controller = longRun();
    const summaryPromise = controller.start();
    const byes: Array<{ rank: number; reason: string; last_step: number }> = [];
    controller.on('bye', (rank: number, b: { reason: string; last_step: number }) => byes.push({ rank, ...b }));
    controller.on('metrics', (m: MetricsEvent) => {
      if (m.step === 5) controller.cancel('test cancel');
    });
    const summary = await summaryPromise;
    expect(summary.status).toBe('canceled');
    expect(summary.cause).toBe('test cancel');
    expect(byes.map((b) => b.reason)).toEqual(['stopped', 'stopped']);
    const finals = new Set(byes.map((b) => b.last_step));
    expect(finals.size).toBe(1);
    const final = [...finals][0]!;
    expect(final).toBeGreaterThanOrEqual(5);
    expect(summary.steps).toBe(final + 1);
    expect(runPids(controller.runId)).toEqual([]);
  }, 120_000);

  it('a silent rank (SIGSTOP) fails the run after rank_timeout_s; the stopped rank is SIGKILLed', async () => {
    const controller = longRun(['runtime.rank_timeout_s=3', 'runtime.stop_grace_s=2']);
    const summaryPromise = controller.start();
    let frozen = 0;
    const pids: number[] = [];
    controller.on('metrics', (m: MetricsEvent) => {
      if (m.step !== 3 || frozen) return;
      pids.push(...runPids(controller.runId));
      frozen = controller.ranks.get(1)!.pid;
      process.kill(frozen, 'SIGSTOP'); // alive but silent: only the heartbeat timeout can tell
    });
    const summary = await summaryPromise;
    expect(frozen).toBeGreaterThan(0);
    expect(summary.status).toBe('failed');
    expect(summary.cause).toMatch(/^rank 1 sent nothing for [3-9]\.\d s \(runtime.rank_timeout_s = 3\)$/);
    for (const pid of pids) expect(isAlive(pid), `pid ${pid} still alive`).toBe(false);
    expect(runPids(controller.runId)).toEqual([]);
  }, 120_000);

  it('ranks notice a dead controller (SIGKILL of dmfr run) and exit on their own', async () => {
    const out = join(mkdtempSync(join(tmpdir(), 'dmfr-lost-')), 'run');
    const child = spawn(process.execPath, [join(REPO_ROOT, 'bin', 'dmfr.js'), 'run', '--preset', 'quick', '--steps', '5000',
      '--set', 'runtime.controller_timeout_s=3', '--out', out], {
      env: { ...process.env, DMFR_LOG_LEVEL: 'info' },
      stdio: ['ignore', 'ignore', 'ignore'],
    });
    // `dmfr run` writes its log lines to <out>/controller.log.
    const logged = () => (existsSync(join(out, 'controller.log')) ? readFileSync(join(out, 'controller.log'), 'utf8') : '');
    // A run that never gets there is canceled, not left training after the test.
    await waitFor(() => /"to":"running"/.test(logged()), 240_000, 'the run to start training').catch((e) => (child.kill('SIGTERM'), Promise.reject(e)));
    const runId = /"run":"([^"]+)"/.exec(logged())![1]!;
    const pids = runPids(runId);
    expect(pids.length).toBeGreaterThanOrEqual(3); // torchrun and two ranks
    child.kill('SIGKILL'); // no chance to clean up: the ranks are on their own
    const t0 = Date.now();
    // A process stops showing its environment while it exits, so wait on the pids themselves too.
    const gone = () => runPids(runId).length === 0 && pids.every((p) => !isAlive(p));
    await waitFor(gone, 60_000, 'the ranks and torchrun to exit');
    const tookS = (Date.now() - t0) / 1000;
    expect(tookS).toBeLessThan(30);
  }, 360_000);
});
