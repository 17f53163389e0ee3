import { describe, expect, it } from 'vitest';
import { TariffsConfigSchema } from '../../src/contracts/config-tariffs.js';
import { type BillingInterval, computeDailyRead, type MeterRead } from '../../src/domain/billing.js';
import { customerIntervals } from '../../src/domain/customer-load.js';
import { daysBetween } from '../../src/domain/local-time.js';
import { addMonths, assignSegments, changeOf, compileTiers, computeProfile, isLastDayOfMonth, monthDays, type ProfileCore } from '../../src/domain/profiles.js';
import { compileTariffs, tariffFor, type Tariff } from '../../src/domain/tariffs.js';
import { loadSection } from '../../src/shared/config.js';

const H = 3_600_000;
const tariffs = compileTariffs(loadSection('tariffs', TariffsConfigSchema, {}), 'UTC');
const madrid = tariffFor(tariffs, 'residential-tou');
const flat = tariffFor(tariffs, 'default');
const QUALITY = { maxEstimatedPct: 2, minCompletenessPct: 100 };

/** Intervals over [fromMs, toMs) with `whAt(start)` each, the register counting up from `startWh`. */
function intervals(minutes: number, fromMs: number, toMs: number, whAt: (start: number) => number, startWh: number): BillingInterval[] {
  const dur = minutes * 60_000;
  const out: BillingInterval[] = [];
  let reg = startWh;
  for (let s = fromMs; s < toMs; s += dur) {
    const wh = whAt(s);
    reg += wh;
    out.push({ start: s, durationMs: dur, wh, exportWh: 0, demandW: (wh * H) / dur, registerWh: reg, estimated: false });
  }
  return out;
}

/** The meter's daily billing reads over every day of `month` (as the billing role stores them). */
function dailyReads(meterId: string, tariff: Tariff, month: string, ivs: readonly BillingInterval[]): MeterRead[] {
  const { fromDay, toDay } = monthDays(month);
  return daysBetween(fromDay, toDay)
    .map((day) => computeDailyRead({ meterId, day, tariff, intervals: ivs, actualReadsAt: new Set() }))
    .filter((r) => r.intervals > 0);
}

describe('months', () => {
  it.each([
    ['2026-03', 1, '2026-04'],
    ['2026-12', 1, '2027-01'],
    ['2026-01', -1, '2025-12'],
    ['2026-03', -12, '2025-03'],
    ['2026-06', -17, '2025-01'],
  ])('%s %+d = %s', (m, n, want) => expect(addMonths(m, n)).toBe(want));

  it('last days and windows', () => {
    expect(['2026-02-28', '2028-02-28', '2028-02-29', '2026-12-31', '2026-04-30', '2026-04-29'].map(isLastDayOfMonth)).toEqual([
      true,
      false,
      true,
      true,
      true,
      false,
    ]);
    expect(monthDays('2026-12')).toEqual({ fromDay: '2026-12-01', toDay: '2027-01-01' });
    expect(() => monthDays('2026-13')).toThrow(RangeError);
  });

  it('changes are null when either side is missing, incomplete or empty', () => {
    expect(changeOf({ energyWh: 750, quality: 'actual' }, { energyWh: 1000, quality: 'estimated' })).toBe(-0.25);
    expect(changeOf({ energyWh: 750, quality: 'actual' }, undefined)).toBeNull();
    expect(changeOf({ energyWh: 750, quality: 'incomplete' }, { energyWh: 1000, quality: 'actual' })).toBeNull();
    expect(changeOf({ energyWh: 750, quality: 'actual' }, { energyWh: 1000, quality: 'incomplete' })).toBeNull();
    expect(changeOf({ energyWh: 750, quality: 'actual' }, { energyWh: 0, quality: 'actual' })).toBeNull();
  });
});

