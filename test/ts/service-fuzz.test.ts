// Fuzzing the HTTP API from its own GET /openapi.json (issue #12, "Fuzzing in the suite"): a
// property-based generator (fast-check) turns each operation's parameter and body schemas into
// requests — values that fit the schema, values at and past its bounds, and arbitrary JSON in their
// place — and sends them to the real service on loopback. Every answer must be below 500, and every
// 4xx must carry a documented error code. Bounded by a run count and a time limit so CI stays fast.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import fc from 'fast-check';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ERROR_CODES } from '../../ts/service/errors.ts';
import { createService, type Service } from '../../ts/service/service.ts';

type Schema = Record<string, unknown> & {
  $ref?: string;
  type?: string | string[];
  enum?: unknown[];
  anyOf?: Schema[];
  oneOf?: Schema[];
  allOf?: Schema[];
  properties?: Record<string, Schema>;
  required?: string[];
  items?: Schema;
};
interface Parameter {
  in: 'path' | 'query' | 'header';
  name: string;
  required?: boolean;
  schema: Schema;
}
interface Operation {
  method: string;
  path: string;
  parameters: Parameter[];
  body: Schema | null;
}

const RUNS = 400;
const TIME_LIMIT_MS = 40_000;

/** Strings a careless or hostile client sends. */
const NASTY = ['', '.', '..', '../../../../etc/passwd', '/etc/passwd', 'exp-1', 'Infinity', 'NaN', '-1', '1e400', '9223372036854775808', 'true', 'a'.repeat(300), '%00', '{}'];
/** Numbers at and past the bounds a schema may have. */
const EDGES = [-1, 0, 1, 2 ** 31, 2 ** 53 - 1, 2 ** 53, 2 ** 63, -(2 ** 63), 1e300, -1e300, 0.5];

function arbitrary(schema: Schema | undefined, spec: { components?: { schemas?: Record<string, Schema> } }, depth = 0): fc.Arbitrary<unknown> {
  if (!schema || depth > 4) return fc.jsonValue({ maxDepth: 2 });
  if (schema.$ref) return arbitrary(spec.components?.schemas?.[schema.$ref.split('/').at(-1)!], spec, depth + 1);
  const wild = fc.oneof(fc.jsonValue({ maxDepth: 2 }), fc.constantFrom<unknown>(...NASTY, ...EDGES, null, true, [], {}));
  let fitting: fc.Arbitrary<unknown>;
  if (schema.enum) fitting = fc.constantFrom(...schema.enum);
  else if (schema.anyOf || schema.oneOf) fitting = fc.oneof(...(schema.anyOf ?? schema.oneOf)!.map((s) => arbitrary(s, spec, depth + 1)));
  else if (schema.allOf) fitting = arbitrary(Object.assign({}, ...schema.allOf), spec, depth + 1);
  else {
    switch ([schema.type].flat()[0]) {
      case 'string':
        fitting = fc.oneof(fc.string({ maxLength: 40 }), fc.constantFrom(...NASTY));
        break;
      case 'integer':
        fitting = fc.oneof(fc.integer({ min: -1000, max: 100_000 }), fc.constantFrom(...EDGES));
        break;
      case 'number':
        fitting = fc.oneof(fc.double({ noNaN: true, noDefaultInfinity: true }), fc.constantFrom(...EDGES));
        break;
      case 'boolean':
        fitting = fc.boolean();
        break;
      case 'null':
        fitting = fc.constant(null);
        break;
      case 'array':
        fitting = fc.array(arbitrary(schema.items, spec, depth + 1), { maxLength: 4 });
        break;
      case 'object': {
        const props = schema.properties ?? {};
        const record = fc.record(
          Object.fromEntries(Object.entries(props).map(([k, s]) => [k, arbitrary(s, spec, depth + 1)])),
          { requiredKeys: (schema.required ?? []).filter((k) => k in props) },
        );
        fitting = fc.oneof({ weight: 4, arbitrary: record }, { weight: 1, arbitrary: fc.tuple(record, fc.string({ maxLength: 8 })).map(([r, k]) => ({ ...r, [`x${k}`]: 1 })) });
        break;
      }
      default:
        fitting = fc.jsonValue({ maxDepth: 3 });
    }
  }
  return fc.oneof({ weight: 5, arbitrary: fitting }, { weight: 1, arbitrary: wild });
}

