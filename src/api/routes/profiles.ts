import { Type } from 'typebox';
import { InsightsConfig } from '../../contracts/config-insights.js';
import { TariffsConfigSchema } from '../../contracts/config-tariffs.js';
import { ErrorBody } from '../../contracts/http.js';
import { CustomerProfile, Month, ProfilesResponse, WatchlistResponse } from '../../contracts/insights.js';
import { compileTariffs } from '../../domain/tariffs.js';
import { type WatchMonth, watchlist, watchMonths } from '../../domain/watchlist.js';
import { loadSection } from '../../shared/config.js';
import { profileCustomers, profilesCsv, readProfiles, toProfileBody } from '../../shared/profile-store.js';
import { pageByIds } from '../paging.js';
import type { RoutePlugin } from '../app.js';

/** Customers whose profiles the watch-list reads per InfluxDB query. */
const WATCH_CHUNK = 500;

const CustomerId = Type.String({ minLength: 1, maxLength: 128, pattern: '^[^\\u0000-\\u001f\\u007f]+$' });

/**
 * Customer profiles and the watch-list (scope insights:read), from the `customer_profile` points the billing role
 * writes when a calendar month closes.
 */
export const profileRoutes: RoutePlugin = async (app, deps) => {
  const insights = loadSection('insights', InsightsConfig);
  const tariffs = compileTariffs(loadSection('tariffs', TariffsConfigSchema), deps.config.timezone);

  app.get(
    '/api/v1/customers/:customerId/profile',
    {
      preHandler: deps.auth('insights:read'),
      schema: {
        tags: ['insights'],
        summary: "The customer's profile of a calendar month: energy, bands, demand, load factor, changes, segment, tariff advice",
        params: Type.Object({ customerId: CustomerId }),
        querystring: Type.Object({ month: Month }),
        response: { 200: CustomerProfile, 400: ErrorBody, 401: ErrorBody, 403: ErrorBody, 404: ErrorBody, 503: ErrorBody },
      },
    },
    async (req, reply) => {
      const { customerId } = req.params;
      const { month } = req.query;
      const [profile] = await readProfiles(deps.influx, [month], customerId);
      if (profile !== undefined) return toProfileBody(profile);
      const known = (await deps.registry.metersOfCustomer(customerId)).length > 0;
      const message = known
        ? `customer ${customerId} has no profile for ${month} (the month is not closed yet)`
        : `customer ${customerId} is not in the registry`;
      return reply.code(404).send({ statusCode: 404, error: 'Not Found', message });
    },
  );

  app.get(
    '/api/v1/insights/profiles',
    {
      preHandler: deps.auth('insights:read'),
      schema: {
        tags: ['insights'],
        summary:
          "Every customer's profile of a calendar month, a page of customers in id order at a time: CSV (one row per customer; the next page's cursor in the x-next-cursor header) or JSON with format=json",
        querystring: Type.Object({
          month: Month,
          format: Type.Union([Type.Literal('csv'), Type.Literal('json')], { default: 'csv' }),
          limit: Type.Integer({ minimum: 1, maximum: insights.api.maxLimit, default: insights.api.defaultLimit }),
          cursor: Type.Optional(Type.String({ maxLength: 512 })),
        }),
        response: {
          200: {
            content: {
              'text/csv': { schema: Type.String({ description: 'Header row, then one row per customer' }) },
              'application/json': { schema: ProfilesResponse },
            },
          },
          400: ErrorBody,
          401: ErrorBody,
          403: ErrorBody,
          503: ErrorBody,
        },
      },
    },
    async (req, reply) => {
      const { month, format } = req.query;
      const page = await pageByIds(await profileCustomers(deps.influx), req.query, async (ids) => {
        const found = await readProfiles(deps.influx, [month], ids);
        return new Map(found.map((p) => [p.customerId, toProfileBody(p)]));
      });
      if (format === 'json') return reply.type('application/json').send({ month, items: page.items, nextCursor: page.nextCursor });
      if (page.nextCursor !== null) void reply.header('x-next-cursor', page.nextCursor);
      // RFC 4180 line ends, as the billing CSV.
      return reply.type('text/csv; charset=utf-8').send(profilesCsv(page.items, tariffs.allBands));
    },
  );

  app.get(
    '/api/v1/insights/watchlist',
    {
      preHandler: deps.auth('insights:read'),
      schema: {
        tags: ['insights'],
        summary: 'Customers whose consumption fell by more than the configured share over the 3 months to `month`, with no known reason',
        querystring: Type.Object({ month: Month }),
        response: { 200: WatchlistResponse, 400: ErrorBody, 401: ErrorBody, 403: ErrorBody, 503: ErrorBody },
      },
    },
    async (req) => {
      const { month } = req.query;
      const { baseline, recent, lastYear } = watchMonths(month);
      const history = new Map<string, Map<string, WatchMonth>>();
      // A chunk of customers at a time, kept only as the little the rule needs: a large fleet's 12 months of whole
      // profiles never sit in memory (or in one InfluxDB answer) at once.
      const customers = await profileCustomers(deps.influx);
      for (let i = 0; i < customers.length; i += WATCH_CHUNK) {
        for (const p of await readProfiles(deps.influx, [...lastYear, ...baseline, ...recent], customers.slice(i, i + WATCH_CHUNK))) {
          const h = history.get(p.customerId) ?? new Map<string, WatchMonth>();
          h.set(p.month, {
            energyWh: p.energyWh,
            quality: p.quality,
            customerClass: p.customerClass,
            tariff: p.tariff,
            meters: p.meters.map((m) => m.meterId),
          });
          history.set(p.customerId, h);
        }
      }
      const dropShare = insights.watchlist.dropShare;
      return { month, dropShare, ...watchlist({ month, dropShare, history }) };
    },
  );
};
