import { describe, expect, it } from 'vitest';
import type { MeterEvent, Reading } from '../../src/contracts/reading.js';
import { parseEntry, type StreamEntry } from '../../src/stream/entries.js';
import { type MeterRecord, ShardWork } from '../../src/stream/shard-work.js';
import { testMeter, testWorkSettings } from '../helpers/detection-settings.js';

const Q = 15 * 60_000;
const T0 = Date.UTC(2026, 10, 2); // Monday 2026-11-02 00:00 UTC
const meter: MeterRecord = { ...testMeter(), tariff: 'default' };
const work = testWorkSettings(Q);

let seq = 0;
const entry = (readings: Reading[], events: MeterEvent[] = []): StreamEntry => {
  const newest = Math.max(...readings.map((r) => r.ts), ...events.map((e) => e.ts));
  return { id: `${newest}-${seq++}`, readings, events, rx: newest, malformed: [] };
};
const read = (q: number, importWh: number): Reading => ({ meterId: meter.meterId, ts: T0 + q * Q, importWh });
/** 100 Wh a quarter hour; the meter is replaced after quarter 40, the new one reads 20 Wh at install. */
const registerAt = (q: number): number => (q <= 40 ? 50_000 + q * 100 : 20 + (q - 40) * 100);
const exchange: MeterEvent = { meterId: meter.meterId, ts: T0 + 40 * Q, event: 'meterExchange', installWh: 20, removalWh: registerAt(40) };

describe('the stream shard with meter exchange work orders', () => {
  it('a late work order rewrites the reset interval and asks billing to recompute its closed day', () => {
    const w = new ShardWork(0, work);
    const reads = Array.from({ length: 2 * 96 + 1 }, (_, q) => read(q, registerAt(q)));
    const first = w.process(
      reads.map((r) => entry([r])),
      () => meter,
    );
    const resetLine = (lines: string[]) => lines.filter((l) => l.startsWith('interval,') && l.endsWith(` ${T0 + 40 * Q}`));
    expect(resetLine(first.lines)).toEqual([expect.stringContaining(' wh=120i,')]);

    const late = w.process([entry([], [exchange])], () => meter);
    expect(late.counts).toMatchObject({ meterEvents: 1, exchanges: 1, intervals: 1 });
    expect(resetLine(late.lines)).toEqual([expect.stringContaining(' wh=100i,')]);
    expect(resetLine(late.lines)[0]).toContain(',estimated=false ');
    expect(late.recomputes.map((r) => [r.meterId, r.day])).toEqual([[meter.meterId, '2026-11-02']]);
    expect([...late.dirty]).toEqual([meter.meterId]);
  });

  it('a work order before any read: the meter still goes silent when its reads stop', () => {
    const w = new ShardWork(0, work);
    w.process([entry([], [exchange])], () => meter);
    w.process([entry([read(0, 100)]), entry([read(1, 200)])], () => meter);
    // another meter's reads move the shard watermark on; M-1 has none after quarter 1
    const other = (q: number): Reading => ({ meterId: 'M-2', ts: T0 + q * Q, importWh: q * 10 });
    const out = w.process(
      Array.from({ length: 12 }, (_, q) => entry([other(q)])),
      (id) => ({ ...meter, meterId: id }),
    );
    expect(out.events.filter((e) => e.type === 'silent').map((e) => [e.subject, e.ts])).toEqual([[meter.meterId, T0 + (1 + 4) * Q]]);
  });

  it('a stored work order parses with its registers; one without an install read is malformed', () => {
    const bad = { meterId: meter.meterId, ts: exchange.ts, event: 'meterExchange' };
    const e = parseEntry('1-0', ['e', JSON.stringify([exchange, bad, { meterId: meter.meterId, ts: exchange.ts, event: 'lastGasp' }]), 'rx', '5']);
    expect(e.events).toEqual([exchange, { meterId: meter.meterId, ts: exchange.ts, event: 'lastGasp' }]);
    expect(e.malformed).toEqual([JSON.stringify(bad)]);
  });
});

