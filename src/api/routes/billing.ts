import type { FastifyReply } from 'fastify';
import { toCsv } from '../../shared/csv.js';
import { Type } from 'typebox';
import { type BillingRead, BillingReadsResponse, DAILY_MEASUREMENT, PERIOD_MEASUREMENT } from '../../contracts/billing.js';
import { billingKeys, latestPerStart, parseStoredRead, toBillingRead, type StoredRead } from '../../shared/billing-store.js';
import { BillingConfig } from '../../contracts/config-billing.js';
import { TariffsConfigSchema } from '../../contracts/config-tariffs.js';
import { METER_ID_PATTERN } from '../../contracts/reading.js';
import { assessRead, combineReads, periodWindow } from '../../domain/billing-period.js';
import { compileTariffs, tariffFor, type Tariffs } from '../../domain/tariffs.js';
import { loadSection } from '../../shared/config.js';
import { qid, qregexAny, qstr, rows, tagValues, type Influx, type InfluxSeries } from '../../shared/influx.js';
import type { RoutePlugin } from '../app.js';
import { dayRange, ZONE_MARGIN_MS } from '../day-range.js';
import { pageByIds } from '../paging.js';
import { ErrorBody } from '../../contracts/http.js';

const LocalDay = Type.String({ pattern: '^\\d{4}-\\d{2}-\\d{2}$', description: "Local date YYYY-MM-DD in each meter's tariff time zone" });

function parseStored(series: InfluxSeries[]): StoredRead[] {
  const out: StoredRead[] = [];
  for (const s of series) {
    for (const row of rows(s)) {
      const r = parseStoredRead(row, s.tags);
      if (r !== undefined) out.push(r);
    }
  }
  return latestPerStart(out);
}

interface PageQuery {
  meterId?: string;
  customerId?: string;
  cursor?: string;
  limit: number;
}

/**
 * Pages through meters in id order (src/api/paging.ts): candidates from the measurement's tag index, fetched for
 * their stored reads a page at a time. Any InfluxDB failure fails the whole request.
 */
async function page(
  influx: Influx,
  measurement: string,
  q: PageQuery,
  fetch: (meterIds: string[]) => Promise<Map<string, StoredRead[]>>,
  build: (meterId: string, reads: StoredRead[]) => BillingRead | undefined,
): Promise<BillingReadsResponse> {
  let candidates: string[];
  if (q.meterId !== undefined) {
    candidates = [q.meterId];
  } else {
    const where = q.customerId === undefined ? '' : ` WHERE ${qid('customer')} = ${qstr(q.customerId)}`;
    candidates = tagValues(await influx.query(`SHOW TAG VALUES FROM ${qid(measurement)} WITH KEY = ${qid('meter')}${where}`));
  }
  return pageByIds(candidates, q, async (ids) => {
    const byMeter = await fetch(ids);
    const out = new Map<string, BillingRead>();
    for (const id of ids) {
      const reads = byMeter.get(id);
      const item = reads === undefined || reads.length === 0 ? undefined : build(id, reads);
      if (item !== undefined) out.set(id, item);
    }
    return out;
  });
}

function groupByMeter(reads: readonly StoredRead[]): Map<string, StoredRead[]> {
  const out = new Map<string, StoredRead[]>();
  for (const r of reads) {
    const list = out.get(r.read.meterId) ?? [];
    list.push(r);
    out.set(r.read.meterId, list);
  }
  return out;
}

// ---- CSV: one row per meter, one column per band ----

const CSV_HEAD = [
  'meterId',
  'customerId',
  'tariff',
  'timezone',
  'from',
  'to',
  'startRegisterWh',
  'startInterpolated',
  'endRegisterWh',
  'endInterpolated',
  'totalWh',
  'exportWh',
] as const;
const CSV_TAIL = ['maxDemandW', 'maxDemandAt', 'intervals', 'estimatedIntervals', 'completeness', 'quality'] as const;

/** Band columns `band_<name>_wh`: every configured band in config order, then any others found. */
export function readsToCsv(items: readonly BillingRead[], tariffs: Tariffs): string {
  const bands = [...tariffs.allBands];
  for (const it of items) for (const b of Object.keys(it.bands)) if (!bands.includes(b)) bands.push(b);
  const header = [...CSV_HEAD, ...bands.map((b) => `band_${b}_wh`), ...CSV_TAIL];
  const rows = items.map((it) => [...CSV_HEAD.map((k) => it[k]), ...bands.map((b) => it.bands[b]), ...CSV_TAIL.map((k) => it[k])]);
  // RFC 4180 line ends: billing systems import this.
  return toCsv(header, rows, '\r\n');
}

const wantsCsv = (accept: string | undefined): boolean => accept !== undefined && /\btext\/csv\b/i.test(accept);

/**
 * Billing reads for billing systems (scope billing:read): any day range computed from the stored daily reads,
 * and the reads of closed periods. JSON pages with a cursor, or CSV with `Accept: text/csv`.
 */