describe('computeProfile', () => {
  it('March in Madrid: the 23-hour DST Sunday, bands, weekday/weekend, load factor, changes', () => {
    // Weekdays 1000 Wh/h, weekends 500 Wh/h; hourly meter. Madrid March 2026: 22 weekdays (punta, llano, valle
    // 8 h each = 8000 Wh of each per weekday), 9 weekend days of valle, Sunday the 29th 23 h long.
    const from = Date.parse('2026-02-28T23:00:00Z');
    const to = Date.parse('2026-03-31T22:00:00Z');
    const weekend = new Set(['2026-03-01', '2026-03-07', '2026-03-08', '2026-03-14', '2026-03-15', '2026-03-21', '2026-03-22', '2026-03-28', '2026-03-29']);
    const day = (s: number) => new Date(s + (s >= Date.parse('2026-03-29T01:00:00Z') ? 2 : 1) * H).toISOString().slice(0, 10);
    const ivs = intervals(60, from, to, (s) => (weekend.has(day(s)) ? 500 : 1000), 1_000_000);
    const p = computeProfile({
      customerId: 'C-1',
      customerClass: 'residential',
      tariff: madrid,
      month: '2026-03',
      meters: [{ meterId: 'M-1', tariff: madrid, daily: dailyReads('M-1', madrid, '2026-03', ivs) }],
      intervals: customerIntervals([ivs], H),
      quality: QUALITY,
      previous: { energyWh: 700_000, quality: 'actual' },
      lastYear: { energyWh: 600_000, quality: 'incomplete' },
      advice: null,
    });
    // 22 × 24000 + 8 × 12000 + 23 × 500 = 528000 + 96000 + 11500 = 635500 Wh; valle 176000 + 107500 = 283500.
    expect(p).toEqual({
      customerId: 'C-1',
      customerClass: 'residential',
      month: '2026-03',
      timezone: 'Europe/Madrid',
      tariff: 'residential-tou',
      fromMs: from,
      toMs: to,
      days: 31,
      hours: 743,
      energyWh: 635_500,
      quality: 'actual',
      completeness: 100,
      intervals: 743,
      estimatedIntervals: 0,
      bands: [
        { band: 'punta', wh: 176_000, share: 0.2769 },
        { band: 'llano', wh: 176_000, share: 0.2769 },
        { band: 'valle', wh: 283_500, share: 0.4461 },
      ],
      maxDemandW: 1000,
      maxDemandAt: Date.parse('2026-03-01T23:00:00Z'),
      // 635500 / (1000 W × 743 h)
      loadFactor: 0.8553,
      weekdayAvgWh: 24_000,
      // 107500 / 9
      weekendAvgWh: 11_944.4444,
      weekdayWeekendRatio: 2.0093,
      previousMonthWh: 700_000,
      // (635500 − 700000) / 700000
      changeVsPreviousMonth: -0.0921,
      lastYearWh: 600_000,
      changeVsLastYear: null,
      meters: [
        {
          meterId: 'M-1',
          tariff: 'residential-tou',
          startRegisterWh: 1_000_000,
          endRegisterWh: 1_635_500,
          energyWh: 635_500,
          intervals: 743,
          estimatedIntervals: 0,
          registerBreaks: 0,
        },
      ],
      tariffAdvice: null,
    });
  });

  it('a meter exchange mid-month: energy is the sum of both register deltas, demand is coincident', () => {
    // April (UTC, 720 h): the old hourly meter at 2000 Wh/h until the 15th 12:00, then a new quarter-hour meter at
    // 250 Wh per quarter (1000 W) installed at 50 000 Wh.
    const from = Date.parse('2026-04-01T00:00:00Z');
    const swap = Date.parse('2026-04-15T12:00:00Z');
    const to = Date.parse('2026-05-01T00:00:00Z');
    const oldIvs = intervals(60, from, swap, () => 2000, 5_000_000);
    const newIvs = intervals(15, swap, to, () => 250, 50_000);
    const p = computeProfile({
      customerId: 'C-X',
      customerClass: 'commercial',
      tariff: flat,
      month: '2026-04',
      meters: [
        { meterId: 'NEW', tariff: flat, daily: dailyReads('NEW', flat, '2026-04', newIvs) },
        { meterId: 'OLD', tariff: flat, daily: dailyReads('OLD', flat, '2026-04', oldIvs) },
      ],
      intervals: customerIntervals([oldIvs, newIvs], H),
      quality: QUALITY,
    });
    // OLD: 348 h × 2000 = 696000 Wh; NEW: 372 h × 1000 = 372000 Wh.
    expect(p.meters).toEqual([
      {
        meterId: 'NEW',
        tariff: 'default',
        startRegisterWh: null,
        endRegisterWh: 422_000,
        energyWh: 372_000,
        intervals: 1488,
        estimatedIntervals: 0,
        registerBreaks: 0,
      },
      {
        meterId: 'OLD',
        tariff: 'default',
        startRegisterWh: 5_000_000,
        endRegisterWh: null,
        energyWh: 696_000,
        intervals: 348,
        estimatedIntervals: 0,
        registerBreaks: 0,
      },
    ]);
    expect(p.energyWh).toBe(696_000 + 372_000);
    expect(p.energyWh).toBe(422_000 - 50_000 + (5_696_000 - 5_000_000));
    expect([p.quality, p.completeness, p.hours, p.bands]).toEqual(['actual', 100, 720, [{ band: 'flat', wh: 1_068_000, share: 1 }]]);
    // 1068000 / (2000 × 720)
    expect([p.maxDemandW, p.maxDemandAt, p.loadFactor]).toEqual([2000, from, 0.7417]);
    expect([p.previousMonthWh, p.changeVsPreviousMonth, p.changeVsLastYear]).toEqual([null, null, null]);
  });

  it('a missing day makes the month incomplete', () => {
    const from = Date.parse('2026-04-01T00:00:00Z');
    const to = Date.parse('2026-05-01T00:00:00Z');
    const ivs = intervals(60, from, to, () => 100, 0);
    const daily = dailyReads('M', flat, '2026-04', ivs).filter((r) => r.fromDay !== '2026-04-10');
    const p = computeProfile({
      customerId: 'C',
      customerClass: 'residential',
      tariff: flat,
      month: '2026-04',
      meters: [{ meterId: 'M', tariff: flat, daily }],
      intervals: ivs,
      quality: QUALITY,
      previous: { energyWh: 1000, quality: 'actual' },
    });
    expect([p.energyWh, p.quality, p.completeness, p.changeVsPreviousMonth]).toEqual([69_600, 'incomplete', 96.66, null]);
  });
});

