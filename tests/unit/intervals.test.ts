import { describe, expect, it } from 'vitest';
import { computeIntervals, insertRead, type GapShape, type RegisterRead, settle, type VeeSettings, type VeeState } from '../../src/domain/intervals.js';
import { gridOffsetMs, HOUR_MS, localDayEnd, localDayStart, MINUTE_MS } from '../../src/domain/local-time.js';

const M = MINUTE_MS;
const T0 = Date.UTC(2026, 10, 2, 0, 0); // Monday 2026-11-02 00:00 UTC
const Q = 15 * M;

const settings: VeeSettings = { toleranceMs: 120 * M, linearGapMaxMs: 120 * M, gapFactor: 1.5, gridOffsetMs: 0, hourGridOffsetMs: 0 };

/** Feeds reads in order; returns the final state and the accepted/rejected kinds. */
function feed(reads: Array<[minutes: number, imp: number, exp?: number]>, s = settings, intervalMs = Q): { state: VeeState; kinds: string[] } {
  let state: VeeState = { intervalMs, reads: [] };
  const kinds: string[] = [];
  for (const [min, imp, exp] of reads) {
    const r = insertRead(state, { ts: T0 + min * M, imp, exp: exp ?? 0 }, s);
    kinds.push(r.kind);
    if (r.kind === 'accepted') state = r.state;
  }
  return { state, kinds };
}

const all = (state: VeeState, s = settings, shape?: GapShape) => computeIntervals(state, -Infinity, Infinity, s, shape);
const whs = (state: VeeState, s = settings, shape?: GapShape) => all(state, s, shape).map((i) => i.wh);
const startsMin = (state: VeeState) => all(state).map((i) => (i.start - T0) / M);

describe('intervals from register reads', () => {
  it.each([
    {
      name: 'reads on the boundaries: exact deltas',
      reads: [
        [0, 1000],
        [15, 1100],
        [30, 1250],
        [45, 1255],
      ] as Array<[number, number]>,
      wh: [100, 150, 5],
      estimated: [false, false, false],
      register: [1100, 1250, 1255],
    },
    {
      name: 'reads off the boundary: apportioned, not estimated',
      reads: [
        [5, 1000],
        [20, 1300],
        [35, 1450],
        [50, 1600],
      ] as Array<[number, number]>,
      // [15,30): 300 − round(300·10/15) = 100 from the first pair + round(150·10/15) = 100 from the second
      wh: [200, 150],
      estimated: [false, false],
      register: [1400, 1550],
    },
    {
      name: 'one read missing (45 min apart): linear, estimated, sums exactly',
      reads: [
        [0, 0],
        [45, 100],
      ] as Array<[number, number]>,
      wh: [33, 34, 33],
      estimated: [true, true, true],
      register: [33, 67, 100],
    },
    {
      name: 'a 2 h gap is still linear',
      reads: [
        [0, 500],
        [120, 1300],
      ] as Array<[number, number]>,
      wh: [100, 100, 100, 100, 100, 100, 100, 100],
      estimated: [true, true, true, true, true, true, true, true],
      register: [600, 700, 800, 900, 1000, 1100, 1200, 1300],
    },
  ])('$name', ({ reads, wh, estimated, register }) => {
    const { state } = feed(reads);
    const ivs = all(state);
    expect(ivs.map((i) => i.wh)).toEqual(wh);
    expect(ivs.map((i) => i.estimated)).toEqual(estimated);
    expect(ivs.map((i) => i.registerWh)).toEqual(register);
  });

  it('the first interval starts at the first boundary at or after the first read', () => {
    const { state } = feed([
      [7, 0],
      [22, 150],
      [37, 300],
      [52, 450],
    ]);
    expect(startsMin(state)).toEqual([15, 30]);
    expect(whs(state)).toEqual([150, 150]);
  });

  it('exports are apportioned like imports', () => {
    const { state } = feed([
      [0, 0, 0],
      [15, 10, 40],
      [45, 20, 100],
    ]);
    expect(all(state).map((i) => i.exportWh)).toEqual([40, 30, 30]);
  });

  it('fills a 6 h gap by the baseline shape and sums exactly to the register delta', () => {
    // 100 Wh/h for 3 h then 400 Wh/h for 3 h: weights 25 per interval, then 100.
    const shape: GapShape = { rateAt: (ts) => ((ts - T0) / HOUR_MS < 3 ? 100 : 400) };
    const { state } = feed([
      [0, 10_000],
      [360, 13_001],
    ]);
    const ivs = all(state, settings, shape);
    expect(ivs).toHaveLength(24);
    expect(ivs.map((i) => i.wh)).toEqual([50, 50, 50, 50, 50, 50, 50, 50, 50, 50, 50, 50, 200, 200, 200, 200, 201, 200, 200, 200, 200, 200, 200, 200]);
    expect(ivs.reduce((a, i) => a + i.wh, 0)).toBe(3001);
    expect(ivs.every((i) => i.estimated)).toBe(true);
    expect(ivs.at(-1)?.registerWh).toBe(13_001);
  });

  it('a flat shape (all zero) falls back to linear', () => {
    const { state } = feed([
      [0, 0],
      [180, 1200],
    ]);
    const ivs = all(state, settings, { rateAt: () => 0 });
    expect(ivs.map((i) => i.wh)).toEqual(Array.from({ length: 12 }, () => 100));
  });

  it('stays exact with registers and products beyond 2^53', () => {
    const big = 2 ** 52;
    const { state } = feed([
      [0, big],
      [105, big + 1_000_000_000_001],
    ]);
    const ivs = all(state);
    expect(ivs).toHaveLength(7);
    expect(ivs.reduce((a, i) => a + i.wh, 0)).toBe(1_000_000_000_001);
    expect(ivs.map((i) => i.wh)).toEqual([
      // round-half-up of the cumulative share d·k/7, differenced (checked with exact integers)
      142_857_142_857, 142_857_142_858, 142_857_142_857, 142_857_142_857, 142_857_142_857, 142_857_142_858, 142_857_142_857,
    ]);
  });
});

