import { Type } from 'typebox';
import { ErrorBody } from '../../contracts/http.js';
import type { RoutePlugin } from '../app.js';
import { AuditEntry } from '../audit.js';

/** The audit log of writes (scope admin), newest first. */
export const auditRoutes: RoutePlugin = async (app, deps) => {
  app.get(
    '/api/v1/audit',
    {
      preHandler: deps.auth('admin'),
      schema: {
        tags: ['audit'],
        summary: 'Audit log: every authenticated write (token id, route, target, status, time), newest first',
        querystring: Type.Object({
          limit: Type.Integer({ minimum: 1, maximum: 1000, default: 100 }),
          cursor: Type.Optional(Type.String({ pattern: '^\\d{1,15}-\\d{1,10}$', description: 'nextCursor of the previous page' })),
        }),
        response: { 200: Type.Object({ items: Type.Array(AuditEntry), nextCursor: Type.Union([Type.String(), Type.Null()]) }), 400: ErrorBody },
      },
    },
    async (req) => {
      return deps.audit.list(req.query.limit, req.query.cursor);
    },
  );
};
