import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { type TariffsConfig, TariffsConfigSchema } from '../../src/contracts/config-tariffs.js';
import type { BillingInterval } from '../../src/domain/billing.js';
import { dayWindow } from '../../src/domain/local-time.js';
import { adviseTariffs, shiftPeakToValley, type TariffAdvice } from '../../src/domain/tariff-advice.js';
import {
  billOf,
  compileTariffOffers,
  formatMinor,
  parseMicro,
  roundHalfUp,
  type TariffOffers,
  type TariffPricing,
  usageOf,
} from '../../src/domain/tariff-pricing.js';
import { compileTariffs } from '../../src/domain/tariffs.js';
import { loadSection } from '../../src/shared/config.js';

const M = 60_000;
const H = 60 * M;
const at = (iso: string): number => Date.parse(iso);

const ALL_DAYS = ['weekday', 'weekend', 'holiday'] as const;

// Three priced tariffs in Madrid plus two that the advisor must leave out (another currency, no prices).
const config: TariffsConfig = {
  default: 'flat',
  currency: 'EUR',
  // 2026-03-27 (a Friday) is a holiday of this crafted calendar.
  calendars: { test: { holidays: ['2026-03-27'] } },
  tariffs: {
    flat: {
      timezone: 'Europe/Madrid',
      bands: ['flat'],
      rules: [{ days: [...ALL_DAYS], periods: [{ from: '00:00', band: 'flat' }] }],
      prices: { flat: '0.15' },
    },
    // 2.0TD-like: punta 10-14 and 18-22, llano 8-10, 14-18 and 22-24 on weekdays; valle at night, weekends, holidays.
    tou: {
      timezone: 'Europe/Madrid',
      bands: ['punta', 'llano', 'valle'],
      calendar: 'test',
      rules: [
        {
          days: ['weekday'],
          periods: [
            { from: '00:00', band: 'valle' },
            { from: '08:00', band: 'llano' },
            { from: '10:00', band: 'punta' },
            { from: '14:00', band: 'llano' },
            { from: '18:00', band: 'punta' },
            { from: '22:00', band: 'llano' },
          ],
        },
        { days: ['weekend', 'holiday'], periods: [{ from: '00:00', band: 'valle' }] },
      ],
      prices: { punta: '0.250000', llano: '0.150000', valle: '0.080000' },
      fixedPerDay: '0.100000',
      eligibleClasses: ['residential', 'commercial'],
    },
    // Every day alike: night 00-08, day 08-24 local; standing and demand charges.
    demand: {
      timezone: 'Europe/Madrid',
      bands: ['day', 'night'],
      rules: [
        {
          days: [...ALL_DAYS],
          periods: [
            { from: '00:00', band: 'night' },
            { from: '08:00', band: 'day' },
          ],
        },
      ],
      prices: { day: '0.12', night: '0.07' },
      fixedPerDay: '0.5',
      demandCharge: '3',
      eligibleClasses: ['commercial', 'industrial'],
    },
    usd: {
      timezone: 'Europe/Madrid',
      bands: ['flat'],
      rules: [{ days: [...ALL_DAYS], periods: [{ from: '00:00', band: 'flat' }] }],
      currency: 'USD',
      prices: { flat: '0.01' },
    },
    unpriced: {
      timezone: 'Europe/Madrid',
      bands: ['flat'],
      rules: [{ days: [...ALL_DAYS], periods: [{ from: '00:00', band: 'flat' }] }],
    },
  },
};
const offers = compileTariffOffers(config, compileTariffs(config));

function tariffOf(o: TariffOffers, name: string) {
  const offer = o.byName.get(name);
  if (offer === undefined) throw new Error(`no tariff ${name}`);
  return offer.tariff;
}
function pricingOf(o: TariffOffers, name: string): TariffPricing {
  const p = o.byName.get(name)?.pricing;
  if (p === undefined || p === null) throw new Error(`no pricing for ${name}`);
  return p;
}

