import { OUTAGE_LIST_MAX, type OutageDetails } from '../contracts/alert.js';
import type { Severity } from '../contracts/events.js';
import type { CustomerClass } from '../contracts/registry.js';
import type { Signal, Suppression } from './alert-lifecycle.js';
import { NO_SUPPRESSION } from './alert-lifecycle.js';

/**
 * Outage storm mode: per transformer, which meters are down (last gasp or silent) and whether enough of them went
 * down together to call it an outage. One outage alert replaces a storm of per-meter alerts. Pure.
 */

export interface OutageConfig {
  enabled: boolean;
  minMeters: number;
  minRatio: number;
  windowIntervals: number;
  resolveBelowRatio: number;
  severity: Severity;
  suppressTypes: readonly string[];
}

export interface TransformerTopology {
  transformerId: string;
  feederId: string | null;
  /** Registered meters on the transformer. */
  meters: ReadonlyArray<{ meterId: string; customerId: string; class: CustomerClass }>;
  /** Longest meter interval on the transformer: the unit of the correlation window. */
  intervalMs: number;
}

export interface TrackerState {
  transformerId: string;
  /**
   * meterId → event time its latest down episode began (first signal: last gasp or silent). Kept when the meter
   * comes back: correlation is by event time, so an episode that is already over still counts for the window it
   * fell in. A backfill or replay hands the alert service one meter's gasp and restore before the next meter's gasp;
   * judging by "down right now" would never see the outage.
   */
  down: Record<string, number>;
  /** meterId → newest event time it was seen back. A meter is down while its down time is newer than this. */
  up: Record<string, number>;
  active: { alertId: string; startedAt: number; affected: string[] } | null;
  last: { alertId: string; startedAt: number; endedAt: number; affected: string[]; stillDown: string[] } | null;
}

export type OutageStep =
  | { kind: 'none' }
  | { kind: 'open'; startedAt: number; affected: string[]; ts: number }
  | { kind: 'grow'; affected: string[]; ts: number }
  /** A late signal of the outage that is already over: the meter joins its affected list, nothing is notified. */
  | { kind: 'joinLast'; affected: string[] }
  | { kind: 'restore'; startedAt: number; restoredAt: number; affected: string[]; stillDown: string[] };

export function emptyTracker(transformerId: string): TrackerState {
  return { transformerId, down: {}, up: {}, active: null, last: null };
}

/** Meters needed to call an outage: at least minMeters and at least minRatio of the transformer. */
export function outageThreshold(total: number, cfg: OutageConfig): number {
  return Math.max(cfg.minMeters, Math.ceil(cfg.minRatio * total - 1e-9));
}

/** Largest number of down times inside one window of `windowMs` that contains `ts`, and where it starts. */
export function densestWindow(times: number[], ts: number, windowMs: number): { count: number; start: number } {
  const sorted = [...times].sort((a, b) => a - b);
  let best = { count: 0, start: ts };
  for (let i = 0; i < sorted.length; i++) {
    const start = sorted[i] ?? ts;
    if (start > ts || start < ts - windowMs) continue;
    let j = i;
    while (j < sorted.length && (sorted[j] ?? Infinity) <= start + windowMs) j++;
    if (j - i > best.count) best = { count: j - i, start };
  }
  return best;
}

function total(t: TrackerState, topo: TransformerTopology): number {
  return Math.max(topo.meters.length, Object.keys(t.down).length);
}

/** Whether the meter's latest down episode is still going (no sign of life since it began). */
export function isDown(t: TrackerState, meterId: string): boolean {
  const d = t.down[meterId];
  return d !== undefined && d > (t.up[meterId] ?? -Infinity);
}

/** Meters whose down episode is still going. */
export function downMeters(t: TrackerState): string[] {
  return Object.keys(t.down)
    .filter((m) => isDown(t, m))
    .sort();
}

/**
 * Start of the meter's down episode after a signal at `ts`: the earliest signal of one episode (a gasp, then
 * silent verdicts), or the later episode when a sign of life separates the two.
 */
function episodeStart(known: number | undefined, ts: number, up: number | undefined): number {
  if (known === undefined) return ts;
  const lo = Math.min(known, ts);
  const hi = Math.max(known, ts);
  return up !== undefined && up >= lo && up < hi ? hi : lo;
}

/** Meters still down that an outage of `affected` may leave behind and be over. */
function allowedDown(t: TrackerState, topo: TransformerTopology, cfg: OutageConfig): number {
  return Math.floor(cfg.resolveBelowRatio * total(t, topo) + 1e-9);
}