describe('duplicates, out-of-order and late reads', () => {
  it('ignores duplicates and reports conflicting ones', () => {
    let state: VeeState = { intervalMs: Q, reads: [{ ts: T0, imp: 100, exp: 0 }] };
    const same = insertRead(state, { ts: T0, imp: 100, exp: 0 }, settings);
    const other = insertRead(state, { ts: T0, imp: 90, exp: 0 }, settings);
    expect(same).toEqual({ kind: 'duplicate', conflict: false });
    expect(other).toEqual({ kind: 'duplicate', conflict: true });
    const r = insertRead(state, { ts: T0 + Q, imp: 150, exp: 0 }, settings);
    if (r.kind === 'accepted') state = r.state;
    expect(state.reads).toHaveLength(2);
  });

  it('accepts an out-of-order read within the tolerance and recomputes the intervals around it', () => {
    const { state } = feed([
      [0, 0],
      [15, 100],
      [45, 400],
    ]);
    expect(whs(state)).toEqual([100, 150, 150]);
    expect(all(state).map((i) => i.estimated)).toEqual([false, true, true]);
    const r = insertRead(state, { ts: T0 + 30 * M, imp: 200, exp: 0 }, settings);
    expect(r.kind).toBe('accepted');
    if (r.kind !== 'accepted') return;
    expect(r.appended).toBe(false);
    expect([(r.from - T0) / M, (r.to - T0) / M]).toEqual([15, 45]);
    expect(whs(r.state)).toEqual([100, 100, 200]);
    expect(all(r.state).map((i) => i.estimated)).toEqual([false, false, false]);
  });

  it.each([
    { name: '1 min inside the bound', minutes: 180 - 119, kind: 'accepted' },
    { name: 'exactly at the bound', minutes: 60, kind: 'late' },
    { name: 'beyond the bound', minutes: 45, kind: 'late' },
  ])('a read $name', ({ minutes, kind }) => {
    const { state } = feed([
      [0, 0],
      [120, 1000],
      [180, 1500],
    ]);
    expect(insertRead(state, { ts: T0 + minutes * M, imp: 900, exp: 0 }, settings).kind).toBe(kind);
  });

  it('a read before the first one (within the bound) extends the series backwards', () => {
    const { state, kinds } = feed([
      [30, 300],
      [45, 450],
      [15, 150],
    ]);
    expect(kinds).toEqual(['accepted', 'accepted', 'accepted']);
    expect(startsMin(state)).toEqual([15, 30]);
    expect(whs(state)).toEqual([150, 150]);
  });
});

