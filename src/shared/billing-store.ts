import type { JobsOptions } from 'bullmq';
import { DateTime } from 'luxon';
import { BILLING_JOBS, type BillingRead, QUALITIES, type Quality, type RecomputeJob } from '../contracts/billing.js';
import type { MeterRead } from '../domain/billing.js';
import type { Assessment } from '../domain/billing-period.js';

/**
 * Billing reads stored and read back: the `billing` queue's recompute jobs, the billing role's Redis keys,
 * the `billing_daily` / `billing_period` fields, and the API's billing read from a stored one.
 */

/** A billing recompute for the `billing` queue's `addBulk`: the day whose closed read changed, and what changed it. */
export interface RecomputeRequest {
  meterId: string;
  /** Local day (YYYY-MM-DD) in the meter's tariff time zone. */
  day: string;
  /**
   * The stream entry whose data changed the closed day: part of the job id, so a replay of the same entry does not
   * enqueue it twice, while the next late batch for the same day is a job of its own.
   */
  entryId: string;
}

/**
 * The one way to enqueue a recompute: `queue.addBulk(requests.map((r) => recomputeJob(r, keepSeconds)))`. Completed
 * jobs are kept `keepSeconds` so that a replay's identical job id is still deduplicated.
 */
export function recomputeJob(r: RecomputeRequest, keepSeconds: number): { name: typeof BILLING_JOBS.recompute; data: RecomputeJob; opts: JobsOptions } {
  return {
    name: BILLING_JOBS.recompute,
    data: { meterId: r.meterId, day: r.day },
    opts: {
      jobId: `recompute|${r.meterId}|${r.day}|${r.entryId}`,
      attempts: 5,
      backoff: { type: 'exponential', delay: 1000 },
      removeOnComplete: { age: keepSeconds },
      removeOnFail: { age: 7 * 86_400 },
    },
  };
}

/** Redis keys of the billing role (hashes). */
export const billingKeys = {
  /** time zone → last closed local day. */
  closedDays: 'mf:billing:closed-days',
  /** `${timezone}|${period}` → epoch ms when closed. */
  closedPeriods: 'mf:billing:closed-periods',
  /** `${timezone}|${month}` → epoch ms when its customer profiles were written; 'closing' or 'dirty' (late data) before. */
  profiledMonths: 'mf:billing:profiled-months',
} as const;

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
    meterId === undefined ||
    tariff === undefined ||
    fromMs === undefined ||
    toMs === undefined ||
    fromDay === undefined ||
    toDay === undefined ||
    timezone === undefined ||
    totalWh === undefined ||
    !isQuality(quality)
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
