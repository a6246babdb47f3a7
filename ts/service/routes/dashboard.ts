// A small dashboard page (experiments and states, live loss curves by term over SSE, evaluations).
import { readFileSync } from 'node:fs';
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';

const page = readFileSync(new URL('../dashboard.html', import.meta.url), 'utf8');

export const dashboardRoutes: FastifyPluginAsyncTypebox = async (app) => {
  app.get('/', { schema: { hide: true } }, async (_req, reply) => reply.type('text/html; charset=utf-8').send(page));
};
