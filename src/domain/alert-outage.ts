import type { OutageDetails } from '../contracts/alert.js';
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
  /** meterId → event time it went down (first signal). */
  down: Record<string, number>;
  /**
   * meterId → newest event time it was seen back. Workers handle events concurrently, so a restore can be applied
   * before the gasp it answers; the gasp is then recognised as stale instead of leaving the meter down for good.
   */
  up: Record<string, number>;
  active: { alertId: string; startedAt: number; affected: string[] } | null;
  last: { alertId: string; endedAt: number; affected: string[]; stillDown: string[] } | null;
}

export type OutageStep =
  | { kind: 'none' }
  | { kind: 'open'; startedAt: number; affected: string[]; ts: number }
  | { kind: 'grow'; affected: string[]; ts: number }
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

/** A meter on the transformer lost power (last gasp) or went silent at event time `ts`. */
export function meterDown(t: TrackerState, meterId: string, ts: number, topo: TransformerTopology, cfg: OutageConfig): { tracker: TrackerState; step: OutageStep } {
  if ((t.up[meterId] ?? -Infinity) >= ts) return { tracker: t, step: { kind: 'none' } };
  const known = t.down[meterId];
  const down = known === undefined || ts < known ? { ...t.down, [meterId]: ts } : t.down;
  if (t.active !== null) {
    if (t.active.affected.includes(meterId)) return { tracker: down === t.down ? t : { ...t, down }, step: { kind: 'none' } };
    const affected = [...t.active.affected, meterId];
    // A gasp that arrives late but happened earlier moves the start of the outage back.
    const active = { ...t.active, affected, startedAt: Math.min(t.active.startedAt, ts) };
    return { tracker: { ...t, down, active }, step: { kind: 'grow', affected, ts } };
  }
  const next: TrackerState = down === t.down ? t : { ...t, down };
  if (!cfg.enabled) return { tracker: next, step: { kind: 'none' } };
  const windowMs = cfg.windowIntervals * topo.intervalMs;
  const w = densestWindow(Object.values(down), ts, windowMs);
  if (w.count < outageThreshold(total(next, topo), cfg)) return { tracker: next, step: { kind: 'none' } };
  const affected = Object.keys(down).filter((m) => {
    const at = down[m];
    return at !== undefined && at >= w.start;
  }).sort();
  return { tracker: next, step: { kind: 'open', startedAt: w.start, affected, ts } };
}

/** Records the id of the outage alert just opened for `step`. */
export function markActive(t: TrackerState, alertId: string, step: { startedAt: number; affected: string[] }): TrackerState {
  return { ...t, active: { alertId, startedAt: step.startedAt, affected: step.affected } };
}

/** A meter is back (power restored or reads resumed) at event time `ts`. */
export function meterUp(t: TrackerState, meterId: string, ts: number, topo: TransformerTopology, cfg: OutageConfig): { tracker: TrackerState; step: OutageStep } {
  const up = (t.up[meterId] ?? -Infinity) >= ts ? t.up : { ...t.up, [meterId]: ts };
  const wentDown = t.down[meterId];
  // Not down, or down again after this (older) sign of life: only remember it was seen.
  if (wentDown === undefined || ts < wentDown) return { tracker: up === t.up ? t : { ...t, up }, step: { kind: 'none' } };
  const down = { ...t.down };
  delete down[meterId];
  if (t.active === null) return { tracker: { ...t, down, up }, step: { kind: 'none' } };
  const stillDown = t.active.affected.filter((m) => down[m] !== undefined);
  if (stillDown.length > Math.floor(cfg.resolveBelowRatio * total(t, topo) + 1e-9)) return { tracker: { ...t, down, up }, step: { kind: 'none' } };
  const { alertId, startedAt, affected } = t.active;
  return {
    tracker: { ...t, down, up, active: null, last: { alertId, endedAt: ts, affected, stillDown } },
    step: { kind: 'restore', startedAt, restoredAt: Math.max(ts, startedAt), affected, stillDown },
  };
}

/** An operator closed the outage: its meters count as handled, correlation starts afresh. */
export function closeByOperator(t: TrackerState, endedAt: number): TrackerState {
  if (t.active === null) return t;
  return { ...t, down: {}, active: null, last: { alertId: t.active.alertId, endedAt, affected: t.active.affected, stillDown: [] } };
}

/** Whether a per-meter alert of event time `ts` is covered by an outage on its transformer. */
export function suppressionOf(t: TrackerState | undefined, meterId: string, ts: number, windowMs: number): Suppression {
  if (t === undefined) return NO_SUPPRESSION;
  if (t.active !== null && t.active.affected.includes(meterId)) return { kind: 'active', outageId: t.active.alertId };
  const last = t.last;
  if (last !== null && last.affected.includes(meterId)) {
    if (last.stillDown.includes(meterId)) return { kind: 'stillDown', outageId: last.alertId, since: last.endedAt };
    // Stragglers of the outage (a silent verdict for the interval the power came back in) belong to it too.
    if (ts <= last.endedAt + windowMs) return { kind: 'absorbed', outageId: last.alertId };
  }
  return NO_SUPPRESSION;
}

export function outageDetails(topo: TransformerTopology, affected: readonly string[], startedAt: number, restoredAt: number | null, stillDown: number): OutageDetails {
  const byMeter = new Map(topo.meters.map((m) => [m.meterId, m]));
  const customers = new Set<string>();
  const critical = new Set<string>();
  for (const id of affected) {
    const m = byMeter.get(id);
    const customer = m?.customerId ?? id;
    customers.add(customer);
    if (m?.class === 'critical') critical.add(customer);
  }
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
