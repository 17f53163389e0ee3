import type { AlertRecord } from '../contracts/alert.js';
import type { DetectionEvent } from '../contracts/events.js';
import type { CustomerClass } from '../contracts/registry.js';
import {
  NO_SUPPRESSION,
  acknowledge,
  alertKey,
  assign,
  clear,
  fire,
  resolveAt,
  resolveByOperator,
  sweep,
  type AlertChange,
  type LifecycleConfig,
  type Signal,
  type Suppression,
  type Transition,
} from './alert-lifecycle.js';
import {
  closeByOperator,
  emptyTracker,
  markActive,
  meterDown,
  meterUp,
  outageDetails,
  outageSignal,
  restoredReason,
  suppressionOf,
  type OutageConfig,
  type OutageStep,
  type TrackerState,
  type TransformerTopology,
} from './alert-outage.js';
import { alertSeverity, maxSeverity, parseCustomerClass, severityRank, type SeverityConfig } from './alert-severity.js';

/**
 * What one detection event, operator action or sweep does to the alerts and outage trackers it touches.
 * The adapter loads the records named by `planEvent`, calls these, and writes the results atomically.
 */

export interface EngineConfig {
  lifecycle: LifecycleConfig;
  severity: SeverityConfig;
  outage: OutageConfig;
  defaultIntervalMs: number;
}

/** Registry facts about the event's meter. */
export interface MeterContext {
  customerId: string | null;
  customerClass: CustomerClass | null;
  transformerId: string | null;
  feederId: string | null;
  intervalMs: number;
}

export interface EventPlan {
  /** Alert keys whose current alert the engine needs. */
  alertKeys: string[];
  /** Transformer whose outage tracker (and `outage:<id>` alert) the engine needs; null: no correlation. */
  transformerId: string | null;
}

export interface EngineResult {
  /** Alerts that changed (or were created), at most one per key. */
  alerts: AlertRecord[];
  /** The tracker when it changed, else null. */
  tracker: TrackerState | null;
  changes: AlertChange[];
  /** Meters whose parked per-meter alerts the sweep must look at again (their outage is over). */
  unpark: string[];
  /** Clear marks to store (key → event time) and to delete (see EventInput.cleared). */
  cleared: { set: Array<[string, number]>; drop: string[] };
}

const CORRELATED = new Set(['lastGasp', 'silent', 'powerRestored']);

/** A result that only carries alert writes (sweeps, index repairs). */
export function alertsOnly(alerts: AlertRecord[], changes: AlertChange[]): EngineResult {
  return { alerts, tracker: null, changes, unpark: [], cleared: { set: [], drop: [] } };
}

export function outageKey(transformerId: string): string {
  return alertKey('outage', transformerId);
}

function transformerOf(ev: DetectionEvent, meter: MeterContext | null): string | null {
  return ev.transformerId ?? meter?.transformerId ?? null;
}

export function planEvent(ev: DetectionEvent, meter: MeterContext | null, cfg: EngineConfig): EventPlan {
  const correlate = cfg.outage.enabled && ev.subjectKind === 'meter' && CORRELATED.has(ev.type);
  const transformerId = correlate ? transformerOf(ev, meter) : null;
  const keys = new Set<string>();
  if (ev.type === 'powerRestored') {
    keys.add(alertKey('lastGasp', ev.subject));
    for (const t of cfg.outage.suppressTypes) keys.add(`${t}:${ev.subject}`);
  } else {
    keys.add(alertKey(ev.type, ev.subject));
  }
  if (transformerId !== null) keys.add(outageKey(transformerId));
  return { alertKeys: [...keys], transformerId };
}

export function signalOf(ev: DetectionEvent, meter: MeterContext | null, cfg: EngineConfig): Signal {
  const customerClass = parseCustomerClass(ev.customerClass) ?? meter?.customerClass ?? null;
  return {
    type: ev.type,
    subjectKind: ev.subjectKind,
    subject: ev.subject,
    ts: ev.ts,
    severity: alertSeverity(ev.severity, ev.type, customerClass, cfg.severity),
    reason: ev.reason,
    value: ev.value,
    expected: ev.expected,
    score: ev.score,
    customerClass,
    meterId: ev.meterId ?? (ev.subjectKind === 'meter' ? ev.subject : null),
    customerId: ev.customerId ?? meter?.customerId ?? null,
    transformerId: transformerOf(ev, meter),
    feederId: ev.feederId ?? meter?.feederId ?? null,
    intervalMs: ev.subjectKind === 'meter' ? (meter?.intervalMs ?? cfg.defaultIntervalMs) : cfg.defaultIntervalMs,
  };
}

