import type { AlertChangeKind, AlertRecord } from '../contracts/alert.js';
import type { AnomalyType, Severity, SubjectKind } from '../contracts/events.js';
import type { CustomerClass } from '../contracts/registry.js';
import { maxSeverity, severityRank } from './alert-severity.js';
import { fnv1a32 } from './shard.js';

/**
 * Alert lifecycle: open → acknowledged → resolved, with hysteresis, flapping and held notifications.
 * Pure: event time and wall time come in as arguments, records go in and out.
 */

export interface LifecycleConfig {
  /** Intervals the condition must stay clear before auto-resolve (per type override in `types`). */
  clearIntervals: number;
  /** Event-time window in which a resolved alert that fires again is the same, flapping alert. */
  flapWindowMs: number;
  /** Wall-clock fallback for held notices when the watermark stalls. */
  holdWallMs: number;
  types: Partial<Record<AnomalyType, { clearIntervals?: number; holdIntervals?: number }>>;
}

export interface AlertChange {
  kind: AlertChangeKind;
  /** Whether this change should reach the webhooks (routing still filters). */
  notify: boolean;
  at: number;
  /** The alert right after this change. */
  alert: AlertRecord;
}

export interface Transition {
  alert: AlertRecord;
  changes: AlertChange[];
}

/** One firing observation, already enriched (severity adjusted for the customer class). */
export interface Signal {
  type: AnomalyType;
  subjectKind: SubjectKind;
  subject: string;
  ts: number;
  severity: Severity;
  reason: string;
  value: number;
  expected: number;
  score: number;
  customerClass: CustomerClass | null;
  meterId: string | null;
  customerId: string | null;
  transformerId: string | null;
  feederId: string | null;
  intervalMs: number;
}

/** How an outage relates to a per-meter alert (computed from the transformer's outage tracker). */
export type Suppression =
  | { kind: 'none' }
  /** An outage covering the meter is open: the alert is parked, never notified on its own. */
  | { kind: 'active'; outageId: string }
  /** The meter was part of an outage that is over and came back with it: the outage told the story. */
  | { kind: 'absorbed'; outageId: string }
  /** The outage is over but this meter is still down: it gets its own notice, after a fresh hold. */
  | { kind: 'stillDown'; outageId: string; since: number };

export const NO_SUPPRESSION: Suppression = { kind: 'none' };

export function alertKey(type: AnomalyType, subject: string): string {
  return `${type}:${subject}`;
}

/**
 * Stable alert id: the episode's first event time (base 36, fixed width, so ids sort by creation) and a 64-bit
 * hash of the key. Two workers creating the same alert from the same event compute the same id.
 */
export function alertId(key: string, firstSeen: number): string {
  const t = Math.max(0, Math.floor(firstSeen)).toString(36).padStart(9, '0');
  const h = fnv1a32(key, 0x811c9dc5).toString(16).padStart(8, '0') + fnv1a32(key, 0x01234567).toString(16).padStart(8, '0');
  return `${t}-${h}`;
}

export function clearIntervalsOf(type: AnomalyType, cfg: LifecycleConfig): number {
  return cfg.types[type]?.clearIntervals ?? cfg.clearIntervals;
}

function holdIntervalsOf(type: AnomalyType, cfg: LifecycleConfig): number {
  return cfg.types[type]?.holdIntervals ?? 0;
}

/** Event time at which a clear alert auto-resolves, or null. */
function resolveDue(a: AlertRecord, cfg: LifecycleConfig): number | null {
  return a.clearSince === null ? null : a.clearSince + clearIntervalsOf(a.type, cfg) * a.intervalMs;
}

/** When the sweep must look at this alert again: by event time (watermark) and by wall time. */
export function dueTimes(a: AlertRecord, cfg: LifecycleConfig): { event: number | null; wall: number | null } {
  if (a.state === 'resolved') return { event: null, wall: null };
  const candidates = [resolveDue(a, cfg), a.pending?.until ?? null].filter((v): v is number => v !== null);
  return { event: candidates.length > 0 ? Math.min(...candidates) : null, wall: a.pending?.wallUntil ?? null };
}

