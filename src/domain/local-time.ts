import { DateTime, IANAZone } from 'luxon';

/**
 * Local-time arithmetic for intervals, baselines, tariffs and days: pure, from the zone name and an instant.
 * Zone offsets are looked up once per 15-minute bucket and cached, so the hot path is arithmetic.
 */

export const MINUTE_MS = 60_000;
export const HOUR_MS = 3_600_000;
export const DAY_MS = 86_400_000;

export interface LocalParts {
  /** Days since 1970-01-01 in local time. */
  dayNumber: number;
  /** 0–23, local. */
  hour: number;
  /** 0 = Monday … 6 = Sunday, local. */
  weekday: number;
  /** Milliseconds since local midnight. */
  msOfDay: number;
  /** 1–12, local. */
  month: number;
  /** The local date as y*10000 + m*100 + d. */
  dateKey: number;
}

// Zone offsets change only at DST/legislative transitions; caching them per 15-minute UTC bucket makes
// bandAt plain arithmetic for the stream worker's hot path. A bucket is cached only when its offset is
// the same at both ends, so a transition inside a bucket is still computed exactly.
const BUCKET_MS = 15 * 60_000;
const offsetCaches = new Map<string, Map<number, number>>();
const MAX_CACHED_BUCKETS = 100_000;

/** Offset of `zone` from UTC at `tsMs`, in minutes (east positive). */
export function offsetMinutes(zone: string, tsMs: number): number {
  let cache = offsetCaches.get(zone);
  if (cache === undefined) {
    cache = new Map();
    offsetCaches.set(zone, cache);
  }
  const bucket = Math.floor(tsMs / BUCKET_MS);
  const hit = cache.get(bucket);
  if (hit !== undefined) return hit;
  const z = IANAZone.create(zone);
  const start = z.offset(bucket * BUCKET_MS);
  const end = z.offset(bucket * BUCKET_MS + BUCKET_MS - 1);
  if (start !== end) return z.offset(tsMs);
  if (cache.size >= MAX_CACHED_BUCKETS) cache.clear();
  cache.set(bucket, start);
  return start;
}

/** Local wall-clock time of `tsMs` shifted onto the UTC axis (epoch ms). */
export function localMs(zone: string, tsMs: number): number {
  return tsMs + offsetMinutes(zone, tsMs) * MINUTE_MS;
}

export function localParts(zone: string, tsMs: number): LocalParts {
  const local = localMs(zone, tsMs);
  const dayNumber = Math.floor(local / DAY_MS);
  const msOfDay = local - dayNumber * DAY_MS;
  // 1970-01-01 was a Thursday (weekday 3 when Monday is 0).
  const weekday = (((dayNumber + 3) % 7) + 7) % 7;
  const { year, month, day } = civilFromDays(dayNumber);
  return { dayNumber, hour: Math.floor(msOfDay / HOUR_MS), weekday, msOfDay, month, dateKey: year * 10000 + month * 100 + day };
}

/** Proleptic Gregorian date of a day number (days since 1970-01-01): H. Hinnant's civil_from_days, integer only. */
function civilFromDays(dayNumber: number): { year: number; month: number; day: number } {
  const z = dayNumber + 719_468;
  const era = Math.floor(z / 146_097);
  const doe = z - era * 146_097;
  const yoe = Math.floor((doe - Math.floor(doe / 1460) + Math.floor(doe / 36_524) - Math.floor(doe / 146_096)) / 365);
  const doy = doe - (365 * yoe + Math.floor(yoe / 4) - Math.floor(yoe / 100));
  const mp = Math.floor((5 * doy + 2) / 153);
  const day = doy - Math.floor((153 * mp + 2) / 5) + 1;
  const month = mp < 10 ? mp + 3 : mp - 9;
  return { year: yoe + era * 400 + (month <= 2 ? 1 : 0), month, day };
}

/** Epoch ms of the local midnight that starts the local day containing `tsMs`. */
export function localDayStart(zone: string, tsMs: number): number {
  const day = Math.floor(localMs(zone, tsMs) / DAY_MS);
  const midnight = day * DAY_MS;
  // Two fixed-point steps settle the offset unless midnight itself does not exist (DST at 00:00).
  let guess = midnight - offsetMinutes(zone, tsMs) * MINUTE_MS;
  guess = midnight - offsetMinutes(zone, guess) * MINUTE_MS;
  if (localMs(zone, guess) === midnight && localMs(zone, guess - 1) < midnight) return guess;
  return dayWindow(zone, localDay(zone, tsMs)).startMs;
}

