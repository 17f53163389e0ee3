import type { AlertChangeKind, AlertRecord } from '../contracts/alert.js';
import type { AnomalyType, Severity } from '../contracts/events.js';
import type { CustomerClass } from '../contracts/registry.js';
import { notifyPriority } from './alert-severity.js';

/** Which webhooks hear about an alert change, when, and in what order. Pure: wall time is an argument. */

export interface Route {
  webhook: string;
  /** Empty lists match everything. */
  severities: readonly Severity[];
  types: readonly AnomalyType[];
  customerClasses: readonly CustomerClass[];
  changes: readonly AlertChangeKind[];
}

export interface QuietHours {
  enabled: boolean;
  /** HH:MM local time; start > end spans midnight. */
  start: string;
  end: string;
  severities: readonly Severity[];
  action: 'defer' | 'drop';
}

export interface RoutingConfig {
  routes: readonly Route[];
  quietHours: QuietHours;
  /** IANA zone the quiet hours are in. */
  timezone: string;
}

export interface Delivery {
  webhook: string;
  /** Wait before the first try (quiet hours deferral). */
  delayMs: number;
  /** BullMQ priority, 1 first. */
  priority: number;
}

const matches = <T>(list: readonly T[], v: T | null): boolean => list.length === 0 || (v !== null && list.includes(v));

export function routeMatches(route: Route, kind: AlertChangeKind, a: AlertRecord): boolean {
  return (
    matches(route.severities, a.severity) && matches(route.types, a.type) && matches(route.customerClasses, a.customerClass) && matches(route.changes, kind)
  );
}

/** A critical customer is involved: the alert's own, or among those an outage cut off. */
export function involvesCritical(a: AlertRecord): boolean {
  return a.customerClass === 'critical' || (a.outage?.criticalCustomers.length ?? 0) > 0;
}

const formatters = new Map<string, Intl.DateTimeFormat>();

/** Local wall-clock time of `ms` in `timezone`, as milliseconds since local midnight. */
export function localTimeOfDayMs(ms: number, timezone: string): number {
  let f = formatters.get(timezone);
  if (f === undefined) {
    f = new Intl.DateTimeFormat('en-GB', { timeZone: timezone, hour: '2-digit', minute: '2-digit', second: '2-digit', hourCycle: 'h23' });
    formatters.set(timezone, f);
  }
  let h = 0;
  let m = 0;
  let s = 0;
  for (const p of f.formatToParts(new Date(ms))) {
    if (p.type === 'hour') h = Number(p.value);
    else if (p.type === 'minute') m = Number(p.value);
    else if (p.type === 'second') s = Number(p.value);
  }
  return ((h * 60 + m) * 60 + s) * 1000 + (((ms % 1000) + 1000) % 1000);
}

function clockMs(hhmm: string): number {
  const [h = '0', m = '0'] = hhmm.split(':');
  return (Number(h) * 60 + Number(m)) * 60_000;
}

const DAY_MS = 86_400_000;

/**
 * Milliseconds until quiet hours end when `now` falls inside them, else 0. Across a DST change the deferral may be
 * an hour off; it only decides when an `info` notice goes out.
 */
export function quietDelayMs(q: QuietHours, now: number, timezone: string): number {
  if (!q.enabled) return 0;
  const start = clockMs(q.start);
  const end = clockMs(q.end);
  if (start === end) return 0;
  const t = localTimeOfDayMs(now, timezone);
  const inside = start < end ? t >= start && t < end : t >= start || t < end;
  return inside ? (end - t + DAY_MS) % DAY_MS : 0;
}

/** Deliveries for one change: one per webhook whose route matches, quiet hours applied. */
export function routeChange(kind: AlertChangeKind, notify: boolean, a: AlertRecord, now: number, cfg: RoutingConfig): Delivery[] {
  if (!notify) return [];
  const quiet = cfg.quietHours.severities.includes(a.severity) ? quietDelayMs(cfg.quietHours, now, cfg.timezone) : 0;
  if (quiet > 0 && cfg.quietHours.action === 'drop') return [];
  const priority = notifyPriority(a.severity, involvesCritical(a));
  const out: Delivery[] = [];
  for (const r of cfg.routes) {
    if (!routeMatches(r, kind, a) || out.some((d) => d.webhook === r.webhook)) continue;
    out.push({ webhook: r.webhook, delayMs: quiet, priority });
  }
  return out;
}
