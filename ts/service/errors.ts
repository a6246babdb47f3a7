// Every error body the API returns: a stable machine-readable `code` and a human `message`.
import { Type } from '@sinclair/typebox';

export const ErrorBody = Type.Object(
  {
    code: Type.String({ description: 'stable error code, e.g. not_found, illegal_transition, invalid_request' }),
    message: Type.String(),
    state: Type.Optional(Type.String({ description: 'the current state, with illegal_transition' })),
  },
  { $id: 'Error' },
);

export class ApiError extends Error {
  constructor(
    readonly statusCode: number,
    readonly code: string,
    message: string,
    readonly extra: Record<string, unknown> = {},
  ) {
    super(message);
  }
}

export const notFound = (what: string, id: string) => new ApiError(404, 'not_found', `${what} ${id} does not exist`);
export const conflict = (message: string, state: string) => new ApiError(409, 'illegal_transition', message, { state });
export const badRequest = (message: string) => new ApiError(400, 'invalid_request', message);