function operations(spec: { paths: Record<string, Record<string, { parameters?: Parameter[]; requestBody?: { content?: Record<string, { schema: Schema }> } }>> }): Operation[] {
  const ops: Operation[] = [];
  for (const [p, methods] of Object.entries(spec.paths)) {
    for (const [method, op] of Object.entries(methods)) {
      if (!['get', 'post', 'put', 'delete', 'patch'].includes(method)) continue;
      ops.push({ method: method.toUpperCase(), path: p, parameters: op.parameters ?? [], body: op.requestBody?.content?.['application/json']?.schema ?? null });
    }
  }
  return ops;
}

const asText = (v: unknown) => (typeof v === 'string' ? v : JSON.stringify(v));

describe('the HTTP API under generated requests', () => {
  let service: Service;
  let base: string;
  const dataDir = mkdtempSync(path.join(tmpdir(), 'dmfr-fuzz-'));
  beforeAll(async () => {
    service = await createService({ dataDir, cpuSlots: 1, logger: pino({ level: 'silent' }) });
    // The host's only device is busy, so an experiment the fuzzer creates validly stays QUEUED
    // (strict-order queue) and no ranks start.
    service.scheduler.adopt('fuzz-busy', [0]);
    await service.app.listen({ host: '127.0.0.1', port: 0 });
    base = `http://127.0.0.1:${(service.app.server.address() as { port: number }).port}`;
  });
  afterAll(async () => {
    await service.close(1000);
    rmSync(dataDir, { recursive: true, force: true });
  });

  it('never answers 5xx, and every 4xx carries a documented error code', async () => {
    const spec = (await (await fetch(`${base}/openapi.json`)).json()) as Parameters<typeof operations>[0] & { components?: { schemas?: Record<string, Schema> } };
    const ops = operations(spec);
    expect(ops.length).toBeGreaterThan(15);
    const request = fc.constantFrom(...ops).chain((op) =>
      fc.record({
        op: fc.constant(op),
        params: fc.record(Object.fromEntries(op.parameters.filter((p) => p.in !== 'header').map((p) => [p.name, arbitrary(p.schema, spec)])), {
          requiredKeys: op.parameters.filter((p) => p.in === 'path').map((p) => p.name),
        }),
        body: op.body ? fc.oneof({ weight: 6, arbitrary: arbitrary(op.body, spec) }, { weight: 1, arbitrary: fc.string({ maxLength: 30 }) }) : fc.constant(undefined),
      }),
    );
    const seen = new Map<number, number>();
    const seed = Number(process.env.DMFR_FUZZ_SEED ?? Date.now() % 2 ** 31);
    await fc.assert(
      fc.asyncProperty(request, async ({ op, params, body }) => {
        let url = op.path;
        const query = new URLSearchParams();
        for (const p of op.parameters) {
          const value = (params as Record<string, unknown>)[p.name];
          if (p.in === 'path') url = url.replace(`{${p.name}}`, encodeURIComponent(asText(value)) || '%20');
          else if (p.in === 'query' && value !== undefined) query.set(p.name, asText(value));
        }
        const qs = query.toString();
        const res = await fetch(`${base}${url}${qs ? `?${qs}` : ''}`, {
          method: op.method,
          headers: body === undefined ? {} : { 'content-type': 'application/json' },
          // a generated string body is sent as is (often not JSON); anything else as JSON
          body: body === undefined ? undefined : typeof body === 'string' ? body : JSON.stringify(body),
        });
        const text = await res.text();
        seen.set(res.status, (seen.get(res.status) ?? 0) + 1);
        const where = `${op.method} ${url}${qs ? `?${qs}` : ''} ${body === undefined ? '' : asText(body).slice(0, 300)} → ${res.status} ${text.slice(0, 300)}`;
        expect(res.status, where).toBeLessThan(500);
        if (res.status >= 400) expect(ERROR_CODES, where).toContain(JSON.parse(text).code);
      }),
      { numRuns: RUNS, interruptAfterTimeLimit: TIME_LIMIT_MS, seed },
    );
    const total = [...seen.values()].reduce((a, b) => a + b, 0);
    console.info(`service fuzz: ${total} requests (seed ${seed}, rerun with DMFR_FUZZ_SEED), by status ${JSON.stringify(Object.fromEntries([...seen].sort()))}`);
    // The generator reached past validation too (2xx), not only 400s.
    expect([...seen.keys()].some((s) => s < 300), JSON.stringify(Object.fromEntries(seen))).toBe(true);
  }, 120_000);
});
