import { describe, expect, it } from 'vitest';
import { formatIntervalReport, scoreIntervals, type GroupScore, type MarkInput } from '../../simulators/score-intervals.js';
import type { TruthRecord } from '../../simulators/truth.js';

const H = 3_600_000;
const M15 = 900_000;
const T0 = Date.parse('2026-03-02T00:00:00Z');
const R12 = { toleranceMs: 12 * H, defaultIntervalMinutes: 15 };

function rec(over: Partial<TruthRecord> & Pick<TruthRecord, 'id' | 'type' | 'startMs' | 'endMs'>): TruthRecord {
  const meterId = over.meterId ?? 'A';
  return {
    kind: 'anomaly',
    magnitude: 'moderate',
    subjectKind: 'meter',
    subject: meterId,
    meterId,
    transformerId: 'T-1',
    feederId: 'F-1',
    meters: [meterId],
    intervalMinutes: 60,
    start: '',
    end: '',
    params: {},
    expectedAlso: [],
    ...over,
  };
}

const mark = (meterId: string, start: number, type = 'highUsage', end?: number): MarkInput => ({ meterId, start, type, ...(end === undefined ? {} : { end }) });

/** The numbers of a group, rounded to 6 digits so fractions compare exactly. */
function numbers(g: GroupScore | undefined) {
  const r = (x: number | null) => (x === null ? null : Math.round(x * 1e6) / 1e6);
  const m = (s: GroupScore['interval']) => ({
    labels: s.labels,
    found: s.found,
    flags: s.flags,
    trueFlags: s.trueFlags,
    pooled: [r(s.pooled.precision), r(s.pooled.recall), r(s.pooled.f1)],
    mean: [r(s.mean.precision), r(s.mean.recall), r(s.mean.f1)],
  });
  return g === undefined
    ? undefined
    : { meters: g.labelledMeters, clean: [g.cleanMetersFlagged, g.cleanFlags], interval: m(g.interval), tolerance: m(g.tolerance) };
}

describe('scoreIntervals: interval level and tolerance, pooled and mean over meters', () => {
  // A: 4 labelled hours, flags on 2 of them, one 7 h after (tolerance-true), one 17 h after (false either way).
  // B: 2 labelled hours, no flags. C: clean, one flag. D: outage meter, a flag inside the outage (excused) and
  // one 4 h after it (false interval by interval, excused under the tolerance metric).
  const truth = [
    rec({ id: 'h1', type: 'highUsage', meterId: 'A', startMs: T0, endMs: T0 + 4 * H }),
    rec({ id: 'd1', type: 'drop', meterId: 'B', startMs: T0, endMs: T0 + 2 * H }),
    rec({
      id: 'o1',
      type: 'outage',
      subjectKind: 'transformer',
      subject: 'T-9',
      meterId: undefined,
      magnitude: 'clear',
      meters: ['D'],
      startMs: T0,
      endMs: T0 + 2 * H,
    }),
  ];
  const marks = [
    mark('A', T0 + H),
    mark('A', T0 + 2 * H),
    mark('A', T0 + 10 * H),
    mark('A', T0 + 20 * H, 'drop'),
    mark('C', T0 + 5 * H, 'spike'),
    mark('D', T0 + H, 'drop'),
    mark('D', T0 + 6 * H, 'drop'),
  ];
  const rep = scoreIntervals(truth, marks, R12);

  it('groups: all and moderate only (no clear or subtle interval-scored injection)', () => {
    expect(rep.groups.map((g) => g.group)).toEqual(['all', 'moderate']);
    expect(rep.groups[0]?.injections).toBe(2);
  });

  it('interval by interval: pooled P = R = F1 = 1/3; mean over labelled meters P 0.5, R 0.25, F1 0.25', () => {
    expect(numbers(rep.groups[0])?.interval).toEqual({
      labels: 6,
      found: 2,
      flags: 6,
      trueFlags: 2,
      pooled: [0.333333, 0.333333, 0.333333],
      mean: [0.5, 0.25, 0.25],
    });
  });

  it('tolerance 12 h: pooled P 3/5, R 2/3, F1 12/19; mean P 0.75, R 0.5, F1 3/7', () => {
    expect(numbers(rep.groups[0])?.tolerance).toEqual({
      labels: 6,
      found: 4,
      flags: 5,
      trueFlags: 3,
      pooled: [0.6, 0.666667, 0.631579],
      mean: [0.75, 0.5, 0.428571],
    });
  });

  it('meters with flags and no labels are counted apart (C and D, one flag each)', () => {
    expect(numbers(rep.groups[0])?.clean).toEqual([2, 2]);
    expect(rep.groups[0]?.labelledMeters).toBe(2);
  });

  it('per injected type: labels, found and recall both ways', () => {
    expect(rep.types).toEqual([
      { type: 'drop', magnitude: 'moderate', injections: 1, labels: 2, intervalFound: 0, intervalRecall: 0, toleranceFound: 0, toleranceRecall: 0 },
      { type: 'highUsage', magnitude: 'moderate', injections: 1, labels: 4, intervalFound: 2, intervalRecall: 0.5, toleranceFound: 4, toleranceRecall: 1 },
    ]);
  });

  it('per mark type: flags not excused, true interval by interval and within r', () => {
    expect(rep.markTypes).toEqual([
      { type: 'drop', flags: 2, intervalTrue: 0, intervalPrecision: 0, toleranceTrue: 0, tolerancePrecision: 0 },
      { type: 'highUsage', flags: 3, intervalTrue: 2, intervalPrecision: 2 / 3, toleranceTrue: 3, tolerancePrecision: 1 },
      { type: 'spike', flags: 1, intervalTrue: 0, intervalPrecision: 0, toleranceTrue: 0, tolerancePrecision: 0 },
    ]);
  });

  it('two marks of one interval are one flag', () => {
    const twice = scoreIntervals(truth.slice(0, 1), [mark('A', T0 + H), mark('A', T0 + H, 'drop')], R12);
    expect(numbers(twice.groups[0])?.interval).toEqual({ labels: 4, found: 1, flags: 1, trueFlags: 1, pooled: [1, 0.25, 0.4], mean: [1, 0.25, 0.4] });
  });

  it('prints the three tables', () => {
    const text = formatIntervalReport(rep);
    expect(text.split('\n')[0]).toBe('intervals (int: interval by interval; tol: within 12 h; pooled, then mean over labelled meters)');
    expect(text).toMatch(/^all +2 +2 +6 +6 +0\.33 +0\.33 +0\.33 +0\.50 +0\.25 +0\.25 +0\.60 +0\.67 +0\.63 +0\.75 +0\.50 +0\.43 +2 \(2\)$/m);
  });
});

