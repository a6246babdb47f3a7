// Checkpoints (list, download, retention policy), evaluations of a checkpoint, datasets.
import { randomBytes } from 'node:crypto';
import { createReadStream, existsSync, statSync } from 'node:fs';
import path from 'node:path';
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { Type } from '@sinclair/typebox';
import { Value } from '@sinclair/typebox/value';
import type { ServiceContext } from '../context.ts';
import { ApiError, badRequest, notFound } from '../errors.ts';
import { evaluationCliArgs } from '../evaluation-args.ts';
import { confinedPath } from '../paths.ts';
import { PythonCliError } from '../python-cli.ts';
import { Checkpoint, CheckpointPolicy, Count, CreateDataset, CreateEvaluation, Dataset, Evaluation, IdParams } from '../schemas.ts';

const newId = (prefix: string) => `${prefix}-${Date.now().toString(36)}-${randomBytes(3).toString('hex')}`;

/** What a client learns of a failed Python verb: the error's type, never its text, which may quote
 *  the file (issue #12, item 5); the service log has the whole message. */
function clientMessage(err: Error, what: string): string {
  if (err instanceof PythonCliError && err.type !== 'crash') return `${what} rejected the input (${err.type}); the service log has the details`;
  return `${what} failed; the service log has the details`;
}

/** A stored path is served only when it resolves inside the data directory. */
function insideDataDir(dataDir: string, file: string): boolean {
  const rel = path.relative(path.resolve(dataDir), path.resolve(file));
  return rel !== '' && !rel.startsWith('..') && !path.isAbsolute(rel);
}

export const artifactRoutes: FastifyPluginAsyncTypebox<ServiceContext> = async (app, ctx) => {
  const { store, artifacts, dataDir } = ctx;
  const experiment = (id: string) => {
    const row = store.getExperiment(id);
    if (!row) throw notFound('experiment', id);
    return row;
  };
  const checkpointsOf = (id: string) => store.checkpoints(id).filter((c) => existsSync(c.path));

  app.get('/experiments/:id/checkpoints', { schema: { params: IdParams, response: { 200: Type.Array(Type.Ref(Checkpoint)), 404: Type.Ref('Error') } } }, async (req) => {
    experiment(req.params.id);
    return checkpointsOf(req.params.id).map(({ path: _p, ...c }) => c);
  });

  app.get(
    '/experiments/:id/checkpoints/:step',
    { schema: { params: Type.Intersect([IdParams, Type.Object({ step: Count(0) })]), response: { 404: Type.Ref('Error') } } },
    async (req, reply) => {
      experiment(req.params.id);
      const c = checkpointsOf(req.params.id).find((x) => x.step === req.params.step);
      if (!c) throw notFound('checkpoint', `${req.params.id}/${req.params.step}`);
      if (!insideDataDir(dataDir, c.path)) throw new ApiError(403, 'forbidden', 'checkpoint lies outside the data directory');
      reply.header('content-type', 'application/octet-stream');
      reply.header('content-length', statSync(c.path).size);
      reply.header('content-disposition', `attachment; filename="${req.params.id}-step-${c.step}.pt"`);
      return reply.send(createReadStream(c.path));
    },
  );

  app.put(
    '/experiments/:id/checkpoint-policy',
    { schema: { params: IdParams, body: CheckpointPolicy, response: { 200: Type.Ref(CheckpointPolicy), 404: Type.Ref('Error') } } },
    async (req) => {
      experiment(req.params.id);
      const policy = Value.Default(CheckpointPolicy, structuredClone(req.body)) as never;
      store.db.prepare('UPDATE experiments SET checkpoint_policy = ? WHERE id = ?').run(JSON.stringify(policy), req.params.id);
      return policy;
    },
  );

  app.post(
    '/experiments/:id/evaluations',
    { schema: { params: IdParams, body: CreateEvaluation, response: { 201: Type.Ref(Evaluation), 400: Type.Ref('Error'), 404: Type.Ref('Error') } } },
    async (req, reply) => {
      experiment(req.params.id);
      const kept = checkpointsOf(req.params.id);
      const c = req.body.checkpoint_step === undefined ? kept.at(-1) : kept.find((x) => x.step === req.body.checkpoint_step);
      if (!c) throw badRequest(req.body.checkpoint_step === undefined ? 'the experiment has no checkpoint yet' : `no checkpoint at step ${req.body.checkpoint_step}`);
      const args = req.body.args ?? {};
      const cliArgs = evaluationCliArgs(req.body.protocol, args, ctx.dataRoots);
      const row = artifacts.createEvaluation({ id: newId('eval'), experimentId: req.params.id, checkpointStep: c.step, protocol: req.body.protocol, args });
      ctx
        .pythonJson(['eval', req.body.protocol, ...cliArgs, '--checkpoint', c.path, '--json'])
        .then(({ result }) => artifacts.finishEvaluation(row.id, { result }))
        .catch((err: Error) => {
          req.log.warn({ evaluation: row.id, err: err.message }, 'evaluation failed');
          artifacts.finishEvaluation(row.id, { error: clientMessage(err, `dmfr eval ${req.body.protocol}`) });
        });
      return reply.code(201).send(row as never);
    },
  );

  app.get('/experiments/:id/evaluations', { schema: { params: IdParams, response: { 200: Type.Array(Type.Ref(Evaluation)), 404: Type.Ref('Error') } } }, async (req) => {
    experiment(req.params.id);
    return artifacts.evaluations(req.params.id) as never;
  });

  app.post('/datasets', { schema: { body: CreateDataset, response: { 201: Type.Ref(Dataset), 400: Type.Ref('Error'), 409: Type.Ref('Error') } } }, async (req, reply) => {
    if (artifacts.dataset(req.body.name)) throw new ApiError(409, 'exists', `a dataset named ${req.body.name} is already registered`);
    const abs = confinedPath(ctx.dataRoots, req.body.path, 'path');
    let info: unknown;
    try {
      const { exitCode, result } = await ctx.pythonJson(['data', 'inspect', abs, '--json']);
      const problems = Number(result.problem_count ?? 0);
      if (exitCode !== 0 || problems > 0) {
        throw badRequest(`path: ${req.body.path}: dmfr data inspect found ${problems} problem(s); run it on the service host for the list`);
      }
      info = result;
    } catch (err) {
      if (err instanceof ApiError) throw err;
      req.log.warn({ path: abs, err: (err as Error).message }, 'dataset inspection failed');
      throw badRequest(`path: ${req.body.path}: ${clientMessage(err as Error, 'dmfr data inspect')}`);
    }
    return reply.code(201).send(artifacts.createDataset({ id: newId('ds'), name: req.body.name, path: abs, info }) as never);
  });

  app.get('/datasets', { schema: { response: { 200: Type.Array(Type.Ref(Dataset)) } } }, async () => artifacts.datasets() as never);

  app.get('/datasets/:name', { schema: { params: Type.Object({ name: Type.String({ minLength: 1 }) }), response: { 200: Type.Ref(Dataset), 404: Type.Ref('Error') } } }, async (req) => {
    const d = artifacts.dataset(req.params.name);
    if (!d) throw notFound('dataset', req.params.name);
    return d as never;
  });
};
