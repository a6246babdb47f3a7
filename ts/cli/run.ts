// `dmfr run [CONFIG.yaml|json] [--preset quick|paper] [--method M] [--steps N] [--nproc N]
//           [--set path.to.key=value]... [--out DIR [--resume | --force]] [--json]`
import { join, resolve } from 'node:path';
import pino from 'pino';
import { ConfigError, loadConfig, scheduleWarnings } from '../config/load.ts';
import type { RunConfig } from '../config/schema.ts';
import { RunController } from '../controller/index.ts';
import { newRunId } from '../controller/ids.ts';
import { archiveRunDir, changedKeys, holdsRun, latestCheckpointIn, latestRun } from '../controller/run-dir.ts';
import { Progress } from './progress.ts';
import { CONFIG_OPTIONS, parseCommandLine, UsageError } from './usage.ts';

export const RUN_USAGE = `usage: dmfr run [CONFIG.yaml|json] [--preset quick|paper] [--method M] [--steps N]
                [--nproc N] [--set path.to.key=value]... [--out DIR [--resume | --force]] [--json]
  --resume  continue the run in --out DIR from its latest checkpoint (the same config; without
            config flags, the stored one)
  --force   move the run in --out DIR aside to DIR.replaced-<time> and start a new one there`;

/** A run directory that cannot be used as asked: exit 2 with this message, nothing touched. */
class RunDirError extends Error {}

interface RunPlan {
  config: RunConfig;
  resumeFrom: string | null;
  experimentId: string | undefined;
}

/**
 * What `--out DIR` means given what DIR holds: a fresh run, a resume of the run there (same config
 * required), or — with --force — a fresh run after moving the old one aside. Refuses otherwise, so
 * a reused --out never mixes two runs' checkpoints and store rows.
 */
function planRunDir(outDir: string | undefined, flags: { resume: boolean; force: boolean }, load: () => RunConfig, configGiven: boolean): RunPlan {
  if (flags.resume && flags.force) throw new UsageError('--resume and --force exclude each other');
  if ((flags.resume || flags.force) && outDir === undefined) throw new UsageError(`${flags.resume ? '--resume' : '--force'} needs --out DIR, the run directory`);
  if (outDir === undefined || !holdsRun(outDir)) {
    if (flags.resume) throw new RunDirError(`--resume: ${outDir} holds no run to resume`);
    return { config: load(), resumeFrom: null, experimentId: undefined };
  }
  const prev = latestRun(outDir);
  if (prev && prev.livePids.length > 0) {
    throw new RunDirError(`${outDir}: run ${prev.runId} is still training (pids ${prev.livePids.join(', ')}); stop it first`);
  }
  const what = prev ? `run ${prev.runId} (${prev.state}${prev.steps !== null ? `, ${prev.steps} steps` : ''})` : 'checkpoints of an earlier run';
  if (flags.force) {
    const config = load(); // a bad config must fail before anything is moved
    const moved = archiveRunDir(outDir);
    process.stderr.write(`dmfr run: --force: moved ${what} to ${moved}\n`);
    return { config, resumeFrom: null, experimentId: undefined };
  }
  if (!flags.resume) {
    throw new RunDirError(
      `${outDir} already holds ${what}. Continue it from its latest checkpoint with --resume (the same config), ` +
        `or start a new run there with --force (moves the old one to ${outDir}.replaced-<time>), or choose another --out`,
    );
  }
  if (!prev) throw new RunDirError(`--resume: ${outDir} has checkpoints but no run store (dmfr.sqlite) to take the config from; use --force or another --out`);
  const config = configGiven ? load() : (prev.config as unknown as RunConfig);
  const changed = changedKeys(prev.config, config);
  if (changed.length > 0) {
    throw new RunDirError(`--resume: the config differs from run ${prev.runId}'s in ${changed.join(', ')}; a resume continues the same config (drop the config flags to reuse it), or start over with --force`);
  }
  if (prev.steps !== null && prev.steps >= config.train.steps) {
    throw new RunDirError(`--resume: run ${prev.runId} already completed all ${config.train.steps} steps; nothing to resume`);
  }
  const resumeFrom = latestCheckpointIn(outDir);
  if (resumeFrom === null) throw new RunDirError(`--resume: ${what} in ${outDir} has no checkpoint to resume from; start over with --force`);
  return { config, resumeFrom, experimentId: prev.experimentId };
}

function positiveInt(flag: string, v: string | undefined): number | undefined {
  if (v === undefined) return undefined;
  if (!/^[1-9][0-9]*$/.test(v)) throw new UsageError(`${flag}: expected a positive integer, got '${v}'`);
  return Number(v);
}

