import { describe, expect, it } from 'vitest';
import { apportion } from '../../src/domain/billing-apportion.js';
import { computeDailyRead, type BillingInterval, type MeterRead } from '../../src/domain/billing.js';
import { assessRead, combineReads, periodOf, periodWindow, type QualityConfig } from '../../src/domain/billing-period.js';
import type { TariffsConfig } from '../../src/contracts/config-tariffs.js';
import { dayWindow, daysBetween } from '../../src/domain/local-time.js';
import { compileTariffs, type Tariff } from '../../src/domain/tariffs.js';
import { Rng } from '../../simulators/prng.js';

const M = 60_000;
const H = 60 * M;
const at = (iso: string): number => Date.parse(iso);

const config: TariffsConfig = {
  default: 'flat',
  calendars: {},
  tariffs: {
    flat: { timezone: 'UTC', bands: ['flat'], rules: [{ days: ['weekday', 'weekend', 'holiday'], periods: [{ from: '00:00', band: 'flat' }] }] },
    // Edge at 08:30 local: hourly intervals on the UTC grid straddle it.
    madrid: {
      timezone: 'Europe/Madrid',
      bands: ['peak', 'off'],
      rules: [
        {
          days: ['weekday'],
          periods: [
            { from: '00:00', band: 'off' },
            { from: '08:30', band: 'peak' },
            { from: '20:00', band: 'off' },
          ],
        },
        { days: ['weekend', 'holiday'], periods: [{ from: '00:00', band: 'off' }] },
      ],
    },
    // UTC+05:30: local midnight is 18:30Z, inside an hourly interval on the UTC grid.
    kolkata: {
      timezone: 'Asia/Kolkata',
      bands: ['day', 'night'],
      rules: [
        {
          days: ['weekday', 'weekend', 'holiday'],
          periods: [
            { from: '00:00', band: 'night' },
            { from: '06:00', band: 'day' },
            { from: '22:00', band: 'night' },
          ],
        },
      ],
    },
    la: {
      timezone: 'America/Los_Angeles',
      bands: ['onPeak', 'offPeak', 'superOffPeak'],
      rules: [
        {
          days: ['weekday', 'weekend', 'holiday'],
          periods: [
            { from: '00:00', band: 'offPeak' },
            { from: '08:00', band: 'superOffPeak' },
            { from: '16:00', band: 'onPeak' },
            { from: '21:00', band: 'offPeak' },
          ],
        },
      ],
    },
  },
};
const tariffs = compileTariffs(config);
const tariff = (name: string): Tariff => {
  const t = tariffs.byName.get(name);
  if (t === undefined) throw new Error(`test tariff ${name} missing`);
  return t;
};
const QUALITY: QualityConfig = { maxEstimatedPct: 2, minCompletenessPct: 100 };

/** A register-consistent series: interval i ends at startRegister + sum of wh[0..i]. */
function series(
  startIso: string,
  durationMs: number,
  whs: readonly number[],
  startRegister: number,
  estimated: ReadonlySet<number> = new Set(),
): BillingInterval[] {
  const start = at(startIso);
  let reg = startRegister;
  return whs.map((wh, i) => {
    reg += wh;
    return { start: start + i * durationMs, durationMs, wh, exportWh: 0, demandW: (wh * H) / durationMs, registerWh: reg, estimated: estimated.has(i) };
  });
}
const repeat = (n: number, wh: number): number[] => Array.from({ length: n }, () => wh);

describe('apportion', () => {
  it.each<[string, number, number[], number[]]>([
    ['one part takes all', 7, [5], [7]],
    ['even split', 100, [1, 1], [50, 50]],
    ['odd Wh: the tie goes to the earlier part', 1001, [30, 30], [501, 500]],
    ['largest remainder', 10, [1, 1, 1], [4, 3, 3]],
    ['proportional', 1000, [15, 45], [250, 750]],
    ['zero total', 0, [3, 9], [0, 0]],
    ['zero weights put everything first', 9, [0, 0], [9, 0]],
    ['remainders decide, not order', 5, [1, 2, 2], [1, 2, 2]],
    ['large values stay exact', 9_000_000_000_007, [3_600_000, 1], [8_999_997_500_008, 2_499_999]],
  ])('%s', (_name, total, weights, expected) => {
    const parts = apportion(total, weights);
    expect(parts).toEqual(expected);
    expect(parts.reduce((s, p) => s + p, 0)).toBe(total);
  });
});

