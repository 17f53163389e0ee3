import { describe, expect, it } from 'vitest';
import {
  coldBaseline,
  decodeBaseline,
  encodeBaseline,
  expectedInterval,
  expectedRate,
  learn,
  levelFactor,
  slotCount,
  slotOf,
  type BaselineSettings,
} from '../../src/domain/baseline.js';
import { MINUTE_MS } from '../../src/domain/local-time.js';
import { testDetectionConfig } from '../helpers/detection-settings.js';

const zone = 'Europe/Madrid';
const Q = 15 * MINUTE_MS;
const settings: BaselineSettings = testDetectionConfig().baseline;
const weekly: BaselineSettings = { ...settings, slots: 'hourOfWeek' };

describe('time-of-week slots (local time)', () => {
  it.each([
    { name: 'Monday 01:30 CET', ts: Date.UTC(2026, 10, 2, 0, 30), daytype: 1, week: 1 },
    { name: 'Saturday 13:00 CET', ts: Date.UTC(2026, 10, 7, 12), daytype: 37, week: 133 },
    { name: 'Sunday 23:30 UTC is Monday 00:30 local', ts: Date.UTC(2026, 10, 8, 23, 30), daytype: 0, week: 0 },
    { name: 'Sunday 02:30 CEST, before the fall-back', ts: Date.UTC(2026, 9, 25, 0, 30), daytype: 26, week: 146 },
    { name: 'Sunday 02:30 CET, the repeated hour', ts: Date.UTC(2026, 9, 25, 1, 30), daytype: 26, week: 146 },
  ])('$name', ({ ts, daytype, week }) => {
    expect(slotOf('hourDaytype', zone, ts)).toBe(daytype);
    expect(slotOf('hourOfWeek', zone, ts)).toBe(week);
  });

  it.each([
    { name: 'Friday 10:00', ts: Date.UTC(2026, 10, 6, 9), slot: 10 },
    { name: 'Saturday 10:00', ts: Date.UTC(2026, 10, 7, 9), slot: 34 },
    { name: 'Sunday 10:00', ts: Date.UTC(2026, 10, 8, 9), slot: 58 },
  ])('hourWeekdaySatSun: $name', ({ ts, slot }) => {
    expect(slotOf('hourWeekdaySatSun', zone, ts)).toBe(slot);
  });
});

describe('cold start from the class profile', () => {
  it.each([
    { cls: 'residential' as const, s: settings, slot: 0, mean: 400, spread: 200 },
    { cls: 'residential' as const, s: settings, slot: 30, mean: 600, spread: 300 },
    { cls: 'commercial' as const, s: weekly, slot: 5 * 24 + 10, mean: 2000, spread: 1000 },
    { cls: 'industrial' as const, s: weekly, slot: 10, mean: 40000, spread: 20000 },
  ])('$cls slot $slot', ({ cls, s, slot, mean, spread }) => {
    const b = coldBaseline(cls, s);
    expect(b.mean.length).toBe(s.slots === 'hourOfWeek' ? 168 : 48);
    expect([b.mean[slot], b.spread[slot], b.count[slot]]).toEqual([mean, spread, 0]);
  });

  it('expected interval energy scales the hourly rate to the interval', () => {
    const b = coldBaseline('residential', settings);
    expect(expectedInterval(b, settings, zone, Date.UTC(2026, 10, 2, 10), Q)).toEqual({ wh: 100, spreadWh: 50, samples: 0 });
  });
});

