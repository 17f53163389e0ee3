import { describe, expect, it } from 'vitest';
import {
  episodesFromEvents,
  findDuplicates,
  formatReport,
  median,
  newStartsOf,
  percentile,
  score,
  scoreBilling,
  type LedgerPoint,
  type ScoredAlert,
  type ScoredEvent,
} from '../../simulators/score.js';
import { parseTruth } from '../../simulators/score-cli.js';
import type { TruthRecord } from '../../simulators/truth.js';

const H = 3_600_000;
const T0 = Date.parse('2026-02-01T00:00:00Z');
const OPTS = { graceMs: 2 * H };

function truth(over: Partial<TruthRecord> & Pick<TruthRecord, 'id' | 'type'>): TruthRecord {
  const meterId = over.meterId ?? 'M-000001';
  return {
    kind: 'anomaly',
    magnitude: 'clear',
    subjectKind: 'meter',
    subject: meterId,
    meterId,
    customerId: `C-${meterId}`,
    transformerId: 'T-01',
    feederId: 'F-1',
    meters: [meterId],
    start: '',
    end: '',
    startMs: T0,
    endMs: T0 + 4 * H,
    params: {},
    expectedAlso: [],
    ...over,
  };
}

function alert(over: Partial<ScoredAlert> & Pick<ScoredAlert, 'id' | 'type'>): ScoredAlert {
  const meterId = over.meterId === undefined ? 'M-000001' : over.meterId;
  return {
    key: `${over.type}:${meterId ?? over.subject ?? ''}`,
    subject: meterId ?? '',
    meterId,
    transformerId: 'T-01',
    customerId: null,
    firstSeen: T0 + H,
    lastSeen: T0 + 2 * H,
    ...over,
  };
}

describe('percentile and median', () => {
  it.each([
    { values: [], p: 95, pct: null, med: null },
    { values: [7], p: 95, pct: 7, med: 7 },
    { values: [1, 2, 3, 4], p: 50, pct: 2, med: 2.5 },
    { values: [15, 30, 45, 60, 75, 90, 105, 120, 135, 150], p: 95, pct: 150, med: 82.5 },
    { values: [15, 30, 45, 60, 75, 90, 105, 120, 135, 150], p: 90, pct: 135, med: 82.5 },
  ])('$values p$p', ({ values, p, pct, med }) => {
    expect(percentile(values, p)).toBe(pct);
    expect(median(values)).toBe(med);
  });
});

