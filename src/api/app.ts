import { randomUUID } from 'node:crypto';
import { STATUS_CODES } from 'node:http';
import cors from '@fastify/cors';
import helmet from '@fastify/helmet';
import swagger from '@fastify/swagger';
import swaggerUi from '@fastify/swagger-ui';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import Fastify, {
  LogController,
  type FastifyBaseLogger,
  type FastifyInstance,
  type RawReplyDefaultExpression,
  type RawRequestDefaultExpression,
  type RawServerDefault,
} from 'fastify';
import type { Redis } from 'ioredis';
import type { Registry } from 'prom-client';
import type { ApiConfig, AppConfig, Scope } from '../shared/config.js';
import { ServiceError } from '../shared/errors.js';
import type { Influx } from '../shared/influx.js';
import type { Logger } from '../shared/logger.js';
import { Counter, metric } from '../shared/metrics.js';
import type { RegistryStore } from '../shared/registry.js';
import { AuditLog } from './audit.js';
import { TokenAuth } from './auth.js';
import { createLimiters, tooManyRequests } from './rate-limit.js';
import { auditRoutes } from './routes/audit.js';
import { alertRoutes } from './routes/alerts.js';
import { billingRoutes } from './routes/billing.js';
import { customerRoutes } from './routes/customers.js';
import { healthRoutes } from './routes/health.js';
import { meterRoutes } from './routes/meters.js';
import { remoteReadRoutes } from './routes/remote-read.js';

export type ApiApp = FastifyInstance<RawServerDefault, RawRequestDefaultExpression, RawReplyDefaultExpression, FastifyBaseLogger, TypeBoxTypeProvider>;

/** What route plugins get; connections are opened by main.ts (or a test) and closed by it. */
export interface ApiDeps {
  config: AppConfig;
  log: Logger;
  metrics: Registry;
  redis: Redis;
  influx: Influx;
  registry: RegistryStore;
}

/**
 * A route plugin: `(app, deps) => Promise<void>`; `auth(scope)` is the preHandler for protected routes. buildApp
 * moves it to the route's onRequest hooks, so nothing of an unauthenticated request's body is read or parsed.
 */
export type RoutePlugin = (app: ApiApp, deps: ApiDeps & { auth: (scope?: Scope) => ReturnType<TokenAuth['require']>; audit: AuditLog }) => Promise<void>;

/** Route plugins, one per area; each area adds its own line. */
const ROUTES: RoutePlugin[] = [healthRoutes, customerRoutes, meterRoutes, alertRoutes, billingRoutes, remoteReadRoutes, auditRoutes];

/** Liveness, readiness and metrics: their own per-address rate limit, no token. */
const PROBES = new Set(['/healthz', '/readyz', '/metrics']);
const WRITES = new Set(['POST', 'PUT', 'PATCH', 'DELETE']);
const REFUSALS = new Set([401, 403, 429]);
/** Route parameters that name what a write is about, in the order looked for. */
const TARGET_PARAMS = ['id', 'meterId', 'period'] as const;

/** Longest path parameter (meter and alert ids are far shorter; longer: 414) and request head (431). */
const MAX_PARAM_LENGTH = 128;
const MAX_HEADER_BYTES = 16 * 1024;
/** The longest a request may take end to end (a remote read waits for its meter up to its own timeout first). */
const REQUEST_TIMEOUT_MS = 60_000;

/** A client error's own words; fastify's codes (FST_ERR_…) and errors thrown with a 4xx `statusCode` carry one. */
interface HttpishError extends Error {
  statusCode?: number;
  field?: unknown;
  validation?: Array<{ instancePath?: string; params?: unknown }>;
  validationContext?: string;
}

/** CSP for the JSON API: nothing may load, nothing may frame it. The docs pages send their own (below). */
const API_CSP = {
  useDefaults: false,
  directives: { defaultSrc: ["'none'"], baseUri: ["'none'"], formAction: ["'none'"], frameAncestors: ["'none'"] },
};

/** The first query or path parameter that validation coerced to a non-finite number, e.g. "querystring.limit". */
function nonFiniteField(parts: Record<string, unknown>): string | undefined {
  for (const [part, values] of Object.entries(parts)) {
    if (values === null || typeof values !== 'object') continue;
    for (const [name, v] of Object.entries(values)) {
      const items: unknown[] = Array.isArray(v) ? v : [v];
      if (items.some((x) => typeof x === 'number' && !Number.isFinite(x))) return `${part}.${name}`;
    }
  }
  return undefined;
}

