import { describe, expect, it } from 'vitest';
import { type TariffsConfig, TariffsConfigSchema } from '../../src/contracts/config-tariffs.js';
import { loadSection } from '../../src/shared/config.js';
import { dayWindow, daysBetween, localDay } from '../../src/domain/local-time.js';
import { bandAt, bandSegments, compileTariffs, singleBand, tariffFor } from '../../src/domain/tariffs.js';

const shipped = compileTariffs(loadSection('tariffs', TariffsConfigSchema, {}), 'UTC');
const cn = tariffFor(shipped, 'cn-tou');
const us = tariffFor(shipped, 'us-tou');
const H = 3_600_000;
const at = (iso: string): number => Date.parse(iso);

describe('shipped config/tariffs.yaml', () => {
  it('compiles with the three sample tariffs', () => {
    expect([...shipped.byName.keys()]).toEqual(['default', 'cn-tou', 'us-tou', 'residential-tou', 'commercial-tou', 'industrial-tou']);
    expect(cn.timezone).toBe('Asia/Shanghai');
    expect(us.timezone).toBe('America/Los_Angeles');
    expect(shipped.default.timezone).toBe('UTC');
    expect(shipped.allBands).toEqual(['flat', 'critical', 'peak', 'valley', 'onPeak', 'midPeak', 'offPeak', 'superOffPeak', 'punta', 'llano', 'valle']);
  });

  it('falls back to the default tariff for unknown names', () => {
    expect(tariffFor(shipped, 'no-such').name).toBe('default');
    expect(tariffFor(shipped, undefined).name).toBe('default');
  });
});

describe('bandAt', () => {
  it.each([
    // Shanghai is UTC+8 all year.
    ['cn weekday 07:59 local is flat', 'cn-tou', '2026-03-02T23:59:00Z', 'flat'],
    ['cn weekday 06:00 local is flat', 'cn-tou', '2026-03-02T22:00:00Z', 'flat'],
    ['cn weekday 05:59:59.999 local is valley', 'cn-tou', '2026-03-02T21:59:59.999Z', 'valley'],
    ['cn weekday 08:00 local is peak', 'cn-tou', '2026-03-03T00:00:00Z', 'peak'],
    ['cn weekday 12:00 local in March is flat', 'cn-tou', '2026-03-03T04:00:00Z', 'flat'],
    ['cn weekday 12:00 local in July is critical', 'cn-tou', '2026-07-01T04:00:00Z', 'critical'],
    ['cn 13:59 local in July is critical', 'cn-tou', '2026-07-01T05:59:00Z', 'critical'],
    ['cn 14:00 local in July is peak', 'cn-tou', '2026-07-01T06:00:00Z', 'peak'],
    ['cn weekend 09:00 is peak (same schedule)', 'cn-tou', '2026-03-07T01:00:00Z', 'peak'],
    ['cn holiday 09:00 (National Day) is flat', 'cn-tou', '2026-10-01T01:00:00Z', 'flat'],
    ['cn holiday 23:00 is valley', 'cn-tou', '2026-10-01T15:00:00Z', 'valley'],
    ['cn 21:59 local is flat', 'cn-tou', '2026-03-03T13:59:00Z', 'flat'],
    ['cn 22:00 local is valley', 'cn-tou', '2026-03-03T14:00:00Z', 'valley'],
    // Los Angeles: PDT (UTC-7) in summer.
    ['us summer Friday 16:00 is onPeak', 'us-tou', '2026-07-03T23:00:00Z', 'onPeak'],
    ['us summer Friday 15:59 is offPeak', 'us-tou', '2026-07-03T22:59:00Z', 'offPeak'],
    ['us July 4 (Saturday, holiday) 16:00 is midPeak', 'us-tou', '2026-07-04T23:00:00Z', 'midPeak'],
    ['us summer Monday 20:59 is onPeak', 'us-tou', '2026-07-07T03:59:00Z', 'onPeak'],
    ['us summer Monday 21:00 is offPeak', 'us-tou', '2026-07-07T04:00:00Z', 'offPeak'],
    ['us Labor Day 17:00 is midPeak', 'us-tou', '2026-09-08T00:00:00Z', 'midPeak'],
    // Spring forward 2026-03-08: 08:00 local is 16:00Z the day before, 15:00Z on the day.
    ['us 2026-03-07 08:00 PST is superOffPeak', 'us-tou', '2026-03-07T16:00:00Z', 'superOffPeak'],
    ['us 2026-03-07 07:00 PST is offPeak', 'us-tou', '2026-03-07T15:00:00Z', 'offPeak'],
    ['us 2026-03-08 08:00 PDT is superOffPeak', 'us-tou', '2026-03-08T15:00:00Z', 'superOffPeak'],
    ['us 2026-03-08 07:00 PDT is offPeak', 'us-tou', '2026-03-08T14:00:00Z', 'offPeak'],
    // Fall back 2026-11-01: 16:00 PST is 00:00Z on Nov 2.
    ['us 2026-11-01 16:00 PST is midPeak', 'us-tou', '2026-11-02T00:00:00Z', 'midPeak'],
    ['us 2026-11-01 15:59 PST is superOffPeak', 'us-tou', '2026-11-01T23:59:00Z', 'superOffPeak'],
    ['default is flat', 'default', '2026-05-05T12:00:00Z', 'flat'],
    // Madrid: CET (UTC+1) in winter, CEST (UTC+2) from 2026-03-29.
    ['es weekday 10:00 CET is punta', 'residential-tou', '2026-03-03T09:00:00Z', 'punta'],
    ['es weekday 09:59 CET is llano', 'residential-tou', '2026-03-03T08:59:00Z', 'llano'],
    ['es weekday 07:59 CEST is valle', 'residential-tou', '2026-04-07T05:59:00Z', 'valle'],
    ['es weekday 18:00 CEST is punta', 'residential-tou', '2026-04-07T16:00:00Z', 'punta'],
    ['es Saturday 12:00 is valle', 'commercial-tou', '2026-03-07T11:00:00Z', 'valle'],
    ['es Epiphany (Tuesday) 12:00 is valle', 'industrial-tou', '2026-01-06T11:00:00Z', 'valle'],
  ])('%s', (_name, tariff, iso, band) => {
    expect(bandAt(tariffFor(shipped, tariff), at(iso))).toBe(band);
  });
});

