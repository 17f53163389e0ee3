import { DateTime } from 'luxon';
import { Type, type Static } from 'typebox';
import type { JobsOptions } from 'bullmq';
import type { MeterRead } from '../domain/billing.js';
import { QUALITIES, type Assessment, type Quality } from '../domain/billing-period.js';
import { METER_ID_PATTERN } from './reading.js';

/**
 * Billing contracts: the `billing` BullMQ queue (jobs from the stream worker and the billing role), the
 * `billing_daily` / `billing_period` InfluxDB points (written by the billing role, read by the API) and the
 * billing read the API serves.
 */

export const BILLING_QUEUE = 'billing';

export const BILLING_JOBS = {
  /** Repeatable: closes the days the watermark has passed and schedules period closings. */
  tick: 'tick',
  closeDay: 'close-day',
  closePeriod: 'close-period',
  /** Late data landed in a closed day: recompute that meter's day (and its period if closed). */
  recompute: 'recompute',
} as const;

const LocalDay = Type.String({ pattern: '^\\d{4}-\\d{2}-\\d{2}$' });
const Period = Type.String({ pattern: '^\\d{4}-(0[1-9]|1[0-2])$' });

/** Enqueued by the stream worker when it writes intervals older than its watermark. */
export const RecomputeJob = Type.Object({
  meterId: Type.String({ pattern: METER_ID_PATTERN }),
  /** Local day (YYYY-MM-DD) in the meter's tariff time zone: `localDay(tariff.timezone, intervalStart)`. */
  day: LocalDay,
});
export type RecomputeJob = Static<typeof RecomputeJob>;

export const CloseDayJob = Type.Object({ timezone: Type.String({ minLength: 1 }), day: LocalDay });
export type CloseDayJob = Static<typeof CloseDayJob>;

export const ClosePeriodJob = Type.Object({ timezone: Type.String({ minLength: 1 }), period: Period });
export type ClosePeriodJob = Static<typeof ClosePeriodJob>;

/**
 * Options for `queue.add(BILLING_JOBS.recompute, { meterId, day }, recomputeJobOptions(meterId, day))`.
 * A flood of late intervals for one meter-day collapses into one job; one added while it runs is kept and
 * runs after it, so data written during a recompute is never missed.
 */
export function recomputeJobOptions(meterId: string, day: string): JobsOptions {
  return {
    deduplication: { id: `recompute:${meterId}:${day}`, keepLastIfActive: true },
    delay: 1000,
    attempts: 8,
    backoff: { type: 'exponential', delay: 1000 },
    removeOnComplete: true,
    removeOnFail: 1000,
  };
}

/** Redis keys of the billing role (hashes). */
export const billingKeys = {
  /** time zone → last closed local day. */
  closedDays: 'mf:billing:closed-days',
  /** `${timezone}|${period}` → epoch ms when closed. */
  closedPeriods: 'mf:billing:closed-periods',
} as const;

export const DAILY_MEASUREMENT = 'billing_daily';
export const PERIOD_MEASUREMENT = 'billing_period';

const Iso = Type.String({ description: 'ISO-8601 with the offset of the tariff time zone' });

/** One meter's billing determinants over a day or period, as served by the API. */
export const BillingRead = Type.Object({
  meterId: Type.String(),
  customerId: Type.String(),
  tariff: Type.String(),
  timezone: Type.String(),
  /** Local midnight starting the range, e.g. 2026-03-01T00:00:00+08:00. */
  from: Iso,
  /** Local midnight ending it (exclusive). */
  to: Iso,
  startRegisterWh: Type.Union([Type.Integer(), Type.Null()]),
  startInterpolated: Type.Boolean(),
  endRegisterWh: Type.Union([Type.Integer(), Type.Null()]),
  endInterpolated: Type.Boolean(),
  totalWh: Type.Integer(),
  exportWh: Type.Integer(),
  bands: Type.Record(Type.String(), Type.Integer()),
  maxDemandW: Type.Union([Type.Number(), Type.Null()]),
  /** Start of the interval with the highest average demand. */
  maxDemandAt: Type.Union([Iso, Type.Null()]),
  intervals: Type.Integer(),
  estimatedIntervals: Type.Integer(),
  /** Percent of the range covered by intervals. */
  completeness: Type.Number(),
  quality: Type.Enum(QUALITIES),
});
export type BillingRead = Static<typeof BillingRead>;

export const BillingReadsResponse = Type.Object({
  items: Type.Array(BillingRead),
  /** Pass as `cursor` for the next page; null on the last page. */
  nextCursor: Type.Union([Type.String(), Type.Null()]),
});
export type BillingReadsResponse = Static<typeof BillingReadsResponse>;

function iso(ms: number, zone: string): string {
  return DateTime.fromMillis(ms, { zone }).toISO({ suppressMilliseconds: true }) ?? new Date(ms).toISOString();
}

export function toBillingRead(read: MeterRead, customerId: string, assessment: Assessment): BillingRead {
  return {
    meterId: read.meterId,
    customerId,
    tariff: read.tariff,
    timezone: read.timezone,
    from: iso(read.fromMs, read.timezone),
    to: iso(read.toMs, read.timezone),
    startRegisterWh: read.startRegisterWh,
    startInterpolated: read.startInterpolated,
    endRegisterWh: read.endRegisterWh,
    endInterpolated: read.endInterpolated,
    totalWh: read.totalWh,
    exportWh: read.exportWh,
    bands: { ...read.bands },
    maxDemandW: read.maxDemandW,
    maxDemandAt: read.maxDemandAt === null ? null : iso(read.maxDemandAt, read.timezone),
    intervals: read.intervals,
    estimatedIntervals: read.estimatedIntervals,
    completeness: assessment.completeness,
    quality: assessment.quality,
  };
}

