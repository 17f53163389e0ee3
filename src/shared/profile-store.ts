import { DateTime } from 'luxon';
import { Type } from 'typebox';
import { Compile } from 'typebox/compile';
import { QUALITIES, type Quality } from '../contracts/billing.js';
import { type CustomerProfile, PROFILE_MEASUREMENT, ProfileMeter } from '../contracts/insights.js';
import { CUSTOMER_CLASSES, type CustomerClass } from '../contracts/registry.js';
import type { MonthProfile } from '../domain/profiles.js';
import { type CsvCell, toCsv } from './csv.js';
import { qid, qregexAny, qstr, rows, tagValues, type Influx } from './influx.js';
import { type FieldValue, int, lp } from './line-protocol.js';

/**
 * Customer profiles stored and read back: `customer_profile` points (tags customer, class; time = the local midnight
 * starting the month), one reader for the billing role (the changes against earlier months) and the API.
 *
 * A rewrite of the same tags and time merges fields in InfluxDB, so every field is written every time: a value that is
 * null is written as 0 (or "") and named in the `nulls` field, and `bands` lists the bands of this write, so band
 * fields left from an earlier tariff are not read back.
 */

export interface StoredProfile extends MonthProfile {
  computedAt: number;
}

/** The measures a profile may lack (null), in CSV column order. */
const MEASURES = [
  'maxDemandW',
  'maxDemandAt',
  'loadFactor',
  'weekdayAvgWh',
  'weekendAvgWh',
  'weekdayWeekendRatio',
  'previousMonthWh',
  'changeVsPreviousMonth',
  'lastYearWh',
  'changeVsLastYear',
] as const;
const NULLABLE = [...MEASURES, 'tariffAdvice'] as const;

const orZero = (v: number | null): number => v ?? 0;

/** The point of one profile. */
export function profileLine(p: MonthProfile, computedAt: number): string {
  const nulls = NULLABLE.filter((k) => p[k] === null);
  const a = p.tariffAdvice;
  const fields: Record<string, FieldValue> = {
    month: p.month,
    tz: p.timezone,
    tariff: p.tariff,
    from_ms: int(p.fromMs),
    to_ms: int(p.toMs),
    days: int(p.days),
    hours: p.hours,
    energy_wh: int(p.energyWh),
    quality: p.quality,
    completeness: p.completeness,
    intervals: int(p.intervals),
    estimated_intervals: int(p.estimatedIntervals),
    bands: p.bands.map((b) => b.band).join(','),
    max_demand_w: orZero(p.maxDemandW),
    max_demand_at: int(orZero(p.maxDemandAt)),
    load_factor: orZero(p.loadFactor),
    weekday_avg_wh: orZero(p.weekdayAvgWh),
    weekend_avg_wh: orZero(p.weekendAvgWh),
    weekday_weekend_ratio: orZero(p.weekdayWeekendRatio),
    prev_month_wh: int(orZero(p.previousMonthWh)),
    change_prev_month: orZero(p.changeVsPreviousMonth),
    last_year_wh: int(orZero(p.lastYearWh)),
    change_last_year: orZero(p.changeVsLastYear),
    segment: p.segment,
    tier: p.tier,
    class_rank: int(p.classRank),
    class_size: int(p.classSize),
    meters: JSON.stringify(p.meters),
    advice_currency: a?.currency ?? '',
    advice_current_tariff: a?.currentTariff ?? '',
    advice_current_minor: int(a?.currentAmountMinor ?? 0),
    advice_best_tariff: a?.bestTariff ?? '',
    advice_best_minor: int(a?.bestAmountMinor ?? 0),
    advice_saving_minor: int(a?.savingMinor ?? 0),
    nulls: nulls.join(','),
    computed_at: int(computedAt),
  };
  for (const b of p.bands) {
    fields[`band_${b.band}_wh`] = int(b.wh);
    fields[`band_${b.band}_share`] = b.share;
  }
  return lp(PROFILE_MEASUREMENT, { customer: p.customerId, class: p.customerClass }, fields, p.fromMs);
}

const num = (v: unknown): number | undefined => (typeof v === 'number' && Number.isFinite(v) ? v : undefined);
const str = (v: unknown): string | undefined => (typeof v === 'string' ? v : undefined);
const isQuality = (v: unknown): v is Quality => QUALITIES.some((q) => q === v);
const isClass = (v: unknown): v is CustomerClass => CUSTOMER_CLASSES.some((c) => c === v);
const checkMeters = Compile(Type.Array(ProfileMeter));

function parseMeters(v: unknown): MonthProfile['meters'] {
  if (typeof v !== 'string') return [];
  try {
    const parsed: unknown = JSON.parse(v);
    return checkMeters.Check(parsed) ? parsed : [];
  } catch {
    return [];
  }
}