const crafted: TariffsConfig = {
  default: 'tou',
  calendars: { test: { holidays: ['2026-03-04'], workdays: ['2026-03-07'] } },
  tariffs: {
    tou: {
      timezone: 'Europe/Madrid',
      bands: ['peak', 'off'],
      calendar: 'test',
      rules: [
        {
          days: ['weekday'],
          periods: [
            { from: '00:00', band: 'off' },
            { from: '08:30', band: 'peak' },
            { from: '20:15', band: 'off' },
          ],
        },
        { days: ['weekend', 'holiday'], periods: [{ from: '00:00', band: 'off' }] },
      ],
    },
  },
};
const madrid = compileTariffs(crafted).default;

describe('calendars', () => {
  it.each([
    ['Tuesday 09:00 is peak', '2026-03-03T08:00:00Z', 'peak'],
    ['holiday Wednesday 09:00 is off', '2026-03-04T08:00:00Z', 'off'],
    ['worked Saturday 09:00 is peak', '2026-03-07T08:00:00Z', 'peak'],
    ['plain Sunday 09:00 is off', '2026-03-08T08:00:00Z', 'off'],
    ['08:29 local is off', '2026-03-03T07:29:00Z', 'off'],
    ['08:30 local is peak', '2026-03-03T07:30:00Z', 'peak'],
  ])('%s', (_name, iso, band) => {
    expect(bandAt(madrid, at(iso))).toBe(band);
  });
});