function corsOrigin(origins: ApiConfig['corsOrigins']): string | string[] {
  return origins.includes('*') ? '*' : [...origins];
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

export async function buildApp(deps: ApiDeps, opts: { docs?: boolean } = {}): Promise<ApiApp> {
  const cfg = deps.config.api;
  const logger: FastifyBaseLogger = deps.log.child({ component: 'api' });
  const app: ApiApp = Fastify({
    loggerInstance: logger,
    logController: new LogController({ disableRequestLogging: true }),
    // Small for every route; the registry imports raise it on their own routes.
    bodyLimit: cfg.bodyLimit,
    routerOptions: { maxParamLength: MAX_PARAM_LENGTH },
    http: { maxHeaderSize: MAX_HEADER_BYTES },
    requestTimeout: REQUEST_TIMEOUT_MS,
    // Request ids are ours, random, and never taken from the client: a 5xx answer quotes one to find the log line.
    genReqId: () => randomUUID(),
    requestIdHeader: false,
    trustProxy: cfg.trustProxy.length > 0 ? [...cfg.trustProxy] : false,
    ajv: { customOptions: { coerceTypes: 'array', removeAdditional: false, allErrors: false } },
  }).withTypeProvider<TypeBoxTypeProvider>();

  app.addContentTypeParser('text/csv', { parseAs: 'string' }, (_req, body, done) => done(null, body));

  // The one error handler. Clients read 4xx messages; a 5xx says only that it failed and which request it was.
  // Bodies are serialised here, not by the route's response schema (a 400 of an import route is not an ImportResult).
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

  app.addHook('onRequest', async (req, reply) => {
    void reply.header('x-request-id', req.id);
  });

  // ajv coerces "1e999" to Infinity and then skips minimum/maximum for non-finite numbers: one check for every route,
  // after validation, so no Infinity reaches a page size, a timeout or a query.
  app.addHook('preHandler', async (req, reply) => {
    const field = nonFiniteField({ querystring: req.query, params: req.params });
    if (field !== undefined)
      return reply.code(400).send({ statusCode: 400, error: 'Bad Request', message: `${field.split('.')[1]}: expected a finite number`, field });
  });

  await app.register(helmet, { global: true, contentSecurityPolicy: API_CSP });
  if (cfg.corsOrigins.length > 0) {
    await app.register(cors, {
      origin: corsOrigin(cfg.corsOrigins),
      methods: ['GET', 'POST', 'HEAD'],
      allowedHeaders: ['authorization', 'content-type', 'accept'],
      exposedHeaders: ['retry-after', 'x-request-id', 'x-next-cursor'],
      maxAge: 600,
    });
  }

  const limiters = await createLimiters(app, cfg.rateLimit);
  app.addHook('onRequest', async (req, reply) => {
    const path = req.url.split('?', 1)[0] ?? '';
    const wait = await (PROBES.has(path) ? limiters.probes : limiters.address)(req);
    if (wait !== undefined) return tooManyRequests(reply, wait);
  });

  const audit = new AuditLog(deps.redis, deps.log.child({ component: 'api-audit' }), cfg.auditMaxLen);
  // Every authenticated write, whatever its outcome; refused tokens are logged (not audited), so a flood of them
  // cannot push real entries out of the capped stream.
  const refused = metric(
    deps.metrics,
    'meterflow_api_refused_total',
    () =>
      new Counter({
        name: 'meterflow_api_refused_total',
        help: 'API requests refused: 401 (no or unknown token), 403 (scope), 429 (rate limit)',
        labelNames: ['status'],
        registers: [deps.metrics],
      }),
  );
  app.addHook('onResponse', async (req, reply) => {
    if (REFUSALS.has(reply.statusCode)) refused.inc({ status: String(reply.statusCode) });
    if (!WRITES.has(req.method) || req.tokenId === undefined) return;
    const params: Record<string, unknown> = req.params !== null && typeof req.params === 'object' ? { ...req.params } : {};
    const target = TARGET_PARAMS.map((k) => params[k]).find((v) => typeof v === 'string');
    audit.record({
      ts: new Date().toISOString(),
      tokenId: req.tokenId,
      method: req.method,
      route: req.routeOptions.url ?? req.url.split('?', 1)[0] ?? '',
      target: typeof target === 'string' ? target : null,
      status: reply.statusCode,
      requestId: req.id,
      ip: req.ip,
    });
  });
  app.addHook('onClose', () => audit.flush());
  app.decorateRequest('tokenId', undefined);

  if (opts.docs !== false) {
    await app.register(swagger, {
      openapi: {
        info: { title: 'meterflow API', version: '1' },
        components: { securitySchemes: { bearer: { type: 'http', scheme: 'bearer' } } },
        security: [{ bearer: [] }],
      },
    });
    // The UI's own CSP (its scripts and styles by hash) replaces the API's on /docs. Without
    // upgrade-insecure-requests: the API is often reached over plain HTTP inside a network.
    await app.register(swaggerUi, {
      routePrefix: '/docs',
      staticCSP: true,
      transformStaticCSP: (header) => header.replace(/\s*upgrade-insecure-requests;?/, ''),
    });
  }

  const tokenAuth = new TokenAuth(cfg.tokens, { limiter: limiters.token });
  const authHooks = new WeakSet<object>();
  const auth = (scope?: Scope) => {
    const hook = tokenAuth.require(scope);
    authHooks.add(hook);
    return hook;
  };
  app.addHook('onRoute', (route) => {
    const pre = route.preHandler === undefined ? [] : Array.isArray(route.preHandler) ? route.preHandler : [route.preHandler];
    const moved = pre.filter((h) => authHooks.has(h));
    if (moved.length === 0) return;
    const on = route.onRequest === undefined ? [] : Array.isArray(route.onRequest) ? route.onRequest : [route.onRequest];
    route.preHandler = pre.filter((h) => !authHooks.has(h));
    // Before the body is read: an unauthenticated client cannot make the API parse an import-sized body.
    route.onRequest = [...on, ...moved];
  });
  const routeDeps = { ...deps, audit, auth };
  for (const plugin of ROUTES) await app.register(async (scoped) => plugin(scoped as ApiApp, routeDeps));
  return app;
}
