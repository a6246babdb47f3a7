// A study's state on disk (docs/studies.md): <out>/study.json (the resolved spec and every cell)
// and <run_dir>/cell.json per cell, each written atomically (temp file + rename), so a study
// killed at any moment leaves either the old or the new file, never a torn one.
import { existsSync, mkdirSync, readdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';

export type CellState = 'pending' | 'training' | 'trained' | 'evaluated' | 'failed';

export interface CellRecord {
  hash: string;
  arm: string;
  levels: Record<string, unknown>;
  seed: number;
  state: CellState;
  attempts: number;
  cause: string | null;
  /** Run ids of every training attempt, oldest first (a resumed cell has several). */
  runs: string[];
  /** Pretraining cell (hash) this cell starts from. */
  pretrain: string | null;
}

export interface StudyFile {
  version: 1;
  name: string;
  spec_file: string;
  baseline: string | null;
  seeds: number[];
  arms: string[];
  factors: Array<{ path: string; levels: unknown[] }>;
  eval: unknown;
  pretrain_dir: string | null;
  pretrain: Array<{ seed: number; hash: string; state: CellState; cause: string | null }>;
  cells: CellRecord[];
}

export function writeJsonAtomic(path: string, value: unknown): void {
  mkdirSync(dirname(path), { recursive: true });
  const tmp = `${path}.${process.pid}.tmp`;
  writeFileSync(tmp, `${JSON.stringify(value, null, 1)}\n`);
  renameSync(tmp, path);
}

export function readJson<T>(path: string): T | null {
  if (!existsSync(path)) return null;
  return JSON.parse(readFileSync(path, 'utf8')) as T;
}

export function readStudyFile(dir: string): StudyFile {
  const path = join(dir, 'study.json');
  const study = readJson<StudyFile>(path);
  if (!study) throw new Error(`${path}: no study here (expected the directory \`dmfr study run\` wrote)`);
  return study;
}

/** The latest checkpoint file of a run directory (`checkpoints/step-%08d.pt`, names sort by step). */
export function latestCheckpoint(runDir: string): string | null {
  const dir = join(runDir, 'checkpoints');
  if (!existsSync(dir)) return null;
  const files = readdirSync(dir).filter((f) => /^step-\d{8}\.pt$/.test(f)).sort();
  return files.length ? join(dir, files.at(-1)!) : null;
}

export function checkpointStep(path: string | null): number {
  const m = path ? /step-(\d{8})\.pt$/.exec(path) : null;
  return m ? Number(m[1]) : 0;
}