describe('bandSegments', () => {
  const seg = (band: string, from: string, to: string) => ({ band, fromMs: at(from), toMs: at(to) });
  it.each([
    [
      'an hour across the 08:00 edge (Shanghai)',
      cn,
      '2026-03-02T23:30:00Z',
      '2026-03-03T00:30:00Z',
      [seg('flat', '2026-03-02T23:30:00Z', '2026-03-03T00:00:00Z'), seg('peak', '2026-03-03T00:00:00Z', '2026-03-03T00:30:00Z')],
    ],
    ['a quarter inside one band', cn, '2026-03-03T00:00:00Z', '2026-03-03T00:15:00Z', [seg('peak', '2026-03-03T00:00:00Z', '2026-03-03T00:15:00Z')]],
    [
      'an hour across the 08:30 and a quarter-hour edge (Madrid)',
      madrid,
      '2026-03-03T07:15:00Z',
      '2026-03-03T08:15:00Z',
      [seg('off', '2026-03-03T07:15:00Z', '2026-03-03T07:30:00Z'), seg('peak', '2026-03-03T07:30:00Z', '2026-03-03T08:15:00Z')],
    ],
    [
      'weekday evening into a holiday (Madrid, midnight edge)',
      madrid,
      '2026-03-03T19:00:00Z',
      '2026-03-04T09:00:00Z',
      [seg('peak', '2026-03-03T19:00:00Z', '2026-03-03T19:15:00Z'), seg('off', '2026-03-03T19:15:00Z', '2026-03-04T09:00:00Z')],
    ],
    // 2026-03-08 in Los Angeles is 23 h long: 00:00-08:00 local is only 7 h.
    [
      'spring-forward day (LA)',
      us,
      '2026-03-08T08:00:00Z',
      '2026-03-09T07:00:00Z',
      [
        seg('offPeak', '2026-03-08T08:00:00Z', '2026-03-08T15:00:00Z'),
        seg('superOffPeak', '2026-03-08T15:00:00Z', '2026-03-08T23:00:00Z'),
        seg('midPeak', '2026-03-08T23:00:00Z', '2026-03-09T04:00:00Z'),
        seg('offPeak', '2026-03-09T04:00:00Z', '2026-03-09T07:00:00Z'),
      ],
    ],
    // 2026-11-01 is 25 h long: 00:00-08:00 local is 9 h.
    [
      'fall-back day (LA)',
      us,
      '2026-11-01T07:00:00Z',
      '2026-11-02T08:00:00Z',
      [
        seg('offPeak', '2026-11-01T07:00:00Z', '2026-11-01T16:00:00Z'),
        seg('superOffPeak', '2026-11-01T16:00:00Z', '2026-11-02T00:00:00Z'),
        seg('midPeak', '2026-11-02T00:00:00Z', '2026-11-02T05:00:00Z'),
        seg('offPeak', '2026-11-02T05:00:00Z', '2026-11-02T08:00:00Z'),
      ],
    ],
    // Madrid springs forward at 01:00Z on 2026-03-29, inside this interval; the 08:30 edge stays at local time.
    [
      'an interval spanning the DST change (Madrid, Monday after)',
      madrid,
      '2026-03-29T00:30:00Z',
      '2026-03-30T07:00:00Z',
      [seg('off', '2026-03-29T00:30:00Z', '2026-03-30T06:30:00Z'), seg('peak', '2026-03-30T06:30:00Z', '2026-03-30T07:00:00Z')],
    ],
  ])('%s', (_name, tariff, from, to, expected) => {
    expect(bandSegments(tariff, at(from), at(to))).toEqual(expected);
  });

  it('covers the range exactly, with no gaps or overlaps, for a year of quarter-hours', () => {
    const start = at('2026-01-01T00:00:00Z');
    for (const t of [cn, us, madrid]) {
      let covered = 0;
      for (let s = start; s < start + 365 * 24 * H; s += 24 * H) {
        const segs = bandSegments(t, s, s + 24 * H);
        expect(segs[0]?.fromMs).toBe(s);
        expect(segs[segs.length - 1]?.toMs).toBe(s + 24 * H);
        for (let i = 1; i < segs.length; i++) expect(segs[i]?.fromMs).toBe(segs[i - 1]?.toMs);
        for (const g of segs) {
          expect(bandAt(t, g.fromMs)).toBe(g.band);
          expect(bandAt(t, g.toMs - 1)).toBe(g.band);
          covered += g.toMs - g.fromMs;
        }
      }
      expect(covered).toBe(365 * 24 * H);
    }
  });
});

describe('singleBand', () => {
  it.each([
    ['a quarter inside peak', cn, '2026-03-03T00:00:00Z', 15, 'peak'],
    ['an hour ending exactly on the edge', cn, '2026-03-02T23:00:00Z', 60, 'flat'],
    ['an hour across the 08:00 edge', cn, '2026-03-02T23:30:00Z', 60, undefined],
    ['a quarter across local midnight', cn, '2026-03-03T15:50:00Z', 15, undefined],
    ['an hour across the spring-forward jump (LA)', us, '2026-03-08T09:30:00Z', 60, undefined],
    ['an hour just after it', us, '2026-03-08T10:00:00Z', 60, 'offPeak'],
    ['a quarter on a 08:30 edge start (Madrid)', madrid, '2026-03-03T07:30:00Z', 15, 'peak'],
  ])('%s', (_name, tariff, iso, minutes, band) => {
    expect(singleBand(tariff, at(iso), at(iso) + minutes * 60_000)).toBe(band);
  });
});

