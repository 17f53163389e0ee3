import { describe, expect, it } from 'vitest';
import { parseCustomersCsv, parseTransformersCsv } from '../../src/shared/registry-csv.js';
import { allocate, generateFleet } from '../../simulators/fleet.js';
import { CalendarClock, calendarAt, clearSky, seasonalFactor, shape, type ProfileKind } from '../../simulators/profiles.js';
import { customersCsv, transformersCsv } from '../../simulators/registry-csv.js';
import { loadScenario } from '../../simulators/scenario.js';

const scenario = (doc: Record<string, unknown> = {}) => loadScenario(doc, {}, { now: Date.parse('2026-05-01T00:00:00Z') });

describe('allocate', () => {
  it.each([
    [
      [
        ['a', 0.82],
        ['b', 0.12],
        ['c', 0.02],
        ['d', 0.04],
      ],
      100,
      { a: 82, b: 12, c: 2, d: 4 },
    ],
    [
      [
        ['a', 1],
        ['b', 1],
        ['c', 1],
      ],
      10,
      { a: 4, b: 3, c: 3 },
    ],
    [
      [
        ['a', 0.5],
        ['b', 0],
      ],
      3,
      { a: 3, b: 0 },
    ],
  ] as Array<[Array<[string, number]>, number, Record<string, number>]>)('%j of %i', (shares, n, expected) => {
    expect(Object.fromEntries(allocate(shares, n))).toEqual(expected);
  });
});

describe('generateFleet', () => {
  const s = scenario({ fleet: { meters: 400, pvShare: 0.2, intervalMix: { '15': 0.5, '30': 0.25, '60': 0.25 } } });
  const fleet = generateFleet(s);

  it('has the exact class, interval and PV mix', () => {
    const count = (f: (c: (typeof fleet.customers)[number]) => boolean) => fleet.customers.filter(f).length;
    expect([
      count((c) => c.class === 'residential'),
      count((c) => c.class === 'commercial'),
      count((c) => c.class === 'industrial'),
      count((c) => c.class === 'critical'),
    ]).toEqual([328, 48, 8, 16]);
    expect([count((c) => c.intervalMinutes === 15), count((c) => c.intervalMinutes === 30), count((c) => c.intervalMinutes === 60)]).toEqual([200, 100, 100]);
    // 20 % of the 376 residential and commercial customers.
    expect(count((c) => c.hasPv)).toBe(75);
    expect(fleet.customers.filter((c) => c.hasPv).every((c) => c.class === 'residential' || c.class === 'commercial')).toBe(true);
  });

  it('puts every meter on exactly one transformer of a known feeder, large customers on their own', () => {
    const ids = new Set(fleet.transformers.map((t) => t.transformerId));
    expect(ids.size).toBe(fleet.transformers.length);
    expect(fleet.groups.reduce((n, g) => n + g.meters.length, 0)).toBe(400);
    for (const c of fleet.customers) expect(ids.has(c.transformerId)).toBe(true);
    for (const g of fleet.groups) {
      expect(g.meters.every((m) => m.transformerId === g.transformer.transformerId && m.feederId === g.transformer.feederId)).toBe(true);
      const large = g.meters.filter((m) => m.class === 'industrial' || m.class === 'critical').length;
      expect(large === 0 || large === g.meters.length).toBe(true);
    }
    expect(new Set(fleet.transformers.map((t) => t.feederId)).size).toBe(4);
    expect(new Set(fleet.customers.map((c) => c.meterId)).size).toBe(400);
    expect(fleet.customers[0]?.meterId).toBe('M-000001');
  });

  it('sizes contracts and transformers above the noise-free peaks', () => {
    for (const m of fleet.meters) expect(m.contractKw * 1000).toBeGreaterThanOrEqual(m.peakW * 2.1);
    for (const g of fleet.groups) expect(g.transformer.ratingKva * 1000).toBeGreaterThan(g.peakW * 1.2);
  });

  it('is deterministic in the seed', () => {
    expect(generateFleet(s)).toEqual(fleet);
    expect(generateFleet({ ...s, seed: 2 }).customers).not.toEqual(fleet.customers);
  });

  it('writes registry CSVs that the importer reads back unchanged', () => {
    const c = parseCustomersCsv(customersCsv(fleet.customers));
    expect(c.errors).toEqual([]);
    expect(c.records).toEqual(fleet.customers);
    const t = parseTransformersCsv(transformersCsv(fleet.transformers));
    expect(t.errors).toEqual([]);
    expect(t.records).toEqual(fleet.transformers);
    expect(customersCsv(fleet.customers).split('\n')[0]).toBe('meterId,customerId,class,tariff,contractKw,feederId,transformerId,hasPv,intervalMinutes');
    expect(transformersCsv(fleet.transformers).split('\n')[0]).toBe('transformerId,feederId,ratingKva');
  });
});

