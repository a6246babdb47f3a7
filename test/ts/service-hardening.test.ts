// Issue #12 (service part): each defect found by probing the service as an attacker and an unlucky
// operator would, checked on the real service listening on loopback (createService + fetch), real
// SQLite, real files, real Python verbs and, for failure classification, real torchrun ranks.
import { execFileSync, spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Writable } from 'node:stream';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../../ts/config/load.ts';
import { REPO_ROOT } from '../../ts/controller/launch.ts';
import { REDACT } from '../../ts/service/app.ts';
import { ServiceStore } from '../../ts/service/db.ts';
import { ERROR_CODES } from '../../ts/service/errors.ts';
import { createService, isLoopback, type Service, type ServiceOptions } from '../../ts/service/service.ts';
import { HAVE_PYTHON, PYTHON } from './helpers.ts';

const silent = pino({ level: 'silent' });
const root = mkdtempSync(path.join(tmpdir(), 'dmfr-hard-'));
const newDir = (name: string) => mkdtempSync(path.join(root, `${name}-`));

/** The real service over `dataDir`, listening on a free loopback port. */
async function serveOn(dataDir: string, opts: Partial<ServiceOptions> = {}): Promise<{ service: Service; url: string }> {
  const service = await createService({ dataDir, cpuSlots: 2, logger: silent, ...opts });
  await service.app.listen({ host: '127.0.0.1', port: 0 });
  return { service, url: `http://127.0.0.1:${(service.app.server.address() as { port: number }).port}` };
}

async function call(url: string, method: string, body?: unknown, headers: Record<string, string> = {}) {
  const res = await fetch(url, {
    method,
    headers: body === undefined ? headers : { 'content-type': 'application/json', ...headers },
    body: body === undefined ? undefined : typeof body === 'string' ? body : JSON.stringify(body),
  });
  const text = await res.text();
  let json: Record<string, unknown> = {};
  try {
    json = JSON.parse(text);
  } catch {
    // not JSON: left empty, the assertions say what was expected
  }
  return { status: res.status, json, text, headers: res.headers };
}

/** `dmfr ARGS…` as a child process; resolves when it exits or prints `until` on stderr. */
function dmfr(args: string[], env: Record<string, string> = {}, until?: RegExp) {
  const proc = spawn(process.execPath, [path.join(REPO_ROOT, 'bin/dmfr.js'), ...args], { env: { ...process.env, ...env }, stdio: ['ignore', 'ignore', 'pipe'] });
  let said = '';
  return new Promise<{ code: number | null; said: string; proc: typeof proc }>((resolve) => {
    proc.stderr.on('data', (d: Buffer) => {
      said += d.toString();
      if (until?.test(said)) resolve({ code: null, said, proc });
    });
    proc.once('exit', (code) => resolve({ code, said, proc }));
  });
}

afterAll(() => rmSync(root, { recursive: true, force: true }));

describe('item 1: more ranks than the host has', () => {
  it('is a 400 at create naming train.nproc and the capacity, and stores nothing', async () => {
    const { service, url } = await serveOn(newDir('cap'));
    try {
      for (const body of [{ preset: 'quick', set: ['train.nproc=4'] }, { preset: 'quick', nproc: 4 }]) {
        const res = await call(`${url}/experiments`, 'POST', body);
        expect(res.status, JSON.stringify(body)).toBe(400);
        expect(res.json.code).toBe('invalid_config');
        expect(res.json.message).toMatch(/^train\.nproc: asks for 4 ranks.*this host has 2/);
      }
      expect((await call(`${url}/experiments`, 'GET')).json.total).toBe(0);
    } finally {
      await service.close(1000);
    }
  });

  it('a stored row that no longer fits (slots reduced at restart) ends in ERROR and the service starts', async () => {
    const dataDir = newDir('shrunk');
    const store = new ServiceStore(path.join(dataDir, 'dmfr.sqlite'));
    const config = loadConfig({ preset: 'quick', nproc: 4 });
    for (const [id, states] of [['wide-queued', []], ['wide-running', ['STARTING', 'RUNNING']]] as const) {
      store.createExperiment({ id, name: id, config, priority: 0, nproc: 4, maxRestarts: 2, runDir: path.join(dataDir, 'experiments', id), checkpointPolicy: null });
      let from = 'QUEUED';
      for (const to of states) (store.transition(id, from as never, to as never), (from = to));
    }
    store.close();
    const { service, url } = await serveOn(dataDir, { cpuSlots: 2 });
    try {
      for (const id of ['wide-queued', 'wide-running']) {
        const row = (await call(`${url}/experiments/${id}`, 'GET')).json;
        expect(row.state, id).toBe('ERROR');
        expect(row.cause).toMatch(/no longer fits this host: train\.nproc: asks for 4 ranks.*this host has 2/);
      }
    } finally {
      await service.close(1000);
    }
  });
});