describe('segments', () => {
  const core = (customerId: string, customerClass: ProfileCore['customerClass'], energyWh: number): ProfileCore => ({
    customerId,
    customerClass,
    month: '2026-03',
    timezone: 'UTC',
    tariff: 'default',
    fromMs: 0,
    toMs: 1,
    days: 31,
    hours: 744,
    energyWh,
    quality: 'actual',
    completeness: 100,
    intervals: 744,
    estimatedIntervals: 0,
    bands: [],
    maxDemandW: null,
    maxDemandAt: null,
    loadFactor: null,
    weekdayAvgWh: null,
    weekendAvgWh: null,
    weekdayWeekendRatio: null,
    previousMonthWh: null,
    changeVsPreviousMonth: null,
    lastYearWh: null,
    changeVsLastYear: null,
    meters: [],
    tariffAdvice: null,
  });
  const tiers = compileTiers({
    default: [{ tier: 'key-account', share: 0.05 }, { tier: 'large', share: 0.2 }, { tier: 'standard' }],
    classes: { industrial: [{ tier: 'key-account', share: 0.1 }, { tier: 'large', share: 0.3 }, { tier: 'standard' }] },
  });
  const seg = (list: ProfileCore[]) => Object.fromEntries(assignSegments(list, tiers).map((p) => [p.customerId, [p.segment, p.classRank, p.classSize]]));

  it('20 customers: the top 5 % (1) key account, the next 20 % (4) large, the rest standard', () => {
    const list = Array.from({ length: 20 }, (_, i) => core(`R${String(i).padStart(2, '0')}`, 'residential', 1000 - i * 10));
    const s = seg(list);
    expect(s.R00).toEqual(['residential/key-account', 1, 20]);
    expect([s.R01, s.R04]).toEqual([
      ['residential/large', 2, 20],
      ['residential/large', 5, 20],
    ]);
    expect([s.R05, s.R19]).toEqual([
      ['residential/standard', 6, 20],
      ['residential/standard', 20, 20],
    ]);
  });

  it('ties share a rank and the higher tier; a class too small for a tier has none in it', () => {
    const list = [
      ...Array.from({ length: 18 }, (_, i) => core(`R${String(i + 2).padStart(2, '0')}`, 'residential', 500 - i)),
      core('R-B', 'residential', 900),
      core('R-A', 'residential', 900),
      // Industrial: 3 customers; 10 % of 3 rounds down to none, 40 % to 1.
      core('I1', 'industrial', 10),
      core('I2', 'industrial', 30),
      core('I3', 'industrial', 20),
    ];
    const s = seg(list);
    expect([s['R-A'], s['R-B']]).toEqual([
      ['residential/key-account', 1, 20],
      ['residential/key-account', 1, 20],
    ]);
    expect(s.R02).toEqual(['residential/large', 3, 20]);
    expect([s.I2, s.I3, s.I1]).toEqual([
      ['industrial/large', 1, 3],
      ['industrial/standard', 2, 3],
      ['industrial/standard', 3, 3],
    ]);
  });

  it.each([
    [
      [
        { tier: 'a', share: 0.5 },
        { tier: 'b', share: 0.5 },
      ],
      'segments.default.1.share',
    ],
    [[{ tier: 'a' }, { tier: 'b' }], 'segments.default.0.share'],
    [[{ tier: 'a', share: 0.7 }, { tier: 'b', share: 0.5 }, { tier: 'c' }], 'segments.default.1.share'],
    [[{ tier: 'a', share: 0.1 }, { tier: 'a' }], 'segments.default.1.tier'],
  ])('compileTiers refuses %j at %s', (list, path) => {
    expect(() => compileTiers({ default: list, classes: {} })).toThrow(`insights.${path}:`);
  });
});
