// Verbs the TypeScript CLI does not handle go to `python -m dmfr.cli VERB …` with the same stdio;
// its exit code becomes ours.
import { spawn } from 'node:child_process';
import { pythonEnv, pythonExecutable } from '../controller/launch.ts';

export function forwardToPython(args: string[]): Promise<number> {
  return new Promise((resolve) => {
    const python = pythonExecutable();
    const child = spawn(python, ['-m', 'dmfr.cli', ...args], { stdio: 'inherit', env: pythonEnv(), cwd: process.cwd() });
    // A terminal's Ctrl-C reaches the child directly (same process group); do not die before it.
    const ignore = () => {};
    const relay = (sig: NodeJS.Signals) => () => child.kill(sig);
    const onTerm = relay('SIGTERM');
    process.on('SIGINT', ignore);
    process.on('SIGTERM', onTerm);
    child.on('error', (e) => {
      process.stderr.write(`dmfr: cannot start ${python}: ${e.message} (run \`bash scripts/setup.sh\` or set DMFR_PYTHON)\n`);
      resolve(127);
    });
    child.on('exit', (code, signal) => {
      process.off('SIGINT', ignore);
      process.off('SIGTERM', onTerm);
      resolve(code ?? (signal ? 128 + (signal === 'SIGINT' ? 2 : signal === 'SIGKILL' ? 9 : 15) : 1));
    });
  });
}
