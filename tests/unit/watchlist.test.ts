import { describe, expect, it } from 'vitest';
import type { Quality } from '../../src/contracts/billing.js';
import type { CustomerClass } from '../../src/contracts/registry.js';
import { type WatchMonth, watchlist, watchMonths } from '../../src/domain/watchlist.js';

const SIX = ['2026-01', '2026-02', '2026-03', '2026-04', '2026-05', '2026-06'];
const LAST_YEAR = ['2025-01', '2025-02', '2025-03', '2025-04', '2025-05', '2025-06'];

interface Opts {
  quality?: Partial<Record<string, Quality>>;
  meters?: Partial<Record<string, string[]>>;
  tariff?: Partial<Record<string, string>>;
  lastYear?: number[];
  skip?: string[];
}

function customer(id: string, cls: CustomerClass, energies: number[], o: Opts = {}): [string, Map<string, WatchMonth>] {
  const h = new Map<string, WatchMonth>();
  const put = (months: string[], values: number[]) =>
    months.forEach((month, i) => {
      if (o.skip?.includes(month)) return;
      h.set(month, {
        energyWh: values[i] ?? 0,
        quality: o.quality?.[month] ?? 'actual',
        customerClass: cls,
        tariff: o.tariff?.[month] ?? 'default',
        meters: o.meters?.[month] ?? [`${id}-M`],
      });
    });
  put(SIX, energies);
  if (o.lastYear !== undefined) put(LAST_YEAR, o.lastYear);
  return [id, h];
}

const FLAT = [1000, 1000, 1000, 1000, 1000, 1000];

describe('watch-list', () => {
  it('reads the six months to M and the same six a year earlier', () => {
    expect(watchMonths('2026-06')).toEqual({ baseline: SIX.slice(0, 3), recent: SIX.slice(3), lastYear: LAST_YEAR });
  });

  const history = new Map([
    // Residential: A falls gradually, B and C are flat, K falls but its latest month is incomplete, L falls only 25 %,
    // P falls by 50 % but rose in between, N misses a month.
    customer('A', 'residential', [1000, 1000, 1000, 800, 600, 500]),
    customer('B', 'residential', FLAT),
    customer('C', 'residential', FLAT),
    customer('K', 'residential', [1000, 1000, 1000, 400, 400, 400], { quality: { '2026-06': 'incomplete' } }),
    customer('L', 'residential', [1000, 1000, 1000, 900, 800, 750]),
    customer('P', 'residential', [1000, 1000, 1000, 1100, 1200, 500]),
    customer('N', 'residential', [1000, 1000, 1000, 100, 100, 100], { skip: ['2026-02'] }),
    // Commercial: D falls in one step; E and F are flat.
    customer('D', 'commercial', [1000, 1000, 1000, 300, 300, 300]),
    customer('E', 'commercial', FLAT),
    customer('F', 'commercial', FLAT),
    // Industrial: the whole class falls by 40 % (a season, a plant holiday): none of G, H, I is listed. O falls more,
    // but its meter was exchanged.
    customer('G', 'industrial', [1000, 1000, 1000, 600, 600, 600]),
    customer('H', 'industrial', [1000, 1000, 1000, 600, 600, 600]),
    customer('I', 'industrial', [1000, 1000, 1000, 600, 600, 600]),
    customer('O', 'industrial', [1000, 1000, 1000, 400, 400, 400], { meters: { '2026-06': ['O-NEW'] } }),
    // Critical: J alone in its class, falls every spring: last year's same months fell alike.
    customer('J', 'critical', [1000, 1000, 1000, 500, 500, 500], { lastYear: [900, 900, 900, 450, 450, 450] }),
  ]);
  const result = watchlist({ month: '2026-06', dropShare: 0.3, history });

  it('lists the unexplained falls, largest first, with the evidence', () => {
    expect(result.items).toEqual([
      {
        customerId: 'D',
        class: 'commercial',
        months: SIX.map((month, i) => ({ month, energyWh: [1000, 1000, 1000, 300, 300, 300][i], quality: 'actual' })),
        baselineWh: 1000,
        latestWh: 300,
        dropShare: 0.7,
        // E and F: flat.
        classChange: 0,
        dropNetOfClass: 0.7,
        lastYearChange: null,
        dropNetOfLastYear: null,
        // One step of 700 is the whole fall.
        kind: 'sudden',
        suspected: 'churn-or-theft',
        reasons: [],
      },
      {
        customerId: 'A',
        class: 'residential',
        months: SIX.map((month, i) => ({ month, energyWh: [1000, 1000, 1000, 800, 600, 500][i], quality: 'actual' })),
        baselineWh: 1000,
        latestWh: 500,
        dropShare: 0.5,
        // The rest of the class without K (incomplete): B, C, L, P; baseline 4000, June 1000 + 1000 + 750 + 500 = 3250.
        classChange: -0.1875,
        // 1 − 0.5 / 0.8125
        dropNetOfClass: 0.3846,
        lastYearChange: null,
        dropNetOfLastYear: null,
        // Steps 200, 200, 100 of a 500 fall: none is two thirds of it.
        kind: 'gradual',
        suspected: 'churn-or-theft',
        reasons: [],
      },
    ]);
  });

  it('keeps explained falls apart with their reasons; a class-wide (seasonal) fall and an incomplete month are not listed', () => {
    expect(result.explained.map((e) => [e.customerId, e.dropShare, e.reasons])).toEqual([
      ['K', 0.6, ['data-quality']],
      ['O', 0.6, ['meter-exchange']],
      ['J', 0.5, ['seasonal']],
      ['G', 0.4, ['class-trend']],
      ['H', 0.4, ['class-trend']],
      ['I', 0.4, ['class-trend']],
    ]);
    const j = result.explained.find((e) => e.customerId === 'J');
    // J has no one else in its class; a year ago 900 → 450: the same halving.
    expect([j?.classChange, j?.lastYearChange, j?.dropNetOfLastYear]).toEqual([null, -0.5, 0]);
    const g = result.explained.find((e) => e.customerId === 'G');
    // The rest of the class (H, I, O): baseline 3000, June 1600; G's 0.6 of its baseline against 0.5333.
    expect([g?.classChange, g?.dropNetOfClass]).toEqual([-0.4667, -0.125]);
  });

  it('a tariff change explains a fall; a fall of exactly dropShare is not one', () => {
    const h = new Map([
      customer('T', 'residential', [1000, 1000, 1000, 500, 500, 500], { tariff: { '2026-05': 'x', '2026-06': 'x' } }),
      customer('U', 'residential', [1000, 1000, 1000, 700, 700, 700]),
      customer('V', 'residential', FLAT),
    ]);
    const r = watchlist({ month: '2026-06', dropShare: 0.3, history: h });
    expect(r.items).toEqual([]);
    expect(r.explained.map((e) => [e.customerId, e.reasons])).toEqual([['T', ['tariff-or-class-change']]]);
  });
});
