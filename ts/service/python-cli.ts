// Short Python jobs of the service (evaluate a checkpoint, inspect a dataset): `python -m dmfr.cli
// ARGS… --json` as a child process. The contract (python/dmfr/cli/_output.py, docs/service.md):
// with --json the last stdout line is one compact JSON object, the verb's result or
// {"error": {"type", "message"}} for bad input; a verb that crashes leaves no such line and its
// stderr's last line is the cause.
import { spawn } from 'node:child_process';
import { pythonEnv, pythonExecutable, REPO_ROOT } from '../controller/launch.ts';

export interface PythonResult {
  /** 0, or a verb's own non-zero code with a result (`data inspect`: 1 when it found problems). */
  exitCode: number;
  result: Record<string, unknown>;
}

/** A Python verb that failed: `type` is the Python exception (DataError, ConfigError, …) or
 *  'crash' (no JSON line: a traceback, a signal, the timeout). `detail` may quote the input. */
export class PythonCliError extends Error {
  constructor(
    readonly verb: string,
    readonly type: string,
    readonly detail: string,
  ) {
    super(`python -m dmfr.cli ${verb}: ${type}: ${detail}`);
  }
}

/** The last line of `text` parsed as a JSON object, or null. */
export function lastJsonLine(text: string): Record<string, unknown> | null {
  const last = text.trimEnd().split('\n').at(-1) ?? '';
  try {
    const value: unknown = JSON.parse(last);
    return value !== null && typeof value === 'object' && !Array.isArray(value) ? (value as Record<string, unknown>) : null;
  } catch {
    return null;
  }
}

/** `signal` ends the child (SIGTERM) when aborted, e.g. a service shutting down mid-evaluation. */
export function runPythonJson(args: string[], timeoutMs = 30 * 60_000, signal?: AbortSignal): Promise<PythonResult> {
  const verb = args.slice(0, 2).join(' ');
  return new Promise((resolve, reject) => {
    const child = spawn(pythonExecutable(), ['-m', 'dmfr.cli', ...args], { cwd: REPO_ROOT, env: pythonEnv(), stdio: ['ignore', 'pipe', 'pipe'], signal });
    let out = '';
    let err = '';
    child.stdout.on('data', (d: Buffer) => (out = (out + d.toString()).slice(-4_000_000)));
    child.stderr.on('data', (d: Buffer) => (err = (err + d.toString()).slice(-8000)));
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.on('error', (e) => (clearTimeout(timer), reject(new PythonCliError(verb, 'crash', e.message))));
    child.on('exit', (code, signal) => {
      clearTimeout(timer);
      const last = lastJsonLine(out);
      const error = last?.error as { type?: unknown; message?: unknown } | undefined;
      if (error && typeof error === 'object') return reject(new PythonCliError(verb, String(error.type ?? 'Error'), String(error.message ?? '')));
      if (last && code !== null && code <= 1) return resolve({ exitCode: code, result: last });
      const cause = err.trim().split('\n').at(-1) || `exited with ${code ?? signal}`;
      reject(new PythonCliError(verb, 'crash', last ? `exited with ${code ?? signal}: ${cause}` : `printed no JSON result (${cause})`));
    });
  });
}