describe('item 7: input sizes and types', () => {
  let service: Service;
  let url: string;
  beforeAll(async () => ({ service, url } = await serveOn(newDir('sizes'))));
  afterAll(() => service.close(1000));

  it('answers 400 invalid_request to integer query values beyond 2^53 − 1 or Infinity', async () => {
    const { store } = service;
    store.createExperiment({ id: 'e-1', name: 'e', config: {}, priority: 0, nproc: 1, maxRestarts: 0, runDir: path.join(root, 'x'), checkpointPolicy: null });
    service.scheduler.dequeue('e-1');
    for (const q of [
      '/experiments?limit=Infinity',
      '/experiments?offset=9223372036854775808',
      '/experiments?offset=Infinity',
      '/experiments/e-1/events?limit=Infinity',
      '/experiments/e-1/events?after=9223372036854775808',
      '/experiments/e-1/metrics?from=1e400',
      '/experiments/e-1/checkpoints/9223372036854775808',
    ]) {
      const res = await call(url + q, 'GET');
      expect(res.status, q).toBe(400);
      expect(res.json.code, q).toBe('invalid_request');
    }
  });

  it('refuses a deeply nested body, too many set entries and a too large body with documented codes', async () => {
    const deep = (levels: number) => `{"config":${'{"a":'.repeat(levels)}1${'}'.repeat(levels)}}`;
    const nested = await call(`${url}/experiments`, 'POST', deep(10_000));
    expect(nested.status).toBe(400);
    expect(nested.json).toMatchObject({ code: 'invalid_request', message: 'body: nested deeper than 32 levels' });
    const issues = await call(`${url}/experiments`, 'POST', deep(100_000)); // the issue's body: 500 kB
    expect(issues.status).toBe(413);
    expect(issues.json.code).toBe('payload_too_large');
    const many = await call(`${url}/experiments`, 'POST', { preset: 'quick', set: Array.from({ length: 300 }, () => 'train.steps=5') });
    expect(many.status).toBe(400);
    expect(many.json.message).toMatch(/body\.set: must NOT have more than 256 items/);
    // the issue's 1 MB body of 50,000 entries: refused before it is parsed
    const huge = await call(`${url}/experiments`, 'POST', { preset: 'quick', set: Array.from({ length: 50_000 }, () => 'train.steps=5.0000000') });
    expect(huge.status).toBe(413);
    expect(huge.json.code).toBe('payload_too_large');
    expect((await call(`${url}/health`, 'GET')).status).toBe(200);
  });

  it('does not coerce or accept out-of-range numbers in bodies, and validates the resolved config', async () => {
    for (const [body, where] of [
      [{ preset: 'quick', steps: 9223372036854775808 }, 'body.steps'],
      [{ preset: 'quick', steps: true }, 'body.steps'],
      [{ preset: 'quick', steps: '5' }, 'body.steps'],
      [{ preset: 'quick', priority: 1e300 }, 'body.priority'],
      [{ preset: 'quick', max_restarts: false }, 'body.max_restarts'],
    ] as const) {
      const res = await call(`${url}/experiments`, 'POST', body);
      expect(res.status, JSON.stringify(body)).toBe(400);
      expect(res.json.code).toBe('invalid_request');
      expect(res.json.message).toContain(where);
    }
    const viaConfig = await call(`${url}/experiments`, 'POST', { preset: 'quick', config: { train: { steps: 9223372036854775808 } } });
    expect(viaConfig.status).toBe(400);
    expect(viaConfig.json).toMatchObject({ code: 'invalid_config', message: expect.stringMatching(/^train\.steps: 9223372036854776000 is beyond 2\^53/) });
    const viaSet = await call(`${url}/experiments`, 'POST', { preset: 'quick', set: ['train.steps=9223372036854775808'] });
    expect(viaSet.status).toBe(400);
    expect(viaSet.json.code).toBe('invalid_config');
    expect((await call(`${url}/experiments`, 'GET')).json.total).toBe(1); // only the seeded row
  });
});

