// /experiments: create (same config schema and shorthands as `dmfr run`), list, get, delete,
// and the run actions stop / pause / resume / restart.
import { randomBytes } from 'node:crypto';
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { Type } from '@sinclair/typebox';
import { ConfigError, loadConfig } from '../../config/load.ts';
import { JoinInfo, readJoinInfo } from '../../controller/nodes.ts';
import type { ServiceContext } from '../context.ts';
import { ApiError, notFound } from '../errors.ts';
import { CheckpointPolicy, CreateExperiment, Experiment, ExperimentList, IdParams, ListQuery } from '../schemas.ts';
import { Value } from '@sinclair/typebox/value';

/** The first number in a resolved config that no rank can take exactly: an integer beyond 2^53 − 1
 *  (JSON carries it as a double: 2^63 arrives as 9223372036854775808 and is no longer the number
 *  sent), or a non-finite value. The config schema bounds fields by meaning; this bounds them by
 *  representation, for every field at once. */
export function unrepresentable(value: unknown, at: string): string | null {
  if (typeof value === 'number') {
    if (!Number.isFinite(value)) return `${at}: ${value} is not a finite number`;
    if (Number.isInteger(value) && !Number.isSafeInteger(value)) return `${at}: ${value} is beyond 2^53 − 1, the largest integer the service and the ranks hold exactly`;
    return null;
  }
  if (value && typeof value === 'object') {
    for (const [k, v] of Object.entries(value)) {
      const bad = unrepresentable(v, at ? `${at}.${k}` : k);
      if (bad) return bad;
    }
  }
  return null;
}

const newId = () => `exp-${Date.now().toString(36)}-${randomBytes(3).toString('hex')}`;
const errorRefs = { 400: Type.Ref('Error'), 404: Type.Ref('Error'), 409: Type.Ref('Error') };

export const experimentRoutes: FastifyPluginAsyncTypebox<ServiceContext> = async (app, ctx) => {
  const { store, supervisor } = ctx;

  app.post('/experiments', { schema: { body: CreateExperiment, response: { 201: Type.Ref(Experiment), 400: Type.Ref('Error') } } }, async (req, reply) => {
    const body = req.body;
    let config;
    try {
      config = loadConfig({
        preset: body.preset,
        method: body.method,
        steps: body.steps,
        nproc: body.nproc,
        sets: body.set,
        layers: body.config ? [{ source: 'body.config', value: body.config }] : [],
      });
    } catch (e) {
      if (e instanceof ConfigError) {
        const first = e.issues[0]!;
        const field = first.source === 'body.config' ? `config.${first.path}` : first.path || first.source;
        throw new ApiError(400, 'invalid_config', `${field}: ${first.message}`, { issues: e.issues });
      }
      throw e;
    }
    // train.steps first: the milestones derive from it (optim.milestone_fractions), so a bad
    // step count is named as itself, not as the milestone it produced.
    const bad = unrepresentable(config.train.steps, 'train.steps') ?? unrepresentable(config, '');
    if (bad) throw new ApiError(400, 'invalid_config', bad);
    const id = newId();
    const row = supervisor.create({
      id,
      name: body.name ?? config.name,
      config: config as unknown as Record<string, unknown>,
      nproc: config.train.nproc,
      priority: body.priority ?? 0,
      maxRestarts: body.max_restarts ?? 2,
      checkpointPolicy: body.checkpoint_policy ? Value.Default(CheckpointPolicy, structuredClone(body.checkpoint_policy)) as never : null,
    });
    return reply.code(201).send(row as never);
  });

  app.get('/experiments', { schema: { querystring: ListQuery, response: { 200: Type.Ref(ExperimentList) } } }, async (req) => {
    const { items, total } = store.listExperiments(req.query);
    return { items, total, limit: req.query.limit, offset: req.query.offset } as never;
  });

  app.get('/experiments/:id', { schema: { params: IdParams, response: { 200: Type.Ref(Experiment), 404: Type.Ref('Error') } } }, async (req) => {
    const row = store.getExperiment(req.params.id);
    if (!row) throw notFound('experiment', req.params.id);
    return row as never;
  });

  app.delete('/experiments/:id', { schema: { params: IdParams, response: { 204: Type.Null(), ...errorRefs } } }, async (req, reply) => {
    supervisor.delete(req.params.id);
    return reply.code(204).send(null);
  });

  const actions = { stop: 'stop', pause: 'pause', resume: 'resume', restart: 'restart' } as const;
  for (const action of Object.values(actions)) {
    app.post(
      `/experiments/:id/${action}`,
      { schema: { params: IdParams, response: { 202: Type.Ref(Experiment), ...errorRefs } } },
      async (req, reply) => reply.code(202).send(supervisor[action](req.params.id) as never),
    );
  }

  // What `dmfr join --experiment` on another host needs to start its node of the live attempt
  // (docs/multinode.md). It holds the attempt's HMAC key: serve it with a token, over TLS
  // (a reverse proxy) across networks you do not trust.
  app.get('/experiments/:id/join', { schema: { params: IdParams, response: { 200: JoinInfo, ...errorRefs } } }, async (req) => {
    const row = store.getExperiment(req.params.id);
    if (!row) throw notFound('experiment', req.params.id);
    const file = supervisor.joinFile(row.id);
    if (!file) {
      const nnodes = (row.config as { runtime?: { nnodes?: number } }).runtime?.nnodes ?? 1;
      const why = nnodes > 1 ? `no attempt of it is starting or running (state ${row.state})` : 'it runs on one node (runtime.nnodes = 1)';
      throw new ApiError(409, 'not_joinable', `experiment ${row.id} has no node to join: ${why}`, { state: row.state });
    }
    return readJoinInfo(file);
  });
};