describe('computeDailyRead', () => {
  it('a full UTC day of actual quarter-hours', () => {
    const whs = Array.from({ length: 96 }, (_, i) => 100 + i);
    const day = dayWindow('UTC', '2026-03-03');
    const read = computeDailyRead({
      meterId: 'M-1',
      day: '2026-03-03',
      tariff: tariff('flat'),
      intervals: series('2026-03-03T00:00:00Z', 15 * M, whs, 5_000),
      actualReadsAt: new Set([day.startMs, day.endMs]),
    });
    const total = whs.reduce((s, w) => s + w, 0);
    expect(total).toBe(14_160);
    expect(read).toEqual({
      meterId: 'M-1',
      tariff: 'flat',
      timezone: 'UTC',
      fromDay: '2026-03-03',
      toDay: '2026-03-04',
      fromMs: day.startMs,
      toMs: day.endMs,
      startRegisterWh: 5_000,
      startInterpolated: false,
      endRegisterWh: 19_160,
      endInterpolated: false,
      totalWh: 14_160,
      exportWh: 0,
      bands: { flat: 14_160 },
      maxDemandW: 195 * 4,
      maxDemandAt: at('2026-03-03T23:45:00Z'),
      intervals: 96,
      estimatedIntervals: 0,
      coveredMs: 24 * H,
      registerBreaks: 0,
    });
    expect(assessRead(read, QUALITY)).toEqual({ completeness: 100, quality: 'actual' });
  });

  it('ignores neighbouring days and flags boundaries without an actual read', () => {
    const all = series('2026-03-02T23:00:00Z', 15 * M, repeat(104, 10), 0);
    const read = computeDailyRead({ meterId: 'M-1', day: '2026-03-03', tariff: tariff('flat'), intervals: all, actualReadsAt: new Set() });
    expect([read.startRegisterWh, read.endRegisterWh, read.totalWh, read.intervals]).toEqual([40, 1_000, 960, 96]);
    expect([read.startInterpolated, read.endInterpolated]).toEqual([true, true]);
  });

  it('splits an hourly interval at the 08:30 band edge (Madrid, CET)', () => {
    // Index 8 is 07:00Z-08:00Z = 08:00-09:00 local: 30 min off, 30 min peak; 1001 Wh → 501 + 500.
    const whs = repeat(24, 0);
    whs[8] = 1001;
    whs[9] = 600;
    const read = computeDailyRead({
      meterId: 'M-2',
      day: '2026-03-03',
      tariff: tariff('madrid'),
      intervals: series('2026-03-02T23:00:00Z', H, whs, 0),
      actualReadsAt: new Set(),
    });
    expect(read.bands).toEqual({ peak: 500 + 600, off: 501 });
    expect(read.totalWh).toBe(1_601);
    expect(read.maxDemandW).toBe(1001);
    expect(read.maxDemandAt).toBe(at('2026-03-03T07:00:00Z'));
  });

  it('interpolates the register at a local midnight inside an interval (Kolkata, UTC+05:30)', () => {
    // Hourly intervals from 17:00Z; 18:00Z-19:00Z straddles local midnight 18:30Z: 601 Wh → 301 before, 300 after.
    const whs = repeat(27, 100);
    whs[1] = 601;
    const ivs = series('2026-03-07T17:00:00Z', H, whs, 10_000);
    const d1 = computeDailyRead({ meterId: 'M-3', day: '2026-03-08', tariff: tariff('kolkata'), intervals: ivs, actualReadsAt: new Set() });
    const d0 = computeDailyRead({ meterId: 'M-3', day: '2026-03-07', tariff: tariff('kolkata'), intervals: ivs, actualReadsAt: new Set() });
    expect(d1.startRegisterWh).toBe(10_000 + 100 + 301);
    expect(d1.startInterpolated).toBe(true);
    expect(d0.endRegisterWh).toBe(d1.startRegisterWh);
    expect(d0.endInterpolated).toBe(true);
    // Day 2026-03-08 local: 18:30Z → 18:30Z next day: 300 + 23 × 100 + half of 19:00Z-20:00Z on the next day (50).
    expect(d1.totalWh).toBe(300 + 23 * 100 + 50);
    expect(d1.endRegisterWh).toBe(10_000 + 100 + 601 + 23 * 100 + 50);
    expect(d1.totalWh).toBe((d1.endRegisterWh ?? 0) - (d1.startRegisterWh ?? 0));
    expect(d1.coveredMs).toBe(24 * H);
    // Counted in the day it starts in: 18:00Z belongs to 2026-03-07 local.
    expect(d1.intervals).toBe(24);
    expect((d1.bands.night ?? 0) + (d1.bands.day ?? 0)).toBe(d1.totalWh);
    // Night is 00:00-06:00 and 22:00-24:00 local (18:30Z-00:30Z, 16:30Z-18:30Z): the intervals at 00:00Z and
    // 16:00Z straddle band edges and split 50/50; the last interval gives its first half (50) to this day.
    expect(d1.bands).toEqual({ night: 300 + 5 * 100 + 2 * 100 + 50, day: 16 * 100 });
  });

  it.each([
    // 2026-03-08 lasts 23 h in Los Angeles: 92 quarter-hours; 00:00-08:00 local is 7 h.
    ['spring forward', '2026-03-08', '2026-03-08T08:00:00Z', 92, { offPeak: (28 + 12) * 10, superOffPeak: 32 * 10, onPeak: 20 * 10 }],
    // 2026-11-01 lasts 25 h: 100 quarter-hours; 00:00-08:00 local is 9 h.
    ['fall back', '2026-11-01', '2026-11-01T07:00:00Z', 100, { offPeak: (36 + 12) * 10, superOffPeak: 32 * 10, onPeak: 20 * 10 }],
    ['ordinary day', '2026-03-10', '2026-03-10T07:00:00Z', 96, { offPeak: (32 + 12) * 10, superOffPeak: 32 * 10, onPeak: 20 * 10 }],
  ])('DST: %s day has the right length and bands', (_name, day, startIso, count, bands) => {
    const read = computeDailyRead({
      meterId: 'M-4',
      day,
      tariff: tariff('la'),
      intervals: series(startIso, 15 * M, repeat(count, 10), 0),
      actualReadsAt: new Set(),
    });
    expect(read.intervals).toBe(count);
    expect(read.bands).toEqual(bands);
    expect(read.totalWh).toBe(count * 10);
    expect(read.endRegisterWh).toBe(count * 10);
    expect(read.toMs - read.fromMs).toBe(count * 15 * M);
    expect(assessRead(read, QUALITY).completeness).toBe(100);
  });

  it('a gap leaves both registers known but the coverage short', () => {
    const ivs = series('2026-03-03T00:00:00Z', 15 * M, repeat(96, 10), 0).filter((_, i) => i < 40 || i >= 44);
    const read = computeDailyRead({ meterId: 'M-5', day: '2026-03-03', tariff: tariff('flat'), intervals: ivs, actualReadsAt: new Set() });
    expect([read.startRegisterWh, read.endRegisterWh, read.totalWh, read.intervals, read.coveredMs]).toEqual([0, 960, 920, 92, 23 * H]);
    expect(assessRead(read, QUALITY)).toEqual({ completeness: 95.83, quality: 'incomplete' });
  });

  it('a meter silent since 20:00 has no end register', () => {
    const ivs = series('2026-03-03T00:00:00Z', 15 * M, repeat(80, 10), 0);
    const read = computeDailyRead({ meterId: 'M-6', day: '2026-03-03', tariff: tariff('flat'), intervals: ivs, actualReadsAt: new Set() });
    expect(read.endRegisterWh).toBeNull();
    expect(read.totalWh).toBe(800);
    expect(assessRead(read, QUALITY)).toEqual({ completeness: 83.33, quality: 'incomplete' });
  });

  it('a register reset is a break, and duplicates or overlaps do not count twice', () => {
    const ivs = series('2026-03-03T00:00:00Z', 15 * M, repeat(96, 10), 0);
    const reset = ivs.map((iv, i) => (i >= 50 ? { ...iv, registerWh: iv.registerWh - 500 } : iv));
    const read = computeDailyRead({ meterId: 'M-7', day: '2026-03-03', tariff: tariff('flat'), intervals: reset, actualReadsAt: new Set() });
    expect(read.registerBreaks).toBe(1);
    expect(assessRead(read, QUALITY).quality).toBe('incomplete');

    const first = ivs[10];
    if (first === undefined) throw new Error('fixture');
    const dup = computeDailyRead({
      meterId: 'M-7',
      day: '2026-03-03',
      tariff: tariff('flat'),
      intervals: [...ivs, first, { ...first, start: first.start + 5 * M }],
      actualReadsAt: new Set(),
    });
    expect([dup.totalWh, dup.intervals, dup.registerBreaks]).toEqual([960, 96, 1]);
  });

  it('max demand ties go to the earliest interval', () => {
    const whs = repeat(96, 10);
    whs[20] = 50;
    whs[60] = 50;
    const read = computeDailyRead({
      meterId: 'M-8',
      day: '2026-03-03',
      tariff: tariff('flat'),
      intervals: series('2026-03-03T00:00:00Z', 15 * M, whs, 0),
      actualReadsAt: new Set(),
    });
    expect([read.maxDemandW, read.maxDemandAt]).toEqual([200, at('2026-03-03T05:00:00Z')]);
  });

  it('no intervals: nothing known', () => {
    const read = computeDailyRead({ meterId: 'M-9', day: '2026-03-03', tariff: tariff('flat'), intervals: [], actualReadsAt: new Set() });
    expect([read.startRegisterWh, read.endRegisterWh, read.totalWh, read.maxDemandW, read.coveredMs]).toEqual([null, null, 0, null, 0]);
    expect(assessRead(read, QUALITY)).toEqual({ completeness: 0, quality: 'incomplete' });
  });
});