describe('item 10: loopback, Fastify error codes, 405, --host without a token', () => {
  it('parses the address instead of testing a prefix', () => {
    for (const h of ['127.0.0.1', '127.3.2.1', '::1', '[::1]', '::ffff:127.0.0.1', 'localhost']) expect(isLoopback(h), h).toBe(true);
    for (const h of ['127.0.0.1.nip.io', '127.evil.example', '0.0.0.0', '::', '10.0.0.1', '::ffff:10.0.0.1']) expect(isLoopback(h), h).toBe(false);
  });

  it('maps Fastify\'s own 4xx to documented codes and answers 405 for a known path', async () => {
    const { service, url } = await serveOn(newDir('codes'));
    try {
      const broken = await call(`${url}/experiments`, 'POST', '{"preset": ');
      expect(broken.status).toBe(400);
      expect(broken.json.code).toBe('invalid_request');
      const empty = await call(`${url}/experiments`, 'POST', '');
      expect(empty.status).toBe(400);
      expect(empty.json.code).toBe('invalid_request');
      const text = await call(`${url}/experiments`, 'POST', 'preset=quick', { 'content-type': 'text/csv' });
      expect(text.status).toBe(415);
      expect(text.json.code).toBe('unsupported_media_type');
      const patch = await call(`${url}/experiments/exp-1`, 'PATCH', { name: 'x' });
      expect(patch.status).toBe(405);
      expect(patch.json.code).toBe('method_not_allowed');
      expect(patch.headers.get('allow')).toBe('GET, HEAD, DELETE');
      const put = await call(`${url}/experiments`, 'PUT', {});
      expect(put.status).toBe(405);
      expect(put.headers.get('allow')).toBe('POST, GET, HEAD');
      expect((await call(`${url}/no/such/thing`, 'PATCH', {})).status).toBe(404);
      for (const r of [broken, empty, text, patch]) expect(ERROR_CODES).toContain(r.json.code);
    } finally {
      await service.close(1000);
    }
  });

  it('dmfr serve --host 0.0.0.0 without a token exits 2 with one line saying what to do', async () => {
    const { code, said } = await dmfr(['serve', '--host', '0.0.0.0', '--port', '0', '--data-dir', newDir('open')], { DMFR_TOKEN: '' });
    expect(code).toBe(2);
    expect(said.trim().split('\n')).toEqual(['dmfr serve: refusing to listen on 0.0.0.0 without a token: set DMFR_TOKEN or pass --token-file FILE (listening off loopback needs one)']);
  }, 60_000);
});

describe('item 4: the token', () => {
  it('is redacted from the log when its query key is percent-encoded', async () => {
    let out = '';
    const sink = new Writable({ write: (c, _e, cb) => ((out += c.toString()), cb()) });
    const { service, url } = await serveOn(newDir('redact'), { token: 'SECRET-TOKEN-456', logger: pino({ level: 'info', redact: REDACT }, sink) });
    expect((await call(`${url}/experiments?access%5Ftoken=SECRET-TOKEN-456&limit=5`, 'GET')).status).toBe(200);
    expect((await call(`${url}/experiments?%61ccess_token=SECRET-TOKEN-456`, 'GET')).status).toBe(200);
    expect((await call(`${url}/experiments?access%5Ftoken=WRONG-ONE-789`, 'GET')).status).toBe(401);
    await service.close(1000);
    expect(out).toContain('access%5Ftoken=[Redacted]&limit=5');
    expect(out).not.toContain('SECRET-TOKEN-456');
    expect(out).not.toContain('WRONG-ONE-789');
  });

  it('comes from --token-file; --token still works with a warning', async () => {
    const file = path.join(newDir('tok'), 'token');
    writeFileSync(file, 'FILE-TOKEN-1\n');
    const started = await dmfr(['serve', '--port', '0', '--data-dir', newDir('tokdata'), '--token-file', file], { DMFR_TOKEN: '' }, /listening on (http:\/\/\S+)/);
    try {
      const url = /listening on (http:\/\/\S+)/.exec(started.said)![1]!;
      expect((await call(`${url}/experiments`, 'GET')).status).toBe(401);
      expect((await call(`${url}/experiments`, 'GET', undefined, { authorization: 'Bearer FILE-TOKEN-1' })).status).toBe(200);
      expect(started.said).not.toContain('dmfr serve: warning');
    } finally {
      started.proc.kill('SIGTERM');
    }
    const legacy = await dmfr(['serve', '--port', '0', '--data-dir', newDir('tokdata'), '--token', 'T'], {}, /listening on/);
    legacy.proc.kill('SIGTERM');
    expect(legacy.said).toContain('dmfr serve: warning: --token puts the token in the process list (ps); use --token-file FILE or DMFR_TOKEN');
  }, 60_000);
});