describe('register resets', () => {
  it('never yields negative consumption: the reset pair counts the new meter from 0 Wh, estimated', () => {
    const { state } = feed([
      [0, 1000],
      [15, 1100],
      [30, 50],
      [45, 150],
    ]);
    const ivs = all(state);
    expect(ivs.map((i) => i.wh)).toEqual([100, 50, 100]);
    expect(ivs.map((i) => i.estimated)).toEqual([false, true, false]);
    expect(ivs.map((i) => i.registerWh)).toEqual([1100, 50, 150]);
  });

  it('reports the read at which the register fell', () => {
    const { state } = feed([
      [0, 1000],
      [15, 1100],
    ]);
    const r = insertRead(state, { ts: T0 + 30 * M, imp: 50, exp: 0 }, settings);
    expect(r.kind === 'accepted' ? r.resets : undefined).toEqual([{ ts: T0 + 30 * M, beforeWh: 1100, afterWh: 50 }]);
  });
});

describe('settling the window', () => {
  it('keeps what a future read may need and reports which intervals are final', () => {
    const reads: Array<[number, number]> = [];
    for (let m = 0; m <= 300; m += 15) reads.push([m, m * 10]);
    const { state } = feed(reads);
    const { state: kept, finalUntil } = settle(state, settings);
    // newest 05:00, bound 03:00: the anchor is the 03:00 read, so everything up to 03:00 is final
    expect((finalUntil - T0) / M).toBe(180);
    expect(kept.reads.map((r: RegisterRead) => (r.ts - T0) / M)).toEqual([180, 195, 210, 225, 240, 255, 270, 285, 300]);
    // everything after the anchor is still computable from the kept window
    expect(computeIntervals(kept, T0 + 180 * M, Infinity, settings).map((i) => i.wh)).toEqual([150, 150, 150, 150, 150, 150, 150, 150]);
  });

  it('keeps the read before an off-boundary anchor so the straddling interval stays computable', () => {
    const { state } = feed([
      [5, 50],
      [20, 200],
      [35, 350],
      [50, 500],
      [65, 650],
      [200, 2000],
    ]);
    const { state: kept, finalUntil } = settle(state, settings);
    expect((finalUntil - T0) / M).toBe(65);
    expect(kept.reads.map((r) => (r.ts - T0) / M)).toEqual([50, 65, 200]);
    expect(computeIntervals(kept, T0 + 60 * M, T0 + 75 * M, settings).map((i) => i.wh)).toEqual([150]);
  });
});

describe('daylight-saving days (Europe/Madrid)', () => {
  const zone = 'Europe/Madrid';
  const madrid: VeeSettings = { ...settings, gridOffsetMs: gridOffsetMs(zone, Q), hourGridOffsetMs: gridOffsetMs(zone, HOUR_MS) };

  it.each([
    { name: '25-hour day (2026-10-25)', noonUtc: Date.UTC(2026, 9, 25, 11), hours: 25 },
    { name: '23-hour day (2026-03-29)', noonUtc: Date.UTC(2026, 2, 29, 11), hours: 23 },
    { name: 'ordinary day (2026-10-26)', noonUtc: Date.UTC(2026, 9, 26, 11), hours: 24 },
  ])('$name: one interval per quarter hour, summing to the day register delta', ({ noonUtc, hours }) => {
    const start = localDayStart(zone, noonUtc);
    const end = localDayEnd(zone, noonUtc);
    expect((end - start) / HOUR_MS).toBe(hours);
    // reads every 10 minutes off the grid, 7 Wh each, from 1 h before to 1 h after the day
    let state: VeeState = { intervalMs: Q, reads: [] };
    let imp = 1_000_000;
    for (let t = start - HOUR_MS + 3 * M; t <= end + HOUR_MS; t += 10 * M) {
      const r = insertRead(state, { ts: t, imp, exp: 0 }, madrid);
      if (r.kind === 'accepted') state = r.state;
      imp += 7;
    }
    const day = computeIntervals(state, start, end, madrid);
    expect(day).toHaveLength(hours * 4);
    expect(day[0]?.start).toBe(start);
    expect(day.at(-1)?.end).toBe(end);
    const before = computeIntervals(state, start - Q, start, madrid)[0];
    const last = day.at(-1);
    expect(day.reduce((a, i) => a + i.wh, 0)).toBe((last?.registerWh ?? 0) - (before?.registerWh ?? 0));
    // 7 Wh per 10 min = 10.5 Wh per quarter hour on average
    expect(day.reduce((a, i) => a + i.wh, 0)).toBe(hours * 42);
  });
});
