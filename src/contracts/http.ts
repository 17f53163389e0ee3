import { Type, type Static } from 'typebox';

/** The body of every API error (4xx, and 5xx without internals): fastify's shape, plus the offending field when one is to blame. */
export const ErrorBody = Type.Object({
  statusCode: Type.Integer(),
  error: Type.String(),
  message: Type.String(),
  field: Type.Optional(Type.String()),
});
export type ErrorBody = Static<typeof ErrorBody>;