describe('billing recomputes for late data', () => {
  it('each late batch of a closed day asks for its own recompute, even when the watermark did not move between them', () => {
    const w = new ShardWork(0, work);
    const meterOf = (id: string): MeterRecord => ({ ...meter, meterId: id });
    // The meter's concentrator goes offline after quarter 19; another meter moves the shard watermark two days on.
    const other = (q: number): Reading => ({ meterId: 'M-2', ts: T0 + q * Q, importWh: q * 10 });
    w.process(
      Array.from({ length: 20 }, (_, q) => entry([read(q, 50_000 + q * 100)])),
      meterOf,
    );
    w.process(
      Array.from({ length: 2 * 96 + 1 }, (_, q) => entry([other(q)])),
      meterOf,
    );
    // Its backlog arrives in two batches, after the day closed on this shard.
    const first = w.process([entry(Array.from({ length: 10 }, (_, k) => read(20 + k, 50_000 + (20 + k) * 100)))], meterOf);
    const second = w.process([entry(Array.from({ length: 10 }, (_, k) => read(30 + k, 50_000 + (30 + k) * 100)))], meterOf);
    expect(first.recomputes.map((r) => [r.meterId, r.day])).toEqual([[meter.meterId, '2026-11-02']]);
    expect(second.recomputes.map((r) => [r.meterId, r.day])).toEqual([[meter.meterId, '2026-11-02']]);
    expect(first.recomputes[0]?.entryId).not.toBe(second.recomputes[0]?.entryId);
  });

  it("decides and names the day in the meter's tariff zone: a Los Angeles evening ends 16 h before its UTC day", () => {
    const w = new ShardWork(0, { ...work, dayZone: () => 'America/Los_Angeles' });
    const meterOf = (id: string): MeterRecord => ({ ...meter, meterId: id });
    const other = (q: number): Reading => ({ meterId: 'M-2', ts: T0 + q * Q, importWh: q * 10 });
    // Quarters 0-19 of Monday 00:00-05:00 UTC are Sunday 16:00-21:00 in Los Angeles (PST, UTC-8).
    w.process(
      Array.from({ length: 20 }, (_, q) => entry([read(q, 50_000 + q * 100)])),
      meterOf,
    );
    // Another meter moves the watermark to Monday 10:30 UTC: past Sunday's end in Los Angeles (08:00 UTC), not
    // Monday's end in UTC.
    w.process(
      Array.from({ length: 45 }, (_, q) => entry([other(q)])),
      meterOf,
    );
    const late = w.process([entry(Array.from({ length: 10 }, (_, k) => read(20 + k, 50_000 + (20 + k) * 100)))], meterOf);
    expect(late.recomputes.map((r) => [r.meterId, r.day])).toEqual([[meter.meterId, '2026-11-01']]);
  });
});

describe('a work order delivered twice (an MQTT redelivery)', () => {
  it.each([
    { name: 'both before the reset reading', order: ['x', 'x', 'reads'] },
    { name: 'once before, once after', order: ['x', 'reads', 'x'] },
    { name: 'both after', order: ['reads', 'x', 'x'] },
  ])('$name: the reset interval is booked exactly once', ({ order }) => {
    const w = new ShardWork(0, work);
    const reads = Array.from({ length: 2 * 96 + 1 }, (_, q) => read(q, registerAt(q)));
    const lines: string[] = [];
    for (const step of order) {
      const out =
        step === 'x'
          ? w.process([entry([], [exchange])], () => meter)
          : w.process(
              reads.map((r) => entry([r])),
              () => meter,
            );
      lines.push(...out.lines);
    }
    const reset = lines.filter((l) => l.startsWith('interval,') && l.endsWith(` ${T0 + 40 * Q}`));
    expect(reset.at(-1)).toContain(' wh=100i,');
  });
});