describe('local days', () => {
  it.each([
    ['America/Los_Angeles', '2026-03-08', '2026-03-08T08:00:00Z', 23],
    ['America/Los_Angeles', '2026-11-01', '2026-11-01T07:00:00Z', 25],
    ['America/Los_Angeles', '2026-07-01', '2026-07-01T07:00:00Z', 24],
    ['Asia/Shanghai', '2026-03-08', '2026-03-07T16:00:00Z', 24],
    ['Asia/Kolkata', '2026-03-08', '2026-03-07T18:30:00Z', 24],
    ['UTC', '2026-02-28', '2026-02-28T00:00:00Z', 24],
  ])('%s %s starts at %s and lasts %i h', (zone, day, startIso, hours) => {
    const w = dayWindow(zone, day);
    expect(w.startMs).toBe(at(startIso));
    expect(w.endMs - w.startMs).toBe(hours * H);
    expect(localDay(zone, w.startMs)).toBe(day);
    expect(localDay(zone, w.endMs - 1)).toBe(day);
    expect(localDay(zone, w.endMs)).not.toBe(day);
  });

  it('lists days with an exclusive end', () => {
    expect(daysBetween('2026-02-27', '2026-03-02')).toEqual(['2026-02-27', '2026-02-28', '2026-03-01']);
    expect(daysBetween('2026-03-02', '2026-03-02')).toEqual([]);
  });

  it('rejects malformed days', () => {
    expect(() => dayWindow('UTC', '2026-02-30')).toThrow(RangeError);
    expect(() => dayWindow('UTC', '26-02-01')).toThrow(RangeError);
  });
});

describe('compileTariffs rejects bad tariffs, naming the key', () => {
  const base = (): TariffsConfig => structuredClone(crafted);
  it.each<[string, (c: TariffsConfig) => void, string]>([
    [
      'unknown default',
      (c) => {
        c.default = 'nope';
      },
      'tariffs.default: no tariff named "nope"',
    ],
    [
      'unknown zone',
      (c) => {
        if (c.tariffs.tou) c.tariffs.tou.timezone = 'Mars/Olympus';
      },
      'tariffs.tariffs.tou.timezone: unknown IANA time zone "Mars/Olympus"',
    ],
    [
      'band not declared',
      (c) => {
        const p = c.tariffs.tou?.rules[0]?.periods[1];
        if (p) p.band = 'shoulder';
      },
      'tariffs.tariffs.tou.rules.0.periods.1.band: "shoulder" is not in bands',
    ],
    [
      'first period not at midnight',
      (c) => {
        const p = c.tariffs.tou?.rules[1]?.periods[0];
        if (p) p.from = '01:00';
      },
      'tariffs.tariffs.tou.rules.1.periods.0.from: the first period starts at 00:00',
    ],
    [
      'periods out of order',
      (c) => {
        const p = c.tariffs.tou?.rules[0]?.periods[2];
        if (p) p.from = '08:00';
      },
      'tariffs.tariffs.tou.rules.0.periods.2.from: periods are in increasing time order',
    ],
    [
      'bad time',
      (c) => {
        const p = c.tariffs.tou?.rules[0]?.periods[1];
        if (p) p.from = '24:00';
      },
      'tariffs.tariffs.tou.rules.0.periods.1.from: expected local time HH:MM, got "24:00"',
    ],
    [
      'holidays not covered',
      (c) => {
        const r = c.tariffs.tou?.rules[1];
        if (r) r.days = ['weekend'];
      },
      'tariffs.tariffs.tou.rules: no rule covers month 1 on a holiday',
    ],
    [
      'months not covered',
      (c) => {
        const r = c.tariffs.tou?.rules[0];
        if (r) r.months = [1, 2];
      },
      'tariffs.tariffs.tou.rules: no rule covers month 3 on a weekday',
    ],
    [
      'unknown calendar',
      (c) => {
        if (c.tariffs.tou) c.tariffs.tou.calendar = 'xx';
      },
      'tariffs.tariffs.tou.calendar: no calendar "xx" in calendars',
    ],
    [
      'impossible holiday',
      (c) => {
        if (c.calendars.test) c.calendars.test.holidays = ['2026-02-30'];
      },
      'tariffs.calendars.test.holidays.0: no such date "2026-02-30"',
    ],
    [
      'duplicate band',
      (c) => {
        if (c.tariffs.tou) c.tariffs.tou.bands = ['peak', 'off', 'peak'];
      },
      'tariffs.tariffs.tou.bands.2: duplicate band "peak"',
    ],
  ])('%s', (_name, mutate, message) => {
    const c = base();
    mutate(c);
    expect(() => compileTariffs(c)).toThrow(message);
  });
});
