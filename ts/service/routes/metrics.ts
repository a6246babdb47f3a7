// Metrics: JSON by name and step range, or a live Server-Sent Events stream (Accept:
// text/event-stream) of every event of the experiment — state transitions, metrics, checkpoints —
// with the store's event ids as SSE ids, so a client that reconnects with Last-Event-ID misses
// nothing. The stream ends after the experiment's terminal state; a reconnect after that gets 204,
// which tells EventSource to stop.
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { Type } from '@sinclair/typebox';
import type { EventRow } from '../db.ts';
import type { ServiceContext } from '../context.ts';
import { notFound } from '../errors.ts';
import { Count, EventSchema, IdParams, MetricSeries, MetricsQuery } from '../schemas.ts';
import { TERMINAL, type State } from '../states.ts';

const KEEPALIVE_MS = 15_000;

const isTerminalEvent = (e: EventRow) => e.kind === 'state' && TERMINAL.has(e.data.to as State);

export const metricRoutes: FastifyPluginAsyncTypebox<ServiceContext> = async (app, ctx) => {
  const { store, bus } = ctx;
  // Open streams end when the service closes: a hijacked response would otherwise hold the
  // server's close (and the graceful shutdown behind it) open forever.
  const open = new Set<() => void>();
  app.addHook('preClose', async () => {
    for (const close of [...open]) close();
  });

  app.get(
    '/experiments/:id/metrics',
    { schema: { params: IdParams, querystring: MetricsQuery, response: { 200: Type.Ref(MetricSeries), 204: Type.Null(), 404: Type.Ref('Error') } } },
    async (req, reply) => {
      const row = store.getExperiment(req.params.id);
      if (!row) throw notFound('experiment', req.params.id);
      if (!(req.headers.accept ?? '').includes('text/event-stream')) {
        const names = req.query.names?.split(',').map((n) => n.trim()).filter(Boolean);
        return store.metrics(row.id, { names, fromStep: req.query.from, toStep: req.query.to });
      }
      const header = req.headers['last-event-id'];
      let lastId = Number(Array.isArray(header) ? header[0] : header ?? req.query.last_event_id ?? 0) || 0;
      const backlog = store.eventsAfter(row.id, lastId, 100_000);
      if (TERMINAL.has(row.state) && backlog.length === 0) return reply.code(204).send(null);

      reply.hijack();
      const raw = reply.raw;
      raw.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache', connection: 'keep-alive', 'x-accel-buffering': 'no' });
      // Send the headers now: a client that reconnects with nothing to replay must not wait for
      // the first event (or keep-alive) to learn the stream is open.
      raw.write('retry: 3000\n\n');
      let closed = false;
      const pending: EventRow[] = [];
      let replaying = true;
      const send = (e: EventRow) => {
        if (closed || e.id <= lastId) return;
        lastId = e.id;
        raw.write(`id: ${e.id}\nevent: ${e.kind}\ndata: ${JSON.stringify({ ...e.data, at: e.at })}\n\n`);
        if (isTerminalEvent(e)) close();
      };
      const unsubscribe = bus.subscribe(row.id, (e) => (replaying ? pending.push(e) : send(e)));
      const keepalive = setInterval(() => raw.write(': keep-alive\n\n'), KEEPALIVE_MS);
      const close = () => {
        if (closed) return;
        closed = true;
        open.delete(close);
        clearInterval(keepalive);
        unsubscribe();
        raw.end();
      };
      req.raw.on('close', close);
      open.add(close);
      // Replay what the client missed, then whatever arrived meanwhile, then live.
      for (const e of backlog) send(e);
      for (let more = store.eventsAfter(row.id, lastId); more.length > 0; more = store.eventsAfter(row.id, lastId)) more.forEach(send);
      replaying = false;
      pending.splice(0).forEach(send);
    },
  );

  app.get(
    '/experiments/:id/events',
    {
      schema: {
        params: IdParams,
        querystring: Type.Object({ after: Count(0, { default: 0 }), limit: Type.Integer({ minimum: 1, maximum: 10_000, default: 1000 }) }),
        response: { 200: Type.Array(Type.Ref(EventSchema)), 404: Type.Ref('Error') },
      },
    },
    async (req) => {
      if (!store.getExperiment(req.params.id)) throw notFound('experiment', req.params.id);
      return store.eventsAfter(req.params.id, req.query.after, req.query.limit) as never;
    },
  );
};
