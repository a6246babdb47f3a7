// `dmfr study run SPEC.yaml [--out DIR] [--parallel N] [--json]`, `dmfr study run SPEC.yaml --server
// URL [--token-file FILE] [--json]`, `dmfr study report DIR [--json]`, `dmfr study status DIR`
// (docs/studies.md).
import { existsSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { readConfigFile } from '../config/load.ts';
import { ApiRequestError, Client, type StudyCellInfo, type StudyInfo, type StudySpecBody } from '../sdk/client.ts';
import { runPythonJson } from '../service/python-cli.ts';
import { StudyRunner, type StudySummary } from '../study/runner.ts';
import { readStudySpec } from '../study/spec.ts';
import { checkpointStep, latestCheckpoint, readJson, readStudyFile, type CellRecord } from '../study/state.ts';
import { clientToken } from './token.ts';
import { parseCommandLine, UsageError } from './usage.ts';

export const STUDY_USAGE = `usage: dmfr study run SPEC.yaml [--out DIR] [--parallel N] [--json]
       dmfr study run SPEC.yaml --server URL [--token-file FILE] [--json]
       dmfr study report DIR [--json]
       dmfr study status DIR
  --server: the service runs the study (its queue, its data directory); the token comes from
  --token-file FILE (its first line) or $DMFR_TOKEN.`;

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
    server: { type: 'string' },
    'token-file': { type: 'string' },
  }) as const;

async function studyRun(argv: string[]): Promise<number> {
  const { values, positionals } = parseCommandLine(argv, studyOptions());
  if (positionals.length !== 1) throw new UsageError(`expected one spec file, got ${positionals.length ? positionals.join(' ') : 'none'}`);
  const spec = readStudySpec(positionals[0]!); // spec errors name the file, before anything is sent
  if (values.server !== undefined) return studyRunOnServer(positionals[0]!, spec.name, values);
  if (values['token-file'] !== undefined) throw new UsageError('--token-file goes with --server');
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

/** Whether the spec names files (resolved on the service host from base_dir, as a local run takes
 *  them from the spec file's directory). */
function namesFiles(raw: Record<string, unknown>): boolean {
  const base = raw.base as Record<string, unknown> | undefined;
  const ev = raw.eval as Record<string, unknown> | undefined;
  return typeof base?.config === 'string' || [ev?.verification, ev?.templates].some((l) => Array.isArray(l) && l.length > 0);
}

const cellLine = (c: StudyCellInfo) => `  ${c.arm} ${JSON.stringify(c.levels)} seed ${c.seed} (${c.hash})`;

/** `study run --server`: submits the spec, follows the study until it ends, prints what a local run prints. */
async function studyRunOnServer(file: string, name: string, values: { server?: string; 'token-file'?: string; json: boolean; out?: string; parallel?: string }): Promise<number> {
  if (values.out !== undefined || values.parallel !== undefined) {
    throw new UsageError('--out and --parallel are for a local run: with --server the study lives in the service\'s data directory and its queue places the cells');
  }
  const client = new Client(values.server!, { token: clientToken(values['token-file']) });
  const raw = readConfigFile(file);
  let study: StudyInfo;
  try {
    study = await client.createStudy(raw as unknown as StudySpecBody, namesFiles(raw) ? { baseDir: dirname(resolve(file)) } : {});
  } catch (e) {
    if (!(e instanceof ApiRequestError) || e.status !== 400) throw e;
    process.stderr.write(`dmfr study run: ${file}: the service refused the spec: ${e.message}\n`);
    return 2;
  }
  process.stderr.write(`study ${name}: ${study.counts.cells} cells on ${values.server} (study ${study.id}, ${study.dir})\n`);
  // Ctrl-C stops following; the study goes on in the service (POST /studies/{id}/cancel ends it).
  let interrupted = false;
  const onSignal = () => (interrupted = true);
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  const seen = new Map<string, string>();
  const pollMs = Number(process.env.DMFR_STUDY_POLL_MS ?? 2000);
  try {
    for (;;) {
      for (const c of [...study.pretrain, ...study.cells]) {
        const key = `${c.arm}/${c.hash}/${JSON.stringify(c.levels)}`;
        const was = seen.get(key);
        seen.set(key, `${c.state}/${c.experiment_id}`);
        if (was === `${c.state}/${c.experiment_id}`) continue;
        if (c.state === 'training') process.stderr.write(`${cellLine(c)}: training (experiment ${c.experiment_id})\n`);
        else if (c.state === 'evaluated' || c.state === 'failed' || (c.state === 'trained' && c.arm === 'pretrain')) {
          process.stderr.write(`${cellLine(c)}: ${c.state}${c.cause ? ` — ${c.cause}` : ''}\n`);
        }
      }
      if (study.state !== 'running' || interrupted) break;
      await new Promise((r) => setTimeout(r, pollMs));
      study = await client.getStudy(study.id);
    }
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
  }
  if (interrupted && study.state === 'running') {
    process.stderr.write(`study ${name}: no longer followed; it goes on in the service (study ${study.id}; POST ${values.server}/studies/${study.id}/cancel ends it)\n`);
    return 130;
  }
  const sentences = (study.report as { sentences?: string[] } | null)?.sentences;
  if (sentences) process.stderr.write(`${sentences.map((s) => `- ${s}`).join('\n')}\n`);
  const status: StudySummary['status'] = study.state === 'completed' ? 'completed' : study.state === 'canceled' ? 'canceled' : 'failed';
  const summary: StudySummary = { status, cells: study.counts.cells, completed: study.counts.completed, failed: study.counts.failed, report: study.report_path };
  const line = `study ${name} ${status}: ${summary.completed}/${summary.cells} cells evaluated, ${summary.failed} failed${study.cause && status !== 'completed' ? ` (${study.cause})` : ''}${summary.report ? `\n  ${summary.report}` : ''}\n`;
  if (values.json) {
    process.stderr.write(line);
    process.stdout.write(`${JSON.stringify(summary)}\n`);
  } else process.stdout.write(line);
  return status === 'completed' ? 0 : status === 'canceled' ? 130 : 1;
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