describe('score: recall, precision, delay per type and magnitude', () => {
  const cases: Array<{
    name: string;
    truth: TruthRecord[];
    alerts: ScoredAlert[];
    want: {
      type: string;
      magnitude: string;
      injected: number;
      detected: number;
      tp: number;
      fp: number;
      explained: number;
      recall: number | null;
      precision: number | null;
      f1: number | null;
      med: number | null;
      p95: number | null;
    };
  }> = [
    {
      name: 'one clear spike detected 15 min after start',
      truth: [truth({ id: 's1', type: 'spike' })],
      alerts: [alert({ id: 'a1', type: 'spike', firstSeen: T0 + 15 * 60_000 })],
      want: { type: 'spike', magnitude: 'clear', injected: 1, detected: 1, tp: 1, fp: 0, explained: 0, recall: 1, precision: 1, f1: 1, med: 15, p95: 15 },
    },
    {
      name: 'alert on another meter is a false positive and the injection is missed',
      truth: [truth({ id: 's1', type: 'spike' })],
      alerts: [alert({ id: 'a1', type: 'spike', meterId: 'M-000002' })],
      want: { type: 'spike', magnitude: 'clear', injected: 1, detected: 0, tp: 0, fp: 1, explained: 0, recall: 0, precision: 0, f1: 0, med: null, p95: null },
    },
    {
      name: 'alert starting after end + grace does not count',
      truth: [truth({ id: 'd1', type: 'drop' })],
      alerts: [alert({ id: 'a1', type: 'drop', firstSeen: T0 + 6 * H + 1, lastSeen: T0 + 7 * H })],
      want: { type: 'drop', magnitude: 'clear', injected: 1, detected: 0, tp: 0, fp: 1, explained: 0, recall: 0, precision: 0, f1: 0, med: null, p95: null },
    },
    {
      name: 'alert within the grace after the end counts, delay from start',
      truth: [truth({ id: 'z1', type: 'silent' })],
      alerts: [alert({ id: 'a1', type: 'silent', firstSeen: T0 + 5 * H, lastSeen: T0 + 5 * H })],
      want: { type: 'silent', magnitude: 'clear', injected: 1, detected: 1, tp: 1, fp: 0, explained: 0, recall: 1, precision: 1, f1: 1, med: 300, p95: 300 },
    },
    {
      name: 'an alert open before the injection has delay 0',
      truth: [truth({ id: 'f1', type: 'flatline' })],
      alerts: [alert({ id: 'a1', type: 'flatline', firstSeen: T0 - H, lastSeen: T0 + H })],
      want: { type: 'flatline', magnitude: 'clear', injected: 1, detected: 1, tp: 1, fp: 0, explained: 0, recall: 1, precision: 1, f1: 1, med: 0, p95: 0 },
    },
    {
      name: 'drop raised by a flatline injection is explained, not a false positive',
      truth: [truth({ id: 'f1', type: 'flatline', expectedAlso: ['drop'] })],
      alerts: [alert({ id: 'a1', type: 'drop' })],
      want: {
        type: 'drop',
        magnitude: 'all',
        injected: 0,
        detected: 0,
        tp: 0,
        fp: 0,
        explained: 1,
        recall: null,
        precision: null,
        f1: null,
        med: null,
        p95: null,
      },
    },
    {
      name: 'clear and subtle split: 2 of 3 clear, 0 of 1 subtle; 3 TP 1 FP',
      truth: [
        truth({ id: 'd1', type: 'drop', meterId: 'M-1' }),
        truth({ id: 'd2', type: 'drop', meterId: 'M-2' }),
        truth({ id: 'd3', type: 'drop', meterId: 'M-3' }),
        truth({ id: 'd4', type: 'drop', meterId: 'M-4', magnitude: 'subtle' }),
      ],
      alerts: [
        alert({ id: 'a1', type: 'drop', meterId: 'M-1', firstSeen: T0 + 30 * 60_000 }),
        alert({ id: 'a2', type: 'drop', meterId: 'M-2', firstSeen: T0 + 90 * 60_000 }),
        alert({ id: 'a3', type: 'drop', meterId: 'M-2', firstSeen: T0 + 3 * H, lastSeen: T0 + 3 * H }),
        alert({ id: 'a4', type: 'drop', meterId: 'M-9' }),
      ],
      want: {
        type: 'drop',
        magnitude: 'clear',
        injected: 3,
        detected: 2,
        tp: 3,
        fp: 1,
        explained: 0,
        recall: 2 / 3,
        precision: 0.75,
        f1: (2 * 0.75 * (2 / 3)) / (0.75 + 2 / 3),
        med: 60,
        p95: 90,
      },
    },
    {
      name: 'transformer injection matched by the transformer alert; meter alerts under it explained',
      truth: [
        truth({
          id: 'o1',
          type: 'outage',
          subjectKind: 'transformer',
          subject: 'T-07',
          meterId: undefined,
          customerId: undefined,
          transformerId: 'T-07',
          meters: ['M-1', 'M-2'],
          expectedAlso: ['silent'],
        }),
      ],
      alerts: [
        alert({ id: 'a1', type: 'outage', meterId: null, subject: 'T-07', transformerId: 'T-07' }),
        alert({ id: 'a2', type: 'silent', meterId: 'M-2', transformerId: 'T-07' }),
      ],
      want: { type: 'outage', magnitude: 'clear', injected: 1, detected: 1, tp: 1, fp: 0, explained: 0, recall: 1, precision: 1, f1: 1, med: 60, p95: 60 },
    },
    {
      name: 'overload on the transformer of a customer over contract is its consequence',
      truth: [truth({ id: 'c1', type: 'customerPeak', meterId: 'M-5', transformerId: 'T-09' })],
      alerts: [
        alert({ id: 'a1', type: 'feederOverload', meterId: null, subject: 'T-09', transformerId: 'T-09' }),
        alert({ id: 'a2', type: 'feederOverload', meterId: null, subject: 'T-10', transformerId: 'T-10' }),
      ],
      want: {
        type: 'feederOverload',
        magnitude: 'all',
        injected: 0,
        detected: 0,
        tp: 0,
        fp: 1,
        explained: 1,
        recall: null,
        precision: 0,
        f1: null,
        med: null,
        p95: null,
      },
    },
    {
      name: 'a moderate injection is detected by the detector types mapped to it: lowDay by drop',
      truth: [truth({ id: 'l1', type: 'lowDay', magnitude: 'moderate' })],
      alerts: [alert({ id: 'a1', type: 'drop' })],
      want: { type: 'lowDay', magnitude: 'moderate', injected: 1, detected: 1, tp: 1, fp: 0, explained: 0, recall: 1, precision: 1, f1: 1, med: 60, p95: 60 },
    },
    {
      name: 'placeholder detected by stuck; a stuck alert on a clean meter is false in its row',
      truth: [truth({ id: 'p1', type: 'placeholder', magnitude: 'moderate', meterId: 'M-1' })],
      alerts: [alert({ id: 'a1', type: 'stuck', meterId: 'M-1' }), alert({ id: 'a2', type: 'stuck', meterId: 'M-9' })],
      want: {
        type: 'placeholder',
        magnitude: 'moderate',
        injected: 1,
        detected: 1,
        tp: 1,
        fp: 1,
        explained: 0,
        recall: 1,
        precision: 0.5,
        f1: 2 / 3,
        med: 60,
        p95: 60,
      },
    },
    {
      name: 'the drop row counts a drop alert on a lowDay as a true positive',
      truth: [truth({ id: 'l1', type: 'lowDay', magnitude: 'moderate' })],
      alerts: [alert({ id: 'a1', type: 'drop' })],
      want: {
        type: 'drop',
        magnitude: 'all',
        injected: 0,
        detected: 0,
        tp: 1,
        fp: 0,
        explained: 0,
        recall: null,
        precision: 1,
        f1: null,
        med: null,
        p95: null,
      },
    },
    {
      name: 'customer-keyed alert matched through the customer id',
      truth: [truth({ id: 'c1', type: 'customerPeak', meterId: 'M-5', customerId: 'C-5' })],
      alerts: [alert({ id: 'a1', type: 'customerPeak', meterId: null, subject: 'C-5', customerId: 'C-5', transformerId: null })],
      want: {
        type: 'customerPeak',
        magnitude: 'clear',
        injected: 1,
        detected: 1,
        tp: 1,
        fp: 0,
        explained: 0,
        recall: 1,
        precision: 1,
        f1: 1,
        med: 60,
        p95: 60,
      },
    },
  ];

  it.each(cases)('$name', ({ truth: t, alerts, want }) => {
    const report = score({ truth: t, alerts, source: 'alerts' }, OPTS);
    const row = report.rows.find((r) => r.type === want.type && r.magnitude === want.magnitude);
    expect(row).toBeDefined();
    expect({
      type: row?.type,
      magnitude: row?.magnitude,
      injected: row?.injected,
      detected: row?.detected,
      tp: row?.truePositives,
      fp: row?.falsePositives,
      explained: row?.explained,
      recall: row?.recall,
      precision: row?.precision,
      f1: row?.f1,
      med: row?.medianDelayMin,
      p95: row?.p95DelayMin,
    }).toEqual(want);
  });

  it('subtle row of the split case, missed list and false positives', () => {
    const t = [truth({ id: 'd1', type: 'drop', meterId: 'M-1' }), truth({ id: 'd4', type: 'drop', meterId: 'M-4', magnitude: 'subtle' })];
    const report = score(
      { truth: t, alerts: [alert({ id: 'a1', type: 'drop', meterId: 'M-1' }), alert({ id: 'a9', type: 'spike', meterId: 'M-9' })], source: 'alerts' },
      OPTS,
    );
    const subtle = report.rows.find((r) => r.type === 'drop' && r.magnitude === 'subtle');
    expect([subtle?.injected, subtle?.detected, subtle?.recall]).toEqual([1, 0, 0]);
    expect(report.missed).toEqual([{ id: 'd4', type: 'drop', subject: 'M-4', magnitude: 'subtle' }]);
    expect(report.falsePositives).toEqual([{ alertId: 'a9', type: 'spike', subject: 'M-9', firstSeen: T0 + H }]);
    // 16 truth types (10 clear, 6 moderate) x (all, clear, subtle, moderate).
    expect(report.rows).toHaveLength(64);
    expect(formatReport(report).split('\n').slice(0, 1)).toEqual(['detection (from alerts)']);
    expect(report.overall.filter((o) => o.injected > 0)).toEqual([
      { magnitude: 'all', injected: 2, detected: 1, recall: 0.5, medianDelayMin: 60 },
      { magnitude: 'clear', injected: 1, detected: 1, recall: 1, medianDelayMin: 60 },
      { magnitude: 'subtle', injected: 1, detected: 0, recall: 0, medianDelayMin: null },
    ]);
    expect(report.alertVerdicts).toEqual({ truePositives: 1, falsePositives: 1, explained: 0, precision: 0.5 });
    expect(formatReport(report)).toContain(
      'overall recall: all 0.50 (1/2, median delay 60 min); clear 1.00 (1/1, median delay 60 min); subtle 0.00 (0/1, median delay - min)',
    );
  });

  it('scored from anomaly events: no outage rows (outages are alerts only) and no duplicate-alert line', () => {
    const t = [
      truth({
        id: 'o1',
        type: 'outage',
        subjectKind: 'transformer',
        subject: 'T-07',
        meterId: undefined,
        customerId: undefined,
        transformerId: 'T-07',
        meters: ['M-1'],
      }),
    ];
    const report = score({ truth: t, alerts: [], source: 'events' }, OPTS);
    expect(report.rows.filter((r) => r.type === 'outage')).toEqual([]);
    expect(report.rows).toHaveLength(60);
    const text = formatReport(report);
    expect(text.startsWith('detection (from events)')).toBe(true);
    expect(text).not.toContain('duplicate alerts');
    expect(text).not.toMatch(/^outage /m);
  });
});