function iv(startIso: string, wh: number, minutes = 60, estimated = false): BillingInterval {
  const durationMs = minutes * M;
  return { start: at(startIso), durationMs, wh, exportWh: 0, demandW: (wh * H) / durationMs, registerWh: 0, estimated };
}

// Window [2026-03-26, 2026-03-31) in Madrid: Thursday, the Friday holiday, Saturday, Sunday 29 (spring forward,
// 23 h: CET until 01:00Z, CEST after) and Monday. Starts 2026-03-25T23:00Z, ends 2026-03-30T22:00Z.
// Bands per interval: tou / demand.
const intervals: BillingInterval[] = [
  iv('2026-03-25T20:00:00Z', 9999), // before the window: ignored
  iv('2026-03-25T22:30:00Z', 400), // Wed 23:30-Thu 00:30 CET: half inside, 200 Wh valle / night; not counted
  iv('2026-03-26T02:00:00Z', 500), // Thu 03:00 CET: valle / night
  iv('2026-03-26T08:00:00Z', 1000), // Thu 09:00: llano / day
  iv('2026-03-26T09:00:00Z', 2000), // Thu 10:00: punta / day
  iv('2026-03-26T12:30:00Z', 1001), // Thu 13:30-14:30: punta 501 + llano 500 (time split, tie to the first) / day 1001
  iv('2026-03-26T17:00:00Z', 3000), // Thu 18:00: punta / day
  iv('2026-03-26T21:00:00Z', 700), // Thu 22:00: llano / day
  iv('2026-03-27T11:00:00Z', 4000, 60, true), // Fri 12:00, holiday: valle / day; estimated
  iv('2026-03-28T18:00:00Z', 1500), // Sat 19:00: valle / day
  iv('2026-03-29T05:00:00Z', 800), // Sun 07:00 CEST (06:00 on Saturday's offset): valle / night
  iv('2026-03-29T06:00:00Z', 900), // Sun 08:00 CEST: valle / day
  iv('2026-03-30T05:45:00Z', 100, 15), // Mon 07:45 CEST: valle / night, 400 W
  iv('2026-03-30T08:00:00Z', 1250, 15), // Mon 10:00: punta / day, 5000 W: the maximum demand
  iv('2026-03-30T21:30:00Z', 600), // Mon 23:30-Tue 00:30: 300 Wh inside, llano / day; counted (starts inside)
  iv('2026-03-31T08:00:00Z', 7777), // after the window: ignored
];
const FROM = '2026-03-26';
const TO = '2026-03-31';

function option(a: TariffAdvice, tariff: string) {
  const o = a.options.find((x) => x.tariff === tariff);
  if (o === undefined) throw new Error(`no option ${tariff}`);
  return o;
}

describe('usageOf: energy per band, as billing reads split it', () => {
  const startMs = dayWindow('Europe/Madrid', FROM).startMs;
  const endMs = dayWindow('Europe/Madrid', TO).startMs;
  it.each([
    ['flat', { flat: 17_251 }],
    ['tou', { punta: 6751, llano: 2500, valle: 8000 }],
    ['demand', { day: 15_651, night: 1600 }],
  ])('%s', (name, bands) => {
    const u = usageOf(tariffOf(offers, name), intervals, startMs, endMs);
    expect(u.bands).toEqual(bands);
    expect(u.totalWh).toBe(17_251);
    expect(u.intervals).toBe(13);
    expect(u.estimatedIntervals).toBe(1);
    expect(u.maxDemandW).toBe(5000);
    // 10 whole hours, two quarter-hours and two half hours at the window's edges.
    expect(u.coveredMs).toBe(11.5 * H);
  });

  it('spring-forward Sunday in Madrid: 23 h, local 00:00-08:00 is 7 h of night', () => {
    const w = dayWindow('Europe/Madrid', '2026-03-29');
    expect(w.endMs - w.startMs).toBe(23 * H);
    const quarters = Array.from({ length: 92 }, (_, i) => ({ ...iv('2026-03-28T23:00:00Z', 100, 15), start: w.startMs + i * 15 * M }));
    expect(usageOf(tariffOf(offers, 'demand'), quarters, w.startMs, w.endMs).bands).toEqual({ night: 2800, day: 6400 });
    expect(usageOf(tariffOf(offers, 'tou'), quarters, w.startMs, w.endMs).bands).toEqual({ punta: 0, llano: 0, valle: 9200 });
  });

  it('fall-back Sunday in Madrid: 25 h, local 00:00-08:00 is 9 h of night', () => {
    const w = dayWindow('Europe/Madrid', '2026-10-25');
    expect(w.endMs - w.startMs).toBe(25 * H);
    const quarters = Array.from({ length: 100 }, (_, i) => ({ ...iv('2026-10-24T22:00:00Z', 100, 15), start: w.startMs + i * 15 * M }));
    expect(usageOf(tariffOf(offers, 'demand'), quarters, w.startMs, w.endMs).bands).toEqual({ night: 3600, day: 6400 });
  });

  it('the last interval given for a start wins', () => {
    const u = usageOf(tariffOf(offers, 'flat'), [iv('2026-03-26T08:00:00Z', 5), iv('2026-03-26T08:00:00Z', 7)], startMs, endMs);
    expect(u.bands).toEqual({ flat: 7 });
    expect(u.intervals).toBe(1);
  });
});

