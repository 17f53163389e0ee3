import { apportion } from './billing-apportion.js';
import { dayWindow, nextDay } from './local-time.js';
import { bandSegments, singleBand, type BandSegment, type Tariff } from './tariffs.js';

/**
 * Billing determinants from interval data: per meter and local day (then per period, billing-period.ts)
 * the start/end registers, energy per time-of-use band, max demand and data quality counts.
 * Pure: the caller fetches the intervals and the instants that have an actual meter read.
 */

/** One `interval` point as the stream worker writes it (time = interval start). */
export interface BillingInterval {
  /** Interval start, epoch ms. */
  start: number;
  durationMs: number;
  /** Import energy in the interval, integer Wh. */
  wh: number;
  exportWh: number;
  /** Average import power over the interval, W. */
  demandW: number;
  /** Import register at the interval end, integer Wh. */
  registerWh: number;
  estimated: boolean;
}

/** Determinants of one meter over [fromDay, toDay) local days of its tariff's zone. */
export interface MeterRead {
  meterId: string;
  tariff: string;
  timezone: string;
  fromDay: string;
  /** Exclusive. */
  toDay: string;
  fromMs: number;
  toMs: number;
  /** Import register at fromMs; null when no interval covers that instant. */
  startRegisterWh: number | null;
  /** True when no actual meter read falls on fromMs (the register was interpolated). */
  startInterpolated: boolean;
  endRegisterWh: number | null;
  endInterpolated: boolean;
  /** Import energy of the intervals inside the window; with full coverage equals end − start register. */
  totalWh: number;
  exportWh: number;
  /** Wh per band; sums to totalWh. Every band of the tariff is present. */
  bands: Record<string, number>;
  /** Highest interval average import power, W, and the start of that interval. */
  maxDemandW: number | null;
  maxDemandAt: number | null;
  /** Intervals starting inside the window. */
  intervals: number;
  estimatedIntervals: number;
  /** Milliseconds of the window covered by intervals. */
  coveredMs: number;
  /** Places where an interval's start register (register − wh) differs from the previous interval's end. */
  registerBreaks: number;
}

export interface DailyInput {
  meterId: string;
  day: string;
  tariff: Tariff;
  /** Intervals of the meter around the day, any order; neighbours outside the day are ignored. */
  intervals: readonly BillingInterval[];
  /** Instants at which the meter actually reported a read (at least the day's boundaries that have one). */
  actualReadsAt: ReadonlySet<number>;
}

interface Piece extends BandSegment {
  wh: number;
  exportWh: number;
}

function cut(segments: BandSegment[], at: number): BandSegment[] {
  const out: BandSegment[] = [];
  for (const s of segments) {
    if (s.fromMs < at && at < s.toMs) out.push({ ...s, toMs: at }, { ...s, fromMs: at });
    else out.push(s);
  }
  return out;
}

/**
 * An interval cut at band edges and at the day boundaries `a` and `b`, its energy apportioned by time.
 * Intervals are far shorter than a day, so a boundary inside one is the boundary of both days that share
 * it: each day cuts it at the same instant and the two split the energy identically.
 */
function piecesOf(iv: BillingInterval, tariff: Tariff, a: number, b: number): Piece[] {
  let segs = bandSegments(tariff, iv.start, iv.start + iv.durationMs);
  segs = cut(cut(segs, a), b);
  if (segs.length === 1) {
    const only = segs[0];
    if (only !== undefined) return [{ ...only, wh: iv.wh, exportWh: iv.exportWh }];
  }
  const weights = segs.map((s) => s.toMs - s.fromMs);
  const wh = apportion(iv.wh, weights);
  const exp = apportion(iv.exportWh, weights);
  return segs.map((s, i) => ({ ...s, wh: wh[i] ?? 0, exportWh: exp[i] ?? 0 }));
}

/** Register at instant `at` inside the interval: start register plus the energy of the pieces before it. */
function registerInside(iv: BillingInterval, pieces: readonly Piece[], at: number): number {
  let r = iv.registerWh - iv.wh;
  for (const p of pieces) if (p.toMs <= at) r += p.wh;
  return r;
}

