// `dmfr run [CONFIG.yaml|json] [--preset quick|paper] [--method M] [--steps N] [--nproc N]
//           [--set path.to.key=value]... [--out DIR] [--json]`
import { join } from 'node:path';
import pino from 'pino';
import { ConfigError, loadConfig } from '../config/load.ts';
import { RunController } from '../controller/index.ts';
import { newRunId } from '../controller/ids.ts';
import { ProgressBar } from './progress.ts';
import { CONFIG_OPTIONS, parseCommandLine, UsageError } from './usage.ts';

export const RUN_USAGE = `usage: dmfr run [CONFIG.yaml|json] [--preset quick|paper] [--method M] [--steps N]
                [--nproc N] [--set path.to.key=value]... [--out DIR] [--json]`;

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

  const config = loadConfig({
    file: positionals[0],
    preset: values.preset,
    method: values.method,
    steps: positiveInt('--steps', values.steps),
    nproc: positiveInt('--nproc', values.nproc),
    sets: values.set,
  });

  // The controller's JSON log lines go to <run_dir>/controller.log, not stderr: the terminal gets
  // only readable lines (progress, the summary with the cause), and the file keeps the detail.
  const runId = newRunId();
  const outDir = values.out ?? join('runs', runId);
  const logFile = join(outDir, 'controller.log');
  const logger = pino({ name: 'dmfr', level: process.env.DMFR_LOG_LEVEL ?? 'info' }, pino.destination({ dest: logFile, mkdir: true, sync: true }));
  const controller = new RunController({ config, outDir, runId, logger });
  const bar = new ProgressBar();
  bar.status(`${controller.runId}: starting ${config.train.nproc} rank(s)…`);
  controller.on('running', () => bar.status(`${controller.runId}: training…`));
  controller.on('join', (file: string) =>
    process.stderr.write(`dmfr run: waiting for ${config.runtime.nnodes - 1} more node(s); on node K (1 … ${config.runtime.nnodes - 1}) run: dmfr join ${file} --node-rank K\n`),
  );
  controller.on('metrics', (m) => bar.update(m));
  controller.on('state', (to: string, _from: string, cause: string | null) => {
    if (to === 'stopping') bar.status(`${controller.runId}: stopping (${cause})…`);
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
