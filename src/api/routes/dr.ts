import { Queue } from 'bullmq';
import { Type } from 'typebox';
import { NOTIFY_QUEUE } from '../../contracts/alert.js';
import { AlertsConfig } from '../../contracts/config-alerts.js';
import { DetectionConfig } from '../../contracts/config-detection.js';
import { DrConfig } from '../../contracts/config-dr.js';
import { TariffsConfigSchema } from '../../contracts/config-tariffs.js';
import { DrForecastBody, DrSettlementBody, DR_EVENT_ID_PATTERN } from '../../contracts/dr.js';
import { ErrorBody } from '../../contracts/http.js';
import { checkCblConfig } from '../../domain/cbl.js';
import { DAY_MS, dayWindow } from '../../domain/local-time.js';
import { forecastPeak, type LoadPoint } from '../../domain/peak-forecast.js';
import { compileTariffs } from '../../domain/tariffs.js';
import { loadSection } from '../../shared/config.js';
import { DrStore } from '../../shared/dr-store.js';
import { ConfigError } from '../../shared/errors.js';
import { type Influx, qid, qstr, rows } from '../../shared/influx.js';
import { iso, settleDrEvent } from '../dr-settlement.js';
import { registerEventRoutes } from './dr-events.js';
import { queuePrefix } from '../../shared/redis.js';
import type { RoutePlugin } from '../app.js';
import { BadField } from '../day-range.js';

/** The settings the routes run on, checked at start: a bad key fails there, named. */
function drSettings() {
  const cfg = loadSection('dr', DrConfig);
  const gridMs = cfg.events.gridMinutes * 60_000;
  try {
    checkCblConfig(cfg.cbl, gridMs);
  } catch (err) {
    if (err instanceof RangeError) throw new ConfigError(`config/dr.yaml: dr.${err.message.split(':')[0]}`, err.message, { cause: err });
    throw err;
  }
  const alerts = loadSection('alerts', AlertsConfig);
  const webhooks = new Set(alerts.webhooks.map((w) => w.name));
  cfg.notify.webhooks.forEach((name, i) => {
    if (!webhooks.has(name))
      throw new ConfigError(
        `config/dr.yaml: dr.notify.webhooks.${i}`,
        `a webhook of config/alerts.yaml (${[...webhooks].join(', ') || 'none'}), got "${name}"`,
      );
  });
  const det = loadSection('detection', DetectionConfig);
  const holidays = det.holidays === undefined ? [] : [...(det.holidays.calendars[det.holidays.region] ?? [])];
  // Retried like the alert notifications (config/alerts.yaml notify): the same worker delivers both.
  const retry = { attempts: alerts.notify.attempts, backoffMs: alerts.notify.backoffMs };
  return { cfg, gridMs, holidays, retry, loadIntervalMs: det.feederOverload.intervalMinutes * 60_000 };
}

/** The load series of the fleet (`system_load`), a feeder (its transformers' `feeder_load` summed) or a transformer. */
async function loadSeries(
  influx: Influx,
  scope: { kind: 'fleet' | 'feeder' | 'transformer'; id: string | null },
  fromMs: number,
  toMs: number,
): Promise<LoadPoint[]> {
  const time = `time >= ${fromMs}ms AND time < ${toMs}ms`;
  const q =
    scope.kind === 'fleet'
      ? `SELECT "demand_kw" FROM ${qid('system_load')} WHERE ${time}`
      : `SELECT "demand_kw" FROM ${qid('feeder_load')} WHERE ${qid(scope.kind === 'feeder' ? 'feeder' : 'transformer')} = ${qstr(scope.id ?? '')} AND ${time} GROUP BY "transformer"`;
  const sums = new Map<number, number>();
  for (const s of await influx.query(q)) {
    for (const row of rows(s)) {
      const t = row.time;
      const kw = row.demand_kw;
      if (typeof t === 'number' && typeof kw === 'number' && Number.isFinite(kw)) sums.set(t, (sums.get(t) ?? 0) + kw);
    }
  }
  return [...sums].map(([start, kw]) => ({ start, kw }));
}

/**
 * Demand response (issue 18): events (POST, scope dr:write; GET, insights:read), each participant's settlement
 * against its customer baseline load (src/domain/cbl.ts), and the day-ahead peak forecast (src/domain/peak-forecast.ts).
 * Participants of an event that has not ended are notified through the alerts role's signed webhooks (`notify` queue).
 */