/** Applies fields to a transition's alert and to the snapshots its changes carry. */
function patch(tr: Transition, fields: Partial<AlertRecord>): Transition {
  const alert = { ...tr.alert, ...fields };
  return { alert, changes: tr.changes.map((c) => ({ ...c, alert: { ...c.alert, ...fields } })) };
}

class Session {
  readonly alerts: Map<string, AlertRecord>;
  private readonly marks: Map<string, number>;
  private readonly marksSet = new Map<string, number>();
  private readonly marksDropped = new Set<string>();
  readonly changed = new Set<string>();
  readonly changes: AlertChange[] = [];
  tracker: TrackerState | null;
  trackerChanged = false;
  unpark: string[] = [];

  constructor(
    alerts: ReadonlyMap<string, AlertRecord>,
    tracker: TrackerState | null,
    readonly now: number,
    readonly cfg: EngineConfig,
    cleared: ReadonlyMap<string, number> = new Map(),
  ) {
    this.alerts = new Map(alerts);
    this.tracker = tracker;
    this.marks = new Map(cleared);
  }

  /** A clear for `key`: applied to its open alert, or kept as a mark when the firing it answers is still on its way. */
  clearKey(key: string, ts: number, by: 'auto' | 'restored'): void {
    const a = this.alerts.get(key);
    if (a !== undefined && a.state !== 'resolved') {
      this.apply(clear(a, ts, this.now, this.cfg.lifecycle, by));
      return;
    }
    if (ts > (this.marks.get(key) ?? -Infinity)) {
      this.marks.set(key, ts);
      this.marksSet.set(key, ts);
      this.marksDropped.delete(key);
    }
  }

  /** After a firing on `key`: a newer clear mark ends what just fired; the mark is spent either way. */
  spendMark(key: string, firedAt: number): void {
    const mark = this.marks.get(key);
    if (mark === undefined) return;
    this.marks.delete(key);
    this.marksSet.delete(key);
    this.marksDropped.add(key);
    const a = this.alerts.get(key);
    if (mark >= firedAt && a !== undefined && a.state !== 'resolved') {
      this.apply(clear(a, mark, this.now, this.cfg.lifecycle, a.type === 'lastGasp' ? 'restored' : 'auto'));
    }
  }

  apply(tr: Transition | null): void {
    if (tr === null) return;
    this.alerts.set(tr.alert.key, tr.alert);
    this.changed.add(tr.alert.key);
    this.changes.push(...tr.changes);
  }

  setTracker(t: TrackerState): void {
    if (t !== this.tracker) {
      this.tracker = t;
      this.trackerChanged = true;
    }
  }

  result(): EngineResult {
    return {
      alerts: [...this.changed].map((k) => this.alerts.get(k)).filter((a): a is AlertRecord => a !== undefined),
      tracker: this.trackerChanged ? this.tracker : null,
      changes: this.changes,
      unpark: this.unpark,
      cleared: { set: [...this.marksSet], drop: [...this.marksDropped] },
    };
  }

