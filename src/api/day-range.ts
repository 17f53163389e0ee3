import { DateTime } from 'luxon';
import { daysBetween } from '../domain/local-time.js';

/** A 400 (or a 409 for a value that conflicts with one already used) naming the field to blame; the app's error handler answers it. */
export class BadField extends Error {
  override name = 'BadField';
  constructor(
    readonly field: string,
    message: string,
    readonly statusCode: 400 | 409 = 400,
  ) {
    super(message);
  }
}

/** Local midnights lie within UTC−12…UTC+14 of the UTC date: a margin that finds every zone's day. */
export const ZONE_MARGIN_MS = 15 * 3_600_000;

const isDay = (s: string): boolean => DateTime.fromISO(s, { zone: 'UTC' }).isValid;

/** The local days of `from`/`to` query parameters, [from, to), at most `maxDays`; a 400 naming the parameter otherwise. */
export function dayRange(from: string, to: string, maxDays: number): string[] {
  if (!isDay(from)) throw new BadField('querystring.from', `not a calendar date: ${from}`);
  if (!isDay(to)) throw new BadField('querystring.to', `not a calendar date: ${to}`);
  const days = daysBetween(from, to);
  if (days.length === 0) throw new BadField('querystring.to', '`to` must be after `from` (the range is [from, to))');
  if (days.length > maxDays) throw new BadField('querystring.to', `the range is limited to ${maxDays} days`);
  return days;
}
