import cors from '@fastify/cors';
import helmet from '@fastify/helmet';
import type { FastifyInstance } from 'fastify';
import type { ApiConfig } from '../shared/config-api.js';
import { createLimiters, type Limiters, tooManyRequests } from './rate-limit.js';

/** Liveness, readiness and metrics: their own per-address rate limit, no token. */
const PROBES = new Set(['/healthz', '/readyz', '/metrics']);

/** CSP for the JSON API: nothing may load, nothing may frame it. The docs pages send their own (app.ts, registerDocs). */
const API_CSP = {
  useDefaults: false,
  directives: { defaultSrc: ["'none'"], baseUri: ["'none'"], formAction: ["'none'"], frameAncestors: ["'none'"] },
};

function corsOrigin(origins: ApiConfig['corsOrigins']): string | string[] {
  return origins.includes('*') ? '*' : [...origins];
}

/**
 * Helmet, CORS (only when origins are configured) and the per-address rate limits, checked before anything else
 * of a request is looked at. Returns the limiters: the per-token one is TokenAuth's, after authentication.
 */
export async function registerSecurity(app: FastifyInstance, cfg: ApiConfig): Promise<Limiters> {
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
  return limiters;
}
