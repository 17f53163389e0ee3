import { describe, expect, it } from 'vitest';
import { coldBaseline, decodeBaseline, encodeBaseline, expectedInterval, learn, slotOf, type BaselineSettings } from '../../src/domain/baseline.js';
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
  it('averages the first samples with the prior, float32 at every step', () => {
    let b = coldBaseline('residential', settings);
    b = learn(b, settings, zone, monday10, Q, 200); // 800 Wh/h, alpha 1/2
    expect([b.mean[10], b.spread[10], b.count[10]]).toEqual([600, 300, 1]);
    b = learn(b, settings, zone, monday10, Q, 200); // alpha 1/3
    expect([b.mean[10], b.spread[10], b.count[10]]).toEqual([Math.fround(600 + 200 / 3), Math.fround(300 + (200 - 300) / 3), 2]);
    expect(b.mean[11]).toBe(400); // other slots untouched
  });

  it('an outlier moves a settled slot by at most alpha × clipK × spread', () => {
    let b = coldBaseline('residential', settings);
    for (let i = 0; i < 30; i++) b = learn(b, settings, zone, monday10, Q, 100); // 400 Wh/h, the prior
    expect(b.mean[10]).toBe(400);
    const spreadBefore = b.spread[10] ?? 0;
    expect(spreadBefore).toBeLessThan(50); // floored to 50 for the clip band: ±150 Wh/h
    b = learn(b, settings, zone, monday10, Q, 10_000); // 40 kWh/h spike, clipped to 550 Wh/h, alpha 0.05
    expect(b.mean[10]).toBe(407.5);
    expect(b.count[10]).toBe(31);
  });

  it('does not modify the baseline it was given', () => {
    const b = coldBaseline('residential', settings);
    learn(b, settings, zone, monday10, Q, 5000);
    expect([b.mean[10], b.count[10]]).toEqual([400, 0]);
  });
});

describe('serialisation', () => {
  it.each([
    { s: settings, chars: 576 },
    { s: weekly, chars: 2016 },
  ])('$s.slots round-trips bit for bit in $chars base64 chars', ({ s, chars }) => {
    let b = coldBaseline('commercial', s);
    for (let i = 0; i < 50; i++) b = learn(b, s, zone, Date.UTC(2026, 10, 2, i % 24), Q, 1000 + i * 37.3);
    const enc = encodeBaseline(b);
    expect(enc.length).toBe(chars);
    expect(decodeBaseline(enc, s.slots === 'hourOfWeek' ? 168 : 48)).toEqual(b);
    expect(decodeBaseline(enc, 7)).toBeUndefined();
  });
});
