import { describe, expect, it } from 'vitest';
import { dayWindow, localParts } from '../../src/domain/local-time.js';
import { type ForecastConfig, forecastPeak, type LoadPoint } from '../../src/domain/peak-forecast.js';

const H = 3_600_000;

const CFG: ForecastConfig = { likeDays: 3, lookbackDays: 10, trendDays: 0, trendCap: 0.2, peakShare: 0.9, thresholdKw: 0, minWindowMinutes: 0 };

/** Hourly load in `zone` over local days [from, to): `kwAt(localDate, localHour)`; `skip` drops points. */
function series(zone: string, from: string, to: string, kwAt: (day: string, hour: number) => number, skip = new Set<number>()): LoadPoint[] {
  const out: LoadPoint[] = [];
  for (let t = dayWindow(zone, from).startMs; t < dayWindow(zone, to).startMs; t += H) {
    if (skip.has(t)) continue;
    const p = localParts(zone, t);
    const k = p.dateKey;
    const day = `${Math.floor(k / 10000)}-${String(Math.floor(k / 100) % 100).padStart(2, '0')}-${String(k % 100).padStart(2, '0')}`;
    out.push({ start: t, kw: kwAt(day, p.hour) });
  }
  return out;
}

const weekend = (day: string): boolean => [0, 6].includes(new Date(`${day}T00:00:00Z`).getUTCDay());
/** Weekdays 100 kW with an evening peak (17-19 h 200 kW, 19 h 150 kW); weekends flat 50 kW. */
const profile = (day: string, hour: number): number => (weekend(day) ? 50 : hour === 17 || hour === 18 ? 200 : hour === 19 ? 150 : 100);

const at = (iso: string): number => Date.parse(iso);

