// `dmfr study run` end to end, as a user runs it (node bin/dmfr.js in a child process, real
// torchrun ranks, real SQLite, real files): the tiny spec (with a checkpoint every 5 steps)
// is killed (SIGKILL) mid-cell, re-run to completion with no cell lost or duplicated and the killed
// cell resumed from its checkpoint, and a third run trains nothing.
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { describe, expect, it } from 'vitest';
import { REPO_ROOT } from '../../ts/controller/launch.ts';
import { runPids } from '../../ts/controller/processes.ts';
import { checkpointStep, latestCheckpoint, type CellRecord, type StudyFile } from '../../ts/study/state.ts';
import { HAVE_PYTHON } from './helpers.ts';

const SPEC = `name: tiny
base: { preset: quick, steps: 20, train.checkpoint_every: 5 }
arms:
  - { name: mix, method: mix }
  - { name: filter, method: filter }
seeds: [0, 1]
baseline: mix
eval: { protocols: [general, cross_pose], fars: [1e-3, 1e-2] }
`;

interface Result {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

function dmfr(args: string[], watch?: (child: ChildProcess) => void): Promise<Result> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [join(REPO_ROOT, 'bin', 'dmfr.js'), ...args], { cwd: REPO_ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout!.on('data', (d) => (stdout += d));
    child.stderr!.on('data', (d) => (stderr += d));
    const timer = watch ? setInterval(() => watch(child), 200) : null;
    child.on('exit', (code, signal) => {
      if (timer) clearInterval(timer);
      resolve({ code, signal, stdout, stderr });
    });
  });
}

const readJson = <T>(p: string): T => JSON.parse(readFileSync(p, 'utf8')) as T;