describe('profiles', () => {
  const kinds: ProfileKind[] = ['residential', 'commercial', 'industrialTwoShift', 'industrialThreeShift', 'critical'];
  const energy = (kind: ProfileKind, weekday: number, from: number, to: number) => {
    let sum = 0;
    for (let h = from; h < to; h += 0.25) sum += shape(kind, h + 0.125, weekday);
    return sum;
  };

  it.each(kinds)('%s averages 1 over a week', (kind) => {
    let sum = 0;
    for (let d = 1; d <= 7; d++) sum += energy(kind, d, 0, 24);
    expect(sum / (7 * 96)).toBeCloseTo(1, 3);
  });

  it.each([
    ['residential evening (18-22) > midday (11-15)', energy('residential', 3, 18, 22), energy('residential', 3, 11, 15)],
    ['residential morning (7-9) > night (2-4)', energy('residential', 3, 7, 9), energy('residential', 3, 2, 4)],
    ['commercial office hours > night, weekday', energy('commercial', 2, 9, 17), energy('commercial', 2, 0, 8) * 2.5],
    ['commercial Tuesday > Sunday', energy('commercial', 2, 0, 24), energy('commercial', 7, 0, 24) * 2],
    [
      'two-shift industry 06-22 > 22-06',
      energy('industrialTwoShift', 3, 6, 22),
      energy('industrialTwoShift', 3, 22, 24) + energy('industrialTwoShift', 3, 0, 6) * 3,
    ],
    ['three-shift industry weekday > weekend', energy('industrialThreeShift', 3, 0, 24), energy('industrialThreeShift', 6, 0, 24)],
    ['winter > spring for residential', seasonalFactor('residential', 15, 1), seasonalFactor('residential', 105, 1)],
    ['summer > spring for commercial', seasonalFactor('commercial', 200, 1), seasonalFactor('commercial', 105, 1)],
    ['PV at noon in June > in December', clearSky(13.5, 172, true), clearSky(12.5, 355, false)],
  ])('%s', (_name, larger, smaller) => {
    expect(larger).toBeGreaterThan(smaller);
  });

  it.each([
    [2, 172, true, 0],
    [23, 172, true, 0],
    [7, 355, false, 0],
  ])('no PV at %sh on day %s', (h, doy, dst, expected) => {
    expect(clearSky(h, doy, dst)).toBe(expected);
  });

  it('seasonal scale 0 is a flat year', () => {
    expect(seasonalFactor('residential', 15, 0)).toBe(1);
  });

  it.each([
    ['Europe/Madrid', ['2026-03-29T01:00:00Z', '2026-10-25T01:00:00Z']],
    ['America/New_York', ['2026-03-08T07:00:00Z', '2026-11-01T06:00:00Z']],
    // Half-hour DST shift at a half-hour UTC instant.
    ['Australia/Lord_Howe', ['2026-04-04T15:00:00Z', '2026-10-03T15:30:00Z']],
  ])('CalendarClock matches luxon around the DST changes of %s', (zone, changes) => {
    const clock = new CalendarClock(zone);
    const times: number[] = [];
    for (const c of changes) for (let k = -12; k <= 12; k++) times.push(Date.parse(c) + k * 450_000);
    for (let t = Date.parse('2026-01-01T00:00:00Z'); t < Date.parse('2027-01-01T00:00:00Z'); t += 31 * 450_000) times.push(t);
    for (const t of times) expect(clock.at(t)).toEqual(calendarAt(t, zone));
  });
});
