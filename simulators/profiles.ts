import { DateTime } from 'luxon';
import type { CustomerClass } from '../src/contracts/registry.js';

/**
 * Load and generation shapes. Pure functions of local time: the engine computes the calendar once per step
 * and every meter reads from it.
 */

export type ProfileKind = 'residential' | 'commercial' | 'industrialTwoShift' | 'industrialThreeShift' | 'critical';

export interface CalendarPoint {
  /** Local hour of day, fractional (13.5 = 13:30). */
  hour: number;
  /** ISO weekday, 1 = Monday … 7 = Sunday. */
  weekday: number;
  /** Local day of year, 1…366. */
  dayOfYear: number;
  dst: boolean;
  /** Local calendar day as yyyymmdd; changes at local midnight. */
  dayKey: number;
}

export function calendarAt(ms: number, zone: string): CalendarPoint {
  const dt = DateTime.fromMillis(ms, { zone });
  return {
    hour: dt.hour + dt.minute / 60 + dt.second / 3600,
    weekday: dt.weekday,
    dayOfYear: dt.ordinal,
    dst: dt.isInDST,
    dayKey: dt.year * 10_000 + dt.month * 100 + dt.day,
  };
}

const BUCKET_MS = 1_800_000;

/**
 * calendarAt for a stream of times: the zone's offset is looked up once per half hour of UTC (zone rules change
 * offsets on whole or half hours) and the local fields derived by arithmetic, which keeps a million-reading run cheap.
 */
export class CalendarClock {
  private bucket = Number.NaN;
  private offsetMs = 0;
  private dst = false;

  constructor(private readonly zone: string) {}

  at(ms: number): CalendarPoint {
    const bucket = Math.floor(ms / BUCKET_MS);
    if (bucket !== this.bucket) {
      const dt = DateTime.fromMillis(bucket * BUCKET_MS, { zone: this.zone });
      this.bucket = bucket;
      this.offsetMs = dt.offset * 60_000;
      this.dst = dt.isInDST;
    }
    const local = new Date(ms + this.offsetMs);
    const y = local.getUTCFullYear();
    const dayOfYear = Math.floor((Date.UTC(y, local.getUTCMonth(), local.getUTCDate()) - Date.UTC(y, 0, 1)) / 86_400_000) + 1;
    return {
      hour: local.getUTCHours() + local.getUTCMinutes() / 60 + local.getUTCSeconds() / 3600,
      weekday: ((local.getUTCDay() + 6) % 7) + 1,
      dayOfYear,
      dst: this.dst,
      dayKey: y * 10_000 + (local.getUTCMonth() + 1) * 100 + local.getUTCDate(),
    };
  }
}

/** Gaussian bump on the 24-hour circle, so an evening peak spills past midnight. */
function bump(h: number, centre: number, width: number): number {
  let d = Math.abs(h - centre) % 24;
  if (d > 12) d = 24 - d;
  return Math.exp(-0.5 * (d / width) ** 2);
}

/** Smooth on/off between `from` and `to` (hours), edges `edge` hours wide. */
function plateau(h: number, from: number, to: number, edge: number): number {
  return 1 / (1 + Math.exp(-(h - from) / edge)) / (1 + Math.exp(-(to - h) / edge));
}

function rawShape(kind: ProfileKind, h: number, weekday: number): number {
  const saturday = weekday === 6;
  const sunday = weekday === 7;
  switch (kind) {
    case 'residential':
      return saturday || sunday
        ? 0.5 + 0.8 * bump(h, 9.5, 1.4) + 0.7 * bump(h, 14, 2) + 1.7 * bump(h, 20.5, 1.8)
        : 0.45 + 0.9 * bump(h, 7.5, 1) + 0.35 * bump(h, 13.5, 1.5) + 1.9 * bump(h, 20.5, 1.8);
    case 'commercial':
      if (sunday) return 0.3;
      return saturday ? 0.3 + 0.6 * plateau(h, 9, 14, 0.5) : 0.3 + 1.5 * plateau(h, 8, 19, 0.6);
    case 'industrialTwoShift':
      if (sunday) return 0.25;
      if (saturday) return 0.25 + 0.6 * plateau(h, 6, 14, 0.3);
      // Two shifts, 06–14 and 14–22, with a short dip at the changeover.
      return 0.25 + 1.2 * plateau(h, 6, 22, 0.3) - 0.15 * bump(h, 14, 0.25);
    case 'industrialThreeShift':
      return (saturday || sunday ? 0.75 : 1) - 0.15 * (bump(h, 6, 0.25) + bump(h, 14, 0.25) + bump(h, 22, 0.25));
    case 'critical':
      return 0.85 + (saturday || sunday ? 0.2 : 0.35) * plateau(h, 7, 21, 1.5);
  }
}

const KINDS: readonly ProfileKind[] = ['residential', 'commercial', 'industrialTwoShift', 'industrialThreeShift', 'critical'];

/** Weekly mean of each raw shape, so `shape` averages 1 over a week and `meanW` is the meter's average power. */
const WEEK_MEAN: ReadonlyMap<ProfileKind, number> = new Map(
  KINDS.map((kind) => {
    let sum = 0;
    let n = 0;
    for (let day = 1; day <= 7; day++) {
      for (let q = 0; q < 96; q++) {
        sum += rawShape(kind, (q + 0.5) / 4, day);
        n++;
      }
    }
    return [kind, sum / n];
  }),
);

