import { fileURLToPath } from 'node:url';
import fastifyStatic from '@fastify/static';
import { Type } from 'typebox';
import { ANOMALY_TYPES, SEVERITIES } from '../../contracts/events.js';
import { CUSTOMER_CLASSES } from '../../contracts/registry.js';
import { SCOPES } from '../../shared/config-api.js';
import type { RoutePlugin } from '../app.js';
import { tokenScopes } from '../auth.js';

/** The console's static files: index.html, console.js (a plain ES module), console.css. */
const CONSOLE_DIR = fileURLToPath(new URL('../console/', import.meta.url));

/**
 * The console's own CSP in place of the API's `default-src 'none'`: its scripts, styles and API calls come from this
 * origin only, no inline code, nothing may frame it. Links out (Grafana) are navigations, which CSP does not govern.
 */
export const CONSOLE_CSP = [
  "default-src 'none'",
  "script-src 'self'",
  "style-src 'self'",
  "connect-src 'self'",
  "img-src 'self' data:",
  "base-uri 'none'",
  "form-action 'none'",
  "frame-ancestors 'none'",
].join(';');

const CONTRACTS_MODULE = Object.entries({ ANOMALY_TYPES, SEVERITIES, CUSTOMER_CLASSES })
  .map(([name, list]) => `export const ${name} = ${JSON.stringify(list)};\n`)
  .join('');

const WhoAmI = Type.Object({
  id: Type.String({ description: 'the token id (never the token)' }),
  scopes: Type.Array(Type.String(), { description: 'as configured; admin implies every scope' }),
  grafanaUrl: Type.String({ description: 'base URL of the Grafana the console links into' }),
});

/**
 * The operator console at /console (public: the page holds no data; everything it shows comes from the API with the
 * operator's token) and `GET /api/v1/whoami`, which tells the console what the token may do.
 */
export const consoleRoutes: RoutePlugin = async (app, deps) => {
  app.get(
    '/api/v1/whoami',
    {
      preHandler: deps.auth(),
      schema: { tags: ['console'], summary: "The calling token's id and scopes, and the Grafana base URL", response: { 200: WhoAmI } },
    },
    async (req) => {
      const granted = tokenScopes(req) ?? new Set();
      return { id: req.tokenId ?? '', scopes: SCOPES.filter((s) => granted.has(s)), grafanaUrl: deps.config.grafanaUrl };
    },
  );

  await app.register(async (pages) => {
    pages.addHook('onSend', async (_req, reply, payload) => {
      void reply.header('content-security-policy', CONSOLE_CSP);
      return payload;
    });
    // The contracts' vocabulary as a module, so the console's lists never drift from the API's.
    pages.get('/console/contracts.js', { schema: { hide: true } }, async (_req, reply) =>
      reply.type('text/javascript; charset=utf-8').header('cache-control', 'no-cache').send(CONTRACTS_MODULE),
    );
    await pages.register(fastifyStatic, {
      root: CONSOLE_DIR,
      prefix: '/console/',
      // `/console` answers with a redirect to `/console/`, so the page's relative URLs resolve under it.
      redirect: true,
      wildcard: false,
      index: 'index.html',
      decorateReply: false,
      schemaHide: true,
    });
  });
};
