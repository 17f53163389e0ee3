import type { Quality } from '../contracts/billing.js';
import { emptyRead, type MeterRead } from './billing.js';
import { dayWindow } from './local-time.js';
import type { Tariff } from './tariffs.js';

/** Periods and the quality gate: daily reads combined into a billing period read. Pure. */

export interface QualityConfig {
  /** More than this share of estimated intervals makes a read `estimated`. */
  maxEstimatedPct: number;
  /** Less coverage than this makes a read `incomplete` (100: every interval must be there). */
  minCompletenessPct: number;
}

export interface Assessment {
  /** Percent of the window covered by intervals, floored to 2 decimals (never shows 100 when a minute is missing). */
  completeness: number;
  quality: Quality;
}

/**
 * `incomplete` when a boundary register is unknown (no reads on both sides), coverage is short,
 * or the register chain breaks (a reset or replaced meter needs a person); then `estimated` when too many
 * intervals were estimated; else `actual`.
 */
export function assessRead(read: MeterRead, cfg: QualityConfig): Assessment {
  const windowMs = read.toMs - read.fromMs;
  const completeness = windowMs <= 0 ? 0 : Math.floor((read.coveredMs * 10000) / windowMs) / 100;
  if (read.startRegisterWh === null || read.endRegisterWh === null || read.registerBreaks > 0 || read.coveredMs * 100 < cfg.minCompletenessPct * windowMs) {
    return { completeness, quality: 'incomplete' };
  }
  if (read.intervals === 0 || read.estimatedIntervals * 100 > cfg.maxEstimatedPct * read.intervals) {
    return { completeness, quality: 'estimated' };
  }
  return { completeness, quality: 'actual' };
}

export interface PeriodWindow {
  fromDay: string;
  /** Exclusive. */
  toDay: string;
}

const PERIOD_RE = /^(\d{4})-(0[1-9]|1[0-2])$/;

/**
 * Billing period `YYYY-MM`: from day `startDay` of that month to the same day of the next month
 * (startDay 1: the calendar month).
 */
export function periodWindow(period: string, startDay = 1): PeriodWindow {
  const m = PERIOD_RE.exec(period);
  if (!m) throw new RangeError(`not a period YYYY-MM: "${period}"`);
  if (!Number.isInteger(startDay) || startDay < 1 || startDay > 28) throw new RangeError(`period start day must be 1-28, got ${startDay}`);
  const y = Number(m[1]);
  const mo = Number(m[2]);
  const next = mo === 12 ? { y: y + 1, mo: 1 } : { y, mo: mo + 1 };
  const d = String(startDay).padStart(2, '0');
  return {
    fromDay: `${y}-${String(mo).padStart(2, '0')}-${d}`,
    toDay: `${next.y}-${String(next.mo).padStart(2, '0')}-${d}`,
  };
}

/** The period (YYYY-MM) that local day `day` belongs to. */
export function periodOf(day: string, startDay = 1): string {
  const y = Number(day.slice(0, 4));
  const mo = Number(day.slice(5, 7));
  const d = Number(day.slice(8, 10));
  if (d >= startDay) return day.slice(0, 7);
  return mo === 1 ? `${y - 1}-12` : `${y}-${String(mo - 1).padStart(2, '0')}`;
}

/**
 * One meter's read over [fromDay, toDay) from its daily reads (any order; days outside the window ignored).
 * Missing days lower coverage and leave a boundary register unknown; a register that does not carry over
 * from one day's end to the next day's start counts as a break. `tariff` is the meter's current tariff
 * (its zone sets the window; its bands are always present).
 */
export function combineReads(meterId: string, tariff: Tariff, window: PeriodWindow, daily: readonly MeterRead[]): MeterRead {
  const fromMs = dayWindow(tariff.timezone, window.fromDay).startMs;
  const toMs = dayWindow(tariff.timezone, window.toDay).startMs;
  const out = emptyRead(meterId, tariff, window.fromDay, window.toDay, fromMs, toMs);
  const days = daily.filter((d) => d.fromMs >= fromMs && d.toMs <= toMs).sort((x, y) => x.fromMs - y.fromMs);
  let prev: MeterRead | undefined;
  for (const d of days) {
    if (prev !== undefined && prev.fromMs === d.fromMs) continue;
    if (d.fromMs === fromMs) {
      out.startRegisterWh = d.startRegisterWh;
      out.startInterpolated = d.startInterpolated;
    }
    if (d.toMs === toMs) {
      out.endRegisterWh = d.endRegisterWh;
      out.endInterpolated = d.endInterpolated;
    }
    if (prev !== undefined && prev.toMs === d.fromMs && prev.endRegisterWh !== null && d.startRegisterWh !== null && prev.endRegisterWh !== d.startRegisterWh) {
      out.registerBreaks++;
    }
    out.registerBreaks += d.registerBreaks;
    out.totalWh += d.totalWh;
    out.exportWh += d.exportWh;
    for (const [band, wh] of Object.entries(d.bands)) out.bands[band] = (out.bands[band] ?? 0) + wh;
    if (d.maxDemandW !== null && (out.maxDemandW === null || d.maxDemandW > out.maxDemandW)) {
      out.maxDemandW = d.maxDemandW;
      out.maxDemandAt = d.maxDemandAt;
    }
    out.intervals += d.intervals;
    out.estimatedIntervals += d.estimatedIntervals;
    out.coveredMs += d.coveredMs;
    prev = d;
  }
  return out;
}
