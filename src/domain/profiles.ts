import type { Quality } from '../contracts/billing.js';
import type { InsightsConfig, TierConfig } from '../contracts/config-insights.js';
import type { ProfileMeter, TariffAdviceSummary } from '../contracts/insights.js';
import { CUSTOMER_CLASSES, type CustomerClass } from '../contracts/registry.js';
import { emptyRead, type BillingInterval, type MeterRead } from './billing.js';
import { assessRead, combineReads, type QualityConfig } from './billing-period.js';
import { dayWindow, HOUR_MS, nextDay } from './local-time.js';
import type { TariffAdvice } from './tariff-advice.js';
import { dayKindOf, type Tariff } from './tariffs.js';

/**
 * Customer profiles: one customer's month (a calendar month of its tariff's time zone) from the stored daily billing
 * reads of its meters and its summed intervals, then segments by consumption rank within its class. Pure: the billing
 * role fetches the reads, intervals and earlier profiles (src/billing/closer.ts) and stores the result.
 */

const MONTH_RE = /^(\d{4})-(0[1-9]|1[0-2])$/;

/** `month` (YYYY-MM) moved by `n` months (negative: back). */
export function addMonths(month: string, n: number): string {
  const m = MONTH_RE.exec(month);
  if (m === null) throw new RangeError(`not a month YYYY-MM: "${month}"`);
  const index = Number(m[1]) * 12 + Number(m[2]) - 1 + n;
  const y = Math.floor(index / 12);
  return `${String(y).padStart(4, '0')}-${String(index - y * 12 + 1).padStart(2, '0')}`;
}

/** Local days [fromDay, toDay) of a calendar month. */
export function monthDays(month: string): { fromDay: string; toDay: string } {
  if (!MONTH_RE.test(month)) throw new RangeError(`not a month YYYY-MM: "${month}"`);
  return { fromDay: `${month}-01`, toDay: `${addMonths(month, 1)}-01` };
}

/** True when local day `day` (YYYY-MM-DD) is the last of its calendar month. */
export const isLastDayOfMonth = (day: string): boolean => nextDay(day).slice(0, 7) !== day.slice(0, 7);

/** The stored energy of an earlier month, for the changes. */
export interface EnergyOf {
  energyWh: number;
  quality: Quality;
}

/** A profile before its segment is known (that needs every customer of the class). */
export interface ProfileCore {
  customerId: string;
  customerClass: CustomerClass;
  month: string;
  timezone: string;
  tariff: string;
  fromMs: number;
  toMs: number;
  days: number;
  hours: number;
  energyWh: number;
  quality: Quality;
  completeness: number;
  intervals: number;
  estimatedIntervals: number;
  bands: { band: string; wh: number; share: number }[];
  maxDemandW: number | null;
  maxDemandAt: number | null;
  loadFactor: number | null;
  weekdayAvgWh: number | null;
  weekendAvgWh: number | null;
  weekdayWeekendRatio: number | null;
  previousMonthWh: number | null;
  changeVsPreviousMonth: number | null;
  lastYearWh: number | null;
  changeVsLastYear: number | null;
  meters: ProfileMeter[];
  tariffAdvice: TariffAdviceSummary | null;
}

export interface MonthProfile extends ProfileCore {
  segment: string;
  tier: string;
  classRank: number;
  classSize: number;
}

export interface ProfileInput {
  customerId: string;
  customerClass: CustomerClass;
  /** The customer's current tariff: its zone sets the month, its bands and calendar the split. */
  tariff: Tariff;
  month: string;
  /** Each meter of the customer with its daily reads (any days; those outside the month are ignored). */
  meters: readonly { meterId: string; tariff: Tariff; daily: readonly MeterRead[] }[];
  /** The customer's load: its meters summed per interval (customerIntervals). */
  intervals: readonly BillingInterval[];
  quality: QualityConfig;
  previous?: EnergyOf | undefined;
  lastYear?: EnergyOf | undefined;
  advice?: TariffAdviceSummary | null;
}

/** Rounded to 4 decimals: shares and ratios, stable in JSON and CSV. */
const r4 = (v: number): number => Math.round(v * 10_000) / 10_000;

/** (current − earlier) / earlier; null when either is missing or incomplete, or the earlier month had no energy. */
export function changeOf(current: EnergyOf, earlier: EnergyOf | undefined): number | null {
  if (earlier === undefined || earlier.quality === 'incomplete' || current.quality === 'incomplete' || earlier.energyWh <= 0) return null;
  return r4((current.energyWh - earlier.energyWh) / earlier.energyWh);
}

function dateParts(day: string): { key: number; weekday: number } {
  const [y, m, d] = [Number(day.slice(0, 4)), Number(day.slice(5, 7)), Number(day.slice(8, 10))];
  // getUTCDay: 0 = Sunday; localParts counts 0 = Monday.
  const weekday = (new Date(Date.UTC(y, m - 1, d)).getUTCDay() + 6) % 7;
  return { key: y * 10000 + m * 100 + d, weekday };
}

