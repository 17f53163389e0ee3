import { describe, expect, it } from 'vitest';
import type { Reading } from '../../src/contracts/reading.js';
import type { StreamEntry } from '../../src/stream/entries.js';
import { type MeterRecord, ShardWork } from '../../src/stream/shard-work.js';
import { testMeter, testWorkSettings } from '../helpers/detection-settings.js';

const H = 3_600_000;
const T0 = Date.UTC(2026, 10, 2); // Monday 2026-11-02 00:00 UTC
const meter: MeterRecord = { ...testMeter({ intervalMinutes: 60, contractKw: 0 }), tariff: 'default' };
const work = testWorkSettings(H);

let seq = 0;
const entry = (r: Reading): StreamEntry => ({ id: `${r.ts}-${seq++}`, readings: [r], events: [], rx: r.ts, malformed: [] });

describe('the stream shard writes every anomalous interval as fields on its interval point', () => {
  it('a drop marked back to its start: marks in the output, one interval line of fields per mark, one event per episode step', () => {
    const w = new ShardWork(0, work);
    // 22 days at ~400 Wh an hour (the weekday prior; +0..2 Wh so nothing repeats), then 8 hours at ~180
    const dropFrom = 22 * 24;
    let reg = 1_000_000;
    const reads: Reading[] = [];
    for (let h = 0; h <= dropFrom + 8; h++) {
      reads.push({ meterId: meter.meterId, ts: T0 + h * H, importWh: reg });
      reg += (h >= dropFrom ? 180 : 400) + (h % 3);
    }
    const before = w.process(reads.slice(0, dropFrom + 1).map(entry), () => meter);
    expect(before.marks).toEqual([]);
    const out = w.process(reads.slice(dropFrom + 1).map(entry), () => meter);
    // z clips at −4: 3 spread-hours an hour, past h = 14 in the 5th hour; marked from the first
    expect(out.marks.map((m) => [(m.start - T0) / H - dropFrom, m.type, m.wh])).toEqual([
      [0, 'drop', 180],
      [1, 'drop', 181],
      [2, 'drop', 182],
      [3, 'drop', 180],
      [4, 'drop', 181],
      [5, 'drop', 182],
      [6, 'drop', 180],
      [7, 'drop', 181],
    ]);
    const start = T0 + dropFrom * H;
    const fields = out.lines.filter((l) => l.includes(' anomaly='));
    expect(fields).toHaveLength(8);
    // a mark made back carries what its slot expects when it is marked (the slot learnt that first hour, clipped, before
    // the run fired: 400 → 391.176)
    expect(fields[0]).toBe(
      `interval,band=flat,class=residential,feeder=F-1,meter=M-1,transformer=T-1 anomaly="drop",anomaly_score=14,expected_wh=391.176 ${start}`,
    );
    expect(out.events.filter((e) => e.type === 'drop').map((e) => [(e.ts - T0) / H - dropFrom, e.status])).toEqual([[5, 'firing']]);
  });
});