describe('quality gate', () => {
  it.each<[string, string, string, number, number[], QualityConfig, string]>([
    ['1 of 96 estimated (1.04 %) is actual', 'flat', '2026-03-03', 96, [5], QUALITY, 'actual'],
    ['2 of 96 estimated (2.08 %) is estimated', 'flat', '2026-03-03', 96, [5, 6], QUALITY, 'estimated'],
    // The 25 h fall-back day has 100 quarter-hours: 2 estimated is exactly 2 %, not more.
    ['2 of 100 estimated (2.00 %) is actual', 'la', '2026-11-01', 100, [5, 6], QUALITY, 'actual'],
    ['3 of 100 estimated (3.00 %) is estimated', 'la', '2026-11-01', 100, [5, 6, 7], QUALITY, 'estimated'],
    ['threshold raised to 5 %', 'la', '2026-11-01', 100, [5, 6, 7], { maxEstimatedPct: 5, minCompletenessPct: 100 }, 'actual'],
    ['threshold 0 %: one estimated is too many', 'flat', '2026-03-03', 96, [0], { maxEstimatedPct: 0, minCompletenessPct: 100 }, 'estimated'],
  ])('%s', (_name, t, day, count, estimated, cfg, quality) => {
    const start = dayWindow(tariff(t).timezone, day).startMs;
    const ivs = series(new Date(start).toISOString(), 15 * M, repeat(count, 10), 0, new Set(estimated));
    const read = computeDailyRead({ meterId: 'Q', day, tariff: tariff(t), intervals: ivs, actualReadsAt: new Set() });
    expect(read.estimatedIntervals).toBe(estimated.length);
    expect(assessRead(read, cfg).quality).toBe(quality);
  });

  it('a configured completeness floor accepts a short gap', () => {
    const ivs = series('2026-03-03T00:00:00Z', 15 * M, repeat(96, 10), 0).filter((_, i) => i !== 40);
    const read = computeDailyRead({ meterId: 'Q', day: '2026-03-03', tariff: tariff('flat'), intervals: ivs, actualReadsAt: new Set() });
    expect(assessRead(read, { maxEstimatedPct: 2, minCompletenessPct: 98.5 })).toEqual({ completeness: 98.95, quality: 'actual' });
    expect(assessRead(read, QUALITY).quality).toBe('incomplete');
  });
});

