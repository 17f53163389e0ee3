import { describe, expect, it } from 'vitest';
import type { AlertChangeKind, AlertRecord } from '../../src/contracts/alert.js';
import type { Severity } from '../../src/contracts/events.js';
import type { CustomerClass } from '../../src/contracts/registry.js';
import { fire } from '../../src/domain/alert-lifecycle.js';
import { localTimeOfDayMs, quietDelayMs, routeChange, type RoutingConfig } from '../../src/domain/alert-routing.js';
import { alertSeverity, notifyPriority, raiseSeverity } from '../../src/domain/alert-severity.js';

const MIN = 60_000;
const T0 = Date.UTC(2026, 10, 26, 2, 0);

function alert(severity: Severity, customerClass: CustomerClass | null, type: 'spike' | 'outage' = 'spike', critical: string[] = []): AlertRecord {
  const a = fire(
    undefined,
    {
      type,
      subjectKind: 'meter',
      subject: 'M-1',
      ts: T0,
      severity,
      reason: 'r',
      value: 1,
      expected: 1,
      score: 1,
      customerClass,
      meterId: 'M-1',
      customerId: 'C-1',
      transformerId: 'T-1',
      feederId: 'F-1',
      intervalMs: 15 * MIN,
    },
    { kind: 'none' },
    T0,
    { clearIntervals: 2, flapWindowMs: 1, holdWallMs: 1, types: {} },
  ).alert;
  return critical.length === 0
    ? a
    : {
        ...a,
        outage: {
          transformerId: 'T-1',
          feederId: null,
          metersTotal: 9,
          metersAffected: 9,
          customersAffected: 9,
          criticalCustomers: critical,
          startedAt: T0,
          restoredAt: null,
          durationMs: null,
          stillDown: 0,
        },
      };
}

const cfg: RoutingConfig = {
  timezone: 'Europe/Madrid',
  quietHours: { enabled: true, start: '22:00', end: '07:00', severities: ['info'], action: 'defer' },
  routes: [
    { webhook: 'ops', severities: ['warning', 'major', 'critical'], types: [], customerClasses: [], changes: ['opened', 'escalated', 'flapping', 'resolved'] },
    { webhook: 'ops', severities: [], types: [], customerClasses: [], changes: [] },
    { webhook: 'critical-care', severities: [], types: [], customerClasses: ['critical'], changes: [] },
    { webhook: 'grid', severities: [], types: ['outage', 'feederOverload'], customerClasses: [], changes: ['opened', 'resolved'] },
    { webhook: 'digest', severities: ['info'], types: [], customerClasses: [], changes: ['opened'] },
  ],
};

// 12:00 and 23:30 in Madrid (UTC+1 in November).
const NOON = Date.UTC(2026, 10, 26, 11, 0);
const NIGHT = Date.UTC(2026, 10, 26, 22, 30);

describe('routing', () => {
  it.each([
    { name: 'warning opened → ops', a: alert('warning', 'residential'), kind: 'opened', notify: true, now: NOON, out: ['ops:0:4'] },
    { name: 'not to be notified → nobody', a: alert('critical', 'critical'), kind: 'opened', notify: false, now: NOON, out: [] },
    {
      name: 'acknowledged falls through to the catch-all ops route',
      a: alert('warning', null),
      kind: 'acknowledged',
      notify: true,
      now: NOON,
      out: ['ops:0:4'],
    },
    {
      name: 'critical customer: also critical-care, first in line',
      a: alert('major', 'critical'),
      kind: 'opened',
      notify: true,
      now: NOON,
      out: ['ops:0:1', 'critical-care:0:1'],
    },
    { name: 'outage → ops and grid', a: alert('major', null, 'outage'), kind: 'opened', notify: true, now: NOON, out: ['ops:0:3', 'grid:0:3'] },
    {
      name: 'outage with critical customers goes first',
      a: alert('critical', null, 'outage', ['C-9']),
      kind: 'resolved',
      notify: true,
      now: NOON,
      out: ['ops:0:1', 'grid:0:1'],
    },
    {
      name: 'info by day → ops (catch-all) and digest',
      a: alert('info', 'residential'),
      kind: 'opened',
      notify: true,
      now: NOON,
      out: ['ops:0:5', 'digest:0:5'],
    },
    {
      name: 'info at 23:30 local is deferred to 07:00',
      a: alert('info', 'residential'),
      kind: 'opened',
      notify: true,
      now: NIGHT,
      out: [`ops:${7.5 * 60 * MIN}:5`, `digest:${7.5 * 60 * MIN}:5`],
    },
    { name: 'warning at night is not held', a: alert('warning', 'residential'), kind: 'opened', notify: true, now: NIGHT, out: ['ops:0:4'] },
  ] satisfies Array<{ name: string; a: AlertRecord; kind: AlertChangeKind; notify: boolean; now: number; out: string[] }>)(
    '$name',
    ({ a, kind, notify, now, out }) => {
      expect(routeChange(kind, notify, a, now, cfg).map((d) => `${d.webhook}:${d.delayMs}:${d.priority}`)).toEqual(out);
    },
  );

  it('quiet hours with action drop deliver nothing', () => {
    const drop: RoutingConfig = { ...cfg, quietHours: { ...cfg.quietHours, action: 'drop' } };
    expect(routeChange('opened', true, alert('info', null), NIGHT, drop)).toEqual([]);
    expect(routeChange('opened', true, alert('info', null), NOON, drop).length).toBe(2);
  });
});

