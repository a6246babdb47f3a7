// Request validation limits of the HTTP API (issue #12, item 7): what a request may be before any
// route sees it.
//
// - Bodies are validated without type coercion (`"steps": true` is not the integer 1), while query
//   strings and path parameters, which are text on the wire, are coerced ('3' → 3). Fastify applies
//   one Ajv option set to every part by default; this validator factory keeps one Ajv instance per
//   option set (@fastify/ajv-compiler's pool, the same compiler Fastify uses by default).
// - JSON bodies are parsed only up to MAX_JSON_DEPTH levels of nesting: a deeply nested body would
//   otherwise overflow the stack of the recursive code after the parser (a RangeError, a 500).
import AjvCompiler from '@fastify/ajv-compiler';
import type { FastifyInstance } from 'fastify';
import { ApiError } from './errors.ts';

/** Nesting depth of a JSON body (objects and arrays); a run config is 3 levels deep. */
export const MAX_JSON_DEPTH = 32;
/** Largest request body, bytes. A create request with a full config is a few KiB. */
export const BODY_LIMIT = 256 * 1024;

const SHARED = { removeAdditional: false, useDefaults: true, allErrors: false } as const;

/** Fastify's `schemaController.compilersFactory.buildValidator`: bodies strict, the rest coerced. */
export function partAwareValidator() {
  const pool = AjvCompiler();
  return (externalSchemas: unknown, options: { customOptions?: Record<string, unknown> }) => {
    const strict = pool(externalSchemas as never, { ...options, customOptions: { ...options.customOptions, ...SHARED, coerceTypes: false } } as never);
    const coercing = pool(externalSchemas as never, { ...options, customOptions: { ...options.customOptions, ...SHARED, coerceTypes: 'array' } } as never);
    return (route: { schema: unknown; method: string; url: string; httpPart?: string }) =>
      route.httpPart === 'body' ? strict(route as never) : finiteOnly(coercing(route as never) as never);
  };
}

type Validate = ((data: unknown) => boolean) & { errors?: unknown[] | null };

/** Ajv coerces the text 'Infinity' (and '1e400') to a number that passes `integer` and `maximum`;
 *  a coerced query or path value must also be finite. */
function finiteOnly(validate: Validate): Validate {
  const checked: Validate = (data) => {
    if (!validate(data)) {
      checked.errors = validate.errors;
      return false;
    }
    for (const [key, value] of Object.entries(data ?? {})) {
      if (typeof value === 'number' && !Number.isFinite(value)) {
        checked.errors = [{ instancePath: `/${key}`, schemaPath: '#/finite', keyword: 'finite', params: {}, message: 'must be a finite number' }];
        return false;
      }
    }
    checked.errors = null;
    return true;
  };
  return checked;
}

/** The deepest nesting of objects/arrays in JSON text, counted without parsing (strings skipped). */
export function jsonDepth(text: string, stopAbove = Number.POSITIVE_INFINITY): number {
  let depth = 0;
  let deepest = 0;
  let inString = false;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (inString) {
      if (c === 0x5c) i++; // backslash: skip the escaped character
      else if (c === 0x22) inString = false;
    } else if (c === 0x22) inString = true;
    else if (c === 0x7b || c === 0x5b) {
      if (++depth > deepest) deepest = depth;
      if (deepest > stopAbove) return deepest;
    } else if (c === 0x7d || c === 0x5d) depth--;
  }
  return deepest;
}

/** Replaces Fastify's JSON parser with one that refuses bodies nested deeper than MAX_JSON_DEPTH. */
export function registerJsonParser(app: FastifyInstance): void {
  const parseJson = app.getDefaultJsonParser('error', 'error');
  app.removeContentTypeParser('application/json');
  app.addContentTypeParser('application/json', { parseAs: 'string', bodyLimit: BODY_LIMIT }, (_req, body, done) => {
    const text = body as string;
    if (text.length === 0) return done(new ApiError(400, 'invalid_request', 'body: empty; send a JSON object'), undefined);
    if (jsonDepth(text, MAX_JSON_DEPTH) > MAX_JSON_DEPTH) {
      return done(new ApiError(400, 'invalid_request', `body: nested deeper than ${MAX_JSON_DEPTH} levels`), undefined);
    }
    parseJson(_req, text, done);
  });
}