describe('periods', () => {
  it.each([
    ['2026-03', 1, '2026-03-01', '2026-04-01'],
    ['2026-12', 1, '2026-12-01', '2027-01-01'],
    ['2026-02', 15, '2026-02-15', '2026-03-15'],
  ])('%s starting on day %i', (period, startDay, fromDay, toDay) => {
    expect(periodWindow(period, startDay)).toEqual({ fromDay, toDay });
    expect(periodOf(fromDay, startDay)).toBe(period);
  });

  it('assigns days before the start day to the previous period', () => {
    expect(periodOf('2026-01-14', 15)).toBe('2025-12');
    expect(periodOf('2026-03-31', 1)).toBe('2026-03');
    expect(() => periodWindow('2026-13')).toThrow(RangeError);
  });
});

/** Seeded uniform [0, 1) draws from the simulators' generator, so the data is reproducible. */
function rng(seed: number): () => number {
  const r = new Rng(seed, 'billing-test');
  return () => r.next();
}

describe('invariant: interval energy = register delta, bands = total', () => {
  const cases: [string, number, string][] = [
    ['flat', 15 * M, '2026-03'],
    ['madrid', 60 * M, '2026-03'],
    ['kolkata', 60 * M, '2026-03'],
    ['la', 15 * M, '2026-03'],
    ['la', 30 * M, '2026-11'],
    ['madrid', 15 * M, '2026-10'],
  ];
  it.each(cases)('%s, %i ms intervals, period %s', (name, durationMs, period) => {
    const t = tariff(name);
    const rand = rng(durationMs + period.length * 7 + name.length);
    const window = periodWindow(period);
    // Cover the period plus a day either side, starting on the UTC interval grid.
    const from = Math.floor((dayWindow(t.timezone, window.fromDay).startMs - 24 * H) / durationMs) * durationMs;
    const to = dayWindow(t.timezone, window.toDay).startMs + 24 * H;
    const whs: number[] = [];
    for (let s = from; s < to; s += durationMs) whs.push(Math.floor(rand() * 5_000));
    const ivs = series(new Date(from).toISOString(), durationMs, whs, 123_456_789, new Set(whs.map((_, i) => i).filter(() => rand() < 0.01)));
    // The ledger: the true register at any interval boundary.
    const registerAt = (ms: number): number => {
      const iv = ivs.find((x) => x.start + x.durationMs === ms);
      if (iv === undefined) throw new Error(`no interval ends at ${new Date(ms).toISOString()}`);
      return iv.registerWh;
    };

    const days = daysBetween(window.fromDay, window.toDay);
    const daily: MeterRead[] = days.map((day) => computeDailyRead({ meterId: 'P', day, tariff: t, intervals: ivs, actualReadsAt: new Set() }));
    for (const d of daily) {
      expect(d.totalWh).toBe((d.endRegisterWh ?? NaN) - (d.startRegisterWh ?? NaN));
      expect(Object.values(d.bands).reduce((s, v) => s + v, 0)).toBe(d.totalWh);
    }
    const read = combineReads('P', t, window, daily);
    const sumInside = ivs.filter((iv) => iv.start >= read.fromMs && iv.start + iv.durationMs <= read.toMs).reduce((s, iv) => s + iv.wh, 0);
    expect(read.totalWh).toBe((read.endRegisterWh ?? NaN) - (read.startRegisterWh ?? NaN));
    expect(Object.values(read.bands).reduce((s, v) => s + v, 0)).toBe(read.totalWh);
    expect(read.coveredMs).toBe(read.toMs - read.fromMs);
    expect(read.registerBreaks).toBe(0);
    if (read.fromMs % durationMs === 0 && read.toMs % durationMs === 0) {
      // Period boundaries on the interval grid: exact against the ledger.
      expect(read.startRegisterWh).toBe(registerAt(read.fromMs));
      expect(read.endRegisterWh).toBe(registerAt(read.toMs));
      expect(read.totalWh).toBe(sumInside);
    }
    expect(assessRead(read, QUALITY).completeness).toBe(100);
  });

  it('a period with a missing day is incomplete, and a register jump between days is a break', () => {
    const t = tariff('flat');
    const ivs = series('2026-03-01T00:00:00Z', H, repeat(31 * 24, 10), 0);
    const days = daysBetween('2026-03-01', '2026-04-01');
    const daily = days.map((day) => computeDailyRead({ meterId: 'P', day, tariff: t, intervals: ivs, actualReadsAt: new Set() }));
    const window = periodWindow('2026-03');
    const gap = combineReads(
      'P',
      t,
      window,
      daily.filter((d) => d.fromDay !== '2026-03-10'),
    );
    expect([gap.startRegisterWh, gap.endRegisterWh, gap.totalWh, gap.registerBreaks]).toEqual([0, 7_440, 7_200, 0]);
    expect(assessRead(gap, QUALITY)).toEqual({ completeness: 96.77, quality: 'incomplete' });

    const jumped = daily.map((d) =>
      d.fromDay >= '2026-03-20' && d.startRegisterWh !== null && d.endRegisterWh !== null
        ? { ...d, startRegisterWh: d.startRegisterWh + 1, endRegisterWh: d.endRegisterWh + 1 }
        : d,
    );
    const broken = combineReads('P', t, window, jumped);
    expect(broken.registerBreaks).toBe(1);
    expect(assessRead(broken, QUALITY).quality).toBe('incomplete');

    const whole = combineReads('P', t, window, daily);
    expect(assessRead(whole, QUALITY)).toEqual({ completeness: 100, quality: 'actual' });
    expect([whole.totalWh, whole.intervals, whole.maxDemandW, whole.maxDemandAt]).toEqual([7_440, 744, 10, at('2026-03-01T00:00:00Z')]);
  });
});