describe.skipIf(!HAVE_PYTHON)('items 5 and 6: paths, evaluation arguments, the Python verbs\' JSON', () => {
  let service: Service;
  let url: string;
  let dataDir: string;
  let inputs: string;
  beforeAll(async () => {
    dataDir = newDir('eval');
    inputs = path.join(dataDir, 'inputs');
    mkdirSync(inputs);
    const out = execFileSync(PYTHON, [path.join(REPO_ROOT, 'test/python/eval_inputs.py'), inputs], {
      cwd: REPO_ROOT,
      env: { ...process.env, PYTHONPATH: `${path.join(REPO_ROOT, 'python')}:${path.join(REPO_ROOT, 'test/python')}` },
      encoding: 'utf8',
      timeout: 120_000,
    });
    const { checkpoint } = JSON.parse(out.trim().split('\n').at(-1)!) as { checkpoint: string };
    ({ service, url } = await serveOn(dataDir));
    const config = loadConfig({ preset: 'quick' });
    service.store.createExperiment({ id: 'exp-ev', name: 'ev', config, priority: 0, nproc: 1, maxRestarts: 0, runDir: path.join(dataDir, 'experiments', 'exp-ev'), checkpointPolicy: null });
    service.scheduler.dequeue('exp-ev');
    service.store.addCheckpoint('exp-ev', { step: 3, path: checkpoint, bytes: 1 });
  }, 180_000);
  afterAll(() => service.close(1000));

  it('confines dataset paths to the data roots and never echoes file contents', async () => {
    const passwd = await call(`${url}/datasets`, 'POST', { name: 'pw', path: '../../../../../../../../etc/passwd' });
    expect(passwd.status).toBe(400);
    expect(passwd.json.message).toMatch(/^path: \.\.\/.*etc\/passwd lies outside the data roots/);
    expect(passwd.text).not.toContain('root:');
    const absolute = await call(`${url}/datasets`, 'POST', { name: 'pw', path: '/etc/passwd' });
    expect(absolute.status).toBe(400);
    symlinkSync('/etc', path.join(dataDir, 'etc-link'));
    const viaLink = await call(`${url}/datasets`, 'POST', { name: 'pw', path: 'etc-link/passwd' });
    expect(viaLink.status).toBe(400);
    expect(viaLink.json.message).toContain('lies outside the data roots');
    // inside the roots but not a dataset: the type of the error, not the line that failed
    writeFileSync(path.join(dataDir, 'secret.txt'), 'SECRET-LINE-CONTENT 1 2 3\n');
    const secret = await call(`${url}/datasets`, 'POST', { name: 's', path: 'secret.txt' });
    expect(secret.status).toBe(400);
    expect(secret.json.code).toBe('invalid_request');
    expect(secret.text).not.toContain('SECRET-LINE-CONTENT');
  }, 120_000);

  it('registers a real dataset through dmfr data inspect --json', async () => {
    const res = await call(`${url}/datasets`, 'POST', { name: 'faces', path: 'inputs/faces' });
    expect(res.status, res.text).toBe(201);
    expect(res.json.info).toMatchObject({ problem_count: 0 });
    expect((await call(`${url}/datasets/faces`, 'GET')).json.path).toBe(path.join(inputs, 'faces'));
  }, 120_000);

  it('takes typed evaluation arguments, not a pass-through', async () => {
    const ev = `${url}/experiments/exp-ev/evaluations`;
    const out = await call(ev, 'POST', { protocol: 'verification', args: { bin: 'inputs/tiny.bin', out: '/tmp/anywhere' } });
    expect(out.status).toBe(400);
    expect(out.json.message).toBe("body.args: unknown field 'out'");
    const legacy = await call(ev, 'POST', { protocol: 'verification', args: ['--bin', 'x', '--out', '/tmp'] });
    expect(legacy.status).toBe(400);
    const outside = await call(ev, 'POST', { protocol: 'verification', args: { bin: '/etc/passwd' } });
    expect(outside.status).toBe(400);
    expect(outside.json.message).toMatch(/^args\.bin: \/etc\/passwd lies outside the data roots/);
    const wrong = await call(ev, 'POST', { protocol: 'verification', args: { media: 'inputs/media.txt' } });
    expect(wrong.json.message).toMatch(/^args\.media: not an option of verification/);
    const missing = await call(ev, 'POST', { protocol: 'templates', args: { media: 'inputs/media.txt' } });
    expect(missing.json.message).toBe('args.pairs: required by templates');
    expect((await call(ev, 'GET')).json).toEqual([]);
  });

  it('runs verification and templates evaluations to a stored result', async () => {
    const ev = `${url}/experiments/exp-ev/evaluations`;
    const v = await call(ev, 'POST', { protocol: 'verification', args: { bin: 'inputs/tiny.bin', folds: 2 } });
    expect(v.status, v.text).toBe(201);
    const t = await call(ev, 'POST', { protocol: 'templates', args: { media: 'inputs/media.txt', pairs: 'inputs/pairs.txt', images: 'inputs/images' } });
    expect(t.status, t.text).toBe(201);
    let rows: { id: string; status: string; result: Record<string, unknown> | null; error: string | null }[] = [];
    const poll = async () => (rows = (await call(ev, 'GET')).json as never);
    for (let i = 0; i < 340 && !(rows.length === 2 && rows.every((r) => r.status !== 'running')); i++) {
      await poll();
      await new Promise((r) => setTimeout(r, 500));
    }
    const byId = new Map(rows.map((r) => [r.id, r]));
    const verification = byId.get(v.json.id as string)!;
    expect(verification.error).toBeNull();
    expect(verification).toMatchObject({ status: 'completed', result: { n_pairs: 8, n_same: 4, folds: expect.any(Array) } });
    const templates = byId.get(t.json.id as string)!;
    expect(templates.error).toBeNull();
    expect(templates).toMatchObject({ status: 'completed', result: { n_templates: 4, n_pairs: 6, tar_at_far: expect.any(Object) } });
  }, 180_000);
});