/**
 * The active outage is over when at most `allowedDown` of its meters are still down. It ended, in event time, when
 * the last meter needed came back: the (n - allowed)-th earliest return among its meters.
 */
function restoreIfOver(t: TrackerState, topo: TransformerTopology, cfg: OutageConfig): { tracker: TrackerState; step: OutageStep } {
  const active = t.active;
  if (active === null) return { tracker: t, step: { kind: 'none' } };
  const stillDown = active.affected.filter((m) => isDown(t, m));
  const allowed = allowedDown(t, topo, cfg);
  if (stillDown.length > allowed) return { tracker: t, step: { kind: 'none' } };
  const returns = active.affected
    .filter((m) => !isDown(t, m))
    .map((m) => t.up[m] ?? active.startedAt)
    .sort((a, b) => a - b);
  const needed = Math.max(1, active.affected.length - allowed);
  const restoredAt = Math.max(active.startedAt, returns[Math.min(needed, returns.length) - 1] ?? active.startedAt);
  const { alertId, startedAt, affected } = active;
  return {
    tracker: { ...t, active: null, last: { alertId, startedAt, endedAt: restoredAt, affected, stillDown } },
    step: { kind: 'restore', startedAt, restoredAt, affected, stillDown },
  };
}

/** A meter on the transformer lost power (last gasp) or went silent at event time `ts`. */
export function meterDown(
  t: TrackerState,
  meterId: string,
  ts: number,
  topo: TransformerTopology,
  cfg: OutageConfig,
): { tracker: TrackerState; step: OutageStep } {
  const known = t.down[meterId];
  const start = episodeStart(known, ts, t.up[meterId]);
  const next: TrackerState = start === known ? t : { ...t, down: { ...t.down, [meterId]: start } };
  const windowMs = cfg.windowIntervals * topo.intervalMs;
  if (next.active !== null) {
    if (next.active.affected.includes(meterId)) return { tracker: next, step: { kind: 'none' } };
    const affected = [...next.active.affected, meterId];
    // A gasp that arrives late but happened earlier moves the start of the outage back.
    const active = { ...next.active, affected, startedAt: Math.min(next.active.startedAt, ts) };
    return { tracker: { ...next, active }, step: { kind: 'grow', affected, ts } };
  }
  const last = next.last;
  if (last !== null && ts >= last.startedAt - windowMs && ts <= last.endedAt) {
    // Evidence of the outage that is already over (a replay delivered it after the restore).
    if (last.affected.includes(meterId)) return { tracker: next, step: { kind: 'none' } };
    const affected = [...last.affected, meterId].sort();
    return { tracker: { ...next, last: { ...last, affected, startedAt: Math.min(last.startedAt, ts) } }, step: { kind: 'joinLast', affected } };
  }
  if (!cfg.enabled) return { tracker: next, step: { kind: 'none' } };
  // Episodes the last outage already told about do not count twice (a straggler's verdict right after a short outage).
  const open = Object.entries(next.down).filter(([m, at]) => last === null || !last.affected.includes(m) || at > last.endedAt);
  const w = densestWindow(
    open.map(([, at]) => at),
    ts,
    windowMs,
  );
  if (w.count < outageThreshold(total(next, topo), cfg)) return { tracker: next, step: { kind: 'none' } };
  const affected = open
    .filter(([, at]) => at >= w.start && at <= w.start + windowMs)
    .map(([m]) => m)
    .sort();
  return { tracker: next, step: { kind: 'open', startedAt: w.start, affected, ts } };
}

/**
 * Records the id of the outage alert just opened for `step`. When its meters are already back (a replay delivers
 * the restores before the last gasp that tipped it), the outage is over at once: the restore step says when.
 */
export function markActive(
  t: TrackerState,
  alertId: string,
  step: { startedAt: number; affected: string[] },
  topo: TransformerTopology,
  cfg: OutageConfig,
): { tracker: TrackerState; step: OutageStep } {
  return restoreIfOver({ ...t, active: { alertId, startedAt: step.startedAt, affected: step.affected } }, topo, cfg);
}

