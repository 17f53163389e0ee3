import { describe, expect, it } from 'vitest';
import { bucketWatermark, CaughtUpWatermarks, parseWatermarks } from '../../src/alerting/service.js';
import { dueBucket } from '../../src/alerting/keys.js';
import { shardOf } from '../../src/domain/shard.js';

describe('watermarks for the alert sweep', () => {
  const shard = shardOf('M-7', 4);
  const other = (shard + 1) % 4;
  const wm = parseWatermarks({ [String(shard)]: '5000', [String(other)]: '3000', bogus: '9', '2x': '1', [String((shard + 2) % 4)]: 'NaN' }, 4);

  it('keeps valid shard entries only; the slowest is the floor', () => {
    expect([...wm.byShard.entries()].sort()).toEqual(
      [
        [shard, 5000],
        [other, 3000],
      ].sort(),
    );
    expect(wm.min).toBe(3000);
  });

  const wide = ['silent', 'lastGasp'];
  it.each([
    { what: 'a spike on M-7: its shard', alert: { meterId: 'M-7', transformerId: 'T-1', type: 'spike' as const }, expected: 5000 },
    { what: 'a transformer alert: the slowest shard', alert: { meterId: null, transformerId: 'T-1', type: 'feederOverload' as const }, expected: 3000 },
    {
      what: 'a last gasp on M-7: the slowest shard (its outage spans shards)',
      alert: { meterId: 'M-7', transformerId: 'T-1', type: 'lastGasp' as const },
      expected: 3000,
    },
    { what: 'a silent meter without a transformer: its shard', alert: { meterId: 'M-7', transformerId: null, type: 'silent' as const }, expected: 5000 },
  ])('$what', ({ alert, expected }) => {
    expect(bucketWatermark(wm, dueBucket(alert, 4, wide))).toBe(expected);
  });

  it('a shard without a watermark falls back to the slowest; none at all is -Infinity', () => {
    const missing = [0, 1, 2, 3].find((s) => !wm.byShard.has(s)) ?? 0;
    const meter = Array.from({ length: 200 }, (_, i) => `X-${i}`).find((m) => shardOf(m, 4) === missing) ?? '';
    expect(bucketWatermark(wm, dueBucket({ meterId: meter, transformerId: null, type: 'spike' }, 4, wide))).toBe(3000);
    expect(parseWatermarks({}, 4).min).toBe(-Infinity);
  });
});

describe('watermarks the alert service has caught up with', () => {
  const at = (ms: number): ReturnType<typeof parseWatermarks> => parseWatermarks({ '0': String(ms), '1': String(ms + 100) }, 2);

  it('no event job pending: the watermark just read', () => {
    const c = new CaughtUpWatermarks(2, 60_000);
    expect(c.next(1000, at(5000), null).min).toBe(5000);
  });

  it('a backlog holds the watermark at the last reading taken before its oldest job was enqueued', () => {
    const c = new CaughtUpWatermarks(2, 60_000);
    expect(c.next(1000, at(5000), null).min).toBe(5000);
    // Jobs enqueued at 1500 are still waiting: the reading at 1000 is the newest the alerts have caught up with.
    expect(c.next(2000, at(9000), 1500).min).toBe(5000);
    expect(c.next(3000, at(12000), 1500).min).toBe(5000);
    // The backlog moved on to jobs enqueued at 2500: everything before 2000 is done.
    expect(c.next(4000, at(15000), 2500).min).toBe(9000);
    expect(c.next(5000, at(16000), null).min).toBe(16000);
  });

  it('a backlog from before the first reading (a restart): nothing is safe yet', () => {
    const c = new CaughtUpWatermarks(2, 60_000);
    const wm = c.next(1000, at(5000), 500);
    expect(wm.min).toBe(-Infinity);
    expect(wm.byShard.size).toBe(0);
    expect(c.next(2000, at(6000), 1200).min).toBe(5000);
  });
});

describe('held notices and a moving watermark', () => {
  it('the watermark counts as advancing until it has not moved for the wall-clock hold', () => {
    const c = new CaughtUpWatermarks(1, 60_000);
    const w = (ms: number): ReturnType<typeof parseWatermarks> => parseWatermarks({ '0': String(ms) }, 1);
    expect(c.next(0, w(1000), null).advancing).toBe(true);
    expect(c.next(30_000, w(1000), null).advancing).toBe(true);
    expect(c.next(60_000, w(1000), null).advancing).toBe(false);
    expect(c.next(65_000, w(2000), null).advancing).toBe(true);
    // A backlog being worked off holds the caught-up watermark back but keeps it advancing …
    expect(c.next(70_000, w(9000), 66_000).advancing).toBe(true);
    expect(c.next(100_000, w(9500), 68_000).min).toBe(2000);
    expect(c.next(150_000, w(9800), 69_000).advancing).toBe(true);
    // … a backlog that does not move (a hung events worker) stalls it.
    expect(c.next(209_000, w(9900), 69_000).advancing).toBe(true);
    expect(c.next(210_000, w(9900), 69_000).advancing).toBe(false);
  });
});
