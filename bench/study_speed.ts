// The study runner's speed (issue #10, "Speed"), side by side in one run:
//  (1) its own cost per cell — the study's wall time minus each cell's training (RunController
//      start to end) and evaluation (the `study-tools eval-cell` process) and the report — against
//      the cell's training time (target < 2 %); the evaluation and the report are printed too;
//  (2) on this host, the same study (the tiny spec: 2 arms × --seeds) as 1 cell × 2 ranks
//      at a time (train.nproc 2, --parallel 1) against 2 cells × 1 rank (train.nproc 1,
//      --parallel 2): the makespan of each; the faster is the CPU default (docs/studies.md).
// The modes alternate over --repeats so a shared machine's load hits both alike.
//
//   npx tsx bench/study_speed.ts [--steps 100] [--seeds 1] [--repeats 1]
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { log } from '../ts/log.ts';
import { StudyRunner } from '../ts/study/runner.ts';
import { readStudySpec } from '../ts/study/spec.ts';

log.level = process.env.DMFR_LOG_LEVEL ?? 'warn';
const { values } = parseArgs({
  options: { steps: { type: 'string', default: '100' }, seeds: { type: 'string', default: '1' }, repeats: { type: 'string', default: '1' } },
});
const dir = mkdtempSync(join(tmpdir(), 'dmfr-study-speed-'));
const seeds = Array.from({ length: Number(values.seeds) }, (_, i) => i);

async function study(label: string, nproc: number, parallel: number, repeat: number) {
  const file = join(dir, `${label}-${repeat}.yaml`);
  writeFileSync(file, `name: speed-${label}-${repeat}
base: { preset: quick, steps: ${values.steps}, nproc: ${nproc} }
arms:
  - { name: mix, method: mix }
  - { name: filter, method: filter }
seeds: ${JSON.stringify(seeds)}
baseline: mix
eval: { protocols: [general, cross_pose], fars: [1e-3, 1e-2] }
`);
  const runner = new StudyRunner({ spec: readStudySpec(file), outDir: join(dir, `${label}-${repeat}`), parallel });
  const t0 = performance.now();
  const summary = await runner.run();
  const wall = (performance.now() - t0) / 1000;
  if (summary.status !== 'completed') throw new Error(`${label}: study ${summary.status}`);
  return { wall, ...runner.timings };
}

const rows: string[] = [];
for (let r = 0; r < Number(values.repeats); r++) {
  const a = await study('1x2', 2, 1, r);
  const b = await study('2x1', 1, 2, r);
  const train = a.cells.reduce((s, c) => s + c.train_s, 0);
  const ev = a.cells.reduce((s, c) => s + c.eval_s, 0);
  const own = a.wall - train - ev - a.report_s;
  const n = a.cells.length;
  rows.push(
    `repeat ${r}: 1 cell × 2 ranks: ${n} cells in ${a.wall.toFixed(1)} s (training ${(train / n).toFixed(1)} s/cell, ` +
      `evaluation ${(ev / n).toFixed(1)} s/cell, report ${a.report_s.toFixed(1)} s); runner's own cost ${(own / n).toFixed(2)} s/cell = ` +
      `${((100 * own) / train).toFixed(2)} % of training (with the report: ${((100 * (own + a.report_s)) / train).toFixed(2)} %)\n` +
      `          2 cells × 1 rank: ${b.wall.toFixed(1)} s; makespan ratio (1×2) / (2×1) = ${(a.wall / b.wall).toFixed(3)}`,
  );
  process.stdout.write(`${rows.at(-1)}\n`);
}
