import { describe, expect, it } from 'vitest';
import type { AlertRecord } from '../../src/contracts/alert.js';
import type { AnomalyType, Severity } from '../../src/contracts/events.js';
import {
  acknowledge,
  alertId,
  assign,
  clear,
  dueTimes,
  fire,
  resolveByOperator,
  sweep,
  type LifecycleConfig,
  type Signal,
  type Suppression,
  type Transition,
} from '../../src/domain/alert-lifecycle.js';

const MIN = 60_000;
const IV = 15 * MIN;
const T0 = Date.UTC(2026, 10, 26, 2, 0);
const NOW = Date.UTC(2026, 10, 26, 12, 0); // wall clock, unrelated to event time on purpose

const cfg: LifecycleConfig = {
  clearIntervals: 2,
  flapWindowMs: 6 * 60 * MIN,
  holdWallMs: 60_000,
  types: { silent: { holdIntervals: 1 }, lastGasp: { holdIntervals: 1, clearIntervals: 0 } },
};

function sig(ts: number, over: Partial<Signal> = {}): Signal {
  return {
    type: 'spike',
    subjectKind: 'meter',
    subject: 'M-1',
    ts,
    severity: 'warning',
    reason: `spike at ${ts}`,
    value: 2000,
    expected: 300,
    score: 6.6,
    customerClass: 'residential',
    meterId: 'M-1',
    customerId: 'C-1',
    transformerId: 'T-1',
    feederId: 'F-1',
    intervalMs: IV,
    ...over,
  };
}

type Step =
  | { fire: number; severity?: Severity; type?: AnomalyType; suppression?: Suppression }
  | { clear: number }
  | { sweep: number; now?: number; suppression?: Suppression; advancing?: boolean }
  | { ack: true }
  | { assign: string; by?: string; now?: number }
  | { resolve: true };

/** Runs steps; records changes as "kind" (silent) or "kind!" (notified), and every distinct alert id. */
function run(steps: Step[]): { alert: AlertRecord | undefined; changes: string[]; ids: string[] } {
  let alert: AlertRecord | undefined;
  const changes: string[] = [];
  const ids = new Set<string>();
  const take = (tr: Transition | null): void => {
    if (tr === null) return;
    alert = tr.alert;
    ids.add(tr.alert.id);
    for (const c of tr.changes) changes.push(c.kind + (c.notify ? '!' : ''));
  };
  for (const s of steps) {
    if ('fire' in s) {
      take(fire(alert, sig(s.fire, { severity: s.severity ?? 'warning', type: s.type ?? 'spike' }), s.suppression ?? { kind: 'none' }, NOW, cfg));
    } else if ('clear' in s) {
      take(clear(alert, s.clear, NOW, cfg));
    } else if ('sweep' in s) {
      if (alert)
        take(sweep(alert, { watermark: s.sweep, now: s.now ?? NOW, suppression: s.suppression ?? { kind: 'none' }, advancing: s.advancing ?? false }, cfg));
    } else if ('assign' in s) {
      if (alert) {
        const r = assign(alert, s.assign, s.by ?? 'ops', s.now ?? NOW);
        if (r.ok) take(r.transition);
        else changes.push(`refused:${r.reason}`);
      }
    } else if ('ack' in s) {
      if (alert) {
        const r = acknowledge(alert, 'ops', NOW);
        if (r.ok) take(r.transition);
        else changes.push(`refused:${r.reason}`);
      }
    } else if (alert) {
      take(resolveByOperator(alert, 'ops', NOW));
    }
  }
  return { alert, changes, ids: [...ids] };
}

const at = (n: number): number => T0 + n * IV;

