// Starting the ranks: `python -m torch.distributed.run --standalone --nproc-per-node N -m
// dmfr.worker` with the venv's python, in a process group of its own (detached), its output
// appended to <run_dir>/ranks.log and the last lines kept for the failure cause.
import { spawn, type ChildProcess } from 'node:child_process';
import { createWriteStream, existsSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

export const REPO_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../..');

/** The Python that runs the ranks: $DMFR_PYTHON, else <repo>/.venv/bin/python. */
export function pythonExecutable(): string {
  return process.env.DMFR_PYTHON || join(REPO_ROOT, '.venv', 'bin', 'python');
}

export function pythonEnv(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const pyPath = join(REPO_ROOT, 'python');
  return {
    ...process.env,
    PYTHONPATH: process.env.PYTHONPATH ? `${pyPath}:${process.env.PYTHONPATH}` : pyPath,
    PYTHONUNBUFFERED: '1',
    ...extra,
  };
}

// pino's level names → Python logging's, so one DMFR_LOG_LEVEL serves both sides.
const PY_LEVELS: Record<string, string> = {
  trace: 'DEBUG', debug: 'DEBUG', info: 'INFO', warn: 'WARNING', error: 'ERROR', fatal: 'CRITICAL', silent: 'CRITICAL',
};

export function pythonLogLevel(level = process.env.DMFR_LOG_LEVEL): string {
  return PY_LEVELS[(level ?? 'info').toLowerCase()] ?? 'INFO';
}

/**
 * The first Python exception line in the ranks' output ("ValueError: …"), skipping torchrun's own
 * ChildFailedError that only says a child failed.
 */
export function rootCauseLine(lines: readonly string[]): string | null {
  const re = /^(?:[A-Za-z_][\w.]*\.)?[A-Z]\w*(?:Error|Exception|Exit|Interrupt): .+/;
  return lines.map((l) => l.trim()).find((l) => re.test(l) && !l.includes('ChildFailedError')) ?? null;
}

/**
 * torchrun's "Root Cause (first observed failure)" block, as one line: which rank, its exit code
 * and signal, e.g. "rank 1 (pid 4242) exitcode -9: Signal 9 (SIGKILL) received by PID 4242".
 */
export function torchrunRootCause(lines: readonly string[]): string | null {
  const start = lines.findIndex((l) => l.includes('Root Cause (first observed failure)'));
  if (start < 0) return null;
  const block = lines.slice(start, start + 12);
  const field = (name: string) => block.find((l) => l.trim().startsWith(name))?.split(':').slice(1).join(':').trim();
  const rank = /^(\d+)/.exec(field('rank') ?? '')?.[1];
  const exit = /^(-?\d+)(?: \(pid: (\d+)\))?/.exec(field('exitcode') ?? '');
  if (rank === undefined || !exit) return null;
  const tb = field('traceback');
  const detail = tb && !tb.startsWith('To enable traceback') ? `: ${tb}` : '';
  return `rank ${rank}${exit[2] ? ` (pid ${exit[2]})` : ''} exitcode ${exit[1]}${detail}`;
}

export interface LaunchOptions {
  nproc: number;
  threadsPerRank: number; // 0: cores / nproc
  env: Record<string, string>;
  logFile: string;
  workerArgs?: string[];
  python?: string;
  /** The rank module (default dmfr.worker). */
  module?: string;
  /** Set for a node of a multi-node run; otherwise `--standalone`. */
  node?: NodeSpec;
}

export interface Launched {
  child: ChildProcess;
  /** The last lines torchrun and the ranks printed. */
  tail(): string[];
  command: string[];
}

/** One node of a multi-node run: torchrun's static rendezvous at rank 0's node (docs/multinode.md). */
export interface NodeSpec {
  nnodes: number;
  nodeRank: number;
  masterAddr: string;
  masterPort: number;
}

export function torchrunArgs(nproc: number, workerArgs: string[] = [], module = 'dmfr.worker', node?: NodeSpec): string[] {
  const where = node
    ? ['--nnodes', String(node.nnodes), '--node-rank', String(node.nodeRank), '--master-addr', node.masterAddr, '--master-port', String(node.masterPort)]
    : ['--standalone'];
  return ['-m', 'torch.distributed.run', ...where, '--nproc-per-node', String(nproc), '-m', module, ...workerArgs];
}

export function launchRanks(opts: LaunchOptions): Launched {
  const python = opts.python ?? pythonExecutable();
  if (!existsSync(python)) {
    throw new Error(`python not found at ${python} (run \`bash scripts/setup.sh\`, or set DMFR_PYTHON)`);
  }
  const threads = opts.threadsPerRank > 0 ? opts.threadsPerRank : Math.max(1, Math.floor(availableParallelism() / opts.nproc));
  const args = torchrunArgs(opts.nproc, opts.workerArgs, opts.module, opts.node);
  const child = spawn(python, args, {
    cwd: REPO_ROOT,
    env: pythonEnv({ OMP_NUM_THREADS: String(threads), DMFR_LOG_LEVEL: pythonLogLevel(), ...opts.env }),
    detached: true, // its own process group, so the whole group can be signalled
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const log = createWriteStream(opts.logFile, { flags: 'a' });
  const lines: string[] = [];
  let partial = '';
  const onData = (chunk: Buffer) => {
    log.write(chunk);
    const text = partial + chunk.toString('utf8');
    const parts = text.split('\n');
    partial = parts.pop() ?? '';
    lines.push(...parts);
    if (lines.length > 200) lines.splice(0, lines.length - 200);
  };
  child.stdout!.on('data', onData);
  child.stderr!.on('data', onData);
  child.on('close', () => log.end());
  return { child, tail: () => (partial ? [...lines, partial] : [...lines]), command: [python, ...args] };
}
