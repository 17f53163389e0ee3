import { describe, expect, it } from 'vitest';
import {
  densestWindow,
  downMeters,
  emptyTracker,
  markActive,
  meterDown,
  meterUp,
  outageDetails,
  outageThreshold,
  suppressionOf,
  type OutageConfig,
  type OutageStep,
  type TrackerState,
  type TransformerTopology,
} from '../../src/domain/alert-outage.js';

const MIN = 60_000;
const IV = 15 * MIN;
const T0 = Date.UTC(2026, 10, 26, 2, 0);

const cfg: OutageConfig = {
  enabled: true,
  minMeters: 5,
  minRatio: 0.3,
  windowIntervals: 2,
  resolveBelowRatio: 0.1,
  severity: 'major',
  suppressTypes: ['silent', 'lastGasp'],
};

function topology(n: number, critical: number[] = []): TransformerTopology {
  return {
    transformerId: 'T-1',
    feederId: 'F-1',
    meters: Array.from({ length: n }, (_, i) => ({
      meterId: `M-${i}`,
      customerId: `C-${i}`,
      class: critical.includes(i) ? ('critical' as const) : ('residential' as const),
    })),
    intervalMs: IV,
  };
}

describe('outage threshold', () => {
  it.each([
    { total: 0, need: 5 },
    { total: 10, need: 5 },
    { total: 16, need: 5 },
    { total: 17, need: 6 },
    { total: 20, need: 6 },
    { total: 60, need: 18 },
    { total: 61, need: 19 },
    { total: 200, need: 60 },
  ])('$total meters need $need down', ({ total, need }) => {
    expect(outageThreshold(total, cfg)).toBe(need);
  });
});

describe('densest window containing the event', () => {
  it.each([
    { times: [0, 1, 2], ts: 2, w: 10, count: 3, start: 0 },
    { times: [0, 20, 21, 22], ts: 22, w: 10, count: 3, start: 20 },
    { times: [0, 20, 21, 22], ts: 5, w: 10, count: 1, start: 0 },
    { times: [0, 10, 20], ts: 20, w: 10, count: 2, start: 10 },
    { times: [], ts: 7, w: 10, count: 0, start: 7 },
  ])('$times at $ts', ({ times, ts, w, count, start }) => {
    expect(densestWindow(times, ts, w)).toEqual({ count, start });
  });
});

/** Drives a tracker through (meter, ts, up?) steps and records the steps that were not `none`. */
function drive(n: number, steps: Array<[number, number, 'down' | 'up']>): { tracker: TrackerState; log: string[] } {
  const topo = topology(n);
  let t = emptyTracker('T-1');
  const log: string[] = [];
  for (const [m, ts, dir] of steps) {
    const r = dir === 'down' ? meterDown(t, `M-${m}`, ts, topo, cfg) : meterUp(t, `M-${m}`, ts, topo, cfg);
    t = r.tracker;
    const record = (s: OutageStep): void => {
      if (s.kind === 'open') {
        log.push(`open@${(s.ts - T0) / 1000}s affected=${s.affected.length} start=${(s.startedAt - T0) / 1000}s`);
        const marked = markActive(t, 'O1', s, topo, cfg);
        t = marked.tracker;
        record(marked.step);
      } else if (s.kind === 'grow') log.push(`grow affected=${s.affected.length}`);
      else if (s.kind === 'joinLast') log.push(`joinLast affected=${s.affected.length}`);
      else if (s.kind === 'restore')
        log.push(`restore after ${(s.restoredAt - s.startedAt) / MIN}min affected=${s.affected.length} stillDown=${s.stillDown.length}`);
    };
    record(r.step);
  }
  return { tracker: t, log };
}

const downs = (from: number, to: number, ts: (i: number) => number): Array<[number, number, 'down']> =>
  Array.from({ length: to - from }, (_, k) => [from + k, ts(from + k), 'down']);
const ups = (from: number, to: number, ts: number): Array<[number, number, 'up']> => Array.from({ length: to - from }, (_, k) => [from + k, ts, 'up']);