describe('quiet hours', () => {
  const q = { enabled: true, start: '22:00', end: '07:00', severities: ['info' as const], action: 'defer' as const };
  it.each([
    { local: '21:59', utc: Date.UTC(2026, 10, 26, 20, 59), delay: 0 },
    { local: '22:00', utc: Date.UTC(2026, 10, 26, 21, 0), delay: 9 * 60 * MIN },
    { local: '03:15', utc: Date.UTC(2026, 10, 27, 2, 15), delay: (3 * 60 + 45) * MIN },
    { local: '06:59:30', utc: Date.UTC(2026, 10, 27, 5, 59, 30), delay: 30_000 },
    { local: '07:00', utc: Date.UTC(2026, 10, 27, 6, 0), delay: 0 },
    { local: '12:00 (summer, UTC+2)', utc: Date.UTC(2026, 6, 1, 10, 0), delay: 0 },
    { local: '23:00 (summer, UTC+2)', utc: Date.UTC(2026, 6, 1, 21, 0), delay: 8 * 60 * MIN },
  ])('$local Madrid → $delay ms', ({ utc, delay }) => {
    expect(quietDelayMs(q, utc, 'Europe/Madrid')).toBe(delay);
  });

  it.each([
    { start: '09:00', end: '17:00', local: Date.UTC(2026, 10, 26, 12, 0), delay: 5 * 60 * MIN },
    { start: '09:00', end: '17:00', local: Date.UTC(2026, 10, 26, 18, 0), delay: 0 },
    { start: '09:00', end: '09:00', local: Date.UTC(2026, 10, 26, 9, 0), delay: 0 },
  ])('same-day window $start–$end in UTC', ({ start, end, local, delay }) => {
    expect(quietDelayMs({ ...q, start, end }, local, 'UTC')).toBe(delay);
  });

  it('local time of day in a zone', () => {
    expect(localTimeOfDayMs(Date.UTC(2026, 10, 26, 23, 30, 15, 250), 'Europe/Madrid')).toBe((30 * 60 + 15) * 1000 + 250);
    expect(localTimeOfDayMs(Date.UTC(2026, 10, 26, 23, 30), 'America/New_York')).toBe((18 * 60 + 30) * MIN);
  });
});

describe('severity', () => {
  it.each([
    { s: 'info', by: 1, out: 'warning' },
    { s: 'major', by: 1, out: 'critical' },
    { s: 'critical', by: 1, out: 'critical' },
    { s: 'warning', by: -2, out: 'info' },
    { s: 'warning', by: 0, out: 'warning' },
  ] satisfies Array<{ s: Severity; by: number; out: Severity }>)('$s raised by $by → $out', ({ s, by, out }) => {
    expect(raiseSeverity(s, by)).toBe(out);
  });

  it.each([
    { rule: 'warning', cls: 'critical', out: 'major' },
    { rule: 'warning', cls: 'industrial', out: 'info' },
    { rule: 'warning', cls: null, out: 'warning' },
  ] satisfies Array<{ rule: Severity; cls: CustomerClass | null; out: Severity }>)('rule $rule for class $cls → $out', ({ rule, cls, out }) => {
    expect(alertSeverity(rule, 'spike', cls, { types: {}, classRaise: { critical: 1, industrial: -1 } })).toBe(out);
  });

  it.each([
    { s: 'critical', crit: false, p: 2 },
    { s: 'major', crit: false, p: 3 },
    { s: 'warning', crit: false, p: 4 },
    { s: 'info', crit: false, p: 5 },
    { s: 'info', crit: true, p: 1 },
  ] satisfies Array<{ s: Severity; crit: boolean; p: number }>)('priority of $s (critical customer $crit) = $p', ({ s, crit, p }) => {
    expect(notifyPriority(s, crit)).toBe(p);
  });
});