describe('adviseTariffs: bills hand-computed to the cent', () => {
  // flat:   17.251 kWh x 0.15 = 2.58765 -> 2.59
  // tou:    punta 6.751 x 0.25 = 1.68775 -> 1.69; llano 2.5 x 0.15 = 0.375 -> 0.38 (half-up);
  //         valle 8.0 x 0.08 = 0.64; 5 days x 0.10 = 0.50; total 3.21
  // demand: day 15.651 x 0.12 = 1.87812 -> 1.88; night 1.6 x 0.07 = 0.112 -> 0.11; 5 days x 0.50 = 2.50;
  //         5 kW x 3.00 = 15.00; total 19.49
  const residential = adviseTariffs({ offers, customerClass: 'residential', currentTariff: 'tou', intervals, from: FROM, to: TO });
  const commercial = adviseTariffs({ offers, customerClass: 'commercial', currentTariff: 'tou', intervals, from: FROM, to: TO });

  it('the window, counts and flags', () => {
    expect(residential).toMatchObject({
      customerClass: 'residential',
      currentTariff: 'tou',
      timezone: 'Europe/Madrid',
      fromMs: at('2026-03-25T23:00:00Z'),
      toMs: at('2026-03-30T22:00:00Z'),
      days: 5,
      intervals: 13,
      estimatedIntervals: 1,
      totalWh: 17_251,
      maxDemandW: 5000,
      shiftShare: null,
    });
  });

  it('the flat single-band bill', () => {
    expect(option(commercial, 'flat').bill).toEqual({
      tariff: 'flat',
      currency: 'EUR',
      minorDigits: 2,
      bands: [{ band: 'flat', wh: 17_251, pricePerKwh: '0.15', amountMinor: 259, amount: '2.59' }],
      energyMinor: 259,
      energy: '2.59',
      days: 5,
      fixedPerDay: null,
      fixedMinor: 0,
      fixed: '0.00',
      maxDemandW: 5000,
      demandCharge: null,
      demandMinor: 0,
      demand: '0.00',
      totalMinor: 259,
      total: '2.59',
    });
  });

  it('the three-band time-of-use bill, with a holiday, a weekend and the DST Sunday', () => {
    const bill = option(commercial, 'tou').bill;
    expect(bill.bands).toEqual([
      { band: 'punta', wh: 6751, pricePerKwh: '0.250000', amountMinor: 169, amount: '1.69' },
      { band: 'llano', wh: 2500, pricePerKwh: '0.150000', amountMinor: 38, amount: '0.38' },
      { band: 'valle', wh: 8000, pricePerKwh: '0.080000', amountMinor: 64, amount: '0.64' },
    ]);
    expect([bill.energy, bill.fixed, bill.demand, bill.total]).toEqual(['2.71', '0.50', '0.00', '3.21']);
  });

  it('the bill with standing and demand charges', () => {
    const bill = option(commercial, 'demand').bill;
    expect(bill.bands.map((b) => [b.band, b.wh, b.amount])).toEqual([
      ['day', 15_651, '1.88'],
      ['night', 1600, '0.11'],
    ]);
    expect(bill).toMatchObject({ energy: '1.99', fixed: '2.50', maxDemandW: 5000, demandMinor: 1500, demand: '15.00', totalMinor: 1949, total: '19.49' });
  });

  it('options cheapest first, saving against the current tariff (positive = cheaper)', () => {
    expect(commercial.options.map((o) => [o.tariff, o.current, o.amount, o.currency, o.saving, o.savingMinor])).toEqual([
      ['flat', false, '2.59', 'EUR', '0.62', 62],
      ['tou', true, '3.21', 'EUR', '0.00', 0],
      ['demand', false, '19.49', 'EUR', '-16.28', -1628],
    ]);
  });

  it('eligibility by class: excluded tariffs say why', () => {
    expect(residential.options.map((o) => o.tariff)).toEqual(['flat', 'tou']);
    expect(residential.excluded).toEqual([
      { tariff: 'demand', reason: 'class' },
      { tariff: 'usd', reason: 'currency' },
      { tariff: 'unpriced', reason: 'unpriced' },
    ]);
    const industrial = adviseTariffs({ offers, customerClass: 'industrial', currentTariff: 'demand', intervals, from: FROM, to: TO });
    expect(industrial.options.map((o) => [o.tariff, o.saving])).toEqual([
      ['flat', '16.90'],
      ['demand', '0.00'],
    ]);
    expect(industrial.excluded.map((e) => e.tariff)).toEqual(['tou', 'usd', 'unpriced']);
  });

  it('a current tariff the class may not take is still billed, flagged not eligible', () => {
    const a = adviseTariffs({ offers, customerClass: 'industrial', currentTariff: 'tou', intervals, from: FROM, to: TO });
    expect(a.options.map((o) => [o.tariff, o.current, o.eligible, o.saving])).toEqual([
      ['flat', false, true, '0.62'],
      ['tou', true, false, '0.00'],
      ['demand', false, true, '-16.28'],
    ]);
  });

  it('an unknown registry tariff is the default one, as in billing', () => {
    const a = adviseTariffs({ offers, customerClass: 'critical', currentTariff: 'no-such', intervals, from: FROM, to: TO });
    expect(a.currentTariff).toBe('flat');
    expect(a.options.map((o) => [o.tariff, o.current, o.saving])).toEqual([['flat', true, '0.00']]);
  });

  it('an unpriced current tariff: every priced option, no savings, by currency then amount', () => {
    const a = adviseTariffs({ offers, customerClass: 'commercial', currentTariff: 'unpriced', intervals, from: FROM, to: TO });
    expect(a.options.map((o) => [o.tariff, o.currency, o.amount, o.saving])).toEqual([
      ['flat', 'EUR', '2.59', null],
      ['tou', 'EUR', '3.21', null],
      ['demand', 'EUR', '19.49', null],
      // 17.251 kWh x 0.01 = 0.17251 -> 0.17
      ['usd', 'USD', '0.17', null],
    ]);
    expect(a.excluded).toEqual([{ tariff: 'unpriced', reason: 'unpriced' }]);
  });

  it('no intervals: standing charges only', () => {
    const a = adviseTariffs({ offers, customerClass: 'commercial', currentTariff: 'tou', intervals: [], from: FROM, to: TO });
    expect(a).toMatchObject({ intervals: 0, estimatedIntervals: 0, totalWh: 0, maxDemandW: null, coveredMs: 0 });
    expect(a.options.map((o) => [o.tariff, o.amount, o.saving])).toEqual([
      ['flat', '0.00', '0.50'],
      ['tou', '0.50', '0.00'],
      ['demand', '2.50', '-2.00'],
    ]);
    expect(option(a, 'demand').bill).toMatchObject({ maxDemandW: null, demand: '0.00', fixed: '2.50' });
  });

  it('the DST Sunday alone is one standing-charge day of 23 h', () => {
    const a = adviseTariffs({ offers, customerClass: 'commercial', currentTariff: 'demand', intervals, from: '2026-03-29', to: '2026-03-30' });
    expect(a.toMs - a.fromMs).toBe(23 * H);
    const bill = option(a, 'demand').bill;
    // night 0.8 kWh x 0.07 = 0.056 -> 0.06; day 0.9 x 0.12 = 0.108 -> 0.11; 1 day 0.50; 0.9 kW x 3 = 2.70
    expect(bill.bands.map((b) => [b.band, b.wh, b.amount])).toEqual([
      ['day', 900, '0.11'],
      ['night', 800, '0.06'],
    ]);
    expect([bill.days, bill.fixed, bill.demand, bill.total]).toEqual([1, '0.50', '2.70', '3.37']);
  });

  it('rejects an empty window, a bad zone and a share outside 0-1', () => {
    const base = { offers, customerClass: 'commercial' as const, currentTariff: 'tou', intervals };
    expect(() => adviseTariffs({ ...base, from: TO, to: FROM })).toThrow(RangeError);
    expect(() => adviseTariffs({ ...base, from: FROM, to: FROM })).toThrow(RangeError);
    expect(() => adviseTariffs({ ...base, from: FROM, to: TO, timezone: 'Mars/Olympus' })).toThrow('unknown IANA time zone');
    expect(() => adviseTariffs({ ...base, from: FROM, to: TO, shiftShare: 1.5 })).toThrow(RangeError);
    expect(() => adviseTariffs({ ...base, from: FROM, to: TO, shiftShare: Number.NaN })).toThrow(RangeError);
  });
});

