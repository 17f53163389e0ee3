import { HOUR_MS } from './local-time.js';

/**
 * The level common to many meters at once: weather (a hot afternoon raises every building's cooling load), an
 * unlisted holiday, a regional event. Per hour, the median over a shard's meters of log(measured / expected) is a
 * robust estimate of it (one meter's anomaly does not move a median); an EWMA over hours smooths it, and every
 * meter's expectation is multiplied by it. Each hourly median is first taken relative to the long-run median of its
 * local hour of day (an EWMA over about a week of days): the median of a skewed ratio is not 1, differently at night
 * and by day, and that standing offset must not move any expectation. What all meters do together is normal
 * variation, not an anomaly.
 * Plain data, event time only: the shard keeps one and advances it by its watermark. It lives in memory (a restarted
 * worker starts again at 1 and learns it within hours).
 */

export interface CommonLevelSettings {
  /** Time constant of the EWMA over hours; 0 = off (factor always 1). */
  hours: number;
  /** An hour with fewer samples than this teaches nothing. */
  minSamples: number;
}

/** Time constant of the long-run median per local hour of day, days. */
const LONG_DAYS = 7;

export interface CommonLevel {
  /** Short EWMA of the hourly medians relative to their hour of day's long-run median (log): the common level. */
  log: number;
  /** Long-run median per local hour of day (log), and whether each has been seen. */
  longLog: Float64Array;
  longSeen: Uint8Array;
  /** Local hour start → [local hour of day, log ratios of the intervals judged in it]. */
  pending: Map<number, { hourOfDay: number; ratios: number[] }>;
  /** Hours before this are closed. */
  closedUntil: number;
}

export function newCommonLevel(): CommonLevel {
  return { log: 0, longLog: new Float64Array(24), longSeen: new Uint8Array(24), pending: new Map(), closedUntil: -Infinity };
}

export function commonFactor(c: CommonLevel): number {
  return Math.exp(c.log);
}

/** One interval's log(measured / expected), in the hour starting at `hour` (ignored once that hour is closed). */
export function addSample(c: CommonLevel, hour: number, hourOfDay: number, logRatio: number): void {
  if (hour < c.closedUntil || !Number.isFinite(logRatio)) return;
  let p = c.pending.get(hour);
  if (p === undefined) {
    p = { hourOfDay: ((hourOfDay % 24) + 24) % 24, ratios: [] };
    c.pending.set(hour, p);
  }
  p.ratios.push(Math.max(-1, Math.min(1, logRatio)));
}

/** Closes every hour that ended by `watermark`, in time order, folding its median into the level. */
export function advanceCommon(c: CommonLevel, watermark: number, s: CommonLevelSettings): void {
  if (s.hours <= 0) {
    c.pending.clear();
    return;
  }
  const due: number[] = [];
  for (const hour of c.pending.keys()) if (hour + HOUR_MS <= watermark) due.push(hour);
  if (due.length === 0) return;
  due.sort((a, b) => a - b);
  const a = 1 - Math.exp(-1 / s.hours);
  const b = 1 - Math.exp(-1 / LONG_DAYS);
  for (const hour of due) {
    const p = c.pending.get(hour);
    c.pending.delete(hour);
    c.closedUntil = Math.max(c.closedUntil, hour + HOUR_MS);
    if (p === undefined || p.ratios.length < s.minSamples) continue;
    const list = p.ratios.sort((x, y) => x - y);
    const mid = list.length >> 1;
    const median = list.length % 2 === 1 ? (list[mid] ?? 0) : ((list[mid - 1] ?? 0) + (list[mid] ?? 0)) / 2;
    const h = p.hourOfDay;
    if (c.longSeen[h] === 0) {
      c.longSeen[h] = 1;
      c.longLog[h] = median;
    } else c.longLog[h] = (c.longLog[h] ?? 0) + b * (median - (c.longLog[h] ?? 0));
    c.log += a * (median - (c.longLog[h] ?? 0) - c.log);
  }
}
