import { describe, expect, it } from 'vitest';
import type { AlertRecord } from '../../src/contracts/alert.js';
import type { AnomalyType, DetectionEvent, Severity } from '../../src/contracts/events.js';
import {
  alertsOnly,
  applyEvent,
  applyOperator,
  isExpired,
  planEvent,
  sweepAlert,
  type EngineConfig,
  type EngineResult,
  type MeterContext,
} from '../../src/domain/alert-engine.js';
import { downMeters, type TrackerState, type TransformerTopology } from '../../src/domain/alert-outage.js';

const MIN = 60_000;
const IV = 15 * MIN;
const T0 = Date.UTC(2026, 10, 26, 2, 0);
const NOW = Date.UTC(2026, 10, 26, 12, 0);

const cfg: EngineConfig = {
  lifecycle: {
    clearIntervals: 2,
    flapWindowMs: 6 * 60 * MIN,
    holdWallMs: 60_000,
    types: { silent: { holdIntervals: 1 }, lastGasp: { holdIntervals: 1, clearIntervals: 0 }, outage: { clearIntervals: 0 } },
  },
  severity: { types: { tamper: { severity: 'major' } }, classRaise: { critical: 1 } },
  outage: { enabled: true, minMeters: 5, minRatio: 0.3, windowIntervals: 2, resolveBelowRatio: 0.1, severity: 'major', suppressTypes: ['silent', 'lastGasp'] },
  defaultIntervalMs: IV,
};

const CRITICAL = new Set([3, 41]);
const topo: TransformerTopology = {
  transformerId: 'T-9',
  feederId: 'F-2',
  meters: Array.from({ length: 60 }, (_, i) => ({
    meterId: `M-${i}`,
    customerId: `C-${i}`,
    class: CRITICAL.has(i) ? ('critical' as const) : ('residential' as const),
  })),
  intervalMs: IV,
};

function meterCtx(id: string): MeterContext {
  const m = topo.meters.find((x) => x.meterId === id);
  return { customerId: m?.customerId ?? null, customerClass: m?.class ?? null, transformerId: 'T-9', feederId: 'F-2', intervalMs: IV };
}

function ev(type: AnomalyType, meter: string, ts: number, status: 'firing' | 'clear' = 'firing', severity: Severity = 'warning'): DetectionEvent {
  return {
    id: `${type}:${meter}:${ts}:${status}`,
    type,
    status,
    subjectKind: 'meter',
    subject: meter,
    ts,
    meterId: meter,
    value: 0,
    expected: 0,
    score: 0,
    severity,
    reason: type,
  };
}

/** The engine over an in-memory store, the way the Redis adapter drives it (without the atomicity). */
class MemAlerts {
  byKey = new Map<string, AlertRecord>();
  marks = new Map<string, number>();
  tracker: TrackerState | null = null;
  notices: string[] = [];
  silentChanges: string[] = [];

  take(r: EngineResult): void {
    for (const a of r.alerts) this.byKey.set(a.key, a);
    if (r.tracker) this.tracker = r.tracker;
    for (const [k, ts] of r.cleared.set) this.marks.set(k, ts);
    for (const k of r.cleared.drop) this.marks.delete(k);
    for (const c of r.changes) (c.notify ? this.notices : this.silentChanges).push(`${c.kind} ${c.alert.key}`);
  }

  event(e: DetectionEvent): void {
    const plan = planEvent(e, meterCtx(e.subject), cfg);
    const alerts = new Map<string, AlertRecord>();
    const cleared = new Map<string, number>();
    for (const k of plan.alertKeys) {
      const a = this.byKey.get(k);
      if (a) alerts.set(k, a);
      const m = this.marks.get(k);
      if (m !== undefined) cleared.set(k, m);
    }
    this.take(applyEvent({ event: e, meter: meterCtx(e.subject), topology: topo, alerts, cleared, tracker: this.tracker, now: NOW }, cfg));
  }

  sweep(watermark: number, now = NOW): void {
    for (const a of [...this.byKey.values()]) {
      const tr = sweepAlert(a, this.tracker, watermark, now, cfg);
      if (tr) this.take(alertsOnly([tr.alert], tr.changes));
    }
  }

  get(key: string): AlertRecord | undefined {
    return this.byKey.get(key);
  }
}

