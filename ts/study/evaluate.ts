// The Python half of a study, shared by the local runner (ts/study/runner.ts) and the service
// (ts/service/studies.ts): evaluate one finished cell once, and compute the report from the
// stored cell metrics (`python -m dmfr.cli study-tools eval-cell|report`, docs/studies.md).
import { join } from 'node:path';
import { runPythonJson, type PythonResult } from '../service/python-cli.ts';

type RunPython = (args: string[]) => Promise<PythonResult>;

export interface ReportResult {
  report: string;
  table: string;
  sentences: string[];
}

/** Evaluates a cell's checkpoint on the study's eval section (`<studyDir>/eval.json`); writes
 *  `<cellDir>/eval/metrics.json` (features cached beside it). */
export async function evaluateCell(studyDir: string, cellDir: string, checkpoint: string, run: RunPython = runPythonJson): Promise<void> {
  await run(['study-tools', 'eval-cell', '--run-dir', cellDir, '--checkpoint', checkpoint, '--eval', join(studyDir, 'eval.json')]);
}

/** report.json, report.md and figures from the stored metrics (no training). */
export async function studyReport(studyDir: string, run: RunPython = runPythonJson): Promise<ReportResult> {
  return (await run(['study-tools', 'report', studyDir])).result as unknown as ReportResult;
}
