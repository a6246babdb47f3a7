// Shared test helpers: real processes, no fakes.
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { REPO_ROOT } from '../../ts/controller/launch.ts';
import { log } from '../../ts/log.ts';
import type { StudySpecBody } from '../../ts/sdk/client.ts';

// Tests show warnings and errors only, unless DMFR_LOG_LEVEL asks for more.
log.level = process.env.DMFR_LOG_LEVEL ?? 'warn';

export const PYTHON = process.env.DMFR_PYTHON || join(REPO_ROOT, '.venv', 'bin', 'python');
export const HAVE_PYTHON = existsSync(PYTHON);

export function waitFor(cond: () => boolean, timeoutMs: number, what: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const t0 = Date.now();
    const check = () => {
      if (cond()) return resolve();
      if (Date.now() - t0 > timeoutMs) return reject(new Error(`timed out after ${timeoutMs} ms waiting for ${what}`));
      setTimeout(check, 20);
    };
    check();
  });
}

/** Runs a Python snippet with the package on the path and parses the JSON it prints. */
export function pythonJson<T>(script: string): T {
  const out = execFileSync(PYTHON, ['-c', script], {
    cwd: REPO_ROOT,
    env: { ...process.env, PYTHONPATH: join(REPO_ROOT, 'python') },
    encoding: 'utf8',
    timeout: 60_000,
  });
  return JSON.parse(out) as T;
}

/** The tiny study with 4-step, 1-rank cells: 2 arms × 2 seeds, for the service's study tests. */
export const TINY_STUDY: StudySpecBody = {
  name: 'tiny',
  base: { preset: 'quick', steps: 4, nproc: 1 },
  arms: [
    { name: 'mix', method: 'mix' },
    { name: 'filter', method: 'filter' },
  ],
  seeds: [0, 1],
  baseline: 'mix',
  eval: { protocols: ['general'], fars: [1e-2], similarity: false },
};