describe.skipIf(!HAVE_PYTHON)('dmfr study run (tiny spec)', () => {
  it('survives a kill mid-cell: no cell lost or duplicated, the killed cell resumes, a re-run trains nothing', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'dmfr-study-'));
    const spec = join(dir, 'tiny.yaml');
    writeFileSync(spec, SPEC);
    const out = join(dir, 'out');
    const args = ['study', 'run', spec, '--out', out, '--parallel', '1', '--json'];

    // 1. Kill the study (SIGKILL: no clean-up at all) once a cell is evaluated and another has
    //    saved a checkpoint before its last step.
    let killed: { hash: string; step: number; evaluated: string[] } | null = null;
    const first = await dmfr(args, (child) => {
      if (killed || !existsSync(join(out, 'study.json'))) return;
      const study = readJson<StudyFile>(join(out, 'study.json'));
      const evaluated = study.cells.filter((c) => c.state === 'evaluated').map((c) => c.hash);
      const training = study.cells.find((c) => c.state === 'training');
      if (evaluated.length === 0 || !training) return;
      const step = checkpointStep(latestCheckpoint(join(out, 'cells', training.hash)));
      if (step >= 5 && step < 20) {
        killed = { hash: training.hash, step, evaluated };
        // A crash takes the host's processes down with the study, ranks included. Left alive, the
        // orphaned ranks would finish the steps already planned for them (a 20-step cell fits in
        // their plan credit) before the re-run ends them, leaving nothing to resume.
        const cellFile = join(out, 'cells', training.hash, 'cell.json');
        const runs = existsSync(cellFile) ? readJson<CellRecord>(cellFile).runs : [];
        for (const pid of runs.flatMap((r) => runPids(r))) {
          try {
            process.kill(pid, 'SIGKILL');
          } catch {
            // already gone
          }
        }
        child.kill('SIGKILL');
      }
    });
    expect(first.signal, first.stderr).toBe('SIGKILL');
    expect(killed).not.toBeNull();
    const k = killed!;
    const evaluatedMtime = new Map(k.evaluated.map((h) => [h, statSync(join(out, 'cells', h, 'eval', 'metrics.json')).mtimeMs]));

    // 2. Re-run: everything completes; the killed cell resumes from its checkpoint.
    const second = await dmfr(args);
    expect(second.code, second.stderr).toBe(0);
    const summary = JSON.parse(second.stdout.trim().split('\n').at(-1)!);
    expect(summary).toEqual({ status: 'completed', cells: 4, completed: 4, failed: 0, report: join(out, 'report.json') });
    expect(readdirSync(join(out, 'cells')).sort()).toEqual(readJson<StudyFile>(join(out, 'study.json')).cells.map((c) => c.hash).sort());
    expect(readdirSync(join(out, 'cells'))).toHaveLength(4);
    const resumedFrom = new RegExp(`\\(${k.hash}\\): training from step (\\d+)`).exec(second.stderr);
    expect(resumedFrom, second.stderr).not.toBeNull();
    const from = Number(resumedFrom![1]);
    expect(from).toBeGreaterThanOrEqual(k.step);
    const killedCell = readJson<CellRecord>(join(out, 'cells', k.hash, 'cell.json'));
    expect(killedCell.runs).toHaveLength(2);
    const db = new Database(join(out, 'cells', k.hash, 'dmfr.sqlite'), { readonly: true });
    const firstStep = db.prepare('SELECT MIN(step) AS s FROM metrics WHERE run_id = ?').get(killedCell.runs[1]) as { s: number };
    db.close();
    // step-N.pt is the state after N completed steps: the resumed run's first logged step is
    // N + 1 (steps completed, docs/protocol.md "Step numbering"), nothing before it retrained
    expect(firstStep.s).toBe(from + 1);
    for (const [hash, mtime] of evaluatedMtime) {
      expect(readJson<CellRecord>(join(out, 'cells', hash, 'cell.json')).runs).toHaveLength(1); // not retrained
      expect(statSync(join(out, 'cells', hash, 'eval', 'metrics.json')).mtimeMs).toBe(mtime); // not re-evaluated
    }
    const runsBefore = readJson<StudyFile>(join(out, 'study.json')).cells.map((c) => readJson<CellRecord>(join(out, 'cells', c.hash, 'cell.json')).runs);

    // The report follows the contract.
    const report = readJson<Record<string, any>>(join(out, 'report.json'));
    expect(report.arms.map((a: any) => [a.name, a.n])).toEqual([['mix', 2], ['filter', 2]]);
    for (const a of report.arms) {
      for (const m of ['general/tar_at_far_1e-3', 'general/tar_at_far_1e-2', 'cross_pose/tar_at_far_1e-3', 'cross_pose/tar_at_far_1e-2']) {
        expect(Object.keys(a.metrics[m]).sort()).toEqual(['ci95', 'mean', 'n', 'sd', 'values']);
        expect(a.metrics[m].values).toHaveLength(2);
      }
    }
    const comp = report.comparisons.find((c: any) => c.metric === 'cross_pose/tar_at_far_1e-3');
    expect(Object.keys(comp)).toEqual(expect.arrayContaining(['arm', 'baseline', 'metric', 'diff', 'ci95', 'p', 'p_holm']));
    expect(comp).toMatchObject({ arm: 'filter', baseline: 'mix' });
    expect(existsSync(join(out, 'report.md'))).toBe(true);
    expect(existsSync(join(out, 'figures', 'tar_cross_pose.svg'))).toBe(true);

    // 3. A third run trains nothing.
    const third = await dmfr(args);
    expect(third.code, third.stderr).toBe(0);
    expect(third.stderr).not.toMatch(/: training/);
    const runsAfter = readJson<StudyFile>(join(out, 'study.json')).cells.map((c) => readJson<CellRecord>(join(out, 'cells', c.hash, 'cell.json')).runs);
    expect(runsAfter).toEqual(runsBefore);

    // status and report read the same directory without training.
    const status = await dmfr(['study', 'status', out]);
    expect(status.stdout).toContain('4/4 evaluated, 0 failed');
    const rep = await dmfr(['study', 'report', out, '--json']);
    expect(JSON.parse(rep.stdout.trim().split('\n').at(-1)!)).toEqual(summary);
    expect(rep.stderr).toContain('| filter | 2 |');
  }, 60 * 60_000); // about 10 min on an idle 2-core box; 30+ min when the box is shared

  it('retries a failing cell once, then reports it as failed with its cause (never dropped)', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'dmfr-study-'));
    const spec = join(dir, 'bad.yaml');
    // A dataset folder that does not exist: the config is valid, the ranks fail building the data.
    writeFileSync(spec, `name: bad
base: { preset: quick, steps: 20, nproc: 1 }
arms:
  - { name: missing, method: mix, data.kind: folder, data.path: ${join(dir, 'no-such-folder')} }
eval: { verification: [] }
`);
    const out = join(dir, 'out');
    const res = await dmfr(['study', 'run', spec, '--out', out, '--json']);
    expect(res.code, res.stderr).toBe(1);
    expect(JSON.parse(res.stdout.trim().split('\n').at(-1)!)).toEqual({ status: 'failed', cells: 1, completed: 0, failed: 1, report: null });
    const [cell] = readJson<StudyFile>(join(out, 'study.json')).cells;
    expect(cell).toMatchObject({ arm: 'missing', state: 'failed', attempts: 2 });
    expect(cell!.runs).toHaveLength(2);
    expect(cell!.cause).toContain('no-such-folder');
    const status = await dmfr(['study', 'status', out]);
    expect(status.stdout).toMatch(/missing\t\{\}\t0\t\w+\tfailed\t0\t2\t.*no-such-folder/);
  }, 10 * 60_000);
});
