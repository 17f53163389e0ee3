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
import type { AppConfig, Scope } from '../shared/config.js';
import { ServiceError } from '../shared/errors.js';
import type { Influx } from '../shared/influx.js';
import type { Logger } from '../shared/logger.js';
import type { RegistryStore } from '../shared/registry.js';
import { TokenAuth } from './auth.js';
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

/** A route plugin: `(app, deps) => Promise<void>`; `auth(scope)` is the preHandler for protected routes. */
export type RoutePlugin = (app: ApiApp, deps: ApiDeps & { auth: (scope?: Scope) => ReturnType<TokenAuth['require']> }) => Promise<void>;

/** Route plugins, one per area; each area adds its own line. */
const ROUTES: RoutePlugin[] = [healthRoutes, customerRoutes, meterRoutes, alertRoutes, billingRoutes, remoteReadRoutes];

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
  const logger: FastifyBaseLogger = deps.log.child({ component: 'api' });
  const app: ApiApp = Fastify({
    loggerInstance: logger,
    logController: new LogController({ disableRequestLogging: true }),
    bodyLimit: 16 * 1024 * 1024,
    ajv: { customOptions: { coerceTypes: 'array', removeAdditional: false, allErrors: false } },
  }).withTypeProvider<TypeBoxTypeProvider>();

  app.addContentTypeParser('text/csv', { parseAs: 'string' }, (_req, body, done) => done(null, body));

  app.setErrorHandler((err, req, reply) => {
    const e = err as Error & { statusCode?: number; validation?: Array<{ instancePath?: string; params?: unknown }>; validationContext?: string };
    if (e.validation) {
      const field = fieldOf(e);
      return reply.code(400).send({ statusCode: 400, error: 'Bad Request', message: e.message, ...(field ? { field } : {}) });
    }
    if (err instanceof ServiceError) {
      req.log.warn({ err }, 'dependency unavailable');
      return reply.code(503).send({ statusCode: 503, error: 'Service Unavailable', message: 'a backing service is unavailable, retry later' });
    }
    const status = e.statusCode ?? 500;
    if (status >= 500) {
      req.log.error({ err, url: req.url }, 'request failed');
      return reply.code(status).send({ statusCode: status, error: 'Internal Server Error', message: 'internal error' });
    }
    return reply.code(status).send({ statusCode: status, error: e.name, message: e.message });
  });

  if (opts.docs !== false) {
    await app.register(swagger, {
      openapi: {
        info: { title: 'meterflow API', version: '1' },
        components: { securitySchemes: { bearer: { type: 'http', scheme: 'bearer' } } },
        security: [{ bearer: [] }],
      },
    });
    await app.register(swaggerUi, { routePrefix: '/docs' });
  }

  const tokenAuth = new TokenAuth(deps.config.api.tokens);
  const routeDeps = { ...deps, auth: (scope?: Scope) => tokenAuth.require(scope) };
  for (const plugin of ROUTES) await app.register(async (scoped) => plugin(scoped as ApiApp, routeDeps));
  return app;
}
