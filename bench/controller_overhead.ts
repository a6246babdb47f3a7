// The controller's overhead per step: the same training loop (a) through the controller — plans
// made by the TypeScript sampler and streamed over ZeroMQ under credit — and (b) fed by an
// in-process sampler with no controller (`python -m dmfr.worker --local-plans` under torchrun),
// side by side in one run. Targets (issue 2): (a) reaches ≥ 0.97× the samples/s of (b), and ranks
// wait on plans ≤ 1% of their step time.
//
//   npx tsx bench/controller_overhead.ts [--preset quick] [--nproc 2] [--short 40] [--long 160]
//                                        [--repeats 1] [--set k=v]...
//
// Start-up (torch import, DDP join, dataset build, the first step's allocations) differs between
// the modes and is not what we measure, so each mode runs twice, with --short and --long steps,
// and its rate is (long − short) steps / (T_long − T_short): the fixed costs cancel. T is the
// time rank 0 trains by its own clock in both modes (the trainer's train_time_s: through the
// controller it arrives in rank 0's `bye`, in-process it is printed), so the two modes are timed
// alike; the controller's view (first to last metrics message) is printed beside it. Runs alternate
// between the modes so load on a shared machine hits both alike; the summary gives medians over
// the repeats (a repeat's ratio compares runs made minutes apart: use --repeats ≥ 3 on a busy host).
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { loadConfig } from '../ts/config/load.ts';
import type { RunConfig } from '../ts/config/schema.ts';
import { RunController, type MetricsEvent } from '../ts/controller/index.ts';
import { launchRanks } from '../ts/controller/launch.ts';
import { log } from '../ts/log.ts';

log.level = process.env.DMFR_LOG_LEVEL ?? 'warn';
const { values } = parseArgs({
  options: {
    preset: { type: 'string', default: 'quick' },
    nproc: { type: 'string', default: '2' },
    short: { type: 'string', default: '40' },
    long: { type: 'string', default: '160' },
    repeats: { type: 'string', default: '1' },
    set: { type: 'string', multiple: true, default: [] },
  },
});
const dir = mkdtempSync(join(tmpdir(), 'dmfr-bench-'));

interface Timing {
  steps: number;
  trainS: number;
  planWaitS: number;
  stepTimeS: number;
  /** through the controller: first to last metrics message, as the controller saw them */
  arrivalS?: number;
}

// `--local-plans` permutes every sample of the dataset, while the `real` sampler draws real
// samples only; a procedural set without generative domains makes both loops see the same data.
const SAME_DATA = ['data.procedural.generators=[]'];

function configFor(steps: number): RunConfig {
  // The controller mode's final checkpoint is written after the last metrics message, outside T.
  return loadConfig({ preset: values.preset, nproc: Number(values.nproc), steps, sets: [...SAME_DATA, ...values.set] });
}

async function viaController(steps: number): Promise<Timing> {
  const controller = new RunController({ config: configFor(steps), outDir: join(dir, `ctl-${steps}-${Date.now()}`) });
  let first: number | null = null;
  let last = 0;
  let wait = 0;
  let busy = 0;
  controller.on('metrics', (m: MetricsEvent) => {
    const now = performance.now();
    if (first === null) first = now; // step 0's message: timing starts here, as T excludes start-up
    else {
      wait += m.plan_wait_s;
      busy += m.step_time_s;
    }
    last = now;
  });
  const s = await controller.start();
  if (s.status !== 'completed' || first === null) throw new Error(`controller run ${s.status}: ${s.cause}`);
  if (controller.config.train.log_every !== 1) throw new Error('the bench needs train.log_every = 1');
  if (s.train_time_s === null) throw new Error("rank 0's bye carried no train_time_s");
  return { steps, trainS: s.train_time_s, planWaitS: wait, stepTimeS: busy, arrivalS: (last - first) / 1000 };
}

async function inProcess(steps: number): Promise<Timing> {
  const cfg = configFor(steps);
  const file = join(dir, `local-${steps}.json`);
  writeFileSync(file, JSON.stringify(cfg));
  const launched = launchRanks({
    nproc: cfg.train.nproc,
    threadsPerRank: cfg.runtime.threads_per_rank,
    env: { DMFR_DEVICE: cfg.runtime.device },
    logFile: join(dir, `local-${steps}.log`),
    workerArgs: ['--local-plans', '--config', file],
  });
  const code = await new Promise<number | null>((r) => launched.child.on('exit', (c) => r(c)));
  const line = launched.tail().find((l) => l.startsWith('{"mode"'));
  if (!line) throw new Error(`--local-plans run exited ${code}:\n${launched.tail().slice(-15).join('\n')}`);
  // Training finished (rank 0 printed its summary); a crash while tearing down does not change
  // the timing, but say so.
  if (code !== 0) process.stderr.write(`note: --local-plans run printed its summary but exited ${code} (see ${join(dir, `local-${steps}.log`)})\n`);
  const r = JSON.parse(line) as { steps: number; train_time_s: number; plan_wait_s: number };
  return { steps: r.steps, trainS: r.train_time_s, planWaitS: r.plan_wait_s, stepTimeS: r.train_time_s - r.plan_wait_s };
}

const short = Number(values.short);
const long = Number(values.long);
const cfg = configFor(long);
const batch = cfg.train.batch_size;
const rows: Array<{ controller: number; local: number; ratio: number; wait: number }> = [];
const rate = (long: Timing, short: Timing) => ((long.steps - short.steps) * batch) / (long.trainS - short.trainS);
for (let rep = 0; rep < Number(values.repeats); rep++) {
  const cs = await viaController(short);
  const ls = await inProcess(short);
  const cl = await viaController(long);
  const ll = await inProcess(long);
  const controller = rate(cl, cs);
  const local = rate(ll, ls);
  const seen = ((cl.steps - cs.steps) * batch) / (cl.arrivalS! - cs.arrivalS!);
  const wait = cl.planWaitS / cl.stepTimeS;
  rows.push({ controller, local, ratio: controller / local, wait });
  process.stdout.write(
    `repeat ${rep + 1}: through controller ${controller.toFixed(1)} samples/s (${seen.toFixed(1)} as the controller saw the ` +
      `metrics arrive), in-process ${local.toFixed(1)} samples/s, ratio ${(controller / local).toFixed(3)} (target ≥ 0.97); ` +
      `plan wait ${(100 * wait).toFixed(3)}% of step time (target ≤ 1%)\n`,
  );
}
const median = (xs: number[]) => {
  const sorted = [...xs].sort((a, b) => a - b);
  const mid = sorted.length / 2;
  return Number.isInteger(mid) ? (sorted[mid - 1]! + sorted[mid]!) / 2 : sorted[Math.floor(mid)]!;
};

const result = {
  preset: values.preset,
  nproc: cfg.train.nproc,
  global_batch: batch,
  steps: [short, long],
  controller_samples_per_s: median(rows.map((r) => r.controller)),
  local_samples_per_s: median(rows.map((r) => r.local)),
  ratio: median(rows.map((r) => r.ratio)),
  plan_wait_fraction: median(rows.map((r) => r.wait)),
};
process.stdout.write(`${JSON.stringify(result)}\n`);