/** A meter is back (power restored or reads resumed) at event time `ts`. */
export function meterUp(
  t: TrackerState,
  meterId: string,
  ts: number,
  topo: TransformerTopology,
  cfg: OutageConfig,
): { tracker: TrackerState; step: OutageStep } {
  if ((t.up[meterId] ?? -Infinity) >= ts) return { tracker: t, step: { kind: 'none' } };
  const wasDown = isDown(t, meterId);
  const next: TrackerState = { ...t, up: { ...t.up, [meterId]: ts } };
  // Not down, or down again after this (older) sign of life: only remember it was seen.
  if (!wasDown || isDown(next, meterId) || next.active === null || !next.active.affected.includes(meterId)) return { tracker: next, step: { kind: 'none' } };
  return restoreIfOver(next, topo, cfg);
}

/** An operator closed the outage: its meters count as handled, correlation starts afresh. */
export function closeByOperator(t: TrackerState, endedAt: number): TrackerState {
  if (t.active === null) return t;
  const { alertId, startedAt, affected } = t.active;
  return { ...t, down: {}, active: null, last: { alertId, startedAt, endedAt, affected, stillDown: [] } };
}

/** Whether a per-meter alert of event time `ts` is covered by an outage on its transformer. */
export function suppressionOf(t: TrackerState | undefined, meterId: string, ts: number, windowMs: number): Suppression {
  if (t === undefined) return NO_SUPPRESSION;
  if (t.active?.affected.includes(meterId)) return { kind: 'active', outageId: t.active.alertId };
  const last = t.last;
  if (last?.affected.includes(meterId)) {
    if (last.stillDown.includes(meterId)) return { kind: 'stillDown', outageId: last.alertId, since: last.endedAt };
    // Stragglers of the outage (a silent verdict for the interval the power came back in) belong to it too.
    if (ts <= last.endedAt + windowMs) return { kind: 'absorbed', outageId: last.alertId };
  }
  return NO_SUPPRESSION;
}

export function outageDetails(
  topo: TransformerTopology,
  affected: readonly string[],
  startedAt: number,
  restoredAt: number | null,
  stillDown: number,
): OutageDetails {
  const byMeter = new Map(topo.meters.map((m) => [m.meterId, m]));
  const customers = new Set<string>();
  const critical = new Set<string>();
  for (const id of affected) {
    const m = byMeter.get(id);
    const customer = m?.customerId ?? id;
    customers.add(customer);
    if (m?.class === 'critical') critical.add(customer);
  }
  const sorted = (xs: Iterable<string>): string[] => [...xs].sort().slice(0, OUTAGE_LIST_MAX);
  return {
    transformerId: topo.transformerId,
    feederId: topo.feederId,
    metersTotal: topo.meters.length,
    metersAffected: affected.length,
    customersAffected: customers.size,
    criticalCustomers: [...critical].sort(),
    startedAt,
    restoredAt,
    durationMs: restoredAt === null ? null : restoredAt - startedAt,
    stillDown,
    affectedMeters: sorted(new Set(affected)),
    affectedCustomers: sorted(customers),
  };
}

function minutes(ms: number): string {
  return `${Math.round(ms / 60_000)} min`;
}

/** The firing signal of an outage alert (severity before the critical-customer raise). */
export function outageSignal(topo: TransformerTopology, details: OutageDetails, ts: number, cfg: OutageConfig): Signal {
  const crit = details.criticalCustomers.length;
  return {
    type: 'outage',
    subjectKind: 'transformer',
    subject: topo.transformerId,
    ts,
    severity: cfg.severity,
    reason:
      `${details.metersAffected} of ${details.metersTotal} meters on transformer ${topo.transformerId} lost power` +
      ` within ${minutes(cfg.windowIntervals * topo.intervalMs)}` +
      (crit > 0 ? `; critical customers: ${details.criticalCustomers.slice(0, 10).join(', ')}${crit > 10 ? ` (+${crit - 10})` : ''}` : ''),
    value: details.metersAffected,
    expected: outageThreshold(details.metersTotal, cfg),
    score: details.metersTotal > 0 ? details.metersAffected / details.metersTotal : 1,
    customerClass: crit > 0 ? 'critical' : null,
    meterId: null,
    customerId: null,
    transformerId: topo.transformerId,
    feederId: topo.feederId,
    intervalMs: topo.intervalMs,
  };
}

export function restoredReason(details: OutageDetails): string {
  const crit = details.criticalCustomers.length;
  return (
    `power restored on transformer ${details.transformerId} after ${minutes(details.durationMs ?? 0)}: ` +
    `${details.customersAffected} customers affected` +
    (crit > 0 ? `, ${crit} critical (${details.criticalCustomers.slice(0, 10).join(', ')}${crit > 10 ? ', …' : ''})` : '') +
    (details.stillDown > 0 ? `; ${details.stillDown} meters still down` : '')
  );
}
