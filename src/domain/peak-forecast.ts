import type { DrConfig } from '../contracts/config-dr.js';
import { instantOfWall } from './cbl.js';
import { dayNumberOf } from './holidays.js';
import { DAY_MS, dayWindow, HOUR_MS, localDay, localMs, localParts } from './local-time.js';

/**
 * Day-ahead peak forecast for demand response: the load expected on `day`, per interval, from the same load's
 * recent like days, and the windows where an event would pay. Pure: the caller reads the load points.
 *
 * Method (a "similar day" forecast, the simplest of the short-term load forecasting families, and the same
 * like-day averaging as a CBL with x = y, e.g. CAISO's "10 in 10"; see src/domain/cbl.ts for those sources):
 * 1. Day type: weekday, or weekend day / holiday (as in the CBL).
 * 2. Like days: walking back from the day before `day`, at most `lookbackDays` calendar days, the `likeDays` most
 *    recent days of the same type with at most 10 % of their slots missing.
 * 3. Per slot (the same local wall-clock time, so DST keeps 18:00 at 18:00) the mean of the like days' values there.
 * 4. Trend: the mean load of the `trendDays` most recent like days over the mean of all of them, clamped to
 *    1 ± `trendCap`, scales every slot (a heat wave building up over the week lifts tomorrow too). 0 days: 1.
 * 5. Threshold: `thresholdKw` when set (a capacity), else `peakShare` × the like days' typical daily peak (the mean
 *    of their maxima). Windows: runs of slots whose forecast reaches it, each widened around its peak to at least
 *    `minWindowMinutes` (an event is called for a while, not for a quarter hour), overlapping ones merged.
 * Not a weather model: a forecast from temperature would do better on the first hot day, which this only sees the
 * day after.
 */

export type ForecastConfig = DrConfig['forecast'];

export interface LoadPoint {
  /** Interval start, epoch ms. */
  start: number;
  kw: number;
}

export interface ForecastInput {
  /** The load's points (any order), on one grid of `intervalMs`. */
  series: readonly LoadPoint[];
  intervalMs: number;
  /** Local date YYYY-MM-DD to forecast. */
  day: string;
  timezone: string;
  holidays: readonly string[];
}

export interface ForecastWindow {
  start: number;
  end: number;
  peakKw: number;
  /** Energy above the threshold inside the window, kWh. */
  excessKwh: number;
}

export interface PeakForecast {
  dayType: 'weekday' | 'weekend';
  /** In calendar order. */
  likeDays: string[];
  trendFactor: number;
  slots: { start: number; expectedKw: number }[];
  peak: { start: number; expectedKw: number } | null;
  typicalPeakKw: number;
  thresholdKw: number;
  thresholdBasis: 'capacity' | 'peakShare';
  windows: ForecastWindow[];
}

const MAX_MISSING_SHARE = 0.1;

const mean = (xs: readonly number[]): number => (xs.length === 0 ? 0 : xs.reduce((a, b) => a + b, 0) / xs.length);