const meters = Array.from({ length: 60 }, (_, i) => `M-${i}`);

describe('outage storm', () => {
  it('60 meters gasp and fall silent: exactly one outage notice, no per-meter notice; restored with its figures', () => {
    const s = new MemAlerts();
    meters.forEach((m, i) => {
      s.event(ev('lastGasp', m, T0 + i * 200));
    });
    expect(s.notices).toEqual(['opened outage:T-9']);
    s.sweep(T0 + IV); // held last-gasp notices come due: all parked under the outage
    // Silence detected 3 intervals later, per meter.
    for (const m of meters) s.event(ev('silent', m, T0 + 3 * IV));
    s.sweep(T0 + 5 * IV, NOW + 600_000);
    expect(s.notices).toEqual(['opened outage:T-9']);

    const outage = s.get('outage:T-9');
    expect(outage).toMatchObject({ state: 'open', count: 60, severity: 'critical', customerClass: 'critical', subjectKind: 'transformer', firstSeen: T0 });
    expect(outage?.outage).toMatchObject({ metersTotal: 60, metersAffected: 60, customersAffected: 60, criticalCustomers: ['C-3', 'C-41'], restoredAt: null });
    expect(s.get('silent:M-7')).toMatchObject({ state: 'open', suppressedBy: outage?.id, notified: false });
    expect(s.get('lastGasp:M-7')).toMatchObject({ state: 'open', suppressedBy: outage?.id, notified: false });

    // Power back 95 minutes after the first gasp; every meter says so.
    const back = T0 + 95 * MIN;
    for (const m of meters) s.event(ev('powerRestored', m, back));
    s.sweep(back + 2 * IV, NOW + 600_000);
    for (const m of meters) s.event(ev('silent', m, back + IV, 'clear'));
    s.sweep(back + 10 * IV, NOW + 3_600_000);

    expect(s.notices).toEqual(['opened outage:T-9', 'resolved outage:T-9']);
    const done = s.get('outage:T-9');
    expect(done).toMatchObject({ state: 'resolved', resolvedBy: 'restored', resolvedAt: back, count: 60 });
    expect(done?.outage).toEqual({
      transformerId: 'T-9',
      feederId: 'F-2',
      metersTotal: 60,
      metersAffected: 60,
      customersAffected: 60,
      criticalCustomers: ['C-3', 'C-41'],
      startedAt: T0,
      restoredAt: back,
      durationMs: 95 * MIN,
      stillDown: 6,
      affectedMeters: [...meters].sort(),
      affectedCustomers: meters.map((m) => m.replace('M-', 'C-')).sort(),
    });
    expect(done?.reason).toBe('power restored on transformer T-9 after 95 min: 60 customers affected, 2 critical (C-3, C-41); 6 meters still down');
    const open = [...s.byKey.values()].filter((a) => a.state !== 'resolved').map((a) => a.key);
    expect(open).toEqual([]);
  });

  it('a meter still dead after the outage gets its own notice after a fresh hold', () => {
    const s = new MemAlerts();
    const twenty = meters.slice(0, 20);
    twenty.forEach((m, i) => {
      s.event(ev('lastGasp', m, T0 + i * 100));
    });
    for (const m of twenty) s.event(ev('silent', m, T0 + 2 * IV));
    expect(s.notices).toEqual(['opened outage:T-9']);
    const back = T0 + 60 * MIN;
    for (const m of twenty.slice(0, 19)) s.event(ev('powerRestored', m, back)); // M-19 never comes back
    expect(s.notices).toEqual(['opened outage:T-9', 'resolved outage:T-9']);
    // Declared over at the 14th return (6 left ≤ 10 % of 60); 5 of those 6 came back right after.
    expect(s.get('outage:T-9')?.outage?.stillDown).toBe(6);
    expect(s.get('silent:M-18')).toMatchObject({ state: 'resolved', resolvedBy: 'restored', notified: false });
    // The adapter unparks the outage's meters: the sweep re-holds M-19's alerts, then tells once they are due.
    s.sweep(back);
    expect(s.notices).toEqual(['opened outage:T-9', 'resolved outage:T-9']);
    s.sweep(back + IV);
    expect(s.notices).toEqual(['opened outage:T-9', 'resolved outage:T-9', 'opened lastGasp:M-19', 'opened silent:M-19']);
  });

  it('a few isolated last gasps stay per meter and are told after the hold unless power returns first', () => {
    const s = new MemAlerts();
    s.event(ev('lastGasp', 'M-1', T0));
    s.event(ev('lastGasp', 'M-2', T0));
    s.event(ev('powerRestored', 'M-2', T0 + 3 * MIN));
    s.sweep(T0 + IV);
    expect(s.notices).toEqual(['opened lastGasp:M-1']);
    expect(s.get('lastGasp:M-2')).toMatchObject({ state: 'resolved', resolvedBy: 'restored', notified: false });
    expect(s.get('outage:T-9')).toBeUndefined();
  });

  it('an operator closing an outage takes its meters with it', () => {
    const s = new MemAlerts();
    for (const m of meters.slice(0, 30)) s.event(ev('lastGasp', m, T0));
    const outage = s.get('outage:T-9');
    expect(outage?.state).toBe('open');
    if (!outage) return;
    const r = applyOperator(outage, s.tracker, { kind: 'resolve', by: 'alice' }, NOW);
    expect(r.ok).toBe(true);
    if (!r.ok) return;
    s.take(r.result);
    expect(r.result.unpark.length).toBe(30);
    expect(s.tracker?.active).toBeNull();
    s.sweep(T0 + 4 * IV);
    expect(s.notices).toEqual(['opened outage:T-9', 'resolved outage:T-9']);
    expect(s.get('outage:T-9')).toMatchObject({ state: 'resolved', resolvedBy: 'operator', resolvedByName: 'alice' });
  });

  it('an assigned outage keeps its assignee while meters join it and when power returns; a comment changes no record', () => {
    const s = new MemAlerts();
    for (const m of meters.slice(0, 30)) s.event(ev('lastGasp', m, T0));
    const outage = s.get('outage:T-9');
    if (!outage) throw new Error('no outage');
    const comment = applyOperator(outage, s.tracker, { kind: 'comment', by: 'bob' }, NOW);
    expect(comment).toEqual({ ok: true, result: { alerts: [], tracker: null, changes: [], unpark: [], cleared: { set: [], drop: [] } }, alert: outage });
    const r = applyOperator(outage, s.tracker, { kind: 'assign', by: 'bob', assignee: 'alice' }, NOW);
    if (!r.ok) throw new Error('assign refused');
    expect(r.result.changes).toEqual([]);
    expect(r.result.tracker).toBeNull();
    s.take(r.result);
    for (const m of meters.slice(30)) s.event(ev('lastGasp', m, T0 + MIN));
    expect(s.get('outage:T-9')).toMatchObject({ count: 60, assignee: 'alice', assignedBy: 'bob', assignedAt: NOW });
    for (const m of meters) s.event(ev('powerRestored', m, T0 + 40 * MIN));
    expect(s.get('outage:T-9')).toMatchObject({ state: 'resolved', resolvedBy: 'restored', assignee: 'alice' });
    expect(s.notices).toEqual(['opened outage:T-9', 'resolved outage:T-9']);
  });
});

