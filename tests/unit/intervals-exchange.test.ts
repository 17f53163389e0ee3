import { describe, expect, it } from 'vitest';
import type { Reading } from '../../src/contracts/reading.js';
import {
  applyExchange,
  computeIntervals,
  insertRead,
  type Interval,
  type MeterExchange,
  type RegisterRead,
  settle,
  type VeeSettings,
  type VeeState,
} from '../../src/domain/intervals.js';
import { MINUTE_MS } from '../../src/domain/local-time.js';
import { type IntervalOut, type MeterState, processExchange, processRead } from '../../src/domain/meter-state.js';
import { decodeMeterState, encodeMeterState } from '../../src/domain/meter-state-codec.js';
import { compileSettings } from '../../src/domain/stream-settings.js';
import { testDetectionConfig, testMeter } from '../helpers/detection-settings.js';

const M = MINUTE_MS;
const T0 = Date.UTC(2026, 10, 2, 0, 0); // Monday 2026-11-02 00:00 UTC
const Q = 15 * M;
const settings: VeeSettings = { toleranceMs: 120 * M, linearGapMaxMs: 120 * M, gapFactor: 1.5, gridOffsetMs: 0, hourGridOffsetMs: 0 };

type Row = [minutes: number, imp: number, exp?: number];
const read = ([min, imp, exp]: Row): RegisterRead => ({ ts: T0 + min * M, imp, exp: exp ?? 0 });
const exchange = (min: number, installWh: number, more: Omit<MeterExchange, 'ts' | 'installWh'> = {}): MeterExchange => ({
  ts: T0 + min * M,
  installWh,
  ...more,
});

/** Inserts reads in order, settling after each like the stream worker does (so old reads leave the window). */
function feed(rows: Row[], state: VeeState = { intervalMs: Q, reads: [] }): VeeState {
  let st = state;
  for (const row of rows) {
    const r = insertRead(st, read(row), settings);
    if (r.kind !== 'accepted') throw new Error(`read at ${row[0]} min: ${r.kind}`);
    st = settle(r.state, settings).state;
  }
  return st;
}

const all = (state: VeeState): Interval[] => computeIntervals(state, -Infinity, Infinity, settings);
const sum = (ivs: readonly Interval[]): number => ivs.reduce((a, i) => a + i.wh, 0);
const byStart = (ivs: readonly Interval[]): Map<number, Interval> => new Map(ivs.map((i) => [i.start, i]));

describe('a register decrease with the meter exchange known', () => {
  // The old meter reads 1000 and 1100; the new one 70 at :30 and 170 at :45.
  const rows: Row[] = [
    [0, 1000],
    [15, 1100],
    [30, 70],
    [45, 170],
  ];
  it.each([
    { name: 'no exchange: the new meter counted from 0 Wh, estimated (unchanged)', ex: undefined, wh: [100, 70, 100], estimated: [false, true, false] },
    {
      name: 'installed at the removal read: new register minus install read, exact',
      ex: exchange(15, 20),
      wh: [100, 50, 100],
      estimated: [false, false, false],
    },
    {
      name: "installed between reads with the removal read: both meters' stretches, exact",
      ex: exchange(22, 20, { removalWh: 1130 }),
      wh: [100, 30 + 50, 100],
      estimated: [false, false, false],
    },
    {
      name: "installed between reads without the removal read: the new meter's stretch, estimated",
      ex: exchange(22, 20),
      wh: [100, 50, 100],
      estimated: [false, true, false],
    },
    {
      name: "a removal read below the old meter's last read is ignored",
      ex: exchange(22, 20, { removalWh: 1090 }),
      wh: [100, 50, 100],
      estimated: [false, true, false],
    },
    { name: "installed at the new meter's first read", ex: exchange(30, 70, { removalWh: 1130 }), wh: [100, 30, 100], estimated: [false, false, false] },
    { name: 'an exchange after the decrease does not explain it', ex: exchange(40, 20), wh: [100, 70, 100], estimated: [false, true, false] },
    { name: "an install read above the new meter's read does not explain it", ex: exchange(15, 80), wh: [100, 70, 100], estimated: [false, true, false] },
  ])('$name', ({ ex, wh, estimated }) => {
    const state: VeeState = { intervalMs: Q, reads: rows.map(read), ...(ex === undefined ? {} : { exchange: ex }) };
    const ivs = all(state);
    expect(ivs.map((i) => i.wh)).toEqual(wh);
    expect(ivs.map((i) => i.estimated)).toEqual(estimated);
    // the register at each end is the meter's own read
    expect(ivs.map((i) => i.registerWh)).toEqual([1100, 70, 170]);
  });

  it("the export register restarts at the new meter's install export read", () => {
    const reads = (
      [
        [0, 1000, 500],
        [15, 1100, 510],
        [30, 70, 3],
        [45, 170, 8],
      ] as Row[]
    ).map(read);
    expect(all({ intervalMs: Q, reads, exchange: exchange(15, 20, { installExportWh: 0 }) }).map((i) => i.exportWh)).toEqual([10, 3, 5]);
    // without it, as today: no export is booked across the decrease
    expect(all({ intervalMs: Q, reads, exchange: exchange(15, 20) }).map((i) => i.exportWh)).toEqual([10, 0, 5]);
  });

  it('the register chain switches to the new meter at the exchange', () => {
    // one hour between reads, exchange at :30: 40 Wh on the old meter, 60 Wh on the new one, apportioned linearly
    const ivs = all({ intervalMs: Q, reads: [read([0, 1000]), read([60, 90])], exchange: exchange(30, 30, { removalWh: 1040 }) });
    expect(ivs.map((i) => i.wh)).toEqual([25, 25, 25, 25]);
    expect(ivs.map((i) => i.registerWh)).toEqual([1025, 90 - 50, 90 - 25, 90]);
  });
});

