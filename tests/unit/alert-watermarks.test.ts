import { describe, expect, it } from 'vitest';
import { parseWatermarks, watermarkOf } from '../../src/shared/alerts/service.js';
import { shardOf } from '../../src/domain/shard.js';

describe('watermarks for the alert sweep', () => {
  const shard = shardOf('M-7', 4);
  const other = (shard + 1) % 4;
  const wm = parseWatermarks({ [String(shard)]: '5000', [String(other)]: '3000', bogus: '9', '2x': '1', [String((shard + 2) % 4)]: 'NaN' }, 4);

  it('keeps valid shard entries only; the slowest is the floor', () => {
    expect([...wm.byShard.entries()].sort()).toEqual([[shard, 5000], [other, 3000]].sort());
    expect(wm.min).toBe(3000);
  });

  it.each([
    { meter: 'M-7', expected: 5000 },
    { meter: null, expected: 3000 },
  ])('meter $meter → $expected', ({ meter, expected }) => {
    expect(watermarkOf(wm, meter)).toBe(expected);
  });

  it('a shard without a watermark falls back to the slowest; none at all is -Infinity', () => {
    const missing = [0, 1, 2, 3].find((s) => !wm.byShard.has(s)) ?? 0;
    const meter = Array.from({ length: 200 }, (_, i) => `X-${i}`).find((m) => shardOf(m, 4) === missing) ?? '';
    expect(watermarkOf(wm, meter)).toBe(3000);
    expect(parseWatermarks({}, 4).min).toBe(-Infinity);
  });
});
