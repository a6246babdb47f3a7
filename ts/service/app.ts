// The HTTP service: Fastify 5 with TypeBox schemas on every route, OpenAPI 3 generated from them
// (GET /openapi.json, a UI at /docs), bearer-token auth, and a stable error body.
import { timingSafeEqual } from 'node:crypto';
import swagger from '@fastify/swagger';
import swaggerUi from '@fastify/swagger-ui';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import Fastify, { LogController, type FastifyBaseLogger, type FastifyInstance } from 'fastify';
import type { ServiceContext } from './context.ts';
import { ApiError, ErrorBody } from './errors.ts';
import { artifactRoutes } from './routes/artifacts.ts';
import { dashboardRoutes } from './routes/dashboard.ts';
import { experimentRoutes } from './routes/experiments.ts';
import { healthRoutes } from './routes/health.ts';
import { metricRoutes } from './routes/metrics.ts';
import * as schemas from './schemas.ts';

export interface AppOptions {
  context: ServiceContext;
  /** Bearer token; when set every route but /health requires it. */
  token?: string;
  /** A pino logger for requests and errors (none: silent). */
  logger?: FastifyBaseLogger;
}

/** Secrets never reach the logs. */
export const REDACT = ['req.headers.authorization', 'req.query.access_token', '*.token', '*.key', '*.DMFR_KEY'];

/** A URL with its access_token query value masked. */
export function redactUrl(url: string): string {
  return url.replace(/([?&]access_token=)[^&#]*/g, '$1[Redacted]');
}

const OPEN_PATHS = new Set(['/health']);

function tokenMatches(given: string | undefined, token: string): boolean {
  if (!given) return false;
  const a = Buffer.from(given);
  const b = Buffer.from(token);
  return a.length === b.length && timingSafeEqual(a, b);
}

export async function buildApp(opts: AppOptions): Promise<FastifyInstance> {
  const app = Fastify({
    ...(opts.logger ? { loggerInstance: opts.logger } : { logger: false }),
    // Requests are logged by the hook below, with the token masked in the URL. (Through a
    // LogController: Fastify 5.12 deprecates the top-level disableRequestLogging, FSTDEP023.)
    logController: new LogController({ disableRequestLogging: true }),
    ajv: { customOptions: { coerceTypes: 'array', removeAdditional: false, useDefaults: true } },
  }).withTypeProvider<TypeBoxTypeProvider>();

  for (const s of [ErrorBody, schemas.StateSchema, schemas.CheckpointPolicy, schemas.CreateExperiment, schemas.Experiment, schemas.ExperimentList,
    schemas.MetricSeries, schemas.EventSchema, schemas.Checkpoint, schemas.CreateEvaluation, schemas.Evaluation, schemas.CreateDataset, schemas.Dataset]) {
    app.addSchema(s);
  }

  await app.register(swagger, {
    openapi: {
      openapi: '3.0.3',
      info: { title: 'dmfr', version: '0.1.0', description: 'Experiments, live metrics, checkpoints and evaluations of dmfr runs.' },
      components: { securitySchemes: { bearer: { type: 'http', scheme: 'bearer' } } },
      security: opts.token ? [{ bearer: [] }] : [],
    },
    // Keep the schemas' own names ($id) in components.schemas.
    refResolver: { buildLocalReference: (json, _base, _fragment, i) => (typeof json.$id === 'string' ? json.$id : `def-${i}`) },
  });
  await app.register(swaggerUi, { routePrefix: '/docs' });

  // The token may come as ?access_token=… where headers cannot be set (EventSource, the dashboard);
  // it is taken out of the query before the routes' schemas see it.
  app.addHook('onRequest', async (req) => {
    const query = req.query as Record<string, string> | undefined;
    const fromQuery = query?.access_token;
    if (query) delete query.access_token;
    if (!opts.token || OPEN_PATHS.has(req.url.split('?')[0]!)) return;
    const header = req.headers.authorization;
    const given = header?.startsWith('Bearer ') ? header.slice(7) : fromQuery;
    if (!tokenMatches(given, opts.token)) throw new ApiError(401, 'unauthorized', 'a valid bearer token is required (Authorization: Bearer …)');
  });

  app.addHook('onResponse', async (req, reply) => {
    req.log.info({ method: req.method, url: redactUrl(req.url), status: reply.statusCode, ms: Math.round(reply.elapsedTime * 10) / 10 }, 'request');
  });

  app.setErrorHandler((err: Error & { statusCode?: number; validation?: unknown; validationContext?: string; code?: string }, req, reply) => {
    if (err instanceof ApiError) return reply.code(err.statusCode).send({ code: err.code, message: err.message, ...err.extra });
    if (err.validation) {
      const [first] = err.validation as { instancePath: string; message: string; params?: { additionalProperty?: string; missingProperty?: string } }[];
      const where = `${err.validationContext ?? 'request'}${first?.instancePath.replaceAll('/', '.') ?? ''}`;
      const detail = first?.params?.additionalProperty ? `unknown field '${first.params.additionalProperty}'` : first?.message ?? err.message;
      return reply.code(400).send({ code: 'invalid_request', message: `${where}: ${detail}` });
    }
    if (err.statusCode && err.statusCode < 500) return reply.code(err.statusCode).send({ code: err.code ?? 'bad_request', message: err.message });
    req.log.error({ err }, 'request failed');
    return reply.code(500).send({ code: 'internal', message: 'internal error; see the service log' });
  });
  app.setNotFoundHandler((req, reply) => reply.code(404).send({ code: 'not_found', message: `no route ${req.method} ${req.url.split('?')[0]}` }));

  app.get('/openapi.json', { schema: { hide: true } }, async () => app.swagger());
  await app.register(healthRoutes, opts.context);
  await app.register(experimentRoutes, opts.context);
  await app.register(metricRoutes, opts.context);
  await app.register(artifactRoutes, opts.context);
  await app.register(dashboardRoutes, opts.context);
  return app;
}