describe('alert lifecycle', () => {
  it('100 identical firing events make one alert with count 100 and one notice', () => {
    const steps: Step[] = Array.from({ length: 100 }, (_, i) => ({ fire: at(i) }));
    const r = run(steps);
    expect(r.ids).toEqual([alertId('spike:M-1', at(0))]);
    expect(r.changes).toEqual(['opened!']);
    expect(r.alert).toMatchObject({ state: 'open', count: 100, firstSeen: at(0), lastSeen: at(99), flapping: false, key: 'spike:M-1' });
  });

  const table: Array<{
    name: string;
    steps: Step[];
    state: string;
    count: number;
    flapping: boolean;
    changes: string[];
    ids: number;
    resolvedAt?: number | null;
  }> = [
    {
      name: 'clear then quiet for 2 intervals resolves at clear + 2 intervals (hysteresis)',
      steps: [{ fire: at(0) }, { fire: at(1) }, { clear: at(2) }, { sweep: at(3) }, { sweep: at(4) }],
      state: 'resolved',
      count: 2,
      flapping: false,
      changes: ['opened!', 'resolved!'],
      ids: 1,
      resolvedAt: at(4),
    },
    {
      name: 'the watermark one ms short of the hysteresis keeps it open',
      steps: [{ fire: at(0) }, { clear: at(1) }, { sweep: at(3) - 1 }],
      state: 'open',
      count: 1,
      flapping: false,
      changes: ['opened!'],
      ids: 1,
      resolvedAt: null,
    },
    {
      name: 'firing again inside the hysteresis cancels the clear',
      steps: [{ fire: at(0) }, { clear: at(1) }, { fire: at(2) }, { sweep: at(3) }, { sweep: at(4) }],
      state: 'open',
      count: 2,
      flapping: false,
      changes: ['opened!'],
      ids: 1,
      resolvedAt: null,
    },
    {
      name: 'a late firing from before the clear does not cancel it',
      steps: [{ fire: at(0) }, { fire: at(2) }, { clear: at(3) }, { fire: at(1) }, { sweep: at(5) }],
      state: 'resolved',
      count: 3,
      flapping: false,
      changes: ['opened!', 'resolved!'],
      ids: 1,
      resolvedAt: at(5),
    },
    {
      name: 'a stale clear (older than the last firing) is ignored',
      steps: [{ fire: at(0) }, { fire: at(3) }, { clear: at(2) }, { sweep: at(10) }],
      state: 'open',
      count: 2,
      flapping: false,
      changes: ['opened!'],
      ids: 1,
      resolvedAt: null,
    },
    {
      name: 're-opening within the flap window: same alert, flapping, notified once',
      steps: [
        { fire: at(0) },
        { clear: at(1) },
        { sweep: at(3) },
        { fire: at(4) },
        { clear: at(5) },
        { sweep: at(7) },
        { fire: at(8) },
        { clear: at(9) },
        { sweep: at(11) },
      ],
      state: 'resolved',
      count: 3,
      flapping: true,
      changes: ['opened!', 'resolved!', 'flapping!', 'resolved', 'reopened', 'resolved'],
      ids: 1,
      resolvedAt: at(11),
    },
    {
      name: 'a signal after the hysteresis elapsed (sweep never ran) resolves then re-opens as flapping',
      steps: [{ fire: at(0) }, { clear: at(1) }, { fire: at(6) }],
      state: 'open',
      count: 2,
      flapping: true,
      changes: ['opened!', 'resolved!', 'flapping!'],
      ids: 1,
      resolvedAt: null,
    },
    {
      name: 'firing after the flap window opens a new alert',
      steps: [{ fire: at(0) }, { clear: at(1) }, { sweep: at(3) }, { fire: at(3) + 6 * 60 * MIN + 1 }],
      state: 'open',
      count: 1,
      flapping: false,
      changes: ['opened!', 'resolved!', 'opened!'],
      ids: 2,
      resolvedAt: null,
    },
    {
      name: 'exactly at the flap window edge it is still the same alert',
      steps: [{ fire: at(0) }, { clear: at(1) }, { sweep: at(3) }, { fire: at(3) + 6 * 60 * MIN }],
      state: 'open',
      count: 2,
      flapping: true,
      changes: ['opened!', 'resolved!', 'flapping!'],
      ids: 1,
      resolvedAt: null,
    },
    {
      name: 'late evidence after resolution is counted without re-opening',
      steps: [{ fire: at(0) }, { fire: at(1) }, { clear: at(2) }, { sweep: at(4) }, { fire: at(1) + 1 }],
      state: 'resolved',
      count: 3,
      flapping: false,
      changes: ['opened!', 'resolved!'],
      ids: 1,
      resolvedAt: at(4),
    },
    {
      name: 'escalation after the notice is news; severity never drops within an episode',
      steps: [
        { fire: at(0), severity: 'warning' },
        { fire: at(1), severity: 'critical' },
        { fire: at(2), severity: 'info' },
      ],
      state: 'open',
      count: 3,
      flapping: false,
      changes: ['opened!', 'escalated!'],
      ids: 1,
      resolvedAt: null,
    },
    {
      name: 'acknowledge, keep counting, auto-resolve tells the resolution',
      steps: [{ fire: at(0) }, { ack: true }, { ack: true }, { fire: at(1) }, { clear: at(2) }, { sweep: at(4) }],
      state: 'resolved',
      count: 2,
      flapping: false,
      changes: ['opened!', 'acknowledged!', 'resolved!'],
      ids: 1,
      resolvedAt: at(4),
    },
    {
      name: 'operator resolve; acknowledging a resolved alert is refused',
      steps: [{ fire: at(0) }, { fire: at(1) }, { resolve: true }, { resolve: true }, { ack: true }],
      state: 'resolved',
      count: 2,
      flapping: false,
      changes: ['opened!', 'resolved!', 'refused:resolved'],
      ids: 1,
      resolvedAt: at(1),
    },
    {
      name: 'lastGasp has no hysteresis: the clear resolves at once',
      steps: [{ fire: at(0), type: 'lastGasp' }, { clear: at(0) + 5 * MIN }],
      state: 'resolved',
      count: 1,
      flapping: false,
      changes: ['opened', 'resolved'],
      ids: 1,
      resolvedAt: at(0) + 5 * MIN,
    },
  ];

  it.each(table)('$name', (row) => {
    const r = run(row.steps);
    expect(r.changes).toEqual(row.changes);
    expect(r.ids.length).toBe(row.ids);
    expect(r.alert?.state).toBe(row.state);
    expect(r.alert?.count).toBe(row.count);
    expect(r.alert?.flapping).toBe(row.flapping);
    if (row.resolvedAt !== undefined) expect(r.alert?.resolvedAt).toBe(row.resolvedAt);
  });
});