describe('forecastPeak', () => {
  it('a weekday: per slot the mean of the 3 most recent weekdays; the evening peak is the window above 90 % of the typical peak', () => {
    const f = forecastPeak(
      { series: series('UTC', '2026-04-01', '2026-04-15', profile), intervalMs: H, day: '2026-04-15', timezone: 'UTC', holidays: [] },
      CFG,
    );
    expect(f.dayType).toBe('weekday');
    expect(f.likeDays).toEqual(['2026-04-10', '2026-04-13', '2026-04-14']);
    expect(f.trendFactor).toBe(1);
    expect(f.slots.length).toBe(24);
    expect(f.slots.map((s) => s.expectedKw)).toEqual(Array.from({ length: 24 }, (_, h) => profile('2026-04-15', h)));
    expect(f.peak).toEqual({ start: at('2026-04-15T17:00:00Z'), expectedKw: 200 });
    expect([f.typicalPeakKw, f.thresholdKw, f.thresholdBasis]).toEqual([200, 180, 'peakShare']);
    // 17:00 and 18:00 at 200 kW, 20 kW above 180 for an hour each.
    expect(f.windows).toEqual([{ start: at('2026-04-15T17:00:00Z'), end: at('2026-04-15T19:00:00Z'), peakKw: 200, excessKwh: 40 }]);
  });

  it('a capacity instead of the typical peak; a minimum window grows towards the higher neighbour', () => {
    const input = { series: series('UTC', '2026-04-01', '2026-04-15', profile), intervalMs: H, day: '2026-04-15', timezone: 'UTC', holidays: [] };
    const cap = forecastPeak(input, { ...CFG, thresholdKw: 150 });
    expect([cap.thresholdKw, cap.thresholdBasis]).toEqual([150, 'capacity']);
    // 17, 18 (200) and 19 (150) reach 150 kW: 50 + 50 + 0 kWh above it.
    expect(cap.windows).toEqual([{ start: at('2026-04-15T17:00:00Z'), end: at('2026-04-15T20:00:00Z'), peakKw: 200, excessKwh: 100 }]);
    // 4 h from 17-19: 19 h (150) beats 16 h (100), then 16 h (100) ties 20 h (100) and the earlier side wins.
    const wide = forecastPeak(input, { ...CFG, minWindowMinutes: 240 });
    expect(wide.windows).toEqual([{ start: at('2026-04-15T16:00:00Z'), end: at('2026-04-15T20:00:00Z'), peakKw: 200, excessKwh: 40 }]);
  });

  it('the trend: the 2 most recent like days against all 4 scale the forecast, within the cap', () => {
    const level: Record<string, number> = { '2026-04-09': 100, '2026-04-10': 100, '2026-04-13': 110, '2026-04-14': 130 };
    const input = {
      series: series('UTC', '2026-04-06', '2026-04-15', (d) => level[d] ?? 100),
      intervalMs: H,
      day: '2026-04-15',
      timezone: 'UTC',
      holidays: [],
    };
    // Mean of the 4: 110; of the last 2: 120; trend 120 / 110.
    const f = forecastPeak(input, { ...CFG, likeDays: 4, trendDays: 2 });
    expect(f.likeDays).toEqual(['2026-04-09', '2026-04-10', '2026-04-13', '2026-04-14']);
    expect(f.trendFactor).toBeCloseTo(120 / 110, 12);
    expect(f.slots[0]?.expectedKw).toBeCloseTo(120, 9);
    const capped = forecastPeak(input, { ...CFG, likeDays: 4, trendDays: 2, trendCap: 0.05 });
    expect(capped.trendFactor).toBe(1.05);
    expect(capped.slots[0]?.expectedKw).toBeCloseTo(115.5, 9);
  });

  it('a Saturday is forecast from weekend days and holidays; a day with too many gaps is skipped', () => {
    const kw = (day: string, hour: number): number => (day === '2026-04-16' ? 60 : profile(day, hour));
    const sat = forecastPeak(
      { series: series('UTC', '2026-04-01', '2026-04-18', kw), intervalMs: H, day: '2026-04-18', timezone: 'UTC', holidays: ['2026-04-16'] },
      CFG,
    );
    expect(sat.dayType).toBe('weekend');
    expect(sat.likeDays).toEqual(['2026-04-11', '2026-04-12', '2026-04-16']);
    expect(sat.slots[12]?.expectedKw).toBeCloseTo(160 / 3, 9);
    // Tuesday 14 misses 3 of 24 hours (more than 10 %): Thursday 9 takes its place.
    const gaps = new Set([at('2026-04-14T01:00:00Z'), at('2026-04-14T02:00:00Z'), at('2026-04-14T03:00:00Z')]);
    const wed = forecastPeak(
      { series: series('UTC', '2026-04-01', '2026-04-15', profile, gaps), intervalMs: H, day: '2026-04-15', timezone: 'UTC', holidays: [] },
      CFG,
    );
    expect(wed.likeDays).toEqual(['2026-04-09', '2026-04-10', '2026-04-13']);
  });

  it('across the spring-forward Sunday the evening peak stays at 17:00 local time', () => {
    const zone = 'Europe/Madrid';
    const f = forecastPeak({ series: series(zone, '2026-03-16', '2026-03-30', profile), intervalMs: H, day: '2026-03-30', timezone: zone, holidays: [] }, CFG);
    expect(f.likeDays).toEqual(['2026-03-25', '2026-03-26', '2026-03-27']);
    // CEST (UTC+2) on the 30th: 17:00 local is 15:00 UTC, though the like days were in CET.
    expect(f.peak).toEqual({ start: at('2026-03-30T15:00:00Z'), expectedKw: 200 });
    expect(f.windows).toEqual([{ start: at('2026-03-30T15:00:00Z'), end: at('2026-03-30T17:00:00Z'), peakKw: 200, excessKwh: 40 }]);
  });

  it('no history: nothing expected, no peak, no window', () => {
    const f = forecastPeak({ series: [], intervalMs: H, day: '2026-04-15', timezone: 'UTC', holidays: [] }, CFG);
    expect([f.likeDays, f.peak, f.windows, f.typicalPeakKw]).toEqual([[], null, [], 0]);
    expect(f.slots.every((s) => s.expectedKw === 0)).toBe(true);
  });
});