// ---- billing_daily / billing_period points: [meter, customer, tariff], time = local start of the range ----

export type StoredField = number | boolean | string | { int: number } | undefined;

/** Fields of a stored read. Band energy goes to `band_<name>_wh`; unknown registers are left out. */
export function readFields(read: MeterRead, assessment: Assessment, computedAt: number): Record<string, StoredField> {
  const f: Record<string, StoredField> = {
    from_day: read.fromDay,
    to_day: read.toDay,
    tz: read.timezone,
    to_ms: { int: read.toMs },
    start_register_wh: read.startRegisterWh === null ? undefined : { int: read.startRegisterWh },
    start_interpolated: read.startInterpolated,
    end_register_wh: read.endRegisterWh === null ? undefined : { int: read.endRegisterWh },
    end_interpolated: read.endInterpolated,
    total_wh: { int: read.totalWh },
    export_wh: { int: read.exportWh },
    max_demand_w: read.maxDemandW === null ? undefined : read.maxDemandW,
    max_demand_at: read.maxDemandAt === null ? undefined : { int: read.maxDemandAt },
    intervals: { int: read.intervals },
    estimated_intervals: { int: read.estimatedIntervals },
    covered_ms: { int: read.coveredMs },
    register_breaks: { int: read.registerBreaks },
    completeness: assessment.completeness,
    quality: assessment.quality,
    computed_at: { int: computedAt },
  };
  for (const [band, wh] of Object.entries(read.bands)) f[`band_${band}_wh`] = { int: wh };
  return f;
}

export interface StoredRead {
  read: MeterRead;
  customerId: string;
  assessment: Assessment;
  computedAt: number;
}

const num = (v: unknown): number | undefined => (typeof v === 'number' && Number.isFinite(v) ? v : undefined);
const str = (v: unknown): string | undefined => (typeof v === 'string' ? v : undefined);
const isQuality = (v: unknown): v is Quality => QUALITIES.some((q) => q === v);
const BAND_FIELD = /^band_(.+)_wh$/;

/**
 * A row of `SELECT * FROM billing_daily|billing_period … GROUP BY meter` (tags customer, tariff as columns
 * or in `tags`) back into a read; undefined for a row that is not a complete stored read.
 */
export function parseStoredRead(row: Record<string, unknown>, tags: Record<string, string>): StoredRead | undefined {
  const meterId = tags.meter ?? str(row.meter);
  const customerId = tags.customer ?? str(row.customer) ?? '';
  const tariff = tags.tariff ?? str(row.tariff);
  const fromMs = num(row.time);
  const toMs = num(row.to_ms);
  const fromDay = str(row.from_day);
  const toDay = str(row.to_day);
  const timezone = str(row.tz);
  const totalWh = num(row.total_wh);
  const quality = row.quality;
  if (
    meterId === undefined || tariff === undefined || fromMs === undefined || toMs === undefined || fromDay === undefined ||
    toDay === undefined || timezone === undefined || totalWh === undefined || !isQuality(quality)
  ) {
    return undefined;
  }
  const bands: Record<string, number> = {};
  for (const [k, v] of Object.entries(row)) {
    const m = BAND_FIELD.exec(k);
    const wh = num(v);
    if (m?.[1] !== undefined && wh !== undefined) bands[m[1]] = wh;
  }
  return {
    read: {
      meterId,
      tariff,
      timezone,
      fromDay,
      toDay,
      fromMs,
      toMs,
      startRegisterWh: num(row.start_register_wh) ?? null,
      startInterpolated: row.start_interpolated !== false,
      endRegisterWh: num(row.end_register_wh) ?? null,
      endInterpolated: row.end_interpolated !== false,
      totalWh,
      exportWh: num(row.export_wh) ?? 0,
      bands,
      maxDemandW: num(row.max_demand_w) ?? null,
      maxDemandAt: num(row.max_demand_at) ?? null,
      intervals: num(row.intervals) ?? 0,
      estimatedIntervals: num(row.estimated_intervals) ?? 0,
      coveredMs: num(row.covered_ms) ?? 0,
      registerBreaks: num(row.register_breaks) ?? 0,
    },
    customerId,
    assessment: { completeness: num(row.completeness) ?? 0, quality },
    computedAt: num(row.computed_at) ?? 0,
  };
}

/** One stored read per meter and start: when customer or tariff tags changed, the latest computation wins. */
export function latestPerStart(reads: readonly StoredRead[]): StoredRead[] {
  const best = new Map<string, StoredRead>();
  for (const r of reads) {
    const k = `${r.read.meterId}\u0000${r.read.fromMs}`;
    const cur = best.get(k);
    if (cur === undefined || r.computedAt >= cur.computedAt) best.set(k, r);
  }
  return [...best.values()].sort((a, b) => (a.read.meterId === b.read.meterId ? a.read.fromMs - b.read.fromMs : a.read.meterId < b.read.meterId ? -1 : 1));
}