describe('shift scenario: a share of peak-band energy moved to the valley band', () => {
  // tou: peak punta, valley valle. 6751 x 0.5 = 3375.5 -> 3376 Wh moved (half-up).
  //   punta 3.375 x 0.25 = 0.84375 -> 0.84; llano 0.38; valle 11.376 x 0.08 = 0.91008 -> 0.91; + 0.50 = 2.63
  // demand: peak day, valley night. 15651 x 0.5 = 7825.5 -> 7826 Wh moved.
  //   day 7.825 x 0.12 = 0.939 -> 0.94; night 9.426 x 0.07 = 0.65982 -> 0.66; + 2.50 + 15.00 = 18.10
  // flat: one band, nothing moves.
  const a = adviseTariffs({ offers, customerClass: 'commercial', currentTariff: 'tou', intervals, from: FROM, to: TO, shiftShare: 0.5 });

  it('per tariff: moved Wh, the shifted total, its saving alone and against the current bill', () => {
    expect(a.shiftShare).toBe(0.5);
    expect(a.options.map((o) => [o.tariff, o.shift])).toEqual([
      [
        'flat',
        {
          share: 0.5,
          fromBand: 'flat',
          toBand: 'flat',
          movedWh: 0,
          totalMinor: 259,
          total: '2.59',
          savingMinor: 62,
          saving: '0.62',
          shiftSavingMinor: 0,
          shiftSaving: '0.00',
        },
      ],
      [
        'tou',
        {
          share: 0.5,
          fromBand: 'punta',
          toBand: 'valle',
          movedWh: 3376,
          totalMinor: 263,
          total: '2.63',
          savingMinor: 58,
          saving: '0.58',
          shiftSavingMinor: 58,
          shiftSaving: '0.58',
        },
      ],
      [
        'demand',
        {
          share: 0.5,
          fromBand: 'day',
          toBand: 'night',
          movedWh: 7826,
          totalMinor: 1910,
          total: '19.10',
          savingMinor: -1589,
          saving: '-15.89',
          shiftSavingMinor: 39,
          shiftSaving: '0.39',
        },
      ],
    ]);
  });

  it('the unshifted bills are unchanged by asking for a shift', () => {
    expect(a.options.map((o) => o.amount)).toEqual(['2.59', '3.21', '19.49']);
  });

  it.each([
    [0, 0],
    [1, 6751],
    [0.1, 675], // 675.1
    [0.3, 2025], // 2025.3
    [0.0001, 1], // 0.6751
  ])('share %s of 6751 Wh moves %s Wh', (share, moved) => {
    const usage = { bands: { punta: 6751, llano: 2500, valle: 8000 }, totalWh: 17_251, maxDemandW: null, intervals: 0, estimatedIntervals: 0, coveredMs: 0 };
    const s = shiftPeakToValley(usage, pricingOf(offers, 'tou'), share);
    expect(s.movedWh).toBe(moved);
    expect(s.usage.bands).toEqual({ punta: 6751 - moved, llano: 2500, valle: 8000 + moved });
  });
});

