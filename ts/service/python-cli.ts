// Short Python jobs of the service (evaluate a checkpoint, inspect a dataset): `python -m dmfr.cli
// ARGS…` as a child process; the last stdout line is the JSON result, stderr the error message.
import { spawn } from 'node:child_process';
import { pythonEnv, pythonExecutable, REPO_ROOT } from '../controller/launch.ts';

export function runPythonJson(args: string[], timeoutMs = 30 * 60_000): Promise<unknown> {
  return new Promise((resolve, reject) => {
    const child = spawn(pythonExecutable(), ['-m', 'dmfr.cli', ...args], { cwd: REPO_ROOT, env: pythonEnv(), stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (err = (err + d.toString()).slice(-8000)));
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.on('error', (e) => (clearTimeout(timer), reject(e)));
    child.on('exit', (code, signal) => {
      clearTimeout(timer);
      if (code !== 0) {
        const lastLine = err.trim().split('\n').at(-1) ?? '';
        return reject(new Error(lastLine || `python -m dmfr.cli ${args[0]} exited with ${code ?? signal}`));
      }
      const last = out.trim().split('\n').at(-1) ?? '';
      try {
        resolve(JSON.parse(last));
      } catch {
        reject(new Error(`python -m dmfr.cli ${args[0]} printed no JSON result`));
      }
    });
  });
}