export const drRoutes: RoutePlugin = async (app, deps) => {
  const { cfg, gridMs, holidays, retry, loadIntervalMs } = drSettings();
  const zone = deps.config.timezone;
  const tariffs = compileTariffs(loadSection('tariffs', TariffsConfigSchema), zone);
  const store = new DrStore(deps.redis);
  const queue = cfg.notify.webhooks.length > 0 ? new Queue(NOTIFY_QUEUE, { connection: deps.redis, prefix: queuePrefix(NOTIFY_QUEUE) }) : undefined;
  if (queue !== undefined) app.addHook('onClose', async () => queue.close());
  registerEventRoutes(app, deps, { cfg, gridMs, zone, store, queue, retry });

  const notFound = (id: string) => ({ statusCode: 404, error: 'Not Found', message: `demand-response event ${id} not found` });
  const IdParams = Type.Object({ id: Type.String({ pattern: DR_EVENT_ID_PATTERN }) });

  app.get(
    '/api/v1/dr/events/:id/settlement',
    {
      preHandler: deps.auth('insights:read'),
      schema: {
        tags: ['dr'],
        summary: "Each participant's energy in the event window against its customer baseline load (CBL); 409 before the event has ended",
        params: IdParams,
        response: { 200: DrSettlementBody, 400: ErrorBody, 401: ErrorBody, 403: ErrorBody, 404: ErrorBody, 409: ErrorBody, 503: ErrorBody },
      },
    },
    async (req, reply) => {
      const e = await store.get(req.params.id);
      if (e === undefined) return reply.code(404).send(notFound(req.params.id));
      const now = Date.now();
      if (now < e.endMs)
        return reply.code(409).send({ statusCode: 409, error: 'Conflict', message: `event ${e.id} has not ended: settlement from ${iso(e.endMs)}` });
      return settleDrEvent({ cfg, gridMs, zone, holidays, store, registry: deps.registry, influx: deps.influx, tariffs }, e, now);
    },
  );

  app.get(
    '/api/v1/dr/forecast',
    {
      preHandler: deps.auth('insights:read'),
      schema: {
        tags: ['dr'],
        summary: 'Day-ahead peak forecast of the fleet, a feeder or a transformer from its recent like days, and the windows where an event would pay',
        querystring: Type.Object(
          {
            day: Type.String({ pattern: '^(19|20|21)\\d{2}-\\d{2}-\\d{2}$', description: 'Local date YYYY-MM-DD (1900-2199) to forecast' }),
            feederId: Type.Optional(Type.String({ minLength: 1, maxLength: 64 })),
            transformerId: Type.Optional(Type.String({ minLength: 1, maxLength: 64 })),
          },
          { additionalProperties: false },
        ),
        response: { 200: DrForecastBody, 400: ErrorBody, 401: ErrorBody, 403: ErrorBody, 404: ErrorBody, 503: ErrorBody },
      },
    },
    async (req, reply) => {
      const { day, feederId, transformerId } = req.query;
      let window: { startMs: number; endMs: number };
      try {
        window = dayWindow(zone, day);
      } catch {
        throw new BadField('querystring.day', `not a calendar date: ${day}`);
      }
      if (feederId !== undefined && transformerId !== undefined) throw new BadField('querystring.transformerId', 'at most one of feederId, transformerId');
      const scope =
        feederId !== undefined
          ? { kind: 'feeder' as const, id: feederId }
          : transformerId !== undefined
            ? { kind: 'transformer' as const, id: transformerId }
            : { kind: 'fleet' as const, id: null };
      if (
        scope.kind === 'transformer' &&
        (await deps.registry.getTransformer(scope.id)) === undefined &&
        (await deps.registry.metersOfTransformer(scope.id)).length === 0
      )
        return reply.code(404).send({ statusCode: 404, error: 'Not Found', message: `transformer ${scope.id} is not in the registry` });
      if (scope.kind === 'feeder' && (await deps.registry.metersOfFeeder(scope.id)).length === 0)
        return reply.code(404).send({ statusCode: 404, error: 'Not Found', message: `feeder ${scope.id} has no registered meters` });
      const from = window.startMs - (cfg.forecast.lookbackDays + 1) * DAY_MS;
      const series = await loadSeries(deps.influx, scope, from, window.startMs);
      const f = forecastPeak({ series, intervalMs: loadIntervalMs, day, timezone: zone, holidays }, cfg.forecast);
      // kW and kWh to the watt(-hour): the float noise of the means says nothing.
      const r3 = (x: number): number => Math.round(x * 1000) / 1000;
      return {
        day,
        timezone: zone,
        scope,
        dayType: f.dayType,
        likeDays: f.likeDays,
        trendFactor: Math.round(f.trendFactor * 1e6) / 1e6,
        intervalMinutes: loadIntervalMs / 60_000,
        slots: f.slots.map((s) => ({ start: iso(s.start), expectedKw: r3(s.expectedKw) })),
        peak: f.peak === null ? null : { start: iso(f.peak.start), expectedKw: r3(f.peak.expectedKw) },
        typicalPeakKw: r3(f.typicalPeakKw),
        thresholdKw: r3(f.thresholdKw),
        thresholdBasis: f.thresholdBasis,
        windows: f.windows.map((w) => ({ start: iso(w.start), end: iso(w.end), peakKw: r3(w.peakKw), excessKwh: r3(w.excessKwh) })),
      };
    },
  );
};
