import { Type, type Static } from 'typebox';
import { METER_ID_PATTERN } from './reading.js';

/**
 * Billing contracts: the `billing` BullMQ queue's jobs (from the stream worker and the billing role), the names of
 * the `billing_daily` / `billing_period` InfluxDB measurements (written by the billing role, read by the API) and the
 * billing read the API serves. How they are stored and parsed back: src/shared/billing-store.ts.
 */

/** How a billing read was measured: every interval actual, too many estimated, or not enough coverage. */
export const QUALITIES = ['actual', 'estimated', 'incomplete'] as const;
export type Quality = (typeof QUALITIES)[number];

export const BILLING_QUEUE = 'billing';

export const BILLING_JOBS = {
  /** Repeatable: closes the days the watermark has passed and schedules period closings. */
  tick: 'tick',
  closeDay: 'close-day',
  closePeriod: 'close-period',
  /** Late data landed in a closed day: recompute that meter's day (and its period if closed). */
  recompute: 'recompute',
  /** Customer profiles of a calendar month in one time zone (after its last day closes, again after late data). */
  closeMonth: 'close-month',
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

/** A calendar month (YYYY-MM) of the tariffs in `timezone`: every customer's profile, segments and tariff advice. */
export const CloseMonthJob = Type.Object({ timezone: Type.String({ minLength: 1 }), month: Period });
export type CloseMonthJob = Static<typeof CloseMonthJob>;

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