/** A row of `SELECT * FROM customer_profile … GROUP BY customer, class` back into a profile; undefined when it is not one. */
export function parseProfileRow(row: Record<string, unknown>, tags: Record<string, string>): StoredProfile | undefined {
  const customerId = tags.customer ?? str(row.customer);
  const cls = tags.class ?? row.class;
  const month = str(row.month);
  const timezone = str(row.tz);
  const tariff = str(row.tariff);
  const fromMs = num(row.time);
  const toMs = num(row.to_ms);
  const energyWh = num(row.energy_wh);
  const quality = row.quality;
  if (
    customerId === undefined ||
    !isClass(cls) ||
    month === undefined ||
    timezone === undefined ||
    tariff === undefined ||
    fromMs === undefined ||
    toMs === undefined ||
    energyWh === undefined ||
    !isQuality(quality)
  ) {
    return undefined;
  }
  const nulls = new Set((str(row.nulls) ?? '').split(','));
  const opt = (key: (typeof NULLABLE)[number], field: string): number | null => (nulls.has(key) ? null : (num(row[field]) ?? null));
  const bandNames = (str(row.bands) ?? '').split(',').filter((b) => b !== '');
  const tier = str(row.tier) ?? '';
  return {
    customerId,
    customerClass: cls,
    month,
    timezone,
    tariff,
    fromMs,
    toMs,
    days: num(row.days) ?? 0,
    hours: num(row.hours) ?? 0,
    energyWh,
    quality,
    completeness: num(row.completeness) ?? 0,
    intervals: num(row.intervals) ?? 0,
    estimatedIntervals: num(row.estimated_intervals) ?? 0,
    bands: bandNames.map((band) => ({ band, wh: num(row[`band_${band}_wh`]) ?? 0, share: num(row[`band_${band}_share`]) ?? 0 })),
    maxDemandW: opt('maxDemandW', 'max_demand_w'),
    maxDemandAt: opt('maxDemandAt', 'max_demand_at'),
    loadFactor: opt('loadFactor', 'load_factor'),
    weekdayAvgWh: opt('weekdayAvgWh', 'weekday_avg_wh'),
    weekendAvgWh: opt('weekendAvgWh', 'weekend_avg_wh'),
    weekdayWeekendRatio: opt('weekdayWeekendRatio', 'weekday_weekend_ratio'),
    previousMonthWh: opt('previousMonthWh', 'prev_month_wh'),
    changeVsPreviousMonth: opt('changeVsPreviousMonth', 'change_prev_month'),
    lastYearWh: opt('lastYearWh', 'last_year_wh'),
    changeVsLastYear: opt('changeVsLastYear', 'change_last_year'),
    segment: str(row.segment) ?? `${cls}/${tier}`,
    tier,
    classRank: num(row.class_rank) ?? 0,
    classSize: num(row.class_size) ?? 0,
    meters: parseMeters(row.meters),
    tariffAdvice: nulls.has('tariffAdvice')
      ? null
      : {
          currency: str(row.advice_currency) ?? '',
          currentTariff: str(row.advice_current_tariff) ?? '',
          currentAmountMinor: num(row.advice_current_minor) ?? 0,
          bestTariff: str(row.advice_best_tariff) ?? '',
          bestAmountMinor: num(row.advice_best_minor) ?? 0,
          savingMinor: num(row.advice_saving_minor) ?? 0,
        },
    computedAt: num(row.computed_at) ?? 0,
  };
}

/** Local midnights lie within UTC−12…UTC+14 of the UTC date. */
const ZONE_MARGIN_MS = 15 * 3_600_000;
const INFLUX_MIN_MS = -9_223_372_036_854;
const INFLUX_MAX_MS = 9_223_372_036_854;

/**
 * The stored profiles of `months` (YYYY-MM), of one customer, a list of them or all: one per customer and month, the
 * latest computed when a class change left two series. Sorted by customer, then month.
 */