describe('events applied out of order (concurrent workers)', () => {
  it('a clear applied before its firing still ends the alert', () => {
    const s = new MemAlerts();
    s.event(ev('spike', 'M-1', T0 + IV, 'clear'));
    expect(s.byKey.size).toBe(0);
    expect(s.marks.get('spike:M-1')).toBe(T0 + IV);
    s.event(ev('spike', 'M-1', T0));
    expect(s.get('spike:M-1')).toMatchObject({ state: 'open', clearSince: T0 + IV });
    expect(s.marks.size).toBe(0);
    s.sweep(T0 + 3 * IV);
    expect(s.get('spike:M-1')).toMatchObject({ state: 'resolved', resolvedAt: T0 + 3 * IV });
    expect(s.notices).toEqual(['opened spike:M-1', 'resolved spike:M-1']);
  });

  it('a firing newer than the clear mark is a new condition: the mark is dropped', () => {
    const s = new MemAlerts();
    s.event(ev('spike', 'M-1', T0, 'clear'));
    s.event(ev('spike', 'M-1', T0 + IV));
    expect(s.get('spike:M-1')).toMatchObject({ state: 'open', clearSince: null });
    expect(s.marks.size).toBe(0);
  });

  it('restores applied before their gasps (a replay): the outage is still seen in event time, opened and over at once', () => {
    const s = new MemAlerts();
    for (const m of meters) s.event(ev('powerRestored', m, T0 + 5 * MIN));
    meters.forEach((m, i) => {
      s.event(ev('lastGasp', m, T0 + i * 100));
    });
    s.sweep(T0 + 4 * IV, NOW + 3_600_000);
    expect(s.get('outage:T-9')).toMatchObject({
      state: 'resolved',
      resolvedBy: 'restored',
      resolvedAt: T0 + 5 * MIN,
      count: 60,
      outage: { metersAffected: 60, startedAt: T0, restoredAt: T0 + 5 * MIN, durationMs: 5 * MIN },
    });
    expect(s.notices).toEqual(['opened outage:T-9', 'resolved outage:T-9']);
    expect([...s.byKey.values()].filter((a) => a.state !== 'resolved')).toEqual([]);
    expect(s.get('lastGasp:M-0')).toMatchObject({ state: 'resolved', resolvedBy: 'restored', resolvedAt: T0 + 5 * MIN });
    expect(s.tracker === null ? [] : downMeters(s.tracker)).toEqual([]);
  });

  it('gasp and restore of each meter in turn (a backfill): one outage, no per-meter notice', () => {
    const s = new MemAlerts();
    meters.forEach((m, i) => {
      s.event(ev('lastGasp', m, T0 + i * 100));
      s.event(ev('powerRestored', m, T0 + 40 * MIN + i * 100));
    });
    s.sweep(T0 + 8 * IV, NOW + 3_600_000);
    expect(s.notices).toEqual(['opened outage:T-9', 'resolved outage:T-9']);
    expect(s.get('outage:T-9')).toMatchObject({ state: 'resolved', count: 60, outage: { metersAffected: 60, startedAt: T0 } });
    expect([...s.byKey.values()].filter((a) => a.type === 'outage')).toHaveLength(1);
  });

  it('a silent clear applied before its firing: the meter is not counted down, the alert resolves', () => {
    const s = new MemAlerts();
    s.event(ev('silent', 'M-4', T0 + 4 * IV, 'clear'));
    s.event(ev('silent', 'M-4', T0 + 3 * IV));
    expect(s.tracker === null ? [] : downMeters(s.tracker)).toEqual([]);
    s.sweep(T0 + 6 * IV, NOW + 3_600_000);
    expect(s.get('silent:M-4')).toMatchObject({ state: 'resolved', resolvedAt: T0 + 6 * IV, notified: false });
    expect(s.notices).toEqual([]);
  });
});

