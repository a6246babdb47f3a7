// The HTTP service: Fastify 5 with TypeBox schemas on every route, OpenAPI 3 generated from them
// (GET /openapi.json, a UI at /docs), bearer-token auth, and a stable error body.
import { timingSafeEqual } from 'node:crypto';
import swagger from '@fastify/swagger';
import swaggerUi from '@fastify/swagger-ui';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import Fastify, { LogController, type FastifyBaseLogger, type FastifyInstance, type FastifyReply } from 'fastify';
import type { ServiceContext } from './context.ts';
import { ApiError, ErrorBody, fromFastifyError } from './errors.ts';
import { artifactRoutes } from './routes/artifacts.ts';
import { dashboardRoutes } from './routes/dashboard.ts';
import { experimentRoutes } from './routes/experiments.ts';
import { healthRoutes } from './routes/health.ts';
import { metricRoutes } from './routes/metrics.ts';
import { studyRoutes } from './routes/studies.ts';
import { StudyStore } from './db.ts';
import { StudyManager } from './studies.ts';
import { unrepresentable } from './routes/experiments.ts';
import pino from 'pino';
import * as schemas from './schemas.ts';
import { BODY_LIMIT, partAwareValidator, registerJsonParser } from './validation.ts';

export interface AppOptions {
  context: ServiceContext;
  /** Bearer token; when set every route but /health requires it. */
  token?: string;
  /** A pino logger for requests and errors (none: silent). */
  logger?: FastifyBaseLogger;
}

/** Secrets never reach the logs. */
export const REDACT = ['req.headers.authorization', 'req.query.access_token', '*.token', '*.key', '*.DMFR_KEY'];

/** Query keys whose values are secrets. */
const SECRET_KEYS = new Set(['access_token', 'token', 'key']);

function decodedKey(raw: string): string {
  try {
    return decodeURIComponent(raw.replaceAll('+', ' '));
  } catch {
    return raw;
  }
}

/** A URL with its secret query values masked, judged on the decoded key (`access%5Ftoken` too,
 *  which the query parser decodes to access_token and accepts). */
export function redactUrl(url: string): string {
  const at = url.indexOf('?');
  if (at < 0) return url;
  const hash = url.indexOf('#', at);
  const query = url.slice(at + 1, hash < 0 ? undefined : hash);
  const masked = query
    .split('&')
    .map((pair) => {
      const eq = pair.indexOf('=');
      const key = eq < 0 ? pair : pair.slice(0, eq);
      return SECRET_KEYS.has(decodedKey(key).toLowerCase()) ? `${key}=[Redacted]` : pair;
    })
    .join('&');
  return `${url.slice(0, at + 1)}${masked}${hash < 0 ? '' : url.slice(hash)}`;
}

/** A route pattern (`/experiments/:id/stop`) as a regular expression over concrete paths. */
function routePattern(url: string): RegExp {
  const escaped = url.split('/').map((part) => (part.startsWith(':') ? '[^/]+' : part.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')));
  return new RegExp(`^${escaped.join('/')}/?$`);
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
    bodyLimit: BODY_LIMIT,
    // Bodies are validated without type coercion, query strings and path parameters with it.
    schemaController: { compilersFactory: { buildValidator: partAwareValidator() as never } },
    // The router's own refusals (a malformed URL, a path parameter over maxParamLength) in the
    // documented error body too.
    frameworkErrors: (err, _req, reply) => {
      const mapped = fromFastifyError(err.statusCode ?? 400, err.message);
      void (reply as FastifyReply).code(err.statusCode === 414 ? 414 : mapped.statusCode).send({ code: mapped.code, message: mapped.message });
    },
  }).withTypeProvider<TypeBoxTypeProvider>();
  registerJsonParser(app);

  // Every route's method and pattern, so that a known path with another method answers 405.
  const routes: { method: string; pattern: RegExp }[] = [];
  app.addHook('onRoute', (r) => {
    for (const method of [r.method].flat()) routes.push({ method: String(method), pattern: routePattern(r.url) });
  });

  for (const s of [ErrorBody, schemas.StateSchema, schemas.CheckpointPolicy, schemas.CreateExperiment, schemas.Experiment, schemas.ExperimentList,
    schemas.MetricSeries, schemas.EventSchema, schemas.Checkpoint, schemas.EvaluationArgs, schemas.CreateEvaluation, schemas.Evaluation, schemas.CreateDataset, schemas.Dataset,
    schemas.CreateStudy, schemas.StudyCell, schemas.Study, schemas.StudyList]) {
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
    // Fastify's own 4xx (FST_ERR_CTP_INVALID_JSON_BODY, FST_ERR_CTP_BODY_TOO_LARGE, …) as documented codes.
    if (err.statusCode && err.statusCode >= 400 && err.statusCode < 500) {
      const mapped = fromFastifyError(err.statusCode, err.message);
      return reply.code(mapped.statusCode).send({ code: mapped.code, message: mapped.message });
    }
    req.log.error({ err }, 'request failed');
    return reply.code(500).send({ code: 'internal', message: 'internal error; see the service log' });
  });
  app.setNotFoundHandler((req, reply) => {
    const where = req.url.split('?')[0]!;
    const allowed = [...new Set(routes.filter((r) => r.pattern.test(where)).map((r) => r.method))];
    if (allowed.length > 0) {
      reply.header('allow', allowed.join(', '));
      return reply.code(405).send({ code: 'method_not_allowed', message: `${req.method} is not allowed on ${where}; allowed: ${allowed.join(', ')}` });
    }
    return reply.code(404).send({ code: 'not_found', message: `no route ${req.method} ${where}` });
  });

  app.get('/openapi.json', { schema: { hide: true } }, async () => app.swagger());
  await app.register(healthRoutes, opts.context);
  await app.register(experimentRoutes, opts.context);
  await app.register(metricRoutes, opts.context);
  await app.register(artifactRoutes, opts.context);
  const studyStore = opts.context.studyStore ?? new StudyStore(opts.context.store.db);
  const studies = opts.context.studies ?? newStudyManager(opts.context, studyStore, opts.logger);
  await app.register(studyRoutes, { ...opts.context, studyStore, studies });
  await app.register(dashboardRoutes, opts.context);
  return app;
}

/** The study manager of a context (createService makes its own and starts it after reconcile). */
export function newStudyManager(ctx: ServiceContext, studyStore: StudyStore, logger?: FastifyBaseLogger): StudyManager {
  return new StudyManager({
    store: ctx.store,
    studies: studyStore,
    supervisor: ctx.supervisor,
    bus: ctx.bus,
    dataDir: ctx.dataDir,
    log: (logger ?? pino({ level: 'silent' })) as pino.Logger,
    unrepresentable,
  });
}
