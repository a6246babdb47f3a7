// How fast the controller makes plans at MS1M scale (5.8M real samples, 85,742 identities; plus two
// generative domains), against the per-step time budget: ranks may wait on plans ≤ 1% of a step
// (issue 2), so planning a step for all ranks must take well under 1% of the step time.
//
//   npx tsx bench/sampler.ts [--step-ms 40] [--ranks 8] [--batch 1024] [--steps 400]
//
// --step-ms is the training step time to compare against (default 40 ms: a fast r18 step at batch
// 1024 on 8 GPUs; the paper's IResNet-100 steps are slower, which only loosens the budget).
import { parseArgs } from 'node:util';
import { Value } from '@sinclair/typebox/value';
import { RunConfig } from '../ts/config/schema.ts';
import { createSampler, type DatasetMeta } from '../ts/sampler/index.ts';

const { values } = parseArgs({
  options: {
    'step-ms': { type: 'string', default: '40' },
    ranks: { type: 'string', default: '8' },
    batch: { type: 'string', default: '1024' },
    steps: { type: 'string', default: '400' },
  },
});
const stepMs = Number(values['step-ms']);
const ranks = Number(values.ranks);
const batch = Number(values.batch);
const steps = Number(values.steps);
const chunkSteps = 8;

function ms1mScale(): DatasetMeta {
  const identities = 85_742;
  const real = 5_800_000;
  const genShare = 0.2; // each generative domain: 20% of the real samples, half with Δc = 0
  let s = 12345;
  const rand = () => ((s = (Math.imul(s, 1103515245) + 12345) >>> 0) / 2 ** 32);
  const perGen = Math.floor(real * genShare);
  const n = real + 2 * perGen;
  const labels = new Int32Array(n);
  const domains = new Int16Array(n);
  const pair = new Int32Array(n).fill(-1);
  for (let i = 0; i < real; i++) labels[i] = Math.floor(identities * rand() ** 2); // long tail
  for (let g = 1; g <= 2; g++) {
    for (let j = 0; j < perGen; j++) {
      const i = real + (g - 1) * perGen + j;
      const src = Math.floor(rand() * real);
      labels[i] = labels[src]!;
      domains[i] = g;
      if (j % 2 === 0) pair[i] = src;
    }
  }
  return {
    numSamples: n,
    numClasses: identities,
    domains: [
      { id: 0, name: 'real', kind: 'real' },
      { id: 1, name: 'pose', kind: 'generative', generator: 'pose' },
      { id: 2, name: 'quality', kind: 'generative', generator: 'quality' },
    ],
    labels,
    sampleDomains: domains,
    pair,
  };
}

const meta = ms1mScale();
const budgetMs = stepMs / 100;
console.log(`dataset: ${meta.numSamples.toLocaleString()} samples (5.8M real, ${meta.numClasses} identities, 2 generative domains); ` +
  `batch ${batch} over ${ranks} ranks, chunks of ${chunkSteps} steps; budget 1% of a ${stepMs} ms step = ${budgetMs.toFixed(3)} ms/step`);
console.log('kind            build_s  first_step_ms  steady_ms/step  cpu_ms/step  plans/s  steps/s  steady/budget  cpu/budget');

for (const [kind, balanced] of [['real', false], ['real', true], ['mix', false], ['meta', false], ['filter', false]] as const) {
  const cfg = Value.Create(RunConfig);
  cfg.train.batch_size = batch;
  cfg.train.steps = 10_000_000;
  cfg.sampler.kind = kind;
  cfg.sampler.identity_balanced = balanced;
  let t = performance.now();
  const sampler = createSampler(cfg, meta, ranks);
  const buildS = (performance.now() - t) / 1000;
  // Cold (a fresh run or a resume): the first step shuffles each pool's current epoch whole.
  t = performance.now();
  for (let r = 0; r < ranks; r++) sampler.chunk(0, 1, r);
  const firstMs = performance.now() - t;
  // Steady state: every rank's chunk for consecutive steps, as the controller asks for them. This
  // includes the next epoch's shuffle, which the streams carry out a burst at a time as they go.
  t = performance.now();
  const cpu0 = process.cpuUsage();
  let plans = 0;
  for (let k = 1; k + chunkSteps <= 1 + steps; k += chunkSteps) {
    for (let r = 0; r < ranks; r++, plans++) sampler.chunk(k, chunkSteps, r);
  }
  const elapsedMs = performance.now() - t;
  const cpu = process.cpuUsage(cpu0);
  const steadyMs = elapsedMs / steps;
  const cpuMs = (cpu.user + cpu.system) / 1000 / steps; // less inflated than wall time on a shared machine
  const name = balanced ? `${kind}+balanced` : kind;
  console.log(
    `${name.padEnd(15)} ${buildS.toFixed(2).padStart(7)}  ${firstMs.toFixed(1).padStart(13)}  ${steadyMs.toFixed(4).padStart(14)}  ` +
      `${cpuMs.toFixed(4).padStart(11)}  ${(plans / (elapsedMs / 1000)).toFixed(0).padStart(7)}  ${(1000 / steadyMs).toFixed(0).padStart(7)}  ` +
      `${(steadyMs / budgetMs).toFixed(3).padStart(13)}  ${(cpuMs / budgetMs).toFixed(3).padStart(10)}`,
  );
}
console.log(`load average during the run: ${(await import('node:os')).loadavg().map((x) => x.toFixed(1)).join(' ')} on ${(await import('node:os')).availableParallelism()} cores`);
