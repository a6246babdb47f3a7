// The `dmfr` command as a user runs it: `node bin/dmfr.js …` in a child process.
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { REPO_ROOT } from '../../ts/controller/launch.ts';
import Database from 'better-sqlite3';
import { HAVE_PYTHON, pythonJson } from './helpers.ts';

interface Result {
  code: number | null;
  stdout: string;
  stderr: string;
}

function dmfr(
  args: string[],
  opts: {
    env?: NodeJS.ProcessEnv;
    onStderr?: (text: string, child: ReturnType<typeof spawn>) => void;
    onSpawn?: (child: ReturnType<typeof spawn>) => void;
  } = {},
): Promise<Result> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [join(REPO_ROOT, 'bin', 'dmfr.js'), ...args], {
      cwd: REPO_ROOT,
      env: opts.env ?? { ...process.env, DMFR_LOG_LEVEL: 'info' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    opts.onSpawn?.(child);
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => {
      stderr += d;
      opts.onStderr?.(stderr, child);
    });
    child.on('exit', (code) => resolve({ code, stdout, stderr }));
  });
}

const tmp = () => mkdtempSync(join(tmpdir(), 'dmfr-cli-'));

describe('dmfr CLI', () => {
  it('rejects a bad config with exit 2, naming the file, the field and what was expected', async () => {
    const f = join(tmp(), 'bad.yaml');
    writeFileSync(f, 'train:\n  steps: 0\n');
    const r = await dmfr(['run', f, '--json']);
    expect(r.code).toBe(2);
    expect(r.stdout).toBe('');
    expect(r.stderr).toContain(`${f}: train.steps: Expected integer to be greater or equal to 1 (minimum 1), got 0`);
  });

  it('rejects bad flags with usage', async () => {
    const r = await dmfr(['run', '--steps', 'ten']);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/--steps: expected a positive integer, got 'ten'/);
    const u = await dmfr(['run', '--bogus']);
    expect(u.code).toBe(2);
    expect(u.stderr).toMatch(/Unknown option '--bogus'[\s\S]*usage: dmfr run/);
    const s = await dmfr(['run', '--set', 'train.nope=1']);
    expect(s.stderr).toMatch(/--set train.nope=1: train.nope: unknown config path/);
    const stray = await dmfr(['serve', 'extra']);
    expect(stray.code).toBe(2);
    expect(stray.stderr).toMatch(/dmfr serve: unexpected argument 'extra'[\s\S]*usage: dmfr serve/);
    const rank = await dmfr(['join', '--experiment', 'exp-x', '--node-rank', 'zero']);
    expect(rank.code).toBe(2);
    expect(rank.stderr).toMatch(/--node-rank: expected an integer ≥ 1, got 'zero'[\s\S]*usage: dmfr join/);
  });

  it('prints the usage of every own verb with --help, exit 0', async () => {
    for (const verb of ['run', 'serve', 'exp', 'join', 'study']) {
      const r = await dmfr([verb, '--help']);
      expect(r.code, verb).toBe(0);
      expect(r.stdout, verb).toContain(`usage: dmfr ${verb}`);
    }
  });

  it.skipIf(!HAVE_PYTHON)('forwards other verbs to python -m dmfr.cli with its exit code', async () => {
    const r = await dmfr(['no-such-verb']);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/invalid choice: 'no-such-verb'/);
    const h = await dmfr(['data', '--help']);
    expect(h.code).toBe(0);
    expect(h.stdout).toMatch(/usage: dmfr data/);
  });

  it.skipIf(!HAVE_PYTHON)('SIGINT cancels a run cleanly; --json prints the summary as the last stdout line', async () => {
    const out = join(tmp(), 'run');
    let sent = false;
    // The controller's log lines go to <out>/controller.log; SIGINT once it says the run trains.
    const log = join(out, 'controller.log');
    const r = await dmfr(['run', '--preset', 'quick', '--steps', '5000', '--out', out, '--json'], {
      onSpawn: (child) => {
        const poll = setInterval(() => {
          if (child.exitCode !== null) return clearInterval(poll);
          if (!sent && existsSync(log) && /"to":"running"/.test(readFileSync(log, 'utf8'))) {
            sent = true;
            clearInterval(poll);
            setTimeout(() => child.kill('SIGINT'), 1000);
          }
        }, 100);
      },
    });
    expect(sent).toBe(true);
    expect(r.code).toBe(130);
    const lines = r.stdout.trim().split('\n');
    const summary = JSON.parse(lines.at(-1)!);
    expect(summary).toMatchObject({ status: 'canceled', cause: 'canceled by SIGINT', run_dir: out });
    expect(summary.steps).toBeGreaterThan(0);
    expect(typeof summary.final_loss).toBe('number');
    for (const k of ['samples_per_s', 'steps_per_s', 'plan_wait_fraction', 'wire_rejected']) expect(summary).toHaveProperty(k);
  }, 360_000);

  it.skipIf(!HAVE_PYTHON)('a failed run prints readable lines on stderr, and its JSON log lines to <out>/controller.log', async () => {
    const dir = tmp();
    const out = join(dir, 'run');
    const missing = join(dir, 'no-such-folder');
    const r = await dmfr(['run', '--preset', 'quick', '--nproc', '1', '--set', 'data.kind=folder', '--set', `data.path=${missing}`, '--out', out]);
    expect(r.code).toBe(1);
    // No raw pino line ({"level":…}) reaches the terminal; the summary names the cause and the logs.
    expect(r.stderr.split('\n').filter((l) => l.trimStart().startsWith('{'))).toEqual([]);
    expect(r.stdout).toMatch(/^run \S+ failed: 0 steps, final loss n\/a — .*no-such-folder/m);
    expect(r.stdout).toContain(`logs: ${join(out, 'controller.log')}, ${join(out, 'ranks.log')}`);
    const lines = readFileSync(join(out, 'controller.log'), 'utf8').trim().split('\n').map((l) => JSON.parse(l));
    expect(lines.some((l) => l.msg === 'rank error' && /no-such-folder/.test(l.message))).toBe(true);
  }, 360_000);

  it.skipIf(!HAVE_PYTHON)('a reused --out is refused (naming --resume and --force); --resume continues from the latest checkpoint; --force moves the old run aside; progress lines on a pipe', async () => {
    const root = tmp();
    const out = join(root, 'run');
    const quiet = { ...process.env, DMFR_LOG_LEVEL: 'warn' };
    const config = ['--preset', 'quick', '--steps', '2000', '--set', 'train.checkpoint_every=5'];
    const runsIn = (dir: string) => {
      const db = new Database(join(dir, 'dmfr.sqlite'), { readonly: true });
      try {
        return db.prepare('SELECT id, experiment_id, state FROM runs ORDER BY created_at').all() as { id: string; experiment_id: string; state: string }[];
      } finally {
        db.close();
      }
    };
    const sigintAfter = (pattern: RegExp) => {
      let sent = false;
      return (text: string, child: ReturnType<typeof spawn>) => {
        if (!sent && pattern.test(text)) {
          sent = true;
          child.kill('SIGINT');
        }
      };
    };

    // 1. A first run, canceled after its first checkpoint. stderr is a pipe: plain progress lines.
    const first = await dmfr(['run', ...config, '--out', out, '--json'], {
      env: quiet,
      onStderr: sigintAfter(/checkpoint at step 5: /),
    });
    expect(first.code, first.stderr).toBe(130);
    expect(first.stderr).toMatch(/^dmfr run \S+: starting 2 rank\(s\) in /m);
    expect(first.stderr).toMatch(/^dmfr run \S+: step 1\/2000 \(0%\)  loss \d+\.\d{4}  /m);
    expect(first.stderr).toContain(`checkpoint at step 5: ${join(out, 'checkpoints', 'step-00000005.pt')}`);
    expect(first.stdout.trim().split('\n')).toHaveLength(1); // stdout holds only the --json summary
    const firstRuns = runsIn(out);
    expect(firstRuns).toHaveLength(1);
    const checkpointsBefore = readdirSync(join(out, 'checkpoints')).sort();

    // 2. The same --out again: refused, nothing touched.
    const again = await dmfr(['run', ...config, '--out', out], { env: quiet });
    expect(again.code).toBe(2);
    expect(again.stderr).toContain(`${out} already holds run ${firstRuns[0]!.id} (canceled, `);
    expect(again.stderr).toMatch(/--resume[\s\S]*--force/);
    expect(runsIn(out)).toEqual(firstRuns);
    expect(readdirSync(join(out, 'checkpoints')).sort()).toEqual(checkpointsBefore);

    // 3. --resume with a changed config: an error naming the changed keys.
    const changed = await dmfr(['run', '--preset', 'quick', '--steps', '3000', '--set', 'train.checkpoint_every=5', '--set', 'optim.lr=0.05', '--out', out, '--resume'], { env: quiet });
    expect(changed.code).toBe(2);
    expect(changed.stderr).toMatch(/the config differs from run \S+'s in optim\.lr, optim\.milestones, train\.steps;/); // milestones follow the steps
    expect(runsIn(out)).toEqual(firstRuns);

    // 4. --resume without config flags: the stored config, from the latest checkpoint on.
    const index = JSON.parse(readFileSync(join(out, 'checkpoints', 'checkpoints.json'), 'utf8')) as { checkpoints: { step: number; file: string }[] };
    const latest = index.checkpoints.at(-1)!;
    const resumed = await dmfr(['run', '--out', out, '--resume', '--json'], { env: quiet, onStderr: sigintAfter(/: step \d+\/2000 /) });
    expect(resumed.code, resumed.stderr).toBe(130);
    expect(resumed.stderr).toContain(`resuming from ${join(out, 'checkpoints', latest.file)}`);
    // the first step it trains is the one after the checkpoint's (steps completed: latest + 1)
    expect(/: step (\d+)\/2000 /.exec(resumed.stderr)![1]).toBe(String(latest.step + 1));
    const both = runsIn(out);
    expect(both).toHaveLength(2);
    expect(both[1]!.experiment_id).toBe(firstRuns[0]!.experiment_id); // one experiment, two attempts

    // 5. --force: the old run moves aside whole, a new one starts in the empty directory.
    const forced = await dmfr(['run', '--preset', 'quick', '--steps', '3', '--out', out, '--force', '--json'], { env: quiet });
    expect(forced.code, forced.stderr).toBe(0);
    const moved = /moved run \S+ \(canceled, \d+ steps\) to (\S+)/.exec(forced.stderr)![1]!;
    expect(moved.startsWith(`${out}.replaced-`)).toBe(true);
    expect(runsIn(moved)).toEqual(both);
    expect(runsIn(out)).toHaveLength(1);
    expect(readdirSync(join(out, 'checkpoints'))).toContain('step-00000003.pt');
    // (the resume's own checkpoints replaced the older ones there: keep_last 3)
    expect(readdirSync(join(moved, 'checkpoints')).filter((f) => /^step-\d{8}\.pt$/.test(f)).length).toBeGreaterThan(0);

    // 6. The new run's metrics, where tools read them: `dmfr runs metrics` (terms nested, steps
    // completed) and TensorBoard's event files, read back with TensorBoard's own reader.
    const exported = await dmfr(['runs', 'metrics', out], { env: quiet });
    expect(exported.code, exported.stderr).toBe(0);
    const records = exported.stdout.trim().split('\n').map((l) => JSON.parse(l) as { step: number; loss: number; terms: Record<string, number> });
    expect(records.map((r) => r.step)).toEqual([1, 2, 3]);
    expect(records.every((r) => typeof r.terms.L_cls === 'number')).toBe(true);
    const scalars = pythonJson<Record<string, [number, number][]>>(
      `import json; from dmfr.tensorboard_log import read_scalars; print(json.dumps(read_scalars(${JSON.stringify(join(out, 'tensorboard'))})))`,
    );
    expect(scalars.loss!.map(([step]) => step)).toEqual([1, 2, 3]);
    // event files hold float32: the exported float64 loss rounds to the same float32
    expect(scalars.loss!.map(([, v]) => v)).toEqual(records.map((r) => Math.fround(r.loss)));
    expect(Object.keys(scalars)).toEqual(expect.arrayContaining(['terms/L_cls', 'lr', 'throughput/samples_per_s']));
    expect(existsSync(join(moved, 'tensorboard'))).toBe(true); // the old run's event files moved with it
  }, 900_000); // three real runs; torch's start-up alone takes a minute on a loaded 2-core host
});
