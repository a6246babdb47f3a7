// The `dmfr` command as a user runs it: `node bin/dmfr.js …` in a child process.
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { REPO_ROOT } from '../../ts/controller/launch.ts';
import { HAVE_PYTHON } from './helpers.ts';

interface Result {
  code: number | null;
  stdout: string;
  stderr: string;
}

function dmfr(
  args: string[],
  opts: { onStderr?: (text: string, child: ReturnType<typeof spawn>) => void; onSpawn?: (child: ReturnType<typeof spawn>) => void } = {},
): Promise<Result> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [join(REPO_ROOT, 'bin', 'dmfr.js'), ...args], {
      cwd: REPO_ROOT,
      env: { ...process.env, DMFR_LOG_LEVEL: 'info' },
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
    for (const verb of ['run', 'serve', 'exp', 'join']) {
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
});