/** Shapes tabulated per minute of each weekday (linear in between): the engine evaluates them a million times a run. */
const TABLE_PER_HOUR = 60;
const TABLES: ReadonlyMap<ProfileKind, Float64Array[]> = new Map(
  KINDS.map((kind) => {
    const mean = WEEK_MEAN.get(kind) ?? 1;
    const days = Array.from({ length: 7 }, (_, d) => {
      const table = new Float64Array(24 * TABLE_PER_HOUR + 1);
      for (let i = 0; i < table.length; i++) table[i] = rawShape(kind, i / TABLE_PER_HOUR, d + 1) / mean;
      return table;
    });
    return [kind, days];
  }),
);

/** The lowest relative load of a weekday (its base: what runs whether or not anyone is in). */
const FLOORS: ReadonlyMap<ProfileKind, number[]> = new Map(
  KINDS.map((kind) => [kind, (TABLES.get(kind) ?? []).map((t) => t.reduce((m, x) => Math.min(m, x), Infinity))]),
);

export function shapeFloor(kind: ProfileKind, weekday: number): number {
  return FLOORS.get(kind)?.[weekday - 1] ?? 0;
}

/** Relative load (weekly mean 1) at local hour `h` on ISO weekday `weekday`, the meter's habits shifted by `shiftH` hours. */
export function shape(kind: ProfileKind, h: number, weekday: number, shiftH = 0): number {
  const table = TABLES.get(kind)?.[weekday - 1];
  if (table === undefined) return 1;
  const x = ((((h - shiftH) % 24) + 24) % 24) * TABLE_PER_HOUR;
  const i = Math.floor(x);
  const a = table[i] ?? 1;
  const b = table[i + 1] ?? a;
  return a + (b - a) * (x - i);
}

/** Heating (winter) and cooling (summer) amplitude per class. */
const SEASONAL: Record<CustomerClass, { heat: number; cool: number }> = {
  residential: { heat: 0.35, cool: 0.15 },
  commercial: { heat: 0.15, cool: 0.3 },
  industrial: { heat: 0.05, cool: 0.05 },
  critical: { heat: 0.1, cool: 0.15 },
};

/**
 * Seasonal normal of the daily mean temperature, °C (northern hemisphere, inland Iberia: about 5 °C mid-January,
 * 25 °C mid-July).
 */
export function normalTempC(dayOfYear: number): number {
  return 15 - 10 * Math.cos((2 * Math.PI * (dayOfYear - 15)) / 365.25);
}

/**
 * Heating below 15 °C and cooling above it, per 10 °C of difference, per class; `sensitivity` is the meter's own
 * spread around its class.
 */
export function hvacFactor(cls: CustomerClass, tempC: number, scale: number, sensitivity = 1): number {
  const a = SEASONAL[cls];
  return 1 + scale * sensitivity * (a.heat * Math.max(0, (15 - tempC) / 10) + a.cool * Math.max(0, (tempC - 15) / 10));
}

/** Seasonal multiplier at normal temperatures (coldest around 15 January, hottest around mid-July). */
export function seasonalFactor(cls: CustomerClass, dayOfYear: number, scale: number): number {
  return hvacFactor(cls, normalTempC(dayOfYear), scale);
}

/**
 * Clear-sky PV output per kWp (0…1) at local hour `h`: day length and peak height follow the season
 * (about 40° N); solar noon near 12:30 standard time.
 */
export function clearSky(h: number, dayOfYear: number, dst: boolean): number {
  const season = Math.cos((2 * Math.PI * (dayOfYear - 172)) / 365.25);
  const dayLength = 12 + 3.2 * season;
  const noon = 12.5 + (dst ? 1 : 0);
  const x = (h - (noon - dayLength / 2)) / dayLength;
  if (x <= 0 || x >= 1) return 0;
  return (0.6 + 0.4 * season) * Math.sin(Math.PI * x) ** 1.5;
}

/** What a meter's noise-free load depends on beyond its class and profile (realism draws; 1 = the class's own). */
export interface LoadTraits {
  profile: ProfileKind;
  class: CustomerClass;
  meanW: number;
  hourShift: number;
  /** Heating and cooling sensitivity relative to the class. */
  hvac?: number;
  /** Saturday and Sunday (holiday) levels relative to the profile's. */
  satScale?: number;
  sunScale?: number;
}

/** The meter's weekend level on ISO weekday `weekday` (7 also for holidays). */
export function weekendScale(m: LoadTraits, weekday: number): number {
  return weekday === 6 ? (m.satScale ?? 1) : weekday === 7 ? (m.sunScale ?? 1) : 1;
}

/**
 * Noise-free load of a customer, W, at a calendar point: what contracts and transformer ratings are sized from.
 * `tempOffsetC`: the weather's departure from the seasonal normal.
 */
export function expectedLoadW(m: LoadTraits, cal: Pick<CalendarPoint, 'hour' | 'weekday' | 'dayOfYear'>, seasonalScale: number, tempOffsetC = 0): number {
  return (
    m.meanW *
    shape(m.profile, cal.hour, cal.weekday, m.hourShift) *
    weekendScale(m, cal.weekday) *
    hvacFactor(m.class, normalTempC(cal.dayOfYear) + tempOffsetC, seasonalScale, m.hvac ?? 1)
  );
}