describe('rounding: each line half-up to the minor unit once, the total the sum of the lines', () => {
  const single = (price: string, currency = 'EUR'): TariffPricing => {
    const c: TariffsConfig = {
      default: 'x',
      calendars: {},
      tariffs: {
        x: {
          timezone: 'UTC',
          bands: ['flat'],
          rules: [{ days: [...ALL_DAYS], periods: [{ from: '00:00', band: 'flat' }] }],
          currency,
          prices: { flat: price },
        },
      },
    };
    return pricingOf(compileTariffOffers(c, compileTariffs(c)), 'x');
  };
  it.each([
    ['0.0049 goes down', 49, '0.100000', 'EUR', '0.00'],
    ['0.005 goes up', 50, '0.100000', 'EUR', '0.01'],
    ['0.025 goes up (not to even)', 250, '0.100000', 'EUR', '0.03'],
    ['1.005 is 1.01 (a float sum would give 1.00)', 1005, '1.000000', 'EUR', '1.01'],
    ['1.0049999 goes down', 1_004_999, '0.001000', 'EUR', '1.00'],
    ['a micro-unit price: 0.000001 x 5000 kWh = 0.005', 5_000_000, '0.000001', 'EUR', '0.01'],
    ['no minor unit (JPY): 37.5 -> 38', 1500, '25', 'JPY', '38'],
    ['three minor digits (KWD): 0.0125 -> 0.013', 125, '0.1', 'KWD', '0.013'],
  ])('%s', (_name, wh, price, currency, amount) => {
    expect(billOf('x', single(price, currency), { bands: { flat: wh }, maxDemandW: null }, 0).total).toBe(amount);
  });

  it('two half-cent lines bill two cents: lines are rounded, not the total', () => {
    const c = structuredClone(config);
    if (c.tariffs.tou) c.tariffs.tou.prices = { punta: '0.25', llano: '0.25', valle: '0.08' };
    const p = pricingOf(compileTariffOffers(c, compileTariffs(c)), 'tou');
    // 20 Wh x 0.25 = 0.005 in each of two bands: 0.01 + 0.01, though the exact total is 0.01.
    const bill = billOf('tou', p, { bands: { punta: 20, llano: 20, valle: 0 }, maxDemandW: null }, 0);
    expect([...bill.bands.map((b) => b.amount), bill.total]).toEqual(['0.01', '0.01', '0.00', '0.02']);
  });

  it('demand: whole watts (half-up) x price per kW, half-up to the cent', () => {
    const p = pricingOf(offers, 'demand');
    const demand = (w: number) => billOf('demand', p, { bands: { day: 0, night: 0 }, maxDemandW: w }, 0);
    // 1 W x 3.00 per kW = 0.003 -> 0.00; 1.5 W is 2 W -> 0.006 -> 0.01; 1500 W -> 4.50
    expect([demand(1).demand, demand(1.5).maxDemandW, demand(1.5).demand, demand(1500).demand]).toEqual(['0.00', 2, '0.01', '4.50']);
  });

  it('formats and parses exactly', () => {
    expect(parseMicro('0.132514')).toBe(132_514n);
    expect(parseMicro('12')).toBe(12_000_000n);
    expect(parseMicro('0.5')).toBe(500_000n);
    expect(() => parseMicro('0.1234567')).toThrow(RangeError);
    expect(() => parseMicro('-1')).toThrow(RangeError);
    expect(() => parseMicro('1e-3')).toThrow(RangeError);
    expect([formatMinor(12_345, 2), formatMinor(-5, 2), formatMinor(7, 0), formatMinor(5n, 3), formatMinor(0, 2)]).toEqual([
      '123.45',
      '-0.05',
      '7',
      '0.005',
      '0.00',
    ]);
    expect([roundHalfUp(5n, 10n), roundHalfUp(4n, 10n), roundHalfUp(15n, 10n), roundHalfUp(25n, 10n)]).toEqual([1n, 0n, 2n, 3n]);
  });

  it('property: the total is the sum of the lines, each line within half a minor unit of its exact amount', () => {
    const price = fc.integer({ min: 0, max: 9_999_999 }).map((micro) => `${Math.floor(micro / 1e6)}.${String(micro % 1e6).padStart(6, '0')}`);
    fc.assert(
      fc.property(
        fc.record({ day: fc.integer({ min: 0, max: 2e9 }), night: fc.integer({ min: 0, max: 2e9 }) }),
        fc.tuple(price, price, price, price),
        fc.integer({ min: 0, max: 366 }),
        fc.option(fc.integer({ min: 0, max: 1e8 }), { nil: null }),
        (bands, [day, night, fixed, demand], days, maxDemandW) => {
          const c: TariffsConfig = structuredClone(config);
          const t = c.tariffs.demand;
          if (t === undefined) throw new Error('no demand tariff');
          t.prices = { day, night };
          t.fixedPerDay = fixed;
          t.demandCharge = demand;
          const p = pricingOf(compileTariffOffers(c, offers.tariffs), 'demand');
          const bill = billOf('demand', p, { bands, maxDemandW }, days);
          const lines = [...bill.bands.map((b) => b.amountMinor), bill.fixedMinor, bill.demandMinor];
          expect(bill.totalMinor).toBe(lines.reduce((x, y) => x + y, 0));
          expect(bill.energyMinor).toBe(bill.bands.reduce((x, b) => x + b.amountMinor, 0));
          // Exact amounts in nano-units (1e-9 EUR); a cent is 1e7 of them.
          const exact = [
            BigInt(bands.day) * parseMicro(day),
            BigInt(bands.night) * parseMicro(night),
            BigInt(days) * parseMicro(fixed) * 1000n,
            BigInt(maxDemandW ?? 0) * parseMicro(demand),
          ];
          exact.forEach((nano, i) => {
            const diff = BigInt(lines[i] ?? 0) * 10_000_000n - nano;
            expect(diff >= -5_000_000n && diff < 5_000_000n).toBe(true);
          });
          const totalDiff = BigInt(bill.totalMinor) * 10_000_000n - exact.reduce((x, y) => x + y, 0n);
          expect(totalDiff >= -20_000_000n && totalDiff < 20_000_000n).toBe(true);
          expect(bill.total).toBe(formatMinor(bill.totalMinor, 2));
        },
      ),
      { numRuns: 500, seed: 18 },
    );
  });

  it('property: band energy sums to the energy of the intervals inside the window, for every tariff', () => {
    const w = { from: dayWindow('Europe/Madrid', FROM).startMs, to: dayWindow('Europe/Madrid', TO).startMs };
    fc.assert(
      fc.property(
        fc.uniqueArray(fc.record({ slot: fc.integer({ min: 0, max: (w.to - w.from) / (15 * M) - 1 }), wh: fc.integer({ min: 0, max: 100_000 }) }), {
          selector: (r) => r.slot,
          maxLength: 60,
        }),
        (rows) => {
          const ivs = rows.map((r) => ({ ...iv('2026-03-26T00:00:00Z', r.wh, 15), start: w.from + r.slot * 15 * M }));
          const sum = rows.reduce((x, r) => x + r.wh, 0);
          for (const name of ['flat', 'tou', 'demand']) {
            const u = usageOf(tariffOf(offers, name), ivs, w.from, w.to);
            expect(Object.values(u.bands).reduce((x, y) => x + y, 0)).toBe(sum);
            expect(u.totalWh).toBe(sum);
          }
        },
      ),
      { numRuns: 200, seed: 18 },
    );
  });
});