function change(kind: AlertChangeKind, notify: boolean, at: number, alert: AlertRecord): AlertChange {
  return { kind, notify, at, alert };
}

/** A notice that either goes out now or is held (hold intervals) or parked (outage). */
function notice(
  kind: 'opened' | 'flapping',
  sig: Signal,
  suppression: Suppression,
  now: number,
  cfg: LifecycleConfig,
): { pending: AlertRecord['pending']; sendNow: boolean; suppressedBy: string | null; drop: boolean } {
  const hold = holdIntervalsOf(sig.type, cfg);
  switch (suppression.kind) {
    case 'active':
      return { pending: { change: kind, until: null, wallUntil: null }, sendNow: false, suppressedBy: suppression.outageId, drop: false };
    case 'absorbed':
      return { pending: null, sendNow: false, suppressedBy: suppression.outageId, drop: true };
    case 'stillDown':
    case 'none':
      if (hold === 0) return { pending: null, sendNow: true, suppressedBy: null, drop: false };
      return {
        pending: { change: kind, until: sig.ts + hold * sig.intervalMs, wallUntil: now + cfg.holdWallMs },
        sendNow: false,
        suppressedBy: null,
        drop: false,
      };
  }
}

function create(sig: Signal, suppression: Suppression, now: number, cfg: LifecycleConfig): Transition {
  const key = alertKey(sig.type, sig.subject);
  const n = notice('opened', sig, suppression, now, cfg);
  const alert: AlertRecord = {
    id: alertId(key, sig.ts),
    key,
    type: sig.type,
    subjectKind: sig.subjectKind,
    subject: sig.subject,
    severity: sig.severity,
    state: 'open',
    count: 1,
    firstSeen: sig.ts,
    lastSeen: sig.ts,
    episodeStart: sig.ts,
    reason: sig.reason,
    value: sig.value,
    expected: sig.expected,
    score: sig.score,
    flapping: false,
    flapCount: 0,
    customerClass: sig.customerClass,
    meterId: sig.meterId,
    customerId: sig.customerId,
    transformerId: sig.transformerId,
    feederId: sig.feederId,
    intervalMs: sig.intervalMs,
    clearSince: null,
    acknowledgedAt: null,
    acknowledgedBy: null,
    resolvedAt: null,
    resolvedBy: null,
    resolvedByName: null,
    assignee: null,
    assignedAt: null,
    assignedBy: null,
    notified: n.sendNow,
    pending: n.pending,
    suppressedBy: n.suppressedBy,
    outage: null,
    version: 0,
    updatedAt: now,
  };
  return { alert, changes: [change('opened', n.sendNow, sig.ts, alert)] };
}

/** Resolution at event time `ts`. A held notice is dropped: nobody was told, nobody needs the all-clear. */
export function resolveAt(a: AlertRecord, ts: number, by: 'auto' | 'restored', now: number): Transition {
  const notify = a.notified && !a.flapping && a.suppressedBy === null;
  const alert: AlertRecord = {
    ...a,
    state: 'resolved',
    resolvedAt: Math.max(ts, a.lastSeen),
    resolvedBy: by,
    resolvedByName: null,
    clearSince: null,
    pending: null,
    updatedAt: now,
  };
  return { alert, changes: [change('resolved', notify, alert.resolvedAt ?? ts, alert)] };
}

function reopen(a: AlertRecord, sig: Signal, suppression: Suppression, now: number, cfg: LifecycleConfig): Transition {
  const wasFlapping = a.flapping;
  const n = wasFlapping ? undefined : notice('flapping', sig, suppression, now, cfg);
  const alert: AlertRecord = {
    ...a,
    state: 'open',
    severity: sig.severity,
    count: a.count + 1,
    lastSeen: Math.max(a.lastSeen, sig.ts),
    episodeStart: sig.ts,
    reason: sig.reason,
    value: sig.value,
    expected: sig.expected,
    score: sig.score,
    flapping: true,
    flapCount: a.flapCount + 1,
    clearSince: null,
    acknowledgedAt: null,
    acknowledgedBy: null,
    resolvedAt: null,
    resolvedBy: null,
    resolvedByName: null,
    notified: a.notified || (n?.sendNow ?? false),
    pending: n?.pending ?? null,
    suppressedBy: n ? n.suppressedBy : suppression.kind === 'active' ? suppression.outageId : a.suppressedBy,
    updatedAt: now,
  };
  // A flapping alert is notified once, when it starts flapping; later re-opens are recorded silently.
  return { alert, changes: [change(wasFlapping ? 'reopened' : 'flapping', n?.sendNow ?? false, sig.ts, alert)] };
}