export const billingRoutes: RoutePlugin = async (app, deps) => {
  const cfg = loadSection('billing', BillingConfig);
  const tariffs = compileTariffs(loadSection('tariffs', TariffsConfigSchema), deps.config.timezone);
  const paging = {
    meterId: Type.Optional(Type.String({ pattern: METER_ID_PATTERN })),
    // No control characters: InfluxDB refuses a query with a NUL in a string literal, which would read as a 503.
    customerId: Type.Optional(Type.String({ minLength: 1, maxLength: 128, pattern: '^[^\\u0000-\\u001f\\u007f]+$' })),
    cursor: Type.Optional(Type.String({ maxLength: 512 })),
    limit: Type.Integer({ minimum: 1, maximum: cfg.api.maxLimit, default: cfg.api.defaultLimit }),
  };
  const response = {
    200: {
      content: {
        'application/json': { schema: BillingReadsResponse },
        'text/csv': { schema: Type.String({ description: 'One row per meter; the next page cursor is in the x-next-cursor header' }) },
      },
    },
    400: ErrorBody,
    404: ErrorBody,
    503: ErrorBody,
  };

  async function send(reply: FastifyReply, accept: string | undefined, body: BillingReadsResponse): Promise<FastifyReply> {
    if (!wantsCsv(accept)) return reply.type('application/json').send(body);
    if (body.nextCursor !== null) void reply.header('x-next-cursor', body.nextCursor);
    return reply.type('text/csv; charset=utf-8').send(readsToCsv(body.items, tariffs));
  }

  const dailyFetch = (from: string, to: string, customerId: string | undefined) => async (meterIds: string[]) => {
    const fromMs = Date.parse(`${from}T00:00:00Z`) - ZONE_MARGIN_MS;
    const toMs = Date.parse(`${to}T00:00:00Z`) + ZONE_MARGIN_MS;
    const customer = customerId === undefined ? '' : ` AND ${qid('customer')} = ${qstr(customerId)}`;
    const series = await deps.influx.query(
      `SELECT * FROM ${qid(DAILY_MEASUREMENT)} WHERE ${qid('meter')} =~ ${qregexAny(meterIds)}${customer} ` +
        `AND time >= ${fromMs}ms AND time < ${toMs}ms GROUP BY ${qid('meter')}`,
    );
    return groupByMeter(parseStored(series).filter((s) => s.read.fromDay >= from && s.read.toDay <= to));
  };

  app.get(
    '/api/v1/billing/reads',
    {
      preHandler: deps.auth('billing:read'),
      schema: {
        tags: ['billing'],
        summary: 'Billing reads per meter over local days [from, to): registers, energy per band, max demand, quality',
        querystring: Type.Object({ from: LocalDay, to: LocalDay, ...paging }),
        response,
      },
    },
    async (req, reply) => {
      const { from, to } = req.query;
      dayRange(from, to, cfg.api.maxRangeDays); // validates the window (400s naming the parameter)

      const body = await page(deps.influx, DAILY_MEASUREMENT, req.query, dailyFetch(from, to, req.query.customerId), (meterId, reads) => {
        const last = reads[reads.length - 1];
        if (last === undefined) return undefined;
        // The zone and bands the days were computed with, even if the tariff config changed since.
        const tariff = { ...tariffFor(tariffs, last.read.tariff), name: last.read.tariff, timezone: last.read.timezone };
        const read = combineReads(
          meterId,
          tariff,
          { fromDay: from, toDay: to },
          reads.map((r) => r.read),
        );
        return toBillingRead(read, last.customerId, assessRead(read, cfg.quality));
      });
      return send(reply, req.headers.accept, body);
    },
  );

  app.get(
    '/api/v1/billing/periods/:period/reads',
    {
      preHandler: deps.auth('billing:read'),
      schema: {
        tags: ['billing'],
        summary: 'Reads of a closed billing period (YYYY-MM), as stored when it closed or was recomputed',
        params: Type.Object({ period: Type.String({ pattern: '^\\d{4}-(0[1-9]|1[0-2])$' }) }),
        querystring: Type.Object(paging),
        response,
      },
    },
    async (req, reply) => {
      const { period } = req.params;
      const closed = Object.entries(await deps.redis.hgetall(billingKeys.closedPeriods)).some(([k, v]) => k.endsWith(`|${period}`) && /^\d+$/.test(v));
      if (!closed) return reply.code(404).send({ statusCode: 404, error: 'Not Found', message: `period ${period} is not closed` });
      const window = periodWindow(period, cfg.periodStartDay);
      const fromMs = Date.parse(`${window.fromDay}T00:00:00Z`) - ZONE_MARGIN_MS;
      const toMs = Date.parse(`${window.fromDay}T00:00:00Z`) + ZONE_MARGIN_MS;
      const customer = req.query.customerId === undefined ? '' : ` AND ${qid('customer')} = ${qstr(req.query.customerId)}`;
      const body = await page(
        deps.influx,
        PERIOD_MEASUREMENT,
        req.query,
        async (meterIds) => {
          const series = await deps.influx.query(
            `SELECT * FROM ${qid(PERIOD_MEASUREMENT)} WHERE ${qid('meter')} =~ ${qregexAny(meterIds)}${customer} ` +
              `AND time >= ${fromMs}ms AND time < ${toMs}ms GROUP BY ${qid('meter')}`,
          );
          return groupByMeter(parseStored(series).filter((s) => s.read.fromDay === window.fromDay && s.read.toDay === window.toDay));
        },
        (_meterId, reads) => {
          const r = reads[reads.length - 1];
          return r === undefined ? undefined : toBillingRead(r.read, r.customerId, r.assessment);
        },
      );
      return send(reply, req.headers.accept, body);
    },
  );
};