describe('compileTariffOffers', () => {
  it('the shipped config/tariffs.yaml: every tariff priced, in its currency, for its classes', () => {
    const cfg = loadSection('tariffs', TariffsConfigSchema, {});
    const shipped = compileTariffOffers(cfg, compileTariffs(cfg, 'UTC'));
    expect(
      [...shipped.byName].map(([name, o]) => [name, o.pricing?.currency, o.pricing?.peakBand, o.pricing?.valleyBand, [...o.eligibleClasses].join(',')]),
    ).toEqual([
      ['default', 'EUR', 'flat', 'flat', 'residential,commercial,industrial,critical'],
      ['cn-tou', 'CNY', 'critical', 'valley', 'commercial,industrial,critical'],
      ['us-tou', 'USD', 'onPeak', 'superOffPeak', 'residential'],
      ['residential-tou', 'EUR', 'punta', 'valle', 'residential'],
      ['commercial-tou', 'EUR', 'punta', 'valle', 'commercial,critical'],
      ['industrial-tou', 'EUR', 'punta', 'valle', 'industrial,critical'],
    ]);
  });

  const base = (): TariffsConfig => structuredClone(config);
  it.each<[string, (c: TariffsConfig) => void, string]>([
    [
      'a band without a price',
      (c) => {
        if (c.tariffs.tou) c.tariffs.tou.prices = { punta: '0.2', llano: '0.1' };
      },
      'tariffs.tariffs.tou.prices: no price for band "valle"',
    ],
    [
      'a price for no band',
      (c) => {
        if (c.tariffs.tou) c.tariffs.tou.prices = { punta: '0.2', llano: '0.1', valle: '0.1', shoulder: '0.1' };
      },
      'tariffs.tariffs.tou.prices.shoulder: "shoulder" is not in bands',
    ],
    [
      'a price that is not a decimal',
      (c) => {
        if (c.tariffs.flat) c.tariffs.flat.prices = { flat: '0,15' };
      },
      'tariffs.tariffs.flat.prices.flat: expected a decimal price with at most 6 decimals, got "0,15"',
    ],
    [
      'an unknown currency',
      (c) => {
        if (c.tariffs.usd) c.tariffs.usd.currency = 'XYZ';
      },
      'tariffs.tariffs.usd.currency: unknown ISO 4217 currency "XYZ"',
    ],
    [
      'no currency anywhere',
      (c) => {
        c.currency = undefined;
      },
      'tariffs.tariffs.flat.currency: a currency is required with prices (here or tariffs-wide)',
    ],
    [
      'a standing charge without prices',
      (c) => {
        if (c.tariffs.unpriced) c.tariffs.unpriced.fixedPerDay = '1';
      },
      'tariffs.tariffs.unpriced.prices: required with fixedPerDay',
    ],
  ])('rejects %s, naming the key', (_name, mutate, message) => {
    const c = base();
    mutate(c);
    expect(() => compileTariffOffers(c, compileTariffs(c))).toThrow(message);
  });

  it('peak and valley are the most and least expensive bands; equal prices move nothing', () => {
    expect([pricingOf(offers, 'tou').peakBand, pricingOf(offers, 'tou').valleyBand]).toEqual(['punta', 'valle']);
    const c = base();
    if (c.tariffs.tou) c.tariffs.tou.prices = { punta: '0.1', llano: '0.1', valle: '0.1' };
    const p = pricingOf(compileTariffOffers(c, compileTariffs(c)), 'tou');
    expect([p.peakBand, p.valleyBand]).toEqual(['punta', 'punta']);
  });
});