describe('severity by customer class', () => {
  it.each([
    { type: 'spike' as const, rule: 'warning' as const, meter: 'M-1', severity: 'warning' },
    { type: 'spike' as const, rule: 'warning' as const, meter: 'M-3', severity: 'major' },
    { type: 'spike' as const, rule: 'critical' as const, meter: 'M-41', severity: 'critical' },
    { type: 'tamper' as const, rule: 'info' as const, meter: 'M-1', severity: 'major' },
    { type: 'tamper' as const, rule: 'info' as const, meter: 'M-41', severity: 'critical' },
  ])('$type ($rule) on $meter → $severity', ({ type, rule, meter, severity }) => {
    const s = new MemAlerts();
    s.event(ev(type, meter, T0, 'firing', rule));
    expect(s.get(`${type}:${meter}`)?.severity).toBe(severity);
  });
});

describe('retention', () => {
  it.each([
    { state: 'resolved' as const, lastSeen: T0, wm: T0 + 91 * 86_400_000, expired: true },
    { state: 'resolved' as const, lastSeen: T0, wm: T0 + 90 * 86_400_000, expired: false },
    { state: 'open' as const, lastSeen: T0, wm: T0 + 900 * 86_400_000, expired: false },
  ])('$state, watermark +$wm', ({ state, lastSeen, wm, expired }) => {
    const s = new MemAlerts();
    s.event(ev('spike', 'M-1', lastSeen));
    const a = s.get('spike:M-1');
    expect(a && isExpired({ ...a, state }, wm, 90 * 86_400_000)).toBe(expired);
  });
});