/**
 * One customer's month. Energy and bands are the sums of its meters' daily reads (each day's energy is that meter's
 * register delta over the day, so the month's energy is the sum of each meter's register delta, a mid-month exchange
 * included). Quality is billing's gate applied to the customer: coverage of all meters together, register breaks,
 * the registers at both month boundaries known on some meter, and the share of estimated intervals. Max demand is
 * the highest summed interval demand starting in the month.
 */
export function computeProfile(input: ProfileInput): ProfileCore {
  const { tariff, month } = input;
  const { fromDay, toDay } = monthDays(month);
  const fromMs = dayWindow(tariff.timezone, fromDay).startMs;
  const toMs = dayWindow(tariff.timezone, toDay).startMs;
  const window = { fromDay, toDay };

  const whole = emptyRead(input.customerId, tariff, fromDay, toDay, fromMs, toMs);
  const bands = new Map<string, number>(tariff.bands.map((b) => [b, 0]));
  const perDay = new Map<string, number>();
  const meters: ProfileMeter[] = [];
  for (const m of [...input.meters].sort((a, b) => (a.meterId < b.meterId ? -1 : 1))) {
    const read = combineReads(m.meterId, { ...m.tariff, timezone: tariff.timezone }, window, m.daily);
    if (read.intervals === 0 && read.coveredMs === 0) continue;
    for (const d of m.daily) if (d.fromMs >= fromMs && d.toMs <= toMs) perDay.set(d.fromDay, (perDay.get(d.fromDay) ?? 0) + d.totalWh);
    whole.totalWh += read.totalWh;
    whole.exportWh += read.exportWh;
    whole.intervals += read.intervals;
    whole.estimatedIntervals += read.estimatedIntervals;
    whole.coveredMs += read.coveredMs;
    whole.registerBreaks += read.registerBreaks;
    if (read.startRegisterWh !== null) whole.startRegisterWh = read.startRegisterWh;
    if (read.endRegisterWh !== null) whole.endRegisterWh = read.endRegisterWh;
    for (const [band, wh] of Object.entries(read.bands)) bands.set(band, (bands.get(band) ?? 0) + wh);
    meters.push({
      meterId: m.meterId,
      tariff: m.tariff.name,
      startRegisterWh: read.startRegisterWh,
      endRegisterWh: read.endRegisterWh,
      energyWh: read.totalWh,
      intervals: read.intervals,
      estimatedIntervals: read.estimatedIntervals,
      registerBreaks: read.registerBreaks,
    });
  }
  // Two meters measuring at once (a site with several) cover the month once, not twice.
  whole.coveredMs = Math.min(whole.coveredMs, toMs - fromMs);
  const assessment = assessRead(whole, input.quality);
  const energyWh = whole.totalWh;

  let maxDemandW: number | null = null;
  let maxDemandAt: number | null = null;
  for (const iv of input.intervals) {
    if (iv.start < fromMs || iv.start >= toMs) continue;
    if (maxDemandW === null || iv.demandW > maxDemandW) {
      maxDemandW = iv.demandW;
      maxDemandAt = iv.start;
    }
  }
  const hours = (toMs - fromMs) / HOUR_MS;
  const loadFactor = maxDemandW === null || maxDemandW <= 0 ? null : r4(energyWh / (maxDemandW * hours));

  // Weekend: the tariff's weekend days and its calendar's holidays; a listed workday counts as a weekday.
  let weekdayWh = 0;
  let weekdays = 0;
  let weekendWh = 0;
  let weekends = 0;
  for (const [day, wh] of perDay) {
    const p = dateParts(day);
    if (dayKindOf(tariff, p.key, p.weekday) === 'weekday') {
      weekdayWh += wh;
      weekdays++;
    } else {
      weekendWh += wh;
      weekends++;
    }
  }
  const weekdayAvgWh = weekdays === 0 ? null : r4(weekdayWh / weekdays);
  const weekendAvgWh = weekends === 0 ? null : r4(weekendWh / weekends);
  const ratio = weekdayAvgWh === null || weekendAvgWh === null || weekendAvgWh <= 0 ? null : r4(weekdayWh / weekdays / (weekendWh / weekends));

  const current = { energyWh, quality: assessment.quality };
  return {
    customerId: input.customerId,
    customerClass: input.customerClass,
    month,
    timezone: tariff.timezone,
    tariff: tariff.name,
    fromMs,
    toMs,
    days: Math.round((toMs - fromMs) / (24 * HOUR_MS)),
    hours,
    energyWh,
    quality: assessment.quality,
    completeness: assessment.completeness,
    intervals: whole.intervals,
    estimatedIntervals: whole.estimatedIntervals,
    bands: [...bands].map(([band, wh]) => ({ band, wh, share: energyWh > 0 ? r4(wh / energyWh) : 0 })),
    maxDemandW,
    maxDemandAt,
    loadFactor,
    weekdayAvgWh,
    weekendAvgWh,
    weekdayWeekendRatio: ratio,
    previousMonthWh: input.previous?.energyWh ?? null,
    changeVsPreviousMonth: changeOf(current, input.previous),
    lastYearWh: input.lastYear?.energyWh ?? null,
    changeVsLastYear: changeOf(current, input.lastYear),
    meters,
    tariffAdvice: input.advice ?? null,
  };
}