describe('findDuplicates', () => {
  const t = [truth({ id: 'd1', type: 'drop' })];
  it.each([
    { name: 'one alert', alerts: [alert({ id: 'a', type: 'drop' })], want: [] },
    {
      name: 'two alerts with one key over the same time',
      alerts: [alert({ id: 'a', type: 'drop' }), alert({ id: 'b', type: 'drop', firstSeen: T0 + 90 * 60_000, lastSeen: T0 + 3 * H })],
      want: [{ alertId: 'b', key: 'drop:M-000001', why: 'overlap' }],
    },
    {
      name: 'a second alert for the same injection after the first resolved',
      alerts: [alert({ id: 'a', type: 'drop' }), alert({ id: 'b', type: 'drop', firstSeen: T0 + 3 * H, lastSeen: T0 + 4 * H })],
      want: [{ alertId: 'b', key: 'drop:M-000001', why: 'sameInjection' }],
    },
    {
      name: 'a later alert with no injection is not a duplicate (it is a false positive)',
      alerts: [alert({ id: 'a', type: 'drop' }), alert({ id: 'b', type: 'drop', firstSeen: T0 + 20 * H, lastSeen: T0 + 21 * H })],
      want: [],
    },
  ])('$name', ({ alerts, want }) => {
    expect(findDuplicates(alerts, t, OPTS)).toEqual(want);
  });

  it('a recurring injection (several spans, or a profile moved every day) may have an alert per episode', () => {
    const nights = [
      truth({
        id: 'h1',
        type: 'highUsage',
        spans: [
          [T0, T0 + 2 * H],
          [T0 + 24 * H, T0 + 26 * H],
        ],
      }),
    ];
    const two = [alert({ id: 'a', type: 'highUsage' }), alert({ id: 'b', type: 'highUsage', firstSeen: T0 + 24 * H, lastSeen: T0 + 25 * H })];
    expect(findDuplicates(two, nights, OPTS)).toEqual([]);
    const oneSpan = [truth({ id: 'h2', type: 'highUsage', spans: [[T0, T0 + 26 * H]], endMs: T0 + 26 * H })];
    expect(findDuplicates(two, oneSpan, OPTS)).toEqual([{ alertId: 'b', key: 'highUsage:M-000001', why: 'sameInjection' }]);
  });
});