function update(a: AlertRecord, sig: Signal, suppression: Suppression, now: number): Transition {
  const newest = sig.ts >= a.lastSeen;
  const escalate = severityRank(sig.severity) > severityRank(a.severity);
  const alert: AlertRecord = {
    ...a,
    count: a.count + 1,
    lastSeen: newest ? sig.ts : a.lastSeen,
    firstSeen: Math.min(a.firstSeen, sig.ts),
    reason: newest ? sig.reason : a.reason,
    value: newest ? sig.value : a.value,
    expected: newest ? sig.expected : a.expected,
    score: newest ? sig.score : a.score,
    severity: maxSeverity(a.severity, sig.severity),
    // A late firing from before the clear does not cancel it.
    clearSince: a.clearSince !== null && sig.ts >= a.clearSince ? null : a.clearSince,
    customerClass: a.customerClass ?? sig.customerClass,
    customerId: a.customerId ?? sig.customerId,
    transformerId: a.transformerId ?? sig.transformerId,
    feederId: a.feederId ?? sig.feederId,
    suppressedBy: suppression.kind === 'active' ? suppression.outageId : a.suppressedBy,
    updatedAt: now,
  };
  // Before the first notice goes out the escalation rides on it; after, it is news of its own.
  const changes = escalate ? [change('escalated', a.notified && alert.suppressedBy === null, sig.ts, alert)] : [];
  return { alert, changes };
}

/**
 * A firing signal. Same key, open or acknowledged: count and lastSeen move. Resolved within the flap window:
 * the same alert re-opens, flapping. Otherwise (or no alert yet) a new alert opens.
 */
export function fire(current: AlertRecord | undefined, sig: Signal, suppression: Suppression, now: number, cfg: LifecycleConfig): Transition {
  if (current === undefined) return create(sig, suppression, now, cfg);
  if (current.state === 'resolved') {
    const resolvedAt = current.resolvedAt ?? current.lastSeen;
    if (sig.ts <= resolvedAt) {
      // Late evidence of the episode that already ended: counted, nothing re-opens.
      return { alert: { ...current, count: current.count + 1, updatedAt: now }, changes: [] };
    }
    if (sig.ts - resolvedAt > cfg.flapWindowMs) return create(sig, suppression, now, cfg);
    return reopen(current, sig, suppression, now, cfg);
  }
  const due = resolveDue(current, cfg);
  if (due !== null && sig.ts >= due) {
    // Clear long enough to have resolved before this signal, whether or not a sweep got there first.
    const resolved = resolveAt(current, due, 'auto', now);
    const again = fire(resolved.alert, sig, suppression, now, cfg);
    return { alert: again.alert, changes: [...resolved.changes, ...again.changes] };
  }
  return update(current, sig, suppression, now);
}

/**
 * The condition stopped holding at event time `ts`. With hysteresis the alert resolves only once it stayed clear
 * for the configured intervals (sweep, or a later signal); without, right away. Returns null when nothing changes.
 */
export function clear(current: AlertRecord | undefined, ts: number, now: number, cfg: LifecycleConfig, by: 'auto' | 'restored' = 'auto'): Transition | null {
  if (current === undefined || current.state === 'resolved') return null;
  if (ts < current.lastSeen) return null; // stale: the condition was seen after this clear
  if (by === 'restored' || clearIntervalsOf(current.type, cfg) === 0) return resolveAt(current, ts, by, now);
  if (current.clearSince !== null) return null;
  return { alert: { ...current, clearSince: ts, updatedAt: now }, changes: [] };
}

