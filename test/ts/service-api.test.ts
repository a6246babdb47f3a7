// Every route and every 4xx of the HTTP API through Fastify's inject, on a real SQLite store.
// Experiments in particular states are written through the store itself so that no ranks start;
// test/ts/service-e2e.test.ts drives real runs.
import { mkdtempSync, rmSync, writeFileSync, mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { FastifyInstance } from 'fastify';
import { buildApp } from '../../ts/service/app.ts';
import { EventBus } from '../../ts/service/bus.ts';
import { ArtifactStore, ServiceStore } from '../../ts/service/db.ts';
import { DeviceScheduler } from '../../ts/service/scheduler.ts';
import { createService } from '../../ts/service/service.ts';
import { Supervisor } from '../../ts/service/supervisor.ts';
import { controllerLauncher } from '../../ts/service/controller-launcher.ts';
import { runPythonJson } from '../../ts/service/python-cli.ts';
import { loadConfig } from '../../ts/config/load.ts';

const silent = pino({ level: 'silent' });

function setup(token?: string) {
  const dataDir = mkdtempSync(path.join(tmpdir(), 'dmfr-api-'));
  const store = new ServiceStore(path.join(dataDir, 'dmfr.sqlite'));
  const artifacts = new ArtifactStore(store.db);
  const bus = new EventBus();
  const supervisor = new Supervisor(store, bus, new DeviceScheduler('cpu', 1), controllerLauncher(silent), dataDir, silent);
  const context = { store, artifacts, bus, supervisor, dataDir, dataRoots: [dataDir], pythonJson: runPythonJson };
  return { dataDir, store, bus, context, app: buildApp({ context, token }) };
}

/** An experiment row in `state`, written through the store (no ranks start). */
function seed(store: ServiceStore, dataDir: string, id: string, path_: Array<[string, string]> = []) {
  const config = loadConfig({ preset: 'quick' });
  store.createExperiment({ id, name: id, config, priority: 0, nproc: 1, maxRestarts: 0, runDir: path.join(dataDir, 'experiments', id), checkpointPolicy: null });
  for (const [from, to] of path_) store.transition(id, from as never, to as never);
}

describe('HTTP API', () => {
  let t: ReturnType<typeof setup>;
  let app: FastifyInstance;
  beforeAll(async () => {
    t = setup();
    app = await t.app;
    seed(t.store, t.dataDir, 'done-1', [['QUEUED', 'STARTING'], ['STARTING', 'RUNNING'], ['RUNNING', 'STOPPING_COMPLETED'], ['STOPPING_COMPLETED', 'COMPLETED']]);
    seed(t.store, t.dataDir, 'queued-1');
  });
  afterAll(async () => {
    await app.close();
    t.store.close();
    rmSync(t.dataDir, { recursive: true, force: true });
  });

  it('answers health and readiness', async () => {
    expect((await app.inject('/health')).json()).toEqual({ status: 'ok' });
    expect((await app.inject('/ready')).json()).toMatchObject({ ready: true, experiments: 2 });
  });

  it('publishes OpenAPI 3 with named schemas', async () => {
    const spec = (await app.inject('/openapi.json')).json();
    expect(spec.openapi).toMatch(/^3\./);
    expect(Object.keys(spec.paths)).toEqual(expect.arrayContaining(['/experiments', '/experiments/{id}', '/experiments/{id}/metrics', '/experiments/{id}/pause']));
    expect(Object.keys(spec.components.schemas)).toEqual(expect.arrayContaining(['Experiment', 'Error', 'CreateExperiment', 'CheckpointPolicy']));
    expect((await app.inject('/docs')).statusCode).toBeLessThan(400);
  });

  it('lists with filters and paging, and gets one', async () => {
    const all = (await app.inject('/experiments?limit=1&offset=0')).json();
    expect(all.total).toBe(2);
    expect(all.items).toHaveLength(1);
    const done = (await app.inject('/experiments?state=COMPLETED')).json();
    expect(done.items.map((e: { id: string }) => e.id)).toEqual(['done-1']);
    expect((await app.inject('/experiments/done-1')).json()).toMatchObject({ id: 'done-1', state: 'COMPLETED', config: { method: { name: 'real' } } });
  });

  it('rejects invalid bodies with 400 naming the field', async () => {
    const unknown = await app.inject({ method: 'POST', url: '/experiments', payload: { preset: 'quick', colour: 'red' } });
    expect(unknown.statusCode).toBe(400);
    expect(unknown.json()).toMatchObject({ code: 'invalid_request' });
    expect(unknown.json().message).toContain('colour');
    const badConfig = await app.inject({ method: 'POST', url: '/experiments', payload: { config: { train: { steps: -3 } } } });
    expect(badConfig.statusCode).toBe(400);
    expect(badConfig.json().code).toBe('invalid_config');
    expect(badConfig.json().message).toContain('config.train.steps');
    const badPreset = await app.inject({ method: 'POST', url: '/experiments', payload: { preset: 'huge' } });
    expect(badPreset.statusCode).toBe(400);
    expect(badPreset.json().message).toContain('huge');
    const badSet = await app.inject({ method: 'POST', url: '/experiments', payload: { set: ['train.nope=1'] } });
    expect(badSet.statusCode).toBe(400);
    expect(badSet.json().message).toContain('nope');
    const badQuery = await app.inject('/experiments?limit=0');
    expect(badQuery.statusCode).toBe(400);
    expect(badQuery.json().message).toContain('limit');
  });

  it('answers 404 for unknown ids and routes, 400 for ids that are not ids', async () => {
    for (const url of ['/experiments/nope-1', '/experiments/nope-1/metrics', '/experiments/nope-1/checkpoints', '/experiments/nope-1/evaluations', '/datasets/nothing', '/no/such/route']) {
      const res = await app.inject(url);
      expect(res.statusCode, url).toBe(404);
      expect(res.json().code).toBe('not_found');
    }
    for (const action of ['stop', 'pause', 'resume', 'restart']) {
      expect((await app.inject({ method: 'POST', url: `/experiments/nope-1/${action}` })).statusCode).toBe(404);
    }
    expect((await app.inject({ method: 'DELETE', url: '/experiments/nope-1' })).statusCode).toBe(404);
    const escape = await app.inject('/experiments/..%2F..%2Fetc');
    expect(escape.statusCode).toBe(400);
  });

  it('answers 409 with the current state for illegal transitions', async () => {
    for (const [id, action, state] of [
      ['done-1', 'pause', 'COMPLETED'],
      ['done-1', 'resume', 'COMPLETED'],
      ['done-1', 'stop', 'COMPLETED'],
      ['queued-1', 'resume', 'QUEUED'],
      ['queued-1', 'restart', 'QUEUED'],
    ] as const) {
      const res = await app.inject({ method: 'POST', url: `/experiments/${id}/${action}` });
      expect(res.statusCode, `${action} ${id}`).toBe(409);
      expect(res.json()).toMatchObject({ code: 'illegal_transition', state });
    }
    const del = await app.inject({ method: 'DELETE', url: '/experiments/queued-1' });
    expect(del.statusCode).toBe(204); // a queued experiment has no ranks: deleting it is fine
    seed(t.store, t.dataDir, 'running-1', [['QUEUED', 'STARTING'], ['STARTING', 'RUNNING']]);
    const busy = await app.inject({ method: 'DELETE', url: '/experiments/running-1' });
    expect(busy.statusCode).toBe(409);
    expect(busy.json().state).toBe('RUNNING');
  });

  it('serves metrics by name and step range', async () => {
    t.store.recordMetrics('done-1', 0, { loss: 5, lr: 0.1 });
    t.store.recordMetrics('done-1', 1, { loss: 4, lr: 0.1 });
    t.store.recordMetrics('done-1', 2, { loss: 3, lr: 0.1 });
    const res = (await app.inject('/experiments/done-1/metrics?names=loss&from=1&to=2')).json();
    expect(res).toEqual({ loss: [{ step: 1, value: 4 }, { step: 2, value: 3 }] });
    const events = (await app.inject('/experiments/done-1/events?after=0')).json();
    expect(events.map((e: { kind: string }) => e.kind)).toEqual(['state', 'state', 'state', 'state', 'state', 'metrics', 'metrics', 'metrics']);
  });

  it('handles checkpoints, evaluations and datasets errors', async () => {
    expect((await app.inject('/experiments/done-1/checkpoints')).json()).toEqual([]);
    const missing = await app.inject('/experiments/done-1/checkpoints/5');
    expect(missing.statusCode).toBe(404);
    const noCkpt = await app.inject({ method: 'POST', url: '/experiments/done-1/evaluations', payload: { protocol: 'verification', args: { bin: 'lfw.bin' } } });
    expect(noCkpt.statusCode).toBe(400);
    expect(noCkpt.json().message).toContain('no checkpoint');
    const badProtocol = await app.inject({ method: 'POST', url: '/experiments/done-1/evaluations', payload: { protocol: 'astrology' } });
    expect(badProtocol.statusCode).toBe(400);
    const policy = await app.inject({ method: 'PUT', url: '/experiments/done-1/checkpoint-policy', payload: { keep_latest: 2, keep_best: 1, metric: 'loss' } });
    expect(policy.json()).toEqual({ keep_latest: 2, keep_best: 1, metric: 'loss', smaller_is_better: true });
    const badPolicy = await app.inject({ method: 'PUT', url: '/experiments/done-1/checkpoint-policy', payload: { keep_latest: 0 } });
    expect(badPolicy.statusCode).toBe(400);
    const noPath = await app.inject({ method: 'POST', url: '/datasets', payload: { name: 'x', path: '/does/not/exist' } });
    expect(noPath.statusCode).toBe(400);
    expect(noPath.json().message).toContain('/does/not/exist');
  });

  it('downloads a checkpoint inside the data directory and refuses one outside it', async () => {
    const dir = path.join(t.dataDir, 'experiments', 'done-1', 'checkpoints');
    mkdirSync(dir, { recursive: true });
    const file = path.join(dir, 'step-00000003.pt');
    writeFileSync(file, Buffer.from('checkpoint-bytes'));
    t.store.addCheckpoint('done-1', { step: 3, path: file, bytes: 16 });
    const ok = await app.inject('/experiments/done-1/checkpoints/3');
    expect(ok.statusCode).toBe(200);
    expect(ok.body).toBe('checkpoint-bytes');
    const outside = path.join(mkdtempSync(path.join(tmpdir(), 'dmfr-outside-')), 'x.pt');
    writeFileSync(outside, 'x');
    t.store.addCheckpoint('done-1', { step: 4, path: outside, bytes: 1 });
    expect((await app.inject('/experiments/done-1/checkpoints/4')).statusCode).toBe(403);
  });

  it('streams events over SSE and replays after Last-Event-ID', async () => {
    await app.listen({ host: '127.0.0.1', port: 0 });
    const base = `http://127.0.0.1:${(app.server.address() as { port: number }).port}`;
    seed(t.store, t.dataDir, 'live-1');
    const ids = t.store.eventsAfter('live-1', 0).map((e) => e.id);
    const res = await fetch(`${base}/experiments/live-1/metrics`, { headers: { accept: 'text/event-stream', 'last-event-id': String(ids[0]) } });
    expect(res.headers.get('content-type')).toContain('text/event-stream');
    const reader = res.body!.getReader();
    // Live events after connecting: published through the bus as the supervisor does.
    setTimeout(() => {
      t.bus.publish(t.store.recordMetrics('live-1', 1, { loss: 2.5, 'terms.L_cls': 2.5 }));
      t.bus.publish(t.store.transition('live-1', 'QUEUED', 'STOPPING_CANCELED'));
      t.bus.publish(t.store.transition('live-1', 'STOPPING_CANCELED', 'CANCELED'));
    }, 100);
    let text = '';
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      text += new TextDecoder().decode(value);
    }
    const got = [...text.matchAll(/^id: (\d+)\nevent: (\w+)/gm)].map((m) => [Number(m[1]), m[2]]);
    expect(got.map((g) => g[1])).toEqual(['metrics', 'state', 'state']); // the QUEUED event was before Last-Event-ID
    // The loss terms nest under `terms`, as on the wire and in `dmfr runs metrics` (docs/service.md).
    const metrics = JSON.parse(/event: metrics\ndata: (.*)\n/.exec(text)![1]!);
    expect(metrics).toMatchObject({ step: 1, loss: 2.5, terms: { L_cls: 2.5 } });
    expect(metrics).not.toHaveProperty('L_cls');
    expect(metrics).not.toHaveProperty(['terms.L_cls']);
    expect(got.every((g, i) => i === 0 || (g[0] as number) > (got[i - 1]![0] as number))).toBe(true);
    // After the terminal state a reconnect gets 204, which stops EventSource.
    const again = await fetch(`${base}/experiments/live-1/metrics`, { headers: { accept: 'text/event-stream', 'last-event-id': String(got.at(-1)![0]) } });
    expect(again.status).toBe(204);
  });
});