describe('held notices (silent, lastGasp)', () => {
  const s = (n: number): Step => ({ fire: at(n), type: 'silent' });
  const table: Array<{ name: string; steps: Step[]; changes: string[]; pending: boolean; suppressedBy: string | null; state: string }> = [
    {
      name: 'held until the watermark passes one interval',
      steps: [s(0), { sweep: at(1) - 1 }],
      changes: ['opened'],
      pending: true,
      suppressedBy: null,
      state: 'open',
    },
    { name: 'released at ts + 1 interval', steps: [s(0), { sweep: at(1) }], changes: ['opened', 'opened!'], pending: false, suppressedBy: null, state: 'open' },
    {
      name: 'released by the wall clock when the watermark stalls',
      steps: [s(0), { sweep: at(0), now: NOW + 60_000 }],
      changes: ['opened', 'opened!'],
      pending: false,
      suppressedBy: null,
      state: 'open',
    },
    {
      name: 'not by the wall clock while the watermark still moves (a backfill)',
      steps: [s(0), { sweep: at(0), now: NOW + 600_000, advancing: true }],
      changes: ['opened'],
      pending: true,
      suppressedBy: null,
      state: 'open',
    },
    {
      name: 'resolved while held: nobody told, no all-clear either',
      steps: [s(0), { clear: at(0) + MIN }, { sweep: at(2) + MIN }],
      changes: ['opened', 'resolved'],
      pending: false,
      suppressedBy: null,
      state: 'resolved',
    },
    {
      name: 'an active outage parks it',
      steps: [
        s(0),
        { sweep: at(1), suppression: { kind: 'active', outageId: 'O1' } },
        { sweep: at(50), now: NOW + 3_600_000, suppression: { kind: 'active', outageId: 'O1' } },
      ],
      changes: ['opened'],
      pending: true,
      suppressedBy: 'O1',
      state: 'open',
    },
    {
      name: 'created under an active outage: parked at once',
      steps: [
        { fire: at(0), type: 'silent', suppression: { kind: 'active', outageId: 'O1' } },
        { sweep: at(9), now: NOW + 3_600_000, suppression: { kind: 'active', outageId: 'O1' } },
      ],
      changes: ['opened'],
      pending: true,
      suppressedBy: 'O1',
      state: 'open',
    },
    {
      name: 'absorbed by an outage that is over: dropped, never told',
      steps: [
        s(0),
        { sweep: at(1), suppression: { kind: 'active', outageId: 'O1' } },
        { sweep: at(3), suppression: { kind: 'absorbed', outageId: 'O1' } },
        { sweep: at(9) },
      ],
      changes: ['opened'],
      pending: false,
      suppressedBy: 'O1',
      state: 'open',
    },
    {
      name: 'still down after the outage: held afresh, then told',
      steps: [
        s(0),
        { sweep: at(1), suppression: { kind: 'active', outageId: 'O1' } },
        { sweep: at(4), suppression: { kind: 'stillDown', outageId: 'O1', since: at(4) } },
        { sweep: at(5) - 1, suppression: { kind: 'stillDown', outageId: 'O1', since: at(4) } },
        { sweep: at(5), suppression: { kind: 'stillDown', outageId: 'O1', since: at(4) } },
      ],
      changes: ['opened', 'opened!'],
      pending: false,
      suppressedBy: null,
      state: 'open',
    },
  ];

  it.each(table)('$name', (row) => {
    const r = run(row.steps);
    expect(r.changes).toEqual(row.changes);
    expect(r.alert?.pending !== null).toBe(row.pending);
    expect(r.alert?.suppressedBy).toBe(row.suppressedBy);
    expect(r.alert?.state).toBe(row.state);
  });

  it('due times follow the hold and the hysteresis', () => {
    const held = run([s(0)]).alert;
    expect(held && dueTimes(held, cfg)).toEqual({ event: at(1), wall: NOW + 60_000 });
    const clearing = run([{ fire: at(0) }, { clear: at(1) }]).alert;
    expect(clearing && dueTimes(clearing, cfg)).toEqual({ event: at(3), wall: null });
    const parked = run([{ fire: at(0), type: 'silent', suppression: { kind: 'active', outageId: 'O1' } }]).alert;
    expect(parked && dueTimes(parked, cfg)).toEqual({ event: null, wall: null });
  });
});