describe('an exchange that arrives after its decrease was computed', () => {
  it('with the decrease still in the window: its intervals are recomputed, the rest untouched', () => {
    const state = feed([
      [0, 1000],
      [15, 1100],
      [30, 70],
      [45, 170],
      [60, 260],
    ]);
    const before = all(state);
    const ex = exchange(15, 20, { removalWh: 1100 });
    const r = applyExchange(state, ex, settings);
    expect(r.intervals.map((i) => [(i.start - T0) / M, i.wh, i.estimated])).toEqual([[15, 50, false]]);
    expect(r.state.exchange).toEqual(ex);
    // the series now sums to the ledger: 100 on the old meter, 260 − 20 on the new one
    expect(sum(all(r.state))).toBe(100 + 240);
    expect(sum(before)).toBe(100 + 260);
  });

  it('after the window moved on: corrected from the traced reads, equal to knowing it from the start', () => {
    // Reads off the grid (5 past), so the decrease's intervals also need the reads around it; then a day more.
    const rows: Row[] = [
      [5, 1000],
      [20, 1100],
      [35, 40],
      [50, 140],
    ];
    const newMeterAt = (min: number): number => 140 + (min - 50) * 6;
    for (let m = 65; m <= 24 * 60; m += 15) rows.push([m, newMeterAt(m)]);
    const ex = exchange(20, 15, { removalWh: 1100 });
    const late = feed(rows);
    expect(late.reads.some((r) => r.ts === T0 + 35 * M)).toBe(false);
    const r = applyExchange(late, ex, settings);
    const early = byStart(all({ intervalMs: Q, reads: rows.map(read), exchange: ex }));
    expect(r.intervals.map((i) => (i.start - T0) / M)).toEqual([15, 30]);
    for (const iv of r.intervals) expect(iv).toEqual(early.get(iv.start));
    // and the corrected day sums exactly to the ledger
    const written = byStart(all({ intervalMs: Q, reads: rows.map(read) }));
    for (const iv of r.intervals) written.set(iv.start, iv);
    const from = T0 + 15 * M; // intervals from the first grid point after the first read to the last one
    expect(sum([...written.values()].filter((i) => i.start >= from))).toBe(sum([...early.values()].filter((i) => i.start >= from)));
    // old meter from :15 (its read pair 5 → 20 apportioned linearly) to its removal, new one from 15 Wh on
    const endMin = (Math.max(...[...early.values()].map((i) => i.end)) - T0) / M;
    expect(sum([...early.values()])).toBe(100 - Math.round((100 * 10) / 15) + (newMeterAt(endMin) - 15));
  });

  it('an exchange before its decrease waits for it; one that explains no decrease changes nothing', () => {
    const ex = exchange(30, 10);
    const waiting = applyExchange(
      feed([
        [0, 1000],
        [15, 1100],
      ]),
      ex,
      settings,
    );
    expect(waiting.intervals).toEqual([]);
    const after = feed(
      [
        [30, 60],
        [45, 160],
      ],
      waiting.state,
    );
    expect(all(after).map((i) => i.wh)).toEqual([100, 50, 100]);
    expect(
      applyExchange(
        feed([
          [0, 1000],
          [15, 1100],
          [30, 1200],
        ]),
        ex,
        settings,
      ).intervals,
    ).toEqual([]);
  });
});

describe('meter state with an exchange', () => {
  const s = compileSettings(testDetectionConfig(), 'UTC');
  const meter = testMeter();
  const reading = (min: number, importWh: number): Reading => ({ meterId: meter.meterId, ts: T0 + min * M, importWh });

  function runReads(reads: Reading[], state?: MeterState): { state: MeterState | undefined; intervals: IntervalOut[] } {
    let st = state;
    const intervals: IntervalOut[] = [];
    for (const r of reads) {
      const out = processRead(st, r, meter, s);
      st = out.state;
      intervals.push(...out.intervals);
    }
    return { state: st, intervals };
  }

  it('late or early, the written intervals end up the same and survive a checkpoint', () => {
    const reads = [reading(0, 5000), reading(15, 5100), reading(30, 25), reading(45, 125)];
    for (let m = 60; m <= 6 * 60; m += 15) reads.push(reading(m, 125 + (m - 45) * 4));
    const ex = { ts: T0 + 15 * M, installWh: 20, removalWh: 5100 };

    const early = processExchange(undefined, ex, meter, s);
    expect(early.intervals).toEqual([]);
    const a = runReads(reads, early.state);

    const b = runReads(reads);
    const corrected = processExchange(b.state, ex, meter, s);
    expect(corrected.intervals.map((i) => [(i.start - T0) / M, i.wh, i.estimated, i.demandW])).toEqual([[15, 5, false, 20]]);

    const written = (ivs: IntervalOut[]): Map<number, number> => new Map(ivs.map((i) => [i.start, i.wh]));
    const late = written([...b.intervals, ...corrected.intervals]);
    expect(late).toEqual(written(a.intervals));
    expect([...late.values()].reduce((x, y) => x + y, 0)).toBe(100 + (reads[reads.length - 1]?.importWh ?? NaN) - 20);

    const st = corrected.state;
    expect(st.vee.lastReset?.map((r) => (r.ts - T0) / M)).toEqual([15, 30]);
    expect(decodeMeterState(encodeMeterState(st), s)).toEqual(st);
  });
});