describe('authentication', () => {
  it('requires the bearer token on every route but /health', async () => {
    const t = setup('s3cret-token');
    const app = await t.app;
    expect((await app.inject('/health')).statusCode).toBe(200);
    const denied = await app.inject('/experiments');
    expect(denied.statusCode).toBe(401);
    expect(denied.json().code).toBe('unauthorized');
    expect((await app.inject({ url: '/experiments', headers: { authorization: 'Bearer wrong' } })).statusCode).toBe(401);
    expect((await app.inject({ url: '/experiments', headers: { authorization: 'Bearer s3cret-token' } })).statusCode).toBe(200);
    expect((await app.inject('/experiments?access_token=s3cret-token')).statusCode).toBe(200);
    await app.close();
    t.store.close();
  });

  it('refuses to listen off loopback without a token', async () => {
    const dataDir = mkdtempSync(path.join(tmpdir(), 'dmfr-auth-'));
    await expect(createService({ dataDir, host: '0.0.0.0', logger: silent })).rejects.toThrow(/without a token/);
  });
});

describe('logs', () => {
  it('never carry the bearer token, from the header or the query', async () => {
    const { Writable } = await import('node:stream');
    const { REDACT } = await import('../../ts/service/app.ts');
    let out = '';
    const sink = new Writable({ write: (c, _e, cb) => ((out += c.toString()), cb()) });
    const dataDir = mkdtempSync(path.join(tmpdir(), 'dmfr-log-'));
    const service = await createService({ dataDir, token: 'SECRET-TOKEN-123', logger: pino({ level: 'info', redact: REDACT }, sink) });
    expect((await service.app.inject('/experiments?access_token=SECRET-TOKEN-123&limit=5')).statusCode).toBe(200);
    expect((await service.app.inject({ url: '/experiments', headers: { authorization: 'Bearer SECRET-TOKEN-123' } })).statusCode).toBe(200);
    expect((await service.app.inject('/experiments?access_token=wrong')).statusCode).toBe(401);
    await service.close(1000);
    expect(out).toContain('access_token=[Redacted]&limit=5'); // the request was logged…
    expect(out).not.toContain('SECRET-TOKEN-123'); // …without the secret
    expect(out).not.toContain('wrong');
  });

  it('start without a Fastify deprecation warning, and without Fastify\'s own request lines', async () => {
    const { Writable } = await import('node:stream');
    const warnings: string[] = [];
    const onWarning = (w: Error & { code?: string }) => warnings.push(`${w.code ?? w.name}: ${w.message}`);
    process.on('warning', onWarning);
    let out = '';
    const sink = new Writable({ write: (c, _e, cb) => ((out += c.toString()), cb()) });
    const dataDir = mkdtempSync(path.join(tmpdir(), 'dmfr-log-'));
    try {
      const service = await createService({ dataDir, logger: pino({ level: 'info' }, sink) });
      expect((await service.app.inject('/health')).statusCode).toBe(200);
      await service.close(1000);
      await new Promise((r) => setImmediate(r)); // process warnings are emitted on a later tick
    } finally {
      process.off('warning', onWarning);
      rmSync(dataDir, { recursive: true, force: true });
    }
    expect(warnings.filter((w) => w.startsWith('FSTDEP'))).toEqual([]);
    expect(out).toContain('"msg":"request"'); // our own request line, with the token masked…
    expect(out).not.toContain('incoming request'); // …and not Fastify's
  });
});
