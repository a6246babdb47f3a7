// What an existing run directory holds, so `dmfr run --out DIR` never starts a second run on top of
// a first one (docs/architecture.md, "Run directories"): the latest run in DIR's run store, its
// latest checkpoint, the config keys a resume would change, and moving a run aside (--force).
import { existsSync, readdirSync, readFileSync, renameSync } from 'node:fs';
import { join } from 'node:path';
import { Store, type RunState } from '../store/store.ts';
import { runPids } from './processes.ts';

export interface ExistingRun {
  runId: string;
  experimentId: string;
  state: RunState;
  /** Steps completed, from the run's summary (null when it has none: killed, or still running). */
  steps: number | null;
  config: Record<string, unknown>;
  /** Live processes of that run (its ranks), when it is still training. */
  livePids: number[];
}

/** True when DIR holds anything of a run: its store or checkpoints. */
export function holdsRun(dir: string): boolean {
  return existsSync(join(dir, 'dmfr.sqlite')) || checkpointFiles(dir).length > 0;
}

/** The most recent run recorded in DIR's run store, or null without a store or a run. */
export function latestRun(dir: string): ExistingRun | null {
  const file = join(dir, 'dmfr.sqlite');
  if (!existsSync(file)) return null;
  const store = new Store(file);
  try {
    const row = store.db
      .prepare('SELECT id, experiment_id, state, config_json, summary_json FROM runs ORDER BY created_at DESC, rowid DESC LIMIT 1')
      .get() as { id: string; experiment_id: string; state: RunState; config_json: string; summary_json: string | null } | undefined;
    if (!row) return null;
    const summary = row.summary_json ? (JSON.parse(row.summary_json) as { steps?: number }) : null;
    return {
      runId: row.id,
      experimentId: row.experiment_id,
      state: row.state,
      steps: summary?.steps ?? null,
      config: JSON.parse(row.config_json) as Record<string, unknown>,
      livePids: runPids(row.id),
    };
  } finally {
    store.close();
  }
}

function checkpointFiles(dir: string): string[] {
  const ckpt = join(dir, 'checkpoints');
  if (!existsSync(ckpt)) return [];
  return readdirSync(ckpt).filter((f) => /^step-\d{8}\.pt$/.test(f)).sort();
}

/**
 * The checkpoint a resume starts from: the highest step in `checkpoints/checkpoints.json` whose file
 * exists (python/dmfr/checkpoint.py writes the index after each file), else the highest
 * `step-%08d.pt` by name; null when there is none.
 */
export function latestCheckpointIn(dir: string): string | null {
  const ckpt = join(dir, 'checkpoints');
  try {
    const index = JSON.parse(readFileSync(join(ckpt, 'checkpoints.json'), 'utf8')) as { checkpoints: { file: string; step: number }[] };
    const kept = index.checkpoints.filter((c) => existsSync(join(ckpt, c.file))).sort((a, b) => a.step - b.step);
    if (kept.length) return join(ckpt, kept.at(-1)!.file);
  } catch {
    // no index, or an unreadable one: fall back to the file names
  }
  const files = checkpointFiles(dir);
  return files.length ? join(ckpt, files.at(-1)!) : null;
}

/** Leaf paths (`optim.milestones`, `train.steps`) whose values differ between two configs. */
export function changedKeys(before: unknown, after: unknown, prefix = ''): string[] {
  const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);
  if (!isObject(before) || !isObject(after)) return JSON.stringify(before) === JSON.stringify(after) ? [] : [prefix];
  const keys = [...new Set([...Object.keys(before), ...Object.keys(after)])].sort();
  return keys.flatMap((k) => changedKeys(before[k], after[k], prefix ? `${prefix}.${k}` : k));
}

/** Moves DIR aside to `DIR.replaced-<UTC time>` (a sibling, so a rename); returns the new path. */
export function archiveRunDir(dir: string, now = new Date()): string {
  const stamp = now.toISOString().replace(/[-:]/g, '').replace(/\.\d+Z$/, 'Z');
  let target = `${dir}.replaced-${stamp}`;
  for (let n = 2; existsSync(target); n++) target = `${dir}.replaced-${stamp}-${n}`;
  renameSync(dir, target);
  return target;
}