/** The flags of `dmfr run` (test/ts/readme-commands.test.ts checks the docs against them). */
export const runOptions = () =>
  ({
    ...CONFIG_OPTIONS,
    out: { type: 'string' },
    resume: { type: 'boolean', default: false },
    force: { type: 'boolean', default: false },
    json: { type: 'boolean', default: false },
    help: { type: 'boolean', short: 'h', default: false },
  }) as const;

export async function runCommand(argv: string[]): Promise<number> {
  const { values, positionals } = parseCommandLine(argv, runOptions());
  if (values.help) {
    process.stdout.write(`${RUN_USAGE}\n`);
    return 0;
  }
  if (positionals.length > 1) throw new UsageError(`expected at most one config file, got ${positionals.join(' ')}`);

  const load = () =>
    loadConfig({
      file: positionals[0],
      preset: values.preset,
      method: values.method,
      steps: positiveInt('--steps', values.steps),
      nproc: positiveInt('--nproc', values.nproc),
      sets: values.set,
    });
  const configGiven = positionals.length > 0 || [values.preset, values.method, values.steps, values.nproc].some((v) => v !== undefined) || (values.set?.length ?? 0) > 0;
  const outDir = values.out === undefined ? undefined : resolve(values.out);
  let plan: RunPlan;
  try {
    plan = planRunDir(outDir, { resume: values.resume, force: values.force }, load, configGiven);
  } catch (e) {
    if (!(e instanceof RunDirError)) throw e;
    process.stderr.write(`dmfr run: ${e.message}\n`);
    return 2;
  }
  const { config, resumeFrom, experimentId } = plan;
  for (const w of scheduleWarnings(config)) process.stderr.write(`dmfr run: warning: ${w}\n`);
  if (resumeFrom) process.stderr.write(`dmfr run: resuming from ${resumeFrom}\n`);

  // The controller's JSON log lines go to <run_dir>/controller.log, not stderr: the terminal gets
  // only readable lines (progress, the summary with the cause), and the file keeps the detail.
  const runId = newRunId();
  const runDir = outDir ?? join('runs', runId);
  const logger = pino({ name: 'dmfr', level: process.env.DMFR_LOG_LEVEL ?? 'info' }, pino.destination({ dest: join(runDir, 'controller.log'), mkdir: true, sync: true, append: true }));
  const controller = new RunController({ config, outDir: runDir, runId, resumeFrom, experimentId, logger });
  const bar = new Progress({ label: `dmfr run ${controller.runId}` });
  bar.startTimer();
  bar.status(`starting ${config.train.nproc} rank(s) in ${controller.runDir}…`);
  controller.on('running', () => bar.status('training…'));
  controller.on('checkpoint', (c: { step: number; path: string }) => bar.checkpoint(c.step, c.path));
  controller.on('join', (file: string) =>
    process.stderr.write(`dmfr run: waiting for ${config.runtime.nnodes - 1} more node(s); on node K (1 … ${config.runtime.nnodes - 1}) run: dmfr join ${file} --node-rank K\n`),
  );
  controller.on('metrics', (m) => bar.update(m));
  controller.on('state', (to: string, _from: string, cause: string | null) => {
    if (to === 'stopping') bar.status(`stopping (${cause})…`);
  });
  const onSignal = (sig: NodeJS.Signals) => controller.cancel(`canceled by ${sig}`);
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  const summary = await controller.start();
  process.off('SIGINT', onSignal);
  process.off('SIGTERM', onSignal);
  bar.end();

  const loss = summary.final_loss === null ? 'n/a' : summary.final_loss.toFixed(4);
  const rate = summary.steps_per_s === null ? '' : `, ${summary.steps_per_s.toFixed(2)} steps/s`;
  const logs = summary.status === 'completed' ? '' : `\n  logs: ${join(summary.run_dir, 'controller.log')}, ${join(summary.run_dir, 'ranks.log')}`;
  const line = `run ${summary.run_id} ${summary.status}: ${summary.steps} steps, final loss ${loss}${rate}${summary.cause ? ` — ${summary.cause}` : ''}\n  ${summary.run_dir}${logs}\n`;
  if (values.json) {
    process.stderr.write(line);
    process.stdout.write(`${JSON.stringify(summary)}\n`);
  } else {
    process.stdout.write(line);
  }
  return summary.status === 'completed' ? 0 : summary.status === 'canceled' ? 130 : 1;
}

export { ConfigError };