  meterDown(tracker: TrackerState, meterId: string, ts: number, topo: TransformerTopology): void {
    const { tracker: next, step } = meterDown(tracker, meterId, ts, topo, this.cfg.outage);
    this.setTracker(next);
    const key = outageKey(topo.transformerId);
    if (step.kind === 'open') {
      const details = outageDetails(topo, step.affected, step.startedAt, null, 0);
      const sig = outageSignal(topo, details, step.startedAt, this.cfg.outage);
      const raised = { ...sig, severity: alertSeverity(sig.severity, 'outage', sig.customerClass, this.cfg.severity) };
      const tr = patch(fire(this.alerts.get(key), raised, NO_SUPPRESSION, this.now, this.cfg.lifecycle), {
        count: step.affected.length,
        lastSeen: step.ts,
        outage: details,
      });
      this.apply(tr);
      const marked = markActive(next, tr.alert.id, step, topo, this.cfg.outage);
      this.setTracker(marked.tracker);
      this.restored(marked.step, topo);
    } else if (step.kind === 'grow') {
      const current = this.alerts.get(key);
      const active = next.active;
      if (current === undefined || current.state === 'resolved' || active === null) return;
      const details = outageDetails(topo, step.affected, active.startedAt, null, 0);
      const sig = outageSignal(topo, details, active.startedAt, this.cfg.outage);
      const severity = maxSeverity(current.severity, alertSeverity(sig.severity, 'outage', sig.customerClass, this.cfg.severity));
      const alert: AlertRecord = {
        ...current,
        count: step.affected.length,
        firstSeen: Math.min(current.firstSeen, active.startedAt),
        lastSeen: Math.max(current.lastSeen, step.ts),
        reason: sig.reason,
        value: sig.value,
        score: sig.score,
        customerClass: sig.customerClass ?? current.customerClass,
        severity,
        outage: details,
        updatedAt: this.now,
      };
      const escalated = severityRank(severity) > severityRank(current.severity);
      this.apply({ alert, changes: escalated ? [{ kind: 'escalated', notify: current.notified, at: step.ts, alert }] : [] });
    } else if (step.kind === 'joinLast') {
      // The record of the outage that is over counts the late meter too; nobody is told again.
      const current = this.alerts.get(key);
      const last = next.last;
      if (current === undefined || last === null || current.id !== last.alertId || current.outage === null) return;
      const details = outageDetails(topo, step.affected, last.startedAt, current.outage.restoredAt, current.outage.stillDown);
      this.apply({
        alert: {
          ...current,
          count: step.affected.length,
          firstSeen: Math.min(current.firstSeen, last.startedAt),
          outage: details,
          reason: current.state === 'resolved' ? restoredReason(details) : current.reason,
          updatedAt: this.now,
        },
        changes: [],
      });
    }
  }

  meterUp(tracker: TrackerState, meterId: string, ts: number, topo: TransformerTopology): void {
    const { tracker: next, step } = meterUp(tracker, meterId, ts, topo, this.cfg.outage);
    this.setTracker(next);
    this.restored(step, topo);
  }

  /** The outage is over: resolve its alert with the duration and the customers affected; its meters' alerts may go. */
  private restored(step: OutageStep, topo: TransformerTopology): void {
    if (step.kind !== 'restore') return;
    const details = outageDetails(topo, step.affected, step.startedAt, step.restoredAt, step.stillDown.length);
    const current = this.alerts.get(outageKey(topo.transformerId));
    if (current !== undefined && current.state !== 'resolved') {
      this.apply(resolveAt({ ...current, outage: details, reason: restoredReason(details) }, step.restoredAt, 'restored', this.now));
    }
    this.unpark = step.affected;
  }
}

export interface EventInput {
  event: DetectionEvent;
  meter: MeterContext | null;
  /** Registry view of the event's transformer; null (or no meters) disables outage correlation. */
  topology: TransformerTopology | null;
  /** Current alert per key in the plan (absent keys have none). */
  alerts: ReadonlyMap<string, AlertRecord>;
  /**
   * Clear marks per key: a clear that found no open alert. Workers handle events concurrently, so a clear can be
   * applied before the firing it ends; the firing then finds the mark and does not leave an alert open for good.
   */
  cleared?: ReadonlyMap<string, number>;
  tracker: TrackerState | null;
  now: number;
}