/** Sorted by start, one per start (the last given wins), overlapping ones dropped and counted as breaks. */
function chain(intervals: readonly BillingInterval[]): { list: BillingInterval[]; overlaps: Set<number> } {
  const byStart = new Map<number, BillingInterval>();
  for (const iv of intervals) byStart.set(iv.start, iv);
  const sorted = [...byStart.values()].sort((a, b) => a.start - b.start);
  const list: BillingInterval[] = [];
  const overlaps = new Set<number>();
  for (const iv of sorted) {
    const prev = list[list.length - 1];
    if (prev !== undefined && iv.start < prev.start + prev.durationMs) {
      overlaps.add(prev.start);
      continue;
    }
    list.push(iv);
  }
  return { list, overlaps };
}

export function emptyBands(tariff: Tariff): Record<string, number> {
  const bands: Record<string, number> = {};
  for (const b of tariff.bands) bands[b] = 0;
  return bands;
}

/** A read over [fromDay, toDay) with nothing in it yet: no registers, zero energy in every band. */
export function emptyRead(meterId: string, tariff: Tariff, fromDay: string, toDay: string, fromMs: number, toMs: number): MeterRead {
  return {
    meterId,
    tariff: tariff.name,
    timezone: tariff.timezone,
    fromDay,
    toDay,
    fromMs,
    toMs,
    startRegisterWh: null,
    startInterpolated: true,
    endRegisterWh: null,
    endInterpolated: true,
    totalWh: 0,
    exportWh: 0,
    bands: emptyBands(tariff),
    maxDemandW: null,
    maxDemandAt: null,
    intervals: 0,
    estimatedIntervals: 0,
    coveredMs: 0,
    registerBreaks: 0,
  };
}

/** Determinants of one meter for one local day of its tariff's time zone. */
export function computeDailyRead(input: DailyInput): MeterRead {
  const { tariff } = input;
  const w = dayWindow(tariff.timezone, input.day);
  const a = w.startMs;
  const b = w.endMs;
  const read = emptyRead(input.meterId, tariff, input.day, nextDay(input.day), a, b);

  const { list, overlaps } = chain(input.intervals);
  let prev: BillingInterval | undefined;
  for (const iv of list) {
    const s = iv.start;
    const e = s + iv.durationMs;
    if (e <= a || s >= b) continue;
    if (prev !== undefined) {
      const prevEnd = prev.start + prev.durationMs;
      if (overlaps.has(prev.start) || (s === prevEnd && iv.registerWh - iv.wh !== prev.registerWh)) read.registerBreaks++;
    }
    prev = iv;

    read.coveredMs += Math.min(e, b) - Math.max(s, a);
    const band = s >= a && e <= b ? singleBand(tariff, s, e) : undefined;
    if (band !== undefined) {
      // Fast path: inside the day and inside one band, nothing to split.
      read.bands[band] = (read.bands[band] ?? 0) + iv.wh;
      read.totalWh += iv.wh;
      read.exportWh += iv.exportWh;
    } else {
      const pieces = piecesOf(iv, tariff, a, b);
      for (const p of pieces) {
        if (p.fromMs >= a && p.toMs <= b) {
          read.bands[p.band] = (read.bands[p.band] ?? 0) + p.wh;
          read.totalWh += p.wh;
          read.exportWh += p.exportWh;
        }
      }
      if (s < a && a < e) {
        read.startRegisterWh = registerInside(iv, pieces, a);
        read.startInterpolated = true;
      }
      if (s < b && b < e) {
        read.endRegisterWh = registerInside(iv, pieces, b);
        read.endInterpolated = true;
      }
    }
    if (s === a) {
      read.startRegisterWh = iv.registerWh - iv.wh;
      read.startInterpolated = !input.actualReadsAt.has(a);
    }
    if (e === b) {
      read.endRegisterWh = iv.registerWh;
      read.endInterpolated = !input.actualReadsAt.has(b);
    }

    // An interval belongs to the day it starts in for counts and demand.
    if (s >= a) {
      read.intervals++;
      if (iv.estimated) read.estimatedIntervals++;
      if (read.maxDemandW === null || iv.demandW > read.maxDemandW) {
        read.maxDemandW = iv.demandW;
        read.maxDemandAt = s;
      }
    }
  }
  return read;
}
