// `dmfr study run SPEC.yaml [--out DIR] [--parallel N] [--json]`, `dmfr study report DIR [--json]`,
// `dmfr study status DIR` (docs/studies.md).
import { existsSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { runPythonJson } from '../service/python-cli.ts';
import { StudyRunner, type StudySummary } from '../study/runner.ts';
import { readStudySpec } from '../study/spec.ts';
import { checkpointStep, latestCheckpoint, readJson, readStudyFile, type CellRecord } from '../study/state.ts';
import { parseCommandLine, UsageError } from './usage.ts';

export const STUDY_USAGE = `usage: dmfr study run SPEC.yaml [--out DIR] [--parallel N] [--json]
       dmfr study report DIR [--json]
       dmfr study status DIR`;

function positiveInt(flag: string, v: string | undefined): number | undefined {
  if (v === undefined) return undefined;
  if (!/^[1-9][0-9]*$/.test(v)) throw new UsageError(`${flag}: expected a positive integer, got '${v}'`);
  return Number(v);
}

function printReport(r: { table: string; sentences: string[]; report: string }): void {
  process.stderr.write(`${r.table}\n\n${r.sentences.map((s) => `- ${s}`).join('\n')}\n\n${r.report}\n`);
}

/** The flags of `dmfr study run` (`report` and `status` take a subset; test/ts/readme-commands.test.ts
 *  checks the docs against them). */
export const studyOptions = () =>
  ({
    out: { type: 'string' },
    parallel: { type: 'string' },
    json: { type: 'boolean', default: false },
  }) as const;

async function studyRun(argv: string[]): Promise<number> {
  const { values, positionals } = parseCommandLine(argv, studyOptions());
  if (positionals.length !== 1) throw new UsageError(`expected one spec file, got ${positionals.length ? positionals.join(' ') : 'none'}`);
  const spec = readStudySpec(positionals[0]!);
  const runner = new StudyRunner({ spec, outDir: values.out, parallel: positiveInt('--parallel', values.parallel) });
  const total = runner.cells.length;
  process.stderr.write(`study ${spec.name}: ${total} cells in ${runner.outDir}\n`);
  runner.on('start', (c: CellRecord, from: string | null) =>
    process.stderr.write(`  ${c.arm} ${JSON.stringify(c.levels)} seed ${c.seed} (${c.hash}): training${from ? ` from step ${checkpointStep(from)}` : ''}\n`),
  );
  runner.on('cell', (c: CellRecord) => {
    if (c.state === 'evaluated' || c.state === 'failed') {
      process.stderr.write(`  ${c.arm} ${JSON.stringify(c.levels)} seed ${c.seed} (${c.hash}): ${c.state}${c.cause ? ` — ${c.cause}` : ''}\n`);
    }
  });
  const onSignal = (sig: NodeJS.Signals) => runner.cancel(`canceled by ${sig}`);
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  const summary = await runner.run();
  process.off('SIGINT', onSignal);
  process.off('SIGTERM', onSignal);
  if (summary.report) {
    const r = readJson<{ sentences: string[] }>(summary.report);
    process.stderr.write(`${r?.sentences.map((s) => `- ${s}`).join('\n') ?? ''}\n`);
  }
  const line = `study ${spec.name} ${summary.status}: ${summary.completed}/${summary.cells} cells evaluated, ${summary.failed} failed${summary.report ? `\n  ${summary.report}` : ''}\n`;
  if (values.json) {
    process.stderr.write(line);
    process.stdout.write(`${JSON.stringify(summary)}\n`);
  } else process.stdout.write(line);
  return summary.status === 'completed' ? 0 : summary.status === 'canceled' ? 130 : 1;
}

function cellCounts(dir: string): Omit<StudySummary, 'report' | 'status'> & { status: StudySummary['status'] } {
  const study = readStudyFile(dir);
  const completed = study.cells.filter((c) => c.state === 'evaluated').length;
  const failed = study.cells.filter((c) => c.state === 'failed').length;
  return { status: failed > 0 || completed < study.cells.length ? 'failed' : 'completed', cells: study.cells.length, completed, failed };
}

async function studyReport(argv: string[]): Promise<number> {
  const { values, positionals } = parseCommandLine(argv, { json: { type: 'boolean', default: false } });
  if (positionals.length !== 1) throw new UsageError('expected one study directory');
  const dir = resolve(positionals[0]!);
  const counts = cellCounts(dir);
  const r = (await runPythonJson(['study-tools', 'report', dir])).result as { report: string; table: string; sentences: string[] };
  if (values.json) {
    printReport(r);
    process.stdout.write(`${JSON.stringify({ ...counts, report: r.report })}\n`);
  } else {
    process.stdout.write(`${r.table}\n\n${r.sentences.map((s) => `- ${s}`).join('\n')}\n\n${r.report}\n`);
  }
  return 0;
}

async function studyStatus(argv: string[]): Promise<number> {
  const { positionals } = parseCommandLine(argv, {});
  if (positionals.length !== 1) throw new UsageError('expected one study directory');
  const dir = resolve(positionals[0]!);
  const study = readStudyFile(dir);
  const lines = [`study ${study.name} (${dir})`, 'arm\tlevels\tseed\thash\tstate\tstep\tattempts\tcause'];
  for (const p of study.pretrain) lines.push(`pretrain\t{}\t${p.seed}\t${p.hash}\t${p.state}\t\t\t${p.cause ?? ''}`);
  for (const c of study.cells) {
    const rec = readJson<CellRecord>(join(dir, 'cells', c.hash, 'cell.json')) ?? c;
    const step = checkpointStep(latestCheckpoint(join(dir, 'cells', c.hash)));
    lines.push(`${c.arm}\t${JSON.stringify(c.levels)}\t${c.seed}\t${c.hash}\t${rec.state}\t${step}\t${rec.attempts}\t${rec.cause ?? ''}`);
  }
  const counts = cellCounts(dir);
  lines.push(`${counts.completed}/${counts.cells} evaluated, ${counts.failed} failed${existsSync(join(dir, 'report.json')) ? `; report ${join(dir, 'report.json')}` : ''}`);
  process.stdout.write(`${lines.join('\n')}\n`);
  return 0;
}

export async function studyCommand(argv: string[]): Promise<number> {
  const [sub, ...rest] = argv;
  const verbs: Record<string, (a: string[]) => Promise<number>> = { run: studyRun, report: studyReport, status: studyStatus };
  const verb = sub === undefined ? undefined : verbs[sub];
  if (!verb) throw new UsageError(sub === undefined ? 'expected run, report or status' : `unknown study verb '${sub}' (expected run, report or status)`);
  try {
    return await verb(rest);
  } catch (e) {
    const msg = (e as Error).message;
    if (e instanceof UsageError || (e as Error).name === 'ConfigError') throw e;
    process.stderr.write(`dmfr study ${sub}: ${msg}\n`);
    return 1;
  }
}
