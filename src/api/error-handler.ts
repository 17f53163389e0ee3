import { STATUS_CODES } from 'node:http';
import type { FastifyInstance } from 'fastify';
import { ServiceError } from '../shared/errors.js';

/** A client error's own words; fastify's codes (FST_ERR_…) and errors thrown with a 4xx `statusCode` carry one. */
interface HttpishError extends Error {
  statusCode?: number;
  field?: unknown;
  validation?: Array<{ instancePath?: string; params?: unknown }>;
  validationContext?: string;
}

/** First failing field of a validation error, e.g. "querystring.from". */
function fieldOf(err: { validation?: Array<{ instancePath?: string; params?: unknown }>; validationContext?: string }): string | undefined {
  const v = err.validation?.[0];
  if (!v) return undefined;
  let path = (v.instancePath ?? '').replace(/^\//, '').replaceAll('/', '.');
  const params = v.params;
  if (!path && params !== null && typeof params === 'object' && 'requiredProperties' in params) {
    const req = (params as { requiredProperties?: unknown }).requiredProperties;
    if (Array.isArray(req) && typeof req[0] === 'string') path = req[0];
  }
  if (!path && params !== null && typeof params === 'object' && 'missingProperty' in params) {
    const mp = (params as { missingProperty?: unknown }).missingProperty;
    if (typeof mp === 'string') path = mp;
  }
  return [err.validationContext, path].filter(Boolean).join('.') || undefined;
}

/**
 * The one error handler. Clients read 4xx messages; a 5xx says only that it failed and which request it was.
 * Bodies are serialised here, not by the route's response schema (a 400 of an import route is not an ImportResult).
 */
export function addErrorHandler(app: FastifyInstance): void {
  app.setErrorHandler((err, req, reply) => {
    const e: HttpishError = err instanceof Error ? err : new Error(String(err));
    void reply.serializer(JSON.stringify).type('application/json; charset=utf-8');
    if (e.validation) {
      const field = fieldOf(e);
      return reply.code(400).send({ statusCode: 400, error: 'Bad Request', message: e.message, ...(field ? { field } : {}) });
    }
    if (err instanceof ServiceError) {
      req.log.warn({ err }, 'dependency unavailable');
      return reply.code(503).send({ statusCode: 503, error: 'Service Unavailable', message: 'a backing service is unavailable, retry later' });
    }
    const status = typeof e.statusCode === 'number' && e.statusCode >= 400 && e.statusCode <= 599 ? e.statusCode : 500;
    if (status >= 500) {
      req.log.error({ err, route: req.routeOptions.url, method: req.method }, 'request failed');
      return reply
        .code(status)
        .send({ statusCode: status, error: STATUS_CODES[status] ?? 'Internal Server Error', message: `internal error (request ${req.id})` });
    }
    const field = typeof e.field === 'string' ? e.field : undefined;
    return reply.code(status).send({ statusCode: status, error: STATUS_CODES[status] ?? 'Error', message: e.message, ...(field ? { field } : {}) });
  });
}
