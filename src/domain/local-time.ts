import { dayWindow, localDay, offsetMinutes } from './tariffs.js';

/**
 * Local-time arithmetic for intervals, baselines and days: pure, from the zone name and an instant.
 * Zone offsets come from the cached lookup in tariffs.ts, so the hot path is arithmetic.
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
}

/** Local wall-clock time of `tsMs` shifted onto the UTC axis (epoch ms). */
export function localMs(zone: string, tsMs: number): number {
  return tsMs + offsetMinutes(zone, tsMs) * MINUTE_MS;
}

export function localParts(zone: string, tsMs: number): LocalParts {
  const local = localMs(zone, tsMs);
  const dayNumber = Math.floor(local / DAY_MS);
  const hour = Math.floor((local - dayNumber * DAY_MS) / HOUR_MS);
  // 1970-01-01 was a Thursday (weekday 3 when Monday is 0).
  const weekday = (((dayNumber + 3) % 7) + 7) % 7;
  return { dayNumber, hour, weekday };
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

/** Local calendar date YYYY-MM-DD of `tsMs`. */
export function localDate(zone: string, tsMs: number): string {
  return localDay(zone, tsMs);
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
