// The dashboard page: the experiments and studies at `/` (and `/ui`), one study at
// `/ui/studies/{id}` (its cells and report), and one experiment at `/ui/experiments/{id}` — a link to share, which opens on its curves, config, checkpoints,
// evaluations and events (the page reads them from the API; docs/service.md, "Dashboard").
import { readFileSync } from 'node:fs';
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { IdParams } from '../schemas.ts';

const page = readFileSync(new URL('../dashboard.html', import.meta.url), 'utf8');

export const dashboardRoutes: FastifyPluginAsyncTypebox = async (app) => {
  const html = { schema: { hide: true } };
  app.get('/', html, async (_req, reply) => reply.type('text/html; charset=utf-8').send(page));
  app.get('/ui', html, async (_req, reply) => reply.type('text/html; charset=utf-8').send(page));
  app.get('/ui/experiments/:id', { schema: { hide: true, params: IdParams } }, async (_req, reply) => reply.type('text/html; charset=utf-8').send(page));
  app.get('/ui/studies/:id', { schema: { hide: true, params: IdParams } }, async (_req, reply) => reply.type('text/html; charset=utf-8').send(page));
};