export async function readProfiles(influx: Influx, months: readonly string[], customers?: string | readonly string[]): Promise<StoredProfile[]> {
  if (months.length === 0) return [];
  const sorted = [...months].sort();
  // InfluxDB refuses times outside its nanosecond range (1677-09-21 to 2262-04-11): no profile can be there.
  const from = Math.max(Date.parse(`${sorted[0]}-01T00:00:00Z`) - ZONE_MARGIN_MS, INFLUX_MIN_MS);
  const to = Math.min(Date.parse(`${sorted[sorted.length - 1]}-01T00:00:00Z`) + ZONE_MARGIN_MS, INFLUX_MAX_MS);
  if (!Number.isFinite(from) || !Number.isFinite(to) || from >= to) return [];
  if (customers !== undefined && typeof customers !== 'string' && customers.length === 0) return [];
  const who =
    customers === undefined
      ? ''
      : typeof customers === 'string'
        ? ` AND ${qid('customer')} = ${qstr(customers)}`
        : ` AND ${qid('customer')} =~ ${qregexAny([...customers])}`;
  const series = await influx.query(
    `SELECT * FROM ${qid(PROFILE_MEASUREMENT)} WHERE time >= ${from}ms AND time < ${to}ms${who} GROUP BY ${qid('customer')}, ${qid('class')}`,
  );
  const wanted = new Set(months);
  const best = new Map<string, StoredProfile>();
  for (const s of series) {
    for (const row of rows(s)) {
      const p = parseProfileRow(row, s.tags);
      if (p === undefined || !wanted.has(p.month)) continue;
      const k = `${p.customerId}\u0000${p.month}`;
      const cur = best.get(k);
      if (cur === undefined || p.computedAt >= cur.computedAt) best.set(k, p);
    }
  }
  return [...best.values()].sort((a, b) => (a.customerId === b.customerId ? (a.month < b.month ? -1 : 1) : a.customerId < b.customerId ? -1 : 1));
}

/** Every customer with a stored profile (any month), sorted: the candidates the profiles list pages through. */
export async function profileCustomers(influx: Influx): Promise<string[]> {
  return tagValues(await influx.query(`SHOW TAG VALUES FROM ${qid(PROFILE_MEASUREMENT)} WITH KEY = ${qid('customer')}`));
}

function iso(ms: number, zone: string): string {
  return DateTime.fromMillis(ms, { zone }).toISO({ suppressMilliseconds: true }) ?? new Date(ms).toISOString();
}

/** The API's profile. */
export function toProfileBody(p: StoredProfile): CustomerProfile {
  return {
    customerId: p.customerId,
    class: p.customerClass,
    month: p.month,
    timezone: p.timezone,
    tariff: p.tariff,
    from: iso(p.fromMs, p.timezone),
    to: iso(p.toMs, p.timezone),
    days: p.days,
    hours: p.hours,
    energyWh: p.energyWh,
    quality: p.quality,
    completeness: p.completeness,
    intervals: p.intervals,
    estimatedIntervals: p.estimatedIntervals,
    bands: p.bands.map((b) => ({ ...b })),
    maxDemandW: p.maxDemandW,
    maxDemandAt: p.maxDemandAt === null ? null : iso(p.maxDemandAt, p.timezone),
    loadFactor: p.loadFactor,
    weekdayAvgWh: p.weekdayAvgWh,
    weekendAvgWh: p.weekendAvgWh,
    weekdayWeekendRatio: p.weekdayWeekendRatio,
    previousMonthWh: p.previousMonthWh,
    changeVsPreviousMonth: p.changeVsPreviousMonth,
    lastYearWh: p.lastYearWh,
    changeVsLastYear: p.changeVsLastYear,
    segment: p.segment,
    tier: p.tier,
    classRank: p.classRank,
    classSize: p.classSize,
    meters: p.meters.map((m) => ({ ...m })),
    tariffAdvice: p.tariffAdvice === null ? null : { ...p.tariffAdvice },
    computedAt: new Date(p.computedAt).toISOString(),
  };
}

const CSV_HEAD = [
  'customerId',
  'class',
  'segment',
  'tier',
  'classRank',
  'classSize',
  'month',
  'timezone',
  'tariff',
  'from',
  'to',
  'energyWh',
  'quality',
  'completeness',
] as const;
const CSV_TAIL = MEASURES;
const ADVICE = ['currency', 'currentTariff', 'currentAmountMinor', 'bestTariff', 'bestAmountMinor', 'savingMinor'] as const;

/** One row per customer: band columns `band_<name>_wh` / `_share` for `allBands` (config order), meters as `a;b`. */
export function profilesCsv(items: readonly CustomerProfile[], allBands: readonly string[]): string {
  const bands = [...allBands];
  for (const it of items) for (const b of it.bands) if (!bands.includes(b.band)) bands.push(b.band);
  const header = [...CSV_HEAD, ...bands.flatMap((b) => [`band_${b}_wh`, `band_${b}_share`]), ...CSV_TAIL, 'meters', ...ADVICE.map((k) => `advice_${k}`)];
  const lines = items.map((it): CsvCell[] => {
    const byBand = new Map(it.bands.map((b) => [b.band, b]));
    return [
      ...CSV_HEAD.map((k) => it[k]),
      ...bands.flatMap((b) => [byBand.get(b)?.wh, byBand.get(b)?.share]),
      ...CSV_TAIL.map((k) => it[k]),
      it.meters.map((m) => m.meterId).join(';'),
      ...ADVICE.map((k) => it.tariffAdvice?.[k]),
    ];
  });
  return toCsv(header, lines, '\r\n');
}