describe('episodesFromEvents', () => {
  const ev = (ts: number, status: 'firing' | 'clear', subject = 'M-1'): ScoredEvent => ({ type: 'spike', subject, ts, status });
  it.each([
    { name: 'none', events: [], want: [] },
    {
      name: 'firing, firing, clear, firing: two episodes (out of order input)',
      events: [ev(T0 + 3 * H, 'firing'), ev(T0, 'firing'), ev(T0 + H, 'firing'), ev(T0 + 2 * H, 'clear')],
      want: [
        [T0, T0 + H],
        [T0 + 3 * H, T0 + 3 * H],
      ],
    },
    { name: 'a lone clear opens nothing', events: [ev(T0, 'clear')], want: [] },
    {
      name: 'two subjects',
      events: [ev(T0, 'firing'), ev(T0 + H, 'firing', 'M-2')],
      want: [
        [T0, T0],
        [T0 + H, T0 + H],
      ],
    },
  ])('$name', ({ events, want }) => {
    expect(episodesFromEvents(events).map((e) => [e.firstSeen, e.lastSeen])).toEqual(want);
  });
});

describe('scoreBilling', () => {
  const row = (meterId: string, h: number, importWh: number, published = true): LedgerPoint => ({ meterId, tsMs: T0 + h * H, importWh, published });
  const ledger = [
    row('M-1', 0, 1000),
    row('M-1', 1, 1500),
    row('M-1', 2, 2100),
    row('M-2', 0, 900),
    row('M-2', 1, 40),
    row('M-2', 2, 100), // register reset: replaced meter starts at 0
    row('M-3', 0, 10),
    row('M-3', 1, 20, false),
    row('M-3', 2, 30, false),
  ];
  it.each([
    {
      name: 'exact',
      billed: [{ meterId: 'M-1', fromMs: T0, toMs: T0 + 2 * H, totalWh: 1100 }],
      want: { compared: 1, unverifiable: 0, missingInLedger: 0, differences: [], acrossReset: [] },
    },
    {
      name: 'across a register reset',
      billed: [{ meterId: 'M-2', fromMs: T0, toMs: T0 + 2 * H, totalWh: 100 }],
      want: { compared: 1, unverifiable: 0, missingInLedger: 0, differences: [], acrossReset: [] },
    },
    {
      name: 'one Wh off',
      billed: [{ meterId: 'M-1', fromMs: T0, toMs: T0 + H, totalWh: 499 }],
      want: { compared: 1, unverifiable: 0, missingInLedger: 0, differences: [{ meterId: 'M-1', billedWh: 499, ledgerWh: 500, diffWh: -1 }], acrossReset: [] },
    },
    {
      name: 'end never published',
      billed: [{ meterId: 'M-3', fromMs: T0, toMs: T0 + 2 * H, totalWh: 20 }],
      want: { compared: 0, unverifiable: 1, missingInLedger: 0, differences: [], acrossReset: [] },
    },
    {
      name: 'unknown meter',
      billed: [{ meterId: 'M-7', fromMs: T0, toMs: T0 + H, totalWh: 1 }],
      want: { compared: 0, unverifiable: 0, missingInLedger: 1, differences: [], acrossReset: [] },
    },
  ])('$name', ({ billed, want }) => {
    expect(scoreBilling(billed, ledger)).toEqual(want);
  });

  it.each([
    {
      name: 'new meter started at 10 Wh: 30 + 60 Wh',
      totalWh: 90,
      want: { compared: 1, unverifiable: 0, missingInLedger: 0, differences: [], acrossReset: [] },
    },
    {
      name: 'the replacement interval not billed',
      totalWh: 60,
      want: { compared: 1, unverifiable: 0, missingInLedger: 0, differences: [], acrossReset: [{ meterId: 'M-2', billedWh: 60, ledgerWh: 90, diffWh: -30 }] },
    },
  ])('across a reset with the truth start register: $name', ({ totalWh, want }) => {
    const newStarts = newStartsOf([
      truth({ id: 'r1', type: 'registerReset', meterId: 'M-2', startMs: T0, endMs: T0 + 15 * 60_000, params: { newStartWh: 10 } }),
    ]);
    expect(newStarts.get('M-2')).toEqual([{ startMs: T0, wh: 10 }]);
    expect(scoreBilling([{ meterId: 'M-2', fromMs: T0, toMs: T0 + 2 * H, totalWh }], ledger, newStarts)).toEqual(want);
  });
});

