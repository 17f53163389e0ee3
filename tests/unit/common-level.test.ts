import { describe, expect, it } from 'vitest';
import { addSample, advanceCommon, commonFactor, newCommonLevel } from '../../src/domain/common-level.js';

const H = 3_600_000;
const T0 = Date.UTC(2026, 10, 2);
const s = { hours: 6, minSamples: 8 };

/** `days` days of hours in which 20 meters sit at `ratio(day, hour, meter)` of their expectation. */
function feed(days: number, ratio: (day: number, hour: number, meter: number) => number) {
  const c = newCommonLevel();
  const factors: number[] = [];
  for (let d = 0; d < days; d++) {
    for (let h = 0; h < 24; h++) {
      const hour = T0 + (d * 24 + h) * H;
      for (let m = 0; m < 20; m++) addSample(c, hour, h, Math.log(ratio(d, h, m)));
      advanceCommon(c, hour + H, s);
      factors.push(commonFactor(c));
    }
  }
  return { c, factors };
}

describe('the level common to a shard’s meters', () => {
  it('a standing offset of the median (skewed noise, by hour of day) moves nothing', () => {
    const r = feed(10, (_d, h) => (h < 7 ? 0.9 : 0.95));
    expect(r.factors.at(-1)).toBeCloseTo(1, 6);
  });

  it('every meter 25 % up for two days (a hot spell) is followed within hours; one meter at 3× is not', () => {
    const r = feed(14, (d, _h, m) => (d >= 10 && d < 12 ? 1.25 : 1) * (m === 0 ? 3 : 1));
    // after a day of the spell the factor carries (almost all of) it
    expect(r.factors[11 * 24 - 1]).toBeCloseTo(1.25, 1);
    // two days after the spell it is gone again
    expect(r.factors.at(-1)).toBeCloseTo(1, 1);
  });

  it('hours with too few samples teach nothing; off when hours = 0', () => {
    const c = newCommonLevel();
    for (let m = 0; m < 7; m++) addSample(c, T0, 0, Math.log(2));
    advanceCommon(c, T0 + H, s);
    expect(commonFactor(c)).toBe(1);
    const off = newCommonLevel();
    for (let m = 0; m < 20; m++) addSample(off, T0, 0, Math.log(2));
    advanceCommon(off, T0 + H, { hours: 0, minSamples: 1 });
    expect(commonFactor(off)).toBe(1);
  });
});