/** The advisor's answer for the profile: the current tariff's bill, the cheapest eligible tariff in its currency, the saving. */
export function adviceSummary(advice: TariffAdvice): TariffAdviceSummary | null {
  const current = advice.options.find((o) => o.current);
  if (current === undefined) return null;
  // Options are cheapest first within a currency.
  const best = advice.options.find((o) => o.eligible && o.currency === current.currency) ?? current;
  return {
    currency: current.currency,
    currentTariff: current.tariff,
    currentAmountMinor: current.amountMinor,
    bestTariff: best.tariff,
    bestAmountMinor: best.amountMinor,
    savingMinor: current.amountMinor - best.amountMinor,
  };
}

// ---- segments ----

export interface Tier {
  tier: string;
  /** Cumulative share of the class from the top where this tier ends; 1 for the last. */
  upTo: number;
}

export type CompiledTiers = (cls: CustomerClass) => readonly Tier[];

export class InsightsConfigError extends Error {
  override name = 'InsightsConfigError';
  constructor(
    readonly path: string,
    message: string,
  ) {
    super(`insights.${path}: ${message}`);
  }
}

function compileTierList(list: readonly TierConfig[], path: string): Tier[] {
  const out: Tier[] = [];
  let cum = 0;
  const names = new Set<string>();
  list.forEach((t, i) => {
    if (names.has(t.tier)) throw new InsightsConfigError(`${path}.${i}.tier`, `duplicate tier "${t.tier}"`);
    names.add(t.tier);
    const last = i === list.length - 1;
    if (last) {
      if (t.share !== undefined) throw new InsightsConfigError(`${path}.${i}.share`, 'the last tier takes the rest: no share');
      out.push({ tier: t.tier, upTo: 1 });
      return;
    }
    if (t.share === undefined) throw new InsightsConfigError(`${path}.${i}.share`, 'every tier but the last needs a share');
    cum += t.share;
    if (cum > 1 + 1e-9) throw new InsightsConfigError(`${path}.${i}.share`, `shares add up to ${cum}, more than 1`);
    out.push({ tier: t.tier, upTo: cum });
  });
  return out;
}

/** Checks the segment tiers once at start (InsightsConfigError naming the key) and returns the tiers per class. */
export function compileTiers(cfg: InsightsConfig['segments']): CompiledTiers {
  const def = compileTierList(cfg.default, 'segments.default');
  const byClass = new Map<CustomerClass, Tier[]>();
  for (const cls of CUSTOMER_CLASSES) {
    const list = cfg.classes[cls];
    if (list !== undefined) byClass.set(cls, compileTierList(list, `segments.classes.${cls}`));
  }
  return (cls) => byClass.get(cls) ?? def;
}

/**
 * Tiers by rank within each class: customers sorted by energy, largest first; rank = 1 + the number of the class's
 * customers with more energy, so equal energy shares a rank (and the higher tier). A tier ending at cumulative share
 * s holds ranks ≤ floor(s × class size): a class too small for a tier has none in it (3 customers and a 5 % tier).
 */
export function assignSegments(profiles: readonly ProfileCore[], tiers: CompiledTiers): MonthProfile[] {
  const byClass = new Map<CustomerClass, ProfileCore[]>();
  for (const p of profiles) byClass.set(p.customerClass, [...(byClass.get(p.customerClass) ?? []), p]);
  const out: MonthProfile[] = [];
  for (const [cls, list] of byClass) {
    const sorted = [...list].sort((a, b) => b.energyWh - a.energyWh || (a.customerId < b.customerId ? -1 : 1));
    const n = sorted.length;
    const rules = tiers(cls);
    let rank = 0;
    sorted.forEach((p, i) => {
      if (i === 0 || (sorted[i - 1]?.energyWh ?? 0) > p.energyWh) rank = i + 1;
      const rule = rules.find((t) => t.upTo >= 1 || rank <= Math.floor(t.upTo * n + 1e-9)) ?? rules[rules.length - 1];
      const tier = rule?.tier ?? 'standard';
      out.push({ ...p, tier, segment: `${cls}/${tier}`, classRank: rank, classSize: n });
    });
  }
  return out.sort((a, b) => (a.customerId < b.customerId ? -1 : a.customerId > b.customerId ? 1 : 0));
}