describe('scoreBilling across a meter exchange, booked as the pipeline books it', () => {
  const row = (h: number, importWh: number): LedgerPoint => ({ meterId: 'M-2', tsMs: T0 + h * H, importWh, published: true });
  const ledger = [row(0, 800), row(1, 900), row(2, 40), row(3, 100)];
  it.each([
    { name: 'installed at the removal read: new meter from its install read', startH: 1, newStartWh: 10, ledgerWh: 100 + 30 + 60 },
    { name: "installed at the new meter's first read: the same pair", startH: 2, newStartWh: 10, ledgerWh: 100 + 30 + 60 },
    { name: "an install read above the new meter's read explains nothing: from 0 Wh", startH: 1, newStartWh: 50, ledgerWh: 100 + 40 + 60 },
    { name: 'installed outside the decrease: from 0 Wh', startH: 0, newStartWh: 10, ledgerWh: 100 + 40 + 60 },
  ])('$name', ({ startH, newStartWh, ledgerWh }) => {
    const newStarts = new Map([['M-2', [{ startMs: T0 + startH * H, wh: newStartWh }]]]);
    const billedWh = 100 + 30 + 60;
    const billed = [{ meterId: 'M-2', fromMs: T0, toMs: T0 + 3 * H, totalWh: billedWh }];
    const diff = billedWh - ledgerWh;
    expect(scoreBilling(billed, ledger, newStarts).acrossReset).toEqual(diff === 0 ? [] : [{ meterId: 'M-2', billedWh, ledgerWh, diffWh: diff }]);
  });
});

describe('parseTruth', () => {
  const good = JSON.stringify(truth({ id: 's1', type: 'spike', start: '2026-02-01T00:00:00Z', end: '2026-02-01T04:00:00Z' }));
  it.each([
    { name: 'one record and a blank line', text: `${good}\n\n`, want: 1, error: undefined },
    {
      name: 'a moderate record with its interval and spans',
      text: JSON.stringify(
        truth({
          id: 'h1',
          type: 'highUsage',
          magnitude: 'moderate',
          intervalMinutes: 60,
          spans: [
            [T0, T0 + H],
            [T0 + 24 * H, T0 + 25 * H],
          ],
        }),
      ),
      want: 1,
      error: undefined,
    },
    { name: 'not JSON', text: `${good}\n{`, want: 0, error: 'truth:2: not JSON' },
    { name: 'wrong shape', text: '{"id":"x"}', want: 0, error: 'truth:1: not a truth record' },
  ])('$name', ({ text, want, error }) => {
    if (error !== undefined) expect(() => parseTruth(text)).toThrow(error);
    else expect(parseTruth(text)).toHaveLength(want);
  });
});
