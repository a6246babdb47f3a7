// Every error body the API returns: a stable machine-readable `code` and a human `message`.
import { Type } from '@sinclair/typebox';

/** The documented error codes (docs/service.md); no other code reaches a client. */
export const ERROR_CODES = [
  'invalid_request',
  'invalid_config',
  'not_found',
  'method_not_allowed',
  'illegal_transition',
  'not_joinable',
  'unauthorized',
  'forbidden',
  'exists',
  'payload_too_large',
  'unsupported_media_type',
  'not_ready',
  'internal',
] as const;
export type ErrorCode = (typeof ERROR_CODES)[number];

export const ErrorBody = Type.Object(
  {
    code: Type.String({ description: 'stable error code, e.g. not_found, illegal_transition, invalid_request', enum: [...ERROR_CODES] }),
    message: Type.String(),
    state: Type.Optional(Type.String({ description: 'the current state, with illegal_transition' })),
  },
  { $id: 'Error' },
);

export class ApiError extends Error {
  constructor(
    readonly statusCode: number,
    readonly code: ErrorCode,
    message: string,
    readonly extra: Record<string, unknown> = {},
  ) {
    super(message);
  }
}

/** A 4xx raised by Fastify itself (FST_ERR_CTP_*, …) as one of the documented codes. */
export function fromFastifyError(statusCode: number, message: string): ApiError {
  if (statusCode === 413) return new ApiError(413, 'payload_too_large', message);
  if (statusCode === 415) return new ApiError(415, 'unsupported_media_type', message);
  if (statusCode === 404) return new ApiError(404, 'not_found', message);
  return new ApiError(400, 'invalid_request', message);
}

export const notFound = (what: string, id: string) => new ApiError(404, 'not_found', `${what} ${id} does not exist`);
export const conflict = (message: string, state: string) => new ApiError(409, 'illegal_transition', message, { state });
export const badRequest = (message: string) => new ApiError(400, 'invalid_request', message);