/** Epoch ms of the local midnight that ends the local day containing `tsMs` (23 or 25 h later on DST days). */
export function localDayEnd(zone: string, tsMs: number): number {
  // Any local day lasts at least 22 h, so 26 h after its start is always inside the next one.
  return localDayStart(zone, localDayStart(zone, tsMs) + 26 * HOUR_MS);
}

const DATE_RE = /^(\d{4})-(\d{2})-(\d{2})$/;

/** Local calendar date (YYYY-MM-DD) of instant `tsMs` in `zone`. */
export function localDay(zone: string, tsMs: number): string {
  const k = localParts(zone, tsMs).dateKey;
  const y = Math.floor(k / 10000);
  const m = Math.floor(k / 100) % 100;
  const d = k % 100;
  return `${String(y).padStart(4, '0')}-${String(m).padStart(2, '0')}-${String(d).padStart(2, '0')}`;
}

export interface DayWindow {
  day: string;
  /** Epoch ms of local midnight starting the day. */
  startMs: number;
  /** Epoch ms of the next local midnight: 23 h or 25 h later on DST days. */
  endMs: number;
}

/** UTC window of local day `day` (YYYY-MM-DD) in `zone`; throws RangeError on a malformed date. */
export function dayWindow(zone: string, day: string): DayWindow {
  const start = DateTime.fromISO(day, { zone });
  if (!DATE_RE.test(day) || !start.isValid) throw new RangeError(`not a date YYYY-MM-DD: "${day}"`);
  return { day, startMs: start.toMillis(), endMs: start.plus({ days: 1 }).toMillis() };
}

/** Local days from `fromDay` (inclusive) to `toDay` (exclusive), in calendar order. */
export function daysBetween(fromDay: string, toDay: string): string[] {
  const out: string[] = [];
  let d = DateTime.fromISO(fromDay, { zone: 'UTC' });
  const end = DateTime.fromISO(toDay, { zone: 'UTC' });
  if (!d.isValid || !end.isValid) throw new RangeError(`not a date range YYYY-MM-DD: "${fromDay}" to "${toDay}"`);
  while (d < end) {
    out.push(d.toISODate() ?? '');
    d = d.plus({ days: 1 });
  }
  return out;
}

/** The next local date after `day`. */
export function nextDay(day: string): string {
  const d = DateTime.fromISO(day, { zone: 'UTC' });
  if (!d.isValid) throw new RangeError(`not a date YYYY-MM-DD: "${day}"`);
  return d.plus({ days: 1 }).toISODate() ?? '';
}

/** The local date before `day`. */
export function previousDay(day: string): string {
  const d = DateTime.fromISO(day, { zone: 'UTC' });
  if (!d.isValid) throw new RangeError(`not a date YYYY-MM-DD: "${day}"`);
  return d.minus({ days: 1 }).toISODate() ?? '';
}

/**
 * Offset of the interval grid from the UTC grid, so that boundaries fall on local :00/:15/:30/:45
 * (e.g. 30 min for hourly meters in Asia/Kolkata). Taken from a fixed winter date: deterministic, and
 * DST shifts of a whole hour leave it unchanged.
 */
export function gridOffsetMs(zone: string, intervalMs: number): number {
  const ref = Date.UTC(2026, 0, 15, 12);
  const off = offsetMinutes(zone, ref) * MINUTE_MS;
  return ((off % intervalMs) + intervalMs) % intervalMs;
}

/** Largest grid boundary ≤ tsMs. */
export function floorGrid(tsMs: number, intervalMs: number, offsetMs: number): number {
  return Math.floor((tsMs - offsetMs) / intervalMs) * intervalMs + offsetMs;
}

/** Smallest grid boundary ≥ tsMs. */
export function ceilGrid(tsMs: number, intervalMs: number, offsetMs: number): number {
  return Math.ceil((tsMs - offsetMs) / intervalMs) * intervalMs + offsetMs;
}
