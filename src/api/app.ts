import { randomUUID } from 'node:crypto';
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
import type { Registry } from 'prom-client';
import type { AppConfig } from '../shared/config.js';
import type { ApiConfig, Scope } from '../shared/config-api.js';
import type { Influx } from '../shared/influx.js';
import type { Logger } from '../shared/logger.js';
import type { RegistryStore } from '../shared/registry.js';
import type { AuditLog } from './audit.js';
import { auditResponses } from './audit-hook.js';
import { TokenAuth } from './auth.js';
import { addErrorHandler } from './error-handler.js';
import { auditRoutes } from './routes/audit.js';
import { alertRoutes } from './routes/alerts.js';
import { billingRoutes } from './routes/billing.js';
import { consoleRoutes } from './routes/console.js';
import { customerRoutes } from './routes/customers.js';
import { drRoutes } from './routes/dr.js';
import { healthRoutes } from './routes/health.js';
import { insightRoutes } from './routes/insights.js';
import { meterRoutes } from './routes/meters.js';
import { profileRoutes } from './routes/profiles.js';
import { remoteReadRoutes } from './routes/remote-read.js';
import { registerSecurity } from './security.js';
import type { RedisClient } from '../shared/redis.js';

export type ApiApp = FastifyInstance<RawServerDefault, RawRequestDefaultExpression, RawReplyDefaultExpression, FastifyBaseLogger, TypeBoxTypeProvider>;

/** What route plugins get; connections are opened by main.ts (or a test) and closed by it. */
export interface ApiDeps {
  config: AppConfig;
  log: Logger;
  metrics: Registry;
  redis: RedisClient;
  influx: Influx;
  registry: RegistryStore;
}

/**
 * A route plugin: `(app, deps) => Promise<void>`; `auth(scope)` is the preHandler for protected routes. buildApp
 * moves it to the route's onRequest hooks, so nothing of an unauthenticated request's body is read or parsed.
 */
export type RoutePlugin = (app: ApiApp, deps: ApiDeps & { auth: (scope?: Scope) => ReturnType<TokenAuth['require']>; audit: AuditLog }) => Promise<void>;

/** Route plugins, one per area; each area adds its own line. */
const ROUTES: RoutePlugin[] = [
  healthRoutes,
  customerRoutes,
  meterRoutes,
  alertRoutes,
  billingRoutes,
  insightRoutes,
  profileRoutes,
  drRoutes,
  remoteReadRoutes,
  auditRoutes,
  consoleRoutes,
];

/** Longest path parameter (meter and alert ids are far shorter; longer: 414) and request head (431). */
const MAX_PARAM_LENGTH = 128;
const MAX_HEADER_BYTES = 16 * 1024;
/** The longest a request may take end to end (a remote read waits for its meter up to its own timeout first). */
const REQUEST_TIMEOUT_MS = 60_000;

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

/** The Fastify instance with its limits; nothing registered yet. */
function createFastify(cfg: ApiConfig, log: Logger): ApiApp {
  const logger: FastifyBaseLogger = log.child({ component: 'api' });
  return Fastify({
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
}

/** Every answer names its request; no non-finite number passes validation. */
function addRequestChecks(app: ApiApp): void {
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
}

/** The OpenAPI document and its UI on /docs. */
async function registerDocs(app: ApiApp): Promise<void> {
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

/**
 * The `auth(scope)` given to route plugins: a preHandler, which every route registered after this moves to its
 * onRequest hooks.
 */
function authOnRequest(app: ApiApp, tokenAuth: TokenAuth): (scope?: Scope) => ReturnType<TokenAuth['require']> {
  const authHooks = new WeakSet<object>();
  app.addHook('onRoute', (route) => {
    const pre = route.preHandler === undefined ? [] : Array.isArray(route.preHandler) ? route.preHandler : [route.preHandler];
    const moved = pre.filter((h) => authHooks.has(h));
    if (moved.length === 0) return;
    const on = route.onRequest === undefined ? [] : Array.isArray(route.onRequest) ? route.onRequest : [route.onRequest];
    route.preHandler = pre.filter((h) => !authHooks.has(h));
    // Before the body is read: an unauthenticated client cannot make the API parse an import-sized body.
    route.onRequest = [...on, ...moved];
  });
  return (scope) => {
    const hook = tokenAuth.require(scope);
    authHooks.add(hook);
    return hook;
  };
}

export async function buildApp(deps: ApiDeps, opts: { docs?: boolean } = {}): Promise<ApiApp> {
  const cfg = deps.config.api;
  const app = createFastify(cfg, deps.log);
  app.addContentTypeParser('text/csv', { parseAs: 'string' }, (_req, body, done) => done(null, body));
  addErrorHandler(app);
  addRequestChecks(app);
  const limiters = await registerSecurity(app, cfg);
  const audit = auditResponses(app, deps, cfg.auditMaxLen);
  app.decorateRequest('tokenId', undefined);
  if (opts.docs !== false) await registerDocs(app);

  const auth = authOnRequest(app, new TokenAuth(cfg.tokens, { limiter: limiters.token }));
  const routeDeps = { ...deps, audit, auth };
  for (const plugin of ROUTES) await app.register(async (scoped) => plugin(scoped as ApiApp, routeDeps));
  return app;
}