export function forecastPeak(input: ForecastInput, cfg: ForecastConfig): PeakForecast {
  const { timezone: zone, intervalMs } = input;
  const target = dayWindow(zone, input.day);
  const slots: number[] = [];
  for (let t = target.startMs; t < target.endMs; t += intervalMs) slots.push(t);

  const byStart = new Map<number, number>();
  for (const p of input.series) if (Number.isFinite(p.kw)) byStart.set(p.start, p.kw);

  const holidays = new Set(input.holidays.map(dayNumberOf).filter((d): d is number => d !== undefined));
  const targetDay = localParts(zone, target.startMs).dayNumber;
  const weekendLike = (d: number): boolean => holidays.has(d) || localParts('UTC', d * DAY_MS).weekday >= 5;
  const dayType = weekendLike(targetDay) ? 'weekend' : 'weekday';

  // Like days, most recent first: per target slot the value at the same wall-clock time, or undefined.
  const like: { day: number; values: (number | undefined)[]; mean: number; max: number }[] = [];
  const maxMissing = Math.floor(MAX_MISSING_SHARE * slots.length);
  for (let back = 1; back <= cfg.lookbackDays && like.length < cfg.likeDays; back++) {
    const d = targetDay - back;
    if (weekendLike(d) !== (dayType === 'weekend')) continue;
    const values = slots.map((s) => {
      const at = instantOfWall(zone, localMs(zone, s) - back * DAY_MS);
      return at === undefined ? undefined : byStart.get(at);
    });
    const known = values.filter((v): v is number => v !== undefined);
    if (known.length === 0 || slots.length - known.length > maxMissing) continue;
    like.push({ day: d, values, mean: mean(known), max: Math.max(...known) });
  }

  const recent = like.slice(0, cfg.trendDays);
  const allMean = mean(like.map((l) => l.mean));
  const rawTrend = cfg.trendDays > 0 && recent.length > 0 && allMean > 0 ? mean(recent.map((l) => l.mean)) / allMean : 1;
  const trendFactor = Math.min(1 + cfg.trendCap, Math.max(1 - cfg.trendCap, rawTrend));

  const expected = slots.map((start, i) => {
    const vals = like.map((l) => l.values[i]).filter((v): v is number => v !== undefined);
    return { start, expectedKw: mean(vals) * trendFactor };
  });
  const typicalPeakKw = mean(like.map((l) => l.max));
  const capacity = cfg.thresholdKw > 0;
  const thresholdKw = capacity ? cfg.thresholdKw : cfg.peakShare * typicalPeakKw;

  let peak: PeakForecast['peak'] = null;
  for (const s of expected) if (like.length > 0 && (peak === null || s.expectedKw > peak.expectedKw)) peak = s;

  return {
    dayType,
    likeDays: like.map((l) => localDay('UTC', l.day * DAY_MS)).reverse(),
    trendFactor,
    slots: expected,
    peak,
    typicalPeakKw,
    thresholdKw,
    thresholdBasis: capacity ? 'capacity' : 'peakShare',
    windows: like.length === 0 ? [] : windowsOver(expected, thresholdKw, intervalMs, cfg.minWindowMinutes),
  };
}

/** Runs of slots at or above `threshold`, each widened around its peak to `minMinutes`, overlapping ones merged. */
function windowsOver(slots: readonly { start: number; expectedKw: number }[], threshold: number, intervalMs: number, minMinutes: number): ForecastWindow[] {
  const minSlots = Math.max(1, Math.ceil((minMinutes * 60_000) / intervalMs));
  const runs: [number, number][] = [];
  let from = -1;
  slots.forEach((s, i) => {
    const above = s.expectedKw >= threshold;
    if (above && from < 0) from = i;
    if (!above && from >= 0) {
      runs.push([from, i]);
      from = -1;
    }
  });
  if (from >= 0) runs.push([from, slots.length]);

  const kw = (i: number): number => slots[i]?.expectedKw ?? -Infinity;
  const widened = runs.map(([a, b]) => {
    let lo = a;
    let hi = b;
    while (hi - lo < minSlots && (lo > 0 || hi < slots.length)) {
      // Take the higher neighbour: the window grows towards where the load is.
      if (lo > 0 && (hi >= slots.length || kw(lo - 1) >= kw(hi))) lo--;
      else hi++;
    }
    return [lo, hi] as [number, number];
  });
  const merged: [number, number][] = [];
  for (const w of widened) {
    const last = merged[merged.length - 1];
    if (last !== undefined && w[0] <= last[1]) last[1] = Math.max(last[1], w[1]);
    else merged.push([w[0], w[1]]);
  }
  return merged.map(([a, b]) => {
    const part = slots.slice(a, b);
    const first = part[0];
    return {
      start: first?.start ?? 0,
      end: (part[part.length - 1]?.start ?? 0) + intervalMs,
      peakKw: Math.max(...part.map((s) => s.expectedKw)),
      excessKwh: part.reduce((e, s) => e + (Math.max(0, s.expectedKw - threshold) * intervalMs) / HOUR_MS, 0),
    };
  });
}
