// /studies: submit a study spec (the YAML spec's keys as JSON), list, get (cells, counts and the
// report once written), cancel. The service runs it (ts/service/studies.ts).
import { existsSync, readFileSync } from 'node:fs';
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { Type } from '@sinclair/typebox';
import { ConfigError } from '../../config/load.ts';
import { parseStudySpec, type StudySpec } from '../../study/spec.ts';
import type { ServiceContext } from '../context.ts';
import type { StudyCellRow, StudyRow, StudyStore } from '../db.ts';
import { ApiError, notFound } from '../errors.ts';
import { confinedPath } from '../paths.ts';
import { CreateStudy, IdParams, Study, StudyList, StudyListQuery } from '../schemas.ts';
import type { StudyManager } from '../studies.ts';

/** Where a spec error is reported: the key path (`arms[1].name`), and the layer for an error
 *  found while building a cell's config (`arms (mix): optim.lr`). */
function issueText(i: ConfigError['issues'][number]): string {
  const where = i.source === 'body' ? i.path : `${i.source.replace(/^body: /, '')}${i.path ? `: ${i.path}` : ''}`;
  return where ? `${where}: ${i.message}` : i.message;
}

/** The spec's files (resolved from base_dir) must lie inside a data root, as every path a client names. */
function confineFiles(spec: StudySpec, roots: string[]): void {
  if (spec.pretrainCache !== null) {
    throw new ApiError(400, 'invalid_config', 'pretrain.cache: the service keeps pretraining runs in its data directory (studies/pretrain); remove the key');
  }
  if (spec.base.config) spec.base.config = confinedPath(roots, spec.base.config, 'base.config');
  spec.eval.verification.forEach((v, i) => {
    for (const k of ['pairs', 'images'] as const) v[k] = confinedPath(roots, v[k], `eval.verification[${i}].${k}`);
  });
  spec.eval.templates.forEach((t, i) => {
    for (const k of ['media', 'pairs', 'images'] as const) t[k] = confinedPath(roots, t[k], `eval.templates[${i}].${k}`);
  });
}

function cellView(r: StudyCellRow, arm: string, levels: Record<string, unknown>) {
  return { arm, levels, seed: r.seed, hash: r.hash, state: r.state, attempts: r.attempts, experiment_id: r.experiment_id, experiments: r.experiments, cause: r.cause };
}

/** A study as the API shows it; `withReport` adds report.json's content once written. */
export function studyView(studies: Pick<StudyStore, 'cells'>, s: StudyRow, withReport: boolean) {
  const rows = studies.cells(s.id);
  const byHash = new Map(rows.filter((r) => r.kind === 'cell').map((r) => [r.hash, r]));
  const cells = s.layout.map((l) => cellView(byHash.get(l.hash)!, l.arm, l.levels));
  const report = withReport && s.report && existsSync(s.report) ? JSON.parse(readFileSync(s.report, 'utf8')) : null;
  return {
    id: s.id,
    name: s.name,
    state: s.state,
    cause: s.cause,
    dir: s.dir,
    counts: { cells: cells.length, completed: cells.filter((c) => c.state === 'evaluated').length, failed: cells.filter((c) => c.state === 'failed').length },
    cells,
    pretrain: rows.filter((r) => r.kind === 'pretrain').map((r) => cellView(r, 'pretrain', {})),
    report_path: s.report,
    report,
    created_at: s.created_at,
    updated_at: s.updated_at,
  };
}

export const studyRoutes: FastifyPluginAsyncTypebox<ServiceContext & { studyStore: StudyStore; studies: StudyManager }> = async (app, ctx) => {
  const { studyStore, studies } = ctx;
  const errors = { 400: Type.Ref('Error'), 404: Type.Ref('Error'), 409: Type.Ref('Error') };

  app.post('/studies', { schema: { body: CreateStudy, response: { 201: Type.Ref(Study), 400: Type.Ref('Error') } } }, async (req, reply) => {
    const { base_dir: baseDir, ...raw } = req.body;
    const base = baseDir === undefined ? ctx.dataDir : confinedPath(ctx.dataRoots, baseDir, 'base_dir');
    let row: StudyRow;
    try {
      const spec = parseStudySpec(raw, { source: 'body', baseDir: base });
      confineFiles(spec, ctx.dataRoots);
      row = studies.create(spec, req.body);
    } catch (e) {
      if (e instanceof ConfigError) throw new ApiError(400, 'invalid_config', e.issues.map(issueText).join('; '), { issues: e.issues });
      throw e;
    }
    return reply.code(201).send(studyView(studyStore, row, false) as never);
  });

  app.get('/studies', { schema: { querystring: StudyListQuery, response: { 200: Type.Ref(StudyList) } } }, async (req) => {
    const { items, total } = studyStore.studies(req.query);
    return { items: items.map((s) => studyView(studyStore, s, false)), total, limit: req.query.limit, offset: req.query.offset } as never;
  });

  app.get('/studies/:id', { schema: { params: IdParams, response: { 200: Type.Ref(Study), 404: Type.Ref('Error') } } }, async (req) => {
    const s = studyStore.study(req.params.id);
    if (!s) throw notFound('study', req.params.id);
    return studyView(studyStore, s, true) as never;
  });

  app.post('/studies/:id/cancel', { schema: { params: IdParams, response: { 202: Type.Ref(Study), ...errors } } }, async (req, reply) =>
    reply.code(202).send(studyView(studyStore, studies.cancel(req.params.id), false) as never),
  );
};