describe('outage tracker', () => {
  it.each([
    {
      name: '60 meters: opens at the 18th last gasp, grows to 60, restores when ≤ 6 remain down',
      n: 60,
      steps: [...downs(0, 60, (i) => T0 + i * 1000), ...ups(0, 54, T0 + 90 * MIN), ...ups(54, 60, T0 + 91 * MIN)],
      log: ['open@17s affected=18 start=0s', ...Array.from({ length: 42 }, (_, k) => `grow affected=${19 + k}`), 'restore after 90min affected=60 stillDown=6'],
      active: false,
      down: 0,
    },
    {
      name: 'below 30 %: 17 of 60 down is no outage',
      n: 60,
      steps: downs(0, 17, (i) => T0 + i * 1000),
      log: [],
      active: false,
      down: 17,
    },
    {
      name: 'small transformer: 5 meters is the floor even when 30 % is fewer',
      n: 10,
      steps: downs(0, 5, () => T0),
      log: ['open@0s affected=5 start=0s'],
      active: true,
      down: 5,
    },
    {
      name: 'spread over more than 2 intervals: no outage',
      n: 10,
      steps: downs(0, 5, (i) => T0 + i * 8 * MIN),
      log: [],
      active: false,
      down: 5,
    },
    {
      name: 'exactly within 2 intervals: outage, start at the first of the window',
      n: 10,
      steps: downs(0, 5, (i) => T0 + i * 7.5 * MIN),
      log: ['open@1800s affected=5 start=0s'],
      active: true,
      down: 5,
    },
    {
      name: "gasps applied after the meters' later signs of life (a replay): the outage happened, opened and over at once",
      n: 10,
      steps: [...ups(0, 5, T0 + MIN), ...downs(0, 5, () => T0), [5, T0 + 30_000, 'down']],
      log: ['open@0s affected=5 start=0s', 'restore after 1min affected=5 stillDown=0', 'joinLast affected=6'],
      active: false,
      down: 1,
    },
    {
      name: 'a sign of life older than the gasp does not bring the meter back',
      n: 10,
      steps: [...downs(0, 5, () => T0 + MIN), ...ups(0, 5, T0)],
      log: ['open@60s affected=5 start=60s'],
      active: true,
      down: 5,
    },
    {
      name: 'a meter briefly down still counts: its gasp fell in the window',
      n: 10,
      steps: [...downs(0, 4, () => T0), [0, T0 + MIN, 'up'], [4, T0 + 2 * MIN, 'down']],
      log: ['open@120s affected=5 start=0s'],
      active: true,
      down: 4,
    },
    {
      name: 'a straggler right after a short outage does not open it again',
      n: 10,
      steps: [...downs(0, 6, () => T0), ...ups(0, 6, T0 + 10 * MIN), [6, T0 + 20 * MIN, 'down'], [7, T0 + 21 * MIN, 'down']],
      log: ['open@0s affected=5 start=0s', 'grow affected=6', 'restore after 10min affected=6 stillDown=1'],
      active: false,
      down: 2,
    },
    {
      name: 'a second outage on the same transformer a day later opens a new one',
      n: 10,
      steps: [...downs(0, 5, () => T0), ...ups(0, 5, T0 + 10 * MIN), ...downs(0, 5, () => T0 + 1440 * MIN)],
      log: ['open@0s affected=5 start=0s', 'restore after 10min affected=5 stillDown=1', 'open@86400s affected=5 start=86400s'],
      active: true,
      down: 5,
    },
  ] satisfies Array<{ name: string; n: number; steps: Array<[number, number, 'down' | 'up']>; log: string[]; active: boolean; down: number }>)(
    '$name',
    ({ n, steps, log, active, down }) => {
      const r = drive(n, steps);
      expect(r.log).toEqual(log);
      expect(r.tracker.active !== null).toBe(active);
      expect(downMeters(r.tracker).length).toBe(down);
    },
  );

  it('a gasp that arrives late but happened earlier moves the start back', () => {
    const r = drive(10, [...downs(0, 5, (i) => T0 + 60_000 + i * 1000), [5, T0, 'down'], [6, T0 + 120_000, 'down']]);
    expect(r.log).toEqual(['open@64s affected=5 start=60s', 'grow affected=6', 'grow affected=7']);
    expect(r.tracker.active?.startedAt).toBe(T0);
  });

  it('suppression follows the outage: active, then absorbed or still down, then nothing', () => {
    const r = drive(10, [...downs(0, 6, () => T0), ...ups(0, 5, T0 + 60 * MIN)]);
    // 6 down, 5 back: 1 left ≤ 10 % of 10 → restored with M-5 still down.
    const t = r.tracker;
    expect(t.last).toEqual({ alertId: 'O1', startedAt: T0, endedAt: T0 + 60 * MIN, affected: ['M-0', 'M-1', 'M-2', 'M-3', 'M-4', 'M-5'], stillDown: ['M-5'] });
    const w = 2 * IV;
    expect(suppressionOf(t, 'M-0', T0, w)).toEqual({ kind: 'absorbed', outageId: 'O1' });
    expect(suppressionOf(t, 'M-0', T0 + 60 * MIN + w, w)).toEqual({ kind: 'absorbed', outageId: 'O1' });
    expect(suppressionOf(t, 'M-0', T0 + 60 * MIN + w + 1, w)).toEqual({ kind: 'none' });
    expect(suppressionOf(t, 'M-5', T0, w)).toEqual({ kind: 'stillDown', outageId: 'O1', since: T0 + 60 * MIN });
    expect(suppressionOf(t, 'M-9', T0, w)).toEqual({ kind: 'none' });
    const during = drive(
      10,
      downs(0, 6, () => T0),
    ).tracker;
    expect(suppressionOf(during, 'M-3', T0, w)).toEqual({ kind: 'active', outageId: 'O1' });
    expect(suppressionOf(during, 'M-7', T0, w)).toEqual({ kind: 'none' });
  });

  it('outage details count customers and name the critical ones', () => {
    const topo = topology(10, [2, 7]);
    expect(outageDetails(topo, ['M-0', 'M-1', 'M-2', 'M-3', 'M-7', 'M-X'], T0, T0 + 42 * MIN, 1)).toEqual({
      transformerId: 'T-1',
      feederId: 'F-1',
      metersTotal: 10,
      metersAffected: 6,
      customersAffected: 6,
      criticalCustomers: ['C-2', 'C-7'],
      startedAt: T0,
      restoredAt: T0 + 42 * MIN,
      durationMs: 42 * MIN,
      stillDown: 1,
      // Sorted; a meter the registry does not know counts as its own customer.
      affectedMeters: ['M-0', 'M-1', 'M-2', 'M-3', 'M-7', 'M-X'],
      affectedCustomers: ['C-0', 'C-1', 'C-2', 'C-3', 'C-7', 'M-X'],
    });
  });

  it('outage details list at most 1000 meters and customers; the counts stay the truth', () => {
    const ids = Array.from({ length: 1200 }, (_, i) => `M-${String(i).padStart(4, '0')}`);
    const topo = {
      transformerId: 'T-B',
      feederId: null,
      meters: ids.map((m) => ({ meterId: m, customerId: `C${m}`, class: 'residential' as const })),
      intervalMs: 15 * MIN,
    };
    const d = outageDetails(topo, [...ids].reverse(), T0, null, 0);
    expect(d).toMatchObject({ metersTotal: 1200, metersAffected: 1200, customersAffected: 1200 });
    expect(d.affectedMeters?.length).toBe(1000);
    expect(d.affectedMeters?.[0]).toBe('M-0000');
    expect(d.affectedMeters?.[999]).toBe('M-0999');
    expect(d.affectedCustomers?.length).toBe(1000);
    expect(d.affectedCustomers?.[999]).toBe('CM-0999');
  });
});
