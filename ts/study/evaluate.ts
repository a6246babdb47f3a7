// The Python half of a study, shared by the local runner (ts/study/runner.ts) and the service
// (ts/service/studies.ts): evaluate one finished cell once, and compute the report from the
// stored cell metrics (`python -m dmfr.cli study-tools eval-cell|report`, docs/studies.md).
import { join } from 'node:path';
import type { RunConfig } from '../config/schema.ts';
import { runPythonJson, type PythonResult } from '../service/python-cli.ts';

type RunPython = (args: string[]) => Promise<PythonResult>;

export interface ReportResult {
  report: string;
  table: string;
  sentences: string[];
}

/**
 * Threads for a cell's evaluation: the cores its training held (train.nproc × threads_per_rank on
 * a CPU host), since the next cells train beside it; 0 (torch's default) on CUDA. torch's default
 * of every core oversubscribes a CPU host running cells in parallel: evaluations took as long as
 * the cells' training.
 */
export function evalThreads(config: RunConfig): number {
  return config.runtime.device === 'cuda' ? 0 : config.train.nproc * config.runtime.threads_per_rank;
}

/** Evaluates a cell's checkpoint on the study's eval section (`<studyDir>/eval.json`); writes
 *  `<cellDir>/eval/metrics.json` (features cached beside it; the procedural test sets rendered
 *  once per study in `<studyDir>/testsets`). */
export async function evaluateCell(studyDir: string, cellDir: string, checkpoint: string, threads = 0, run: RunPython = runPythonJson): Promise<void> {
  await run(['study-tools', 'eval-cell', '--run-dir', cellDir, '--checkpoint', checkpoint, '--eval', join(studyDir, 'eval.json'),
    '--cache', join(studyDir, 'testsets'), '--threads', String(threads)]);
}

/** report.json, report.md and figures from the stored metrics (no training). */
export async function studyReport(studyDir: string, run: RunPython = runPythonJson): Promise<ReportResult> {
  return (await run(['study-tools', 'report', studyDir])).result as unknown as ReportResult;
}