describe('learning', () => {
  const monday10 = Date.UTC(2026, 10, 2, 9); // 10:00 local, slot 10
  it('the first sample replaces the class prior, then samples average, float32 at every step', () => {
    const b = coldBaseline('residential', settings);
    learn(b, settings, zone, monday10, Q, 200); // 800 Wh/h replaces the prior 400; spread 0.5 × 800
    expect([b.mean[10], b.spread[10], b.count[10]]).toEqual([800, 400, 1]);
    learn(b, settings, zone, monday10, Q, 100); // 400 Wh/h, alpha 1/2
    expect([b.mean[10], b.spread[10], b.count[10]]).toEqual([600, 400, 2]);
    learn(b, settings, zone, monday10, Q, 150); // 600 Wh/h, alpha 1/3
    expect([b.mean[10], b.spread[10], b.count[10]]).toEqual([600, Math.fround(400 - 400 / 3), 3]);
    expect(b.mean[11]).toBe(400); // other slots untouched
  });

  it('an outlier moves a settled slot by at most alpha × clipK × spread', () => {
    const b = coldBaseline('residential', settings);
    for (let i = 0; i < 30; i++) learn(b, settings, zone, monday10, Q, 100); // 400 Wh/h, the prior
    expect(b.mean[10]).toBe(400);
    const spreadBefore = b.spread[10] ?? 0;
    expect(spreadBefore).toBeLessThan(50); // floored to 50 for the clip band: ±150 Wh/h
    learn(b, settings, zone, monday10, Q, 10_000); // 40 kWh/h spike, clipped to 550 Wh/h, alpha 0.05
    expect(b.mean[10]).toBe(407.5);
    expect(b.count[10]).toBe(31);
  });

  it('learns in place (once per interval: no copies on the hot path)', () => {
    const b = coldBaseline('residential', settings);
    expect(learn(b, settings, zone, monday10, Q, 5000)).toBe(b);
    expect([b.mean[10], b.count[10]]).toEqual([20_000, 1]);
  });

  it('memoryWeeks: a Saturday slot, seen once a week, learns at 1/(weeks × 4) per quarter hour, a weekday one at 1/(weeks × 20)', () => {
    const s3: BaselineSettings = { ...settings, slots: 'hourWeekdaySatSun', alphaMin: 0.001, memoryWeeks: 4 };
    const b = coldBaseline('commercial', s3);
    const saturday10 = Date.UTC(2026, 10, 7, 9);
    for (let i = 0; i < 100; i++) {
      learn(b, s3, zone, monday10, Q, 1000);
      learn(b, s3, zone, saturday10, Q, 1000);
    }
    learn(b, s3, zone, monday10, Q, 1025); // +100 Wh/h, within the clip band
    learn(b, s3, zone, saturday10, Q, 1025);
    expect(b.mean[10]).toBe(Math.fround(4000 + 100 / 80));
    expect(b.mean[24 + 10]).toBe(Math.fround(4000 + 100 / 16));
  });

  it('a level factor follows a lasting change within days while the slots keep their shape', () => {
    const sl: BaselineSettings = { ...settings, levelDays: 2 };
    const b = coldBaseline('residential', sl);
    for (let i = 0; i < 10 * 96; i++) learn(b, sl, zone, monday10 + i * Q, Q, 100);
    expect(levelFactor(b)).toBe(1);
    for (let i = 0; i < 4 * 96; i++) learn(b, sl, zone, monday10 + i * Q, Q, 120);
    // four days at +20 %: the factor carries most of it (the slot, learning x / factor, a little); the
    // expectation is there
    expect(levelFactor(b)).toBeCloseTo(1.134, 3);
    expect(expectedRate(b, sl, zone, monday10).rate).toBeCloseTo(480, 0);
  });
});

describe('scale-free spread floors', () => {
  it.each([
    { name: 'a 300 W home', wh: 75 },
    { name: 'a 500 kW building', wh: 125_000 },
  ])('$name: the floor is 15 % of the slot level (× √(1 + 1/5) for a slot learnt from five days)', ({ wh }) => {
    const sf: BaselineSettings = { ...settings, spreadFloorShare: 0.15, minSpreadWhPerHour: 5 };
    const b = coldBaseline('residential', sf);
    for (let i = 0; i < 20; i++) learn(b, sf, zone, monday10h(i), Q, wh); // identical samples: no spread of its own
    const e = expectedInterval(b, sf, zone, monday10h(0), Q);
    expect(e.spreadWh / e.wh).toBeCloseTo(0.15 * Math.sqrt(1.2), 6);
  });
});

function monday10h(week: number): number {
  return Date.UTC(2026, 10, 2, 9) + week * 7 * 86_400_000;
}

describe('serialisation', () => {
  it.each([
    { s: settings, chars: 588 },
    { s: weekly, chars: 2028 },
    { s: { ...settings, slots: 'hourWeekdaySatSun' as const }, chars: 876 },
  ])('$s.slots round-trips bit for bit in $chars base64 chars', ({ s, chars }) => {
    const b = coldBaseline('commercial', { ...s, levelDays: 3 });
    for (let i = 0; i < 50; i++) learn(b, { ...s, levelDays: 3 }, zone, Date.UTC(2026, 10, 2, i % 24), Q, 1000 + i * 37.3);
    const enc = encodeBaseline(b);
    expect(enc.length).toBe(chars);
    expect(decodeBaseline(enc, slotCount(s.slots))).toEqual(b);
    expect(decodeBaseline(enc, 7)).toBeUndefined();
  });

  it('a weekday/weekend checkpoint (48 slots) decodes into weekday/Saturday/Sunday (72): both weekend days take its weekend', () => {
    const b = coldBaseline('commercial', settings);
    b.mean[24 + 10] = 1234;
    b.count[24 + 10] = 9;
    const d = decodeBaseline(encodeBaseline(b), 72);
    expect([d?.mean[10], d?.mean[24 + 10], d?.mean[48 + 10], d?.count[48 + 10]]).toEqual([4000, 1234, 1234, 9]);
  });

  it('an older checkpoint without the level factor decodes with factor 1', () => {
    const b = coldBaseline('commercial', settings);
    const old = Buffer.from(encodeBaseline(b), 'base64')
      .subarray(0, 48 * 9)
      .toString('base64');
    const d = decodeBaseline(old, 48);
    expect(d?.mean).toEqual(b.mean);
    expect(d === undefined ? 0 : levelFactor(d)).toBe(1);
  });
});