describe('assignment', () => {
  const table: Array<{
    name: string;
    steps: Step[];
    state: string;
    assignee: string | null;
    assignedAt: number | null;
    assignedBy: string | null;
    count: number;
    changes: string[];
    ids: number;
  }> = [
    {
      name: 'a new alert is assigned to nobody',
      steps: [{ fire: at(0) }],
      state: 'open',
      assignee: null,
      assignedAt: null,
      assignedBy: null,
      count: 1,
      changes: ['opened!'],
      ids: 1,
    },
    {
      name: 'assigning is no lifecycle change (nothing notified)',
      steps: [{ fire: at(0) }, { assign: 'alice', by: 'bob' }],
      state: 'open',
      assignee: 'alice',
      assignedAt: NOW,
      assignedBy: 'bob',
      count: 1,
      changes: ['opened!'],
      ids: 1,
    },
    {
      name: 'later events moving count and lastSeen keep the assignee',
      steps: [{ fire: at(0) }, { assign: 'alice' }, { fire: at(1) }, { fire: at(2) }],
      state: 'open',
      assignee: 'alice',
      assignedAt: NOW,
      assignedBy: 'ops',
      count: 3,
      changes: ['opened!'],
      ids: 1,
    },
    {
      name: 'an escalation and an acknowledgement keep the assignee',
      steps: [{ fire: at(0) }, { assign: 'alice' }, { fire: at(1), severity: 'critical' }, { ack: true }],
      state: 'acknowledged',
      assignee: 'alice',
      assignedAt: NOW,
      assignedBy: 'ops',
      count: 2,
      changes: ['opened!', 'escalated!', 'acknowledged!'],
      ids: 1,
    },
    {
      name: 'auto-resolved and re-opened within the flap window: the same alert, still assigned',
      steps: [{ fire: at(0) }, { assign: 'alice' }, { clear: at(1) }, { sweep: at(3) }, { fire: at(5) }],
      state: 'open',
      assignee: 'alice',
      assignedAt: NOW,
      assignedBy: 'ops',
      count: 2,
      changes: ['opened!', 'resolved!', 'flapping!'],
      ids: 1,
    },
    {
      name: 'firing again after the flap window is a new alert, assigned to nobody',
      steps: [{ fire: at(0) }, { assign: 'alice' }, { resolve: true }, { fire: at(0) + 7 * 60 * MIN }],
      state: 'open',
      assignee: null,
      assignedAt: null,
      assignedBy: null,
      count: 1,
      changes: ['opened!', 'resolved!', 'opened!'],
      ids: 2,
    },
    {
      name: 'the same assignee again changes nothing (assignedAt stays)',
      steps: [{ fire: at(0) }, { assign: 'alice', now: NOW }, { assign: 'alice', by: 'carol', now: NOW + 5000 }],
      state: 'open',
      assignee: 'alice',
      assignedAt: NOW,
      assignedBy: 'ops',
      count: 1,
      changes: ['opened!'],
      ids: 1,
    },
    {
      name: 'reassigning records the new assignee, when and by whom',
      steps: [{ fire: at(0) }, { assign: 'alice', now: NOW }, { assign: 'dave', by: 'carol', now: NOW + 5000 }],
      state: 'open',
      assignee: 'dave',
      assignedAt: NOW + 5000,
      assignedBy: 'carol',
      count: 1,
      changes: ['opened!'],
      ids: 1,
    },
    {
      name: 'a resolved alert cannot be assigned; it keeps who had it',
      steps: [{ fire: at(0) }, { assign: 'alice' }, { resolve: true }, { assign: 'dave' }],
      state: 'resolved',
      assignee: 'alice',
      assignedAt: NOW,
      assignedBy: 'ops',
      count: 1,
      changes: ['opened!', 'resolved!', 'refused:resolved'],
      ids: 1,
    },
  ];

  it.each(table)('$name', (row) => {
    const r = run(row.steps);
    expect(r.alert).toMatchObject({ state: row.state, assignee: row.assignee, assignedAt: row.assignedAt, assignedBy: row.assignedBy, count: row.count });
    expect(r.changes).toEqual(row.changes);
    expect(r.ids.length).toBe(row.ids);
  });

  it('a record written before assignment existed (no fields) reads as unassigned and can be assigned', () => {
    const created = run([{ fire: at(0) }]).alert;
    if (!created) throw new Error('no alert');
    const { assignee: _a, assignedAt: _b, assignedBy: _c, ...old } = created;
    const updated = fire(old, sig(at(1)), { kind: 'none' }, NOW, cfg).alert;
    expect(updated.assignee).toBeUndefined();
    const r = assign(updated, 'alice', 'ops', NOW);
    expect(r.ok && r.transition?.alert).toMatchObject({ assignee: 'alice', assignedAt: NOW, assignedBy: 'ops', count: 2 });
  });
});

describe('alert ids', () => {
  it.each([
    { key: 'spike:M-1', ts: T0, id: alertId('spike:M-1', T0) },
    { key: 'spike:M-2', ts: T0, id: alertId('spike:M-2', T0) },
  ])('are stable and sort by first event time: $key', ({ key, ts, id }) => {
    expect(alertId(key, ts)).toBe(id);
    expect(id).toMatch(/^[0-9a-z]{9}-[0-9a-f]{16}$/);
  });

  it('differ by key and order by time', () => {
    expect(alertId('spike:M-1', T0)).not.toBe(alertId('spike:M-2', T0));
    expect(alertId('spike:M-1', T0) < alertId('spike:M-1', T0 + 1)).toBe(true);
    expect(alertId('spike:M-1', T0).slice(0, 9)).toBe(T0.toString(36).padStart(9, '0'));
  });
});