export type OperatorResult = { ok: true; transition: Transition | null } | { ok: false; reason: 'resolved' };

/** Operator acknowledges: no more notices for this episode except escalations and the resolution. */
export function acknowledge(a: AlertRecord, by: string, now: number): OperatorResult {
  if (a.state === 'resolved') return { ok: false, reason: 'resolved' };
  if (a.state === 'acknowledged') return { ok: true, transition: null };
  const alert: AlertRecord = { ...a, state: 'acknowledged', acknowledgedAt: now, acknowledgedBy: by, pending: null, updatedAt: now };
  return { ok: true, transition: { alert, changes: [change('acknowledged', a.notified, now, alert)] } };
}

/**
 * Operator assigns the alert (wall time `now`). The assignment is part of the record, so every later transition
 * (count and lastSeen moving, escalation, re-opening) carries it. Assigning the current assignee again is no change.
 */
export function assign(a: AlertRecord, assignee: string, by: string, now: number): OperatorResult {
  if (a.state === 'resolved') return { ok: false, reason: 'resolved' };
  if ((a.assignee ?? null) === assignee) return { ok: true, transition: null };
  return { ok: true, transition: { alert: { ...a, assignee, assignedAt: now, assignedBy: by, updatedAt: now }, changes: [] } };
}

/**
 * Operator resolves. Event-time resolvedAt is the last evidence seen, so the flap window keeps counting in
 * event time; if the condition still holds, the next signal re-opens the alert as flapping.
 */
export function resolveByOperator(a: AlertRecord, by: string, now: number): Transition | null {
  if (a.state === 'resolved') return null;
  const alert: AlertRecord = {
    ...a,
    state: 'resolved',
    resolvedAt: Math.max(a.lastSeen, a.clearSince ?? a.lastSeen),
    resolvedBy: 'operator',
    resolvedByName: by,
    clearSince: null,
    pending: null,
    updatedAt: now,
  };
  return { alert, changes: [change('resolved', a.notified, now, alert)] };
}

export interface SweepInput {
  /** Event-time watermark that applies to this alert (its meter's shard, or the slowest shard). */
  watermark: number;
  now: number;
  suppression: Suppression;
  /** The watermark is moving: held notices wait for it, the wall-clock fallback is for a stalled one. */
  advancing?: boolean;
}

/** Periodic look at an alert: hysteresis auto-resolve and the release of held notices. Null when nothing changes. */
export function sweep(a: AlertRecord, input: SweepInput, cfg: LifecycleConfig): Transition | null {
  if (a.state === 'resolved') return null;
  const due = resolveDue(a, cfg);
  if (due !== null && input.watermark >= due) return resolveAt(a, due, 'auto', input.now);
  const p = a.pending;
  if (p === null) return null;
  const s = input.suppression;
  if (s.kind === 'active') {
    if (p.until === null && a.suppressedBy === s.outageId) return null;
    return { alert: { ...a, pending: { ...p, until: null, wallUntil: null }, suppressedBy: s.outageId, updatedAt: input.now }, changes: [] };
  }
  if (s.kind === 'absorbed') {
    return { alert: { ...a, pending: null, suppressedBy: s.outageId, updatedAt: input.now }, changes: [] };
  }
  if (p.until === null) {
    // Parked under an outage that is over while this meter is still down: hold it afresh before telling.
    const since = s.kind === 'stillDown' ? s.since : a.lastSeen;
    const hold = holdIntervalsOf(a.type, cfg);
    return {
      alert: { ...a, pending: { ...p, until: since + hold * a.intervalMs, wallUntil: input.now + cfg.holdWallMs }, suppressedBy: null, updatedAt: input.now },
      changes: [],
    };
  }
  if (input.watermark < p.until && (p.wallUntil === null || input.now < p.wallUntil || input.advancing === true)) return null;
  const alert: AlertRecord = { ...a, pending: null, notified: true, suppressedBy: null, updatedAt: input.now };
  return { alert, changes: [change(p.change, true, Math.max(p.until, a.lastSeen), alert)] };
}
