// Finding and ending the processes of one run. torchrun starts every rank in a session of its own
// (start_new_session=True), so killing torchrun's process group alone would orphan the ranks: we
// signal torchrun's group, every known rank's group, and every process whose environment carries
// this run's DMFR_RUN_ID (Linux /proc), which also catches ranks that never said hello.
import { readdirSync, readFileSync } from 'node:fs';

/** True when the process exists and is not a zombie (a zombie has already exited). */
export function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const state = stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3);
    return state !== 'Z' && state !== 'X';
  } catch {
    return process.platform !== 'linux'; // no /proc: trust kill(0)
  }
}

/** Pids of live processes whose environment holds DMFR_RUN_ID=<runId> (Linux; [] elsewhere). */
export function runPids(runId: string): number[] {
  if (process.platform !== 'linux') return [];
  const needle = Buffer.from(`\0DMFR_RUN_ID=${runId}\0`);
  const first = Buffer.from(`DMFR_RUN_ID=${runId}\0`);
  const out: number[] = [];
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    const pid = Number(name);
    if (pid === process.pid) continue;
    try {
      const env = readFileSync(`/proc/${name}/environ`);
      if ((env.includes(needle) || env.subarray(0, first.length).equals(first)) && isAlive(pid)) out.push(pid);
    } catch {
      // gone, or not ours
    }
  }
  return out;
}

function signal(target: number, sig: NodeJS.Signals): void {
  try {
    process.kill(target, sig);
  } catch {
    // already gone
  }
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export interface TerminateTargets {
  runId: string;
  /** Process-group leaders: torchrun (spawned detached) and each rank (its own session). */
  groups: number[];
}

/**
 * SIGTERM to every group and run process → wait up to `graceS` → SIGKILL to what is left.
 * Resolves with the pids that were still alive after SIGKILL and a further 5 s (normally none).
 */
export async function terminate(targets: TerminateTargets, graceS: number): Promise<number[]> {
  const alive = () => [...new Set([...targets.groups.filter(isAlive), ...runPids(targets.runId)])];
  const send = (sig: NodeJS.Signals) => {
    for (const g of targets.groups) signal(-g, sig);
    for (const p of runPids(targets.runId)) signal(p, sig);
  };
  if (alive().length === 0) return [];
  send('SIGTERM');
  const deadline = Date.now() + graceS * 1000;
  while (Date.now() < deadline) {
    if (alive().length === 0) return [];
    await sleep(100);
  }
  send('SIGKILL');
  const killDeadline = Date.now() + 5000;
  while (Date.now() < killDeadline) {
    const left = alive();
    if (left.length === 0) return [];
    await sleep(100);
  }
  return alive();
}