describe('scoreIntervals: groups excuse each other', () => {
  // A2: moderate, 2 labelled hours, one flagged. E: a clear spike hour, flagged, and a flag 5 h later.
  const truth = [
    rec({ id: 'h1', type: 'highUsage', meterId: 'A2', startMs: T0, endMs: T0 + 2 * H }),
    rec({ id: 's1', type: 'spike', magnitude: 'clear', meterId: 'E', startMs: T0 + 30 * H, endMs: T0 + 31 * H }),
  ];
  const marks = [mark('A2', T0), mark('E', T0 + 30 * H, 'spike'), mark('E', T0 + 35 * H, 'spike')];
  const rep = scoreIntervals(truth, marks, R12);
  const group = (g: string) => numbers(rep.groups.find((x) => x.group === g));

  it('all: both meters', () => {
    expect(group('all')?.interval).toEqual({
      labels: 3,
      found: 2,
      flags: 3,
      trueFlags: 2,
      pooled: [0.666667, 0.666667, 0.666667],
      mean: [0.75, 0.75, 0.666667],
    });
    expect(group('all')?.tolerance).toEqual({ labels: 3, found: 3, flags: 3, trueFlags: 3, pooled: [1, 1, 1], mean: [1, 1, 1] });
  });

  it('moderate: the spike hour is excused; the flag 5 h after it is false by the hour, excused within 12 h', () => {
    expect(group('moderate')?.interval).toEqual({ labels: 2, found: 1, flags: 2, trueFlags: 1, pooled: [0.5, 0.5, 0.5], mean: [1, 0.5, 0.666667] });
    expect(group('moderate')?.clean).toEqual([1, 1]);
    expect(group('moderate')?.tolerance).toEqual({ labels: 2, found: 2, flags: 1, trueFlags: 1, pooled: [1, 1, 1], mean: [1, 1, 1] });
  });

  it('clear: the moderate meter is excused entirely', () => {
    expect(group('clear')?.interval).toEqual({ labels: 1, found: 1, flags: 2, trueFlags: 1, pooled: [0.5, 1, 0.666667], mean: [0.5, 1, 0.666667] });
    expect(group('clear')?.meters).toBe(1);
    expect(group('clear')?.clean).toEqual([0, 0]);
  });
});

describe('scoreIntervals: spans, 15-minute meters, marks with an extent, r configurable', () => {
  // Two labelled hours a day apart (a highUsage at night only) on a 15-minute meter: 8 labels.
  const truth = [
    rec({
      id: 'n1',
      type: 'highUsage',
      meterId: 'F',
      intervalMinutes: 15,
      startMs: T0,
      endMs: T0 + 25 * H,
      spans: [
        [T0, T0 + H],
        [T0 + 24 * H, T0 + 25 * H],
      ],
    }),
  ];
  const marks = [mark('F', T0, 'highUsage', T0 + 2 * M15), mark('F', T0 + 24 * H + M15), mark('F', T0 + 12 * H)];

  it('r = 12 h: a mark covering two intervals finds both; the mark between the spans is false by the hour, true within 12 h', () => {
    const g = numbers(scoreIntervals(truth, marks, R12).groups[0]);
    expect(g?.interval).toEqual({ labels: 8, found: 3, flags: 3, trueFlags: 2, pooled: [0.666667, 0.375, 0.48], mean: [0.666667, 0.375, 0.48] });
    expect(g?.tolerance).toEqual({ labels: 8, found: 8, flags: 3, trueFlags: 3, pooled: [1, 1, 1], mean: [1, 1, 1] });
  });

  it('r = 0: only labels with a flag starting at the same time are found', () => {
    const g = numbers(scoreIntervals(truth, marks, { toleranceMs: 0, defaultIntervalMinutes: 15 }).groups[0]);
    expect(g?.tolerance).toEqual({ labels: 8, found: 2, flags: 3, trueFlags: 2, pooled: [0.666667, 0.25, 0.363636], mean: [0.666667, 0.25, 0.363636] });
  });
});
