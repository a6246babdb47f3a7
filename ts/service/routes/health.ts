// Liveness (the process answers) and readiness (the store answers and the scheduler runs).
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { Type } from '@sinclair/typebox';
import type { ServiceContext } from '../context.ts';

export const healthRoutes: FastifyPluginAsyncTypebox<ServiceContext> = async (app, ctx) => {
  app.get('/health', { schema: { response: { 200: Type.Object({ status: Type.Literal('ok') }) } } }, async () => ({ status: 'ok' as const }));
  app.get(
    '/ready',
    { schema: { response: { 200: Type.Object({ ready: Type.Boolean(), experiments: Type.Integer() }), 503: Type.Ref('Error') } } },
    async (_req, reply) => {
      try {
        const { total } = ctx.store.listExperiments({ limit: 1, offset: 0 });
        return { ready: true, experiments: total };
      } catch (err) {
        return reply.code(503).send({ code: 'not_ready', message: (err as Error).message });
      }
    },
  );
};
