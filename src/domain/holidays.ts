import type { DetectionConfig } from '../contracts/config-detection.js';
import { DAY_MS } from './local-time.js';

/**
 * Holiday calendar of the deployment's region, as local day numbers (days since 1970-01-01 in local time, the
 * `dayNumber` of localParts), so the hot path checks a holiday with one Set lookup.
 */
export function holidayDays(cfg: DetectionConfig['holidays']): Set<number> {
  const days = new Set<number>();
  if (cfg === undefined) return days;
  for (const date of cfg.calendars[cfg.region] ?? []) {
    const day = dayNumberOf(date);
    if (day !== undefined) days.add(day);
  }
  return days;
}

/** Local day number of a YYYY-MM-DD date; undefined when it is not a real date. */
export function dayNumberOf(date: string): number | undefined {
  const m = /^(\d{4})-(\d{2})-(\d{2})$/.exec(date);
  if (m === null) return undefined;
  const [y, mo, d] = [Number(m[1]), Number(m[2]), Number(m[3])];
  const ms = Date.UTC(y, mo - 1, d);
  const back = new Date(ms);
  if (back.getUTCFullYear() !== y || back.getUTCMonth() !== mo - 1 || back.getUTCDate() !== d) return undefined;
  return ms / DAY_MS;
}