describe.skipIf(!HAVE_PYTHON)('item 8: deterministic failures are not retried', () => {
  it('a rank\'s DataError ends the experiment at once with the cause, after one launch', async () => {
    const dataDir = newDir('nodata');
    const empty = path.join(dataDir, 'empty-faces');
    mkdirSync(empty);
    const { service, url } = await serveOn(dataDir);
    try {
      const created = await call(`${url}/experiments`, 'POST', {
        preset: 'quick',
        nproc: 1,
        max_restarts: 2,
        config: { data: { kind: 'folder', path: empty } },
        set: ['runtime.controller_timeout_s=5', 'runtime.stop_grace_s=3'],
      });
      expect(created.status, created.text).toBe(201);
      const id = created.json.id as string;
      let row: Record<string, unknown> = {};
      for (let i = 0; i < 600 && row.state !== 'ERROR'; i++) {
        row = (await call(`${url}/experiments/${id}`, 'GET')).json;
        await new Promise((r) => setTimeout(r, 200));
      }
      expect(row.state).toBe('ERROR');
      expect(row.restarts).toBe(0);
      expect(row.cause).toMatch(/DataError: .*no images found.*\(a configuration or data error: not restarted\)/);
      const states = ((await call(`${url}/experiments/${id}/events`, 'GET')).json as unknown as { kind: string; data: { to: string } }[])
        .filter((e) => e.kind === 'state')
        .map((e) => e.data.to);
      expect(states.filter((s) => s === 'STARTING')).toHaveLength(1);
      expect(states).not.toContain('RESTARTING');
    } finally {
      await service.close(5000);
    }
  }, 180_000);
});