export function applyEvent(input: EventInput, cfg: EngineConfig): EngineResult {
  const { event: ev, meter, now } = input;
  const plan = planEvent(ev, meter, cfg);
  const topo = plan.transformerId !== null && input.topology !== null && input.topology.meters.length > 0 ? input.topology : null;
  const s = new Session(input.alerts, topo === null ? null : (input.tracker ?? emptyTracker(topo.transformerId)), now, cfg, input.cleared);
  const windowMs = topo === null ? 0 : cfg.outage.windowIntervals * topo.intervalMs;
  const lc = cfg.lifecycle;

  if (ev.type === 'powerRestored') {
    s.clearKey(alertKey('lastGasp', ev.subject), ev.ts, 'restored');
    // Per-meter alerts an outage covered end with the power; uncovered ones wait for their own clear.
    for (const t of cfg.outage.suppressTypes) {
      const a = s.alerts.get(`${t}:${ev.subject}`);
      if (t !== 'lastGasp' && a !== undefined && a.suppressedBy !== null) s.apply(clear(a, ev.ts, now, lc, 'restored'));
    }
    if (topo !== null && s.tracker !== null) s.meterUp(s.tracker, ev.subject, ev.ts, topo);
    return s.result();
  }

  const key = alertKey(ev.type, ev.subject);
  if (ev.status === 'clear') {
    s.clearKey(key, ev.ts, 'auto');
    if (ev.type === 'silent' && topo !== null && s.tracker !== null) s.meterUp(s.tracker, ev.subject, ev.ts, topo);
    return s.result();
  }

  // Down first, so the meter's own alert already sees the outage it may have tipped over.
  if (topo !== null && s.tracker !== null && (ev.type === 'lastGasp' || ev.type === 'silent')) s.meterDown(s.tracker, ev.subject, ev.ts, topo);
  const suppression: Suppression =
    topo !== null && s.tracker !== null && cfg.outage.suppressTypes.includes(ev.type) ? suppressionOf(s.tracker, ev.subject, ev.ts, windowMs) : NO_SUPPRESSION;
  s.apply(fire(s.alerts.get(key), signalOf(ev, meter, cfg), suppression, now, lc));
  s.spendMark(key, ev.ts);
  return s.result();
}

/** What an operator does. A comment changes no record (the adapter keeps it in the alert's history). */
export type OperatorAction =
  | { kind: 'ack'; by: string }
  | { kind: 'resolve'; by: string }
  | { kind: 'assign'; by: string; assignee: string }
  | { kind: 'comment'; by: string };

export type OperatorOutcome = { ok: true; result: EngineResult; alert: AlertRecord } | { ok: false; reason: 'resolved'; alert: AlertRecord };

/** An operator action. Resolving an outage closes its tracker too (pass it when the alert is an outage). */
export function applyOperator(alert: AlertRecord, tracker: TrackerState | null, action: OperatorAction, now: number): OperatorOutcome {
  const empty: EngineResult = { alerts: [], tracker: null, changes: [], unpark: [], cleared: { set: [], drop: [] } };
  if (action.kind === 'comment') return { ok: true, result: empty, alert };
  if (action.kind === 'ack' || action.kind === 'assign') {
    const r = action.kind === 'ack' ? acknowledge(alert, action.by, now) : assign(alert, action.assignee, action.by, now);
    if (!r.ok) return { ok: false, reason: r.reason, alert };
    if (r.transition === null) return { ok: true, result: empty, alert };
    return { ok: true, result: { ...empty, alerts: [r.transition.alert], changes: r.transition.changes }, alert: r.transition.alert };
  }
  const tr = resolveByOperator(alert, action.by, now);
  if (tr === null) return { ok: true, result: empty, alert };
  let trackerOut: TrackerState | null = null;
  let unpark: string[] = [];
  if (alert.type === 'outage' && tracker !== null && tracker.active?.alertId === alert.id) {
    unpark = tracker.active.affected;
    trackerOut = closeByOperator(tracker, tr.alert.resolvedAt ?? alert.lastSeen);
  }
  return { ok: true, result: { ...empty, alerts: [tr.alert], tracker: trackerOut, changes: tr.changes, unpark }, alert: tr.alert };
}

/** The sweep's look at one alert: auto-resolve after hysteresis, release or park held notices. */
export function sweepAlert(
  alert: AlertRecord,
  tracker: TrackerState | null,
  watermark: number,
  now: number,
  cfg: EngineConfig,
  advancing = false,
): Transition | null {
  const suppression =
    alert.meterId !== null && tracker !== null && cfg.outage.suppressTypes.includes(alert.type)
      ? suppressionOf(tracker, alert.meterId, alert.lastSeen, cfg.outage.windowIntervals * alert.intervalMs)
      : NO_SUPPRESSION;
  return sweep(alert, { watermark, now, suppression, advancing }, cfg.lifecycle);
}

/** Resolved alerts older than the retention are deleted by the sweep. */
export function isExpired(alert: AlertRecord, watermark: number, retentionMs: number): boolean {
  return alert.state === 'resolved' && alert.lastSeen < watermark - retentionMs;
}
