import { describe, expect, it } from 'vitest';
import type { DetectionEvent } from '../../src/contracts/events.js';
import { evaluateInterval, evaluateVoltage, initialDetectors, type DetectorState, type IntervalFacts } from '../../src/domain/detectors.js';
import { HOUR_MS, MINUTE_MS } from '../../src/domain/local-time.js';
import { testDetectionConfig, testMeter } from '../helpers/detection-settings.js';

const cfg = testDetectionConfig();
const meter = testMeter();
const T0 = Date.UTC(2026, 10, 2); // Monday 00:00 UTC
const Q = 15 * MINUTE_MS;

function facts(over: Partial<IntervalFacts> & { at?: number }): IntervalFacts {
  const start = over.start ?? T0 + (over.at ?? 0) * Q;
  const end = over.end ?? start + Q;
  const wh = over.wh ?? 100;
  return {
    start, end, wh, exportWh: 0, estimated: false, demandW: (wh * HOUR_MS) / (end - start), expectedWh: 100, spreadWh: 12.5, warm: true, slotReady: true,
    ...over,
  };
}

/** Runs a series of intervals; returns every event as "type status value" plus the final state. */
function run(series: IntervalFacts[], m = meter, det: DetectorState = initialDetectors()) {
  const events: DetectionEvent[] = [];
  const teach: boolean[] = [];
  for (const iv of series) {
    const r = evaluateInterval(det, iv, m, cfg);
    det = r.det;
    events.push(...r.events);
    teach.push(r.teach);
  }
  return { det, events, teach, brief: events.map((e) => `${e.type} ${e.status} ${e.severity} ${e.value}`) };
}

describe('spike', () => {
  it.each([
    { name: 'far above with demand over the floor: major', iv: facts({ wh: 600 }), out: ['spike firing major 600'] },
    { name: 'z between 6 and 12: warning', iv: facts({ wh: 800, spreadWh: 60 }), out: ['spike firing warning 800'] },
    { name: 'under the absolute demand floor', iv: facts({ wh: 400 }), out: [] },
    { name: 'under factor × expected', iv: facts({ wh: 600, expectedWh: 250 }), out: [] },
    { name: 'within zScore spreads', iv: facts({ wh: 600, spreadWh: 100 }), out: [] },
    { name: 'during warm-up', iv: facts({ wh: 600, warm: false }), out: [] },
    { name: 'in a slot that has not learned enough yet', iv: facts({ wh: 600, slotReady: false }), out: [] },
    { name: 'on an estimated interval', iv: facts({ wh: 600, estimated: true }), out: [] },
  ])('$name', ({ iv, out }) => {
    expect(run([iv]).brief).toEqual(out);
  });

  it('fires per anomalous interval, clears once, and spiked intervals do not teach', () => {
    const r = run([facts({ at: 0, wh: 600 }), facts({ at: 1, wh: 700 }), facts({ at: 2, wh: 90 }), facts({ at: 3, wh: 95 })]);
    expect(r.brief).toEqual(['spike firing major 600', 'spike firing major 700', 'spike clear info 90']);
    expect(r.teach).toEqual([false, false, true, true]);
    expect(r.events[0]).toMatchObject({
      id: `spike:M-1:${T0 + Q}:firing`, subjectKind: 'meter', subject: 'M-1', ts: T0 + Q,
      meterId: 'M-1', customerId: 'C-1', customerClass: 'residential', transformerId: 'T-1', feederId: 'F-1',
      expected: 100, score: 40, reason: '0.60 kWh in 15 min, 6.0x the usual 0.10 kWh',
    });
  });
});

describe('drop (sliding window of decayed sums)', () => {
  const H = HOUR_MS;
  /** Hourly intervals, `hours` of them at `wh` each against 100 Wh expected, from `fromHour`. */
  function hours(fromHour: number, n: number, wh: number, over: Partial<IntervalFacts> = {}): IntervalFacts[] {
    return Array.from({ length: n }, (_, h) => {
      const start = T0 + (fromHour + h) * H;
      return facts({ start, end: start + H, wh, expectedWh: 100, spreadWh: 50, demandW: wh, ...over });
    });
  }
  const at = (r: ReturnType<typeof run>) => r.events.filter((e) => e.type === 'drop').map((e) => `${e.status} ${(e.ts - T0) / H}h`);

  // Window 12 h: after a step to 25% of the baseline the window's share is about 0.25 + 0.75·e^(−n/12), under 0.5 from
  // n > 12·ln 3 ≈ 13.2 h (the 14th hour); at 20%, from n > 12·ln(8/3) ≈ 11.8 h (with only 48 h of history
  // before it, a little earlier: the 47th quarter hour).
  it('fires ~one window after the drop starts, repeats daily, clears with hysteresis', () => {
    const r = run([...hours(0, 48, 100), ...hours(48, 48, 25), ...hours(96, 24, 100)]);
    expect(at(r)).toEqual(['firing 62h', 'firing 86h', 'clear 107h']);
    const first = r.events.find((e) => e.type === 'drop');
    expect(first?.reason).toBe('import at 48% of baseline over the last ~12 h (below 50%): 0.60 kWh vs 1.24 kWh expected');
    // from the firing until the clear nothing teaches the baseline (theft must not become the new normal)
    expect(r.teach.slice(61, 106).every((t) => !t)).toBe(true);
    expect(r.teach[106]).toBe(true);
  });

  it('is judged at every interval: the delay does not depend on the hour the drop starts', () => {
    const quarters = (fromQ: number, n: number, wh: number): IntervalFacts[] =>
      Array.from({ length: n }, (_, k) => facts({ at: fromQ + k, wh, expectedWh: 25, spreadWh: 12.5, demandW: wh * 4 }));
    for (const startQ of [48 * 4, 48 * 4 + 42]) {
      const r = run([...quarters(0, startQ, 25), ...quarters(startQ, 96, 5)]);
      const fired = r.events.find((e) => e.type === 'drop');
      expect(((fired?.ts ?? 0) - (T0 + startQ * Q)) / Q).toBe(47);
    }
  });

  it('between ratio and clearRatio a firing drop neither clears nor repeats', () => {
    const r = run([...hours(0, 48, 100), ...hours(48, 24, 25), ...hours(72, 72, 60)]);
    expect(at(r)).toEqual(['firing 62h']);
  });

  it.each([
    { name: 'half a day at 30%', series: [...hours(0, 48, 100), ...hours(48, 12, 30), ...hours(60, 24, 100)] },
    { name: 'a steady 60%', series: [...hours(0, 48, 100), ...hours(48, 96, 60)] },
    { name: 'no import at all (outage or frozen register: not a drop)', series: [...hours(0, 48, 100), ...hours(48, 48, 0)] },
    { name: 'estimated intervals (gap fill)', series: [...hours(0, 48, 100), ...hours(48, 48, 10, { estimated: true })] },
    { name: 'during warm-up', series: [...hours(0, 48, 100, { warm: false }), ...hours(48, 48, 10, { warm: false })] },
    { name: 'a window expecting under 1 kWh', series: [...hours(0, 48, 60), ...hours(48, 48, 5)].map((iv) => ({ ...iv, expectedWh: 60 })) },
  ])('no drop: $name', ({ series }) => {
    expect(at(run(series))).toEqual([]);
  });
});

describe('flatline', () => {
  const H = HOUR_MS;
  const hourly = (wh: number[], expectedWh: number): IntervalFacts[] =>
    wh.map((w, i) => facts({ start: T0 + i * H, end: T0 + (i + 1) * H, wh: w, expectedWh, spreadWh: 50, demandW: w }));

  it('fires once the register has been frozen 6 h with ≥ 1.5 kWh expected, then clears', () => {
    const r = run(hourly([50, 0, 0, 0, 0, 0, 0, 0, 40], 300));
    expect(r.events.map((e) => `${e.status} ${(e.ts - T0) / H}h ${e.expected} ${e.score}`)).toEqual([
      'firing 7h 1800 6', 'firing 8h 2100 7', 'clear 9h 300 0',
    ]);
    expect(r.events[0]?.reason).toBe('register frozen for 6.0 h while 1.80 kWh was expected');
  });

  it('waits for the expected energy when the baseline is low', () => {
    const r = run(hourly([0, 0, 0, 0, 0, 0, 0, 0], 200));
    expect(r.events.map((e) => (e.ts - T0) / H)).toEqual([8]);
  });

  it('does not fire during warm-up', () => {
    expect(run(hourly([0, 0, 0, 0, 0, 0, 0, 0], 300).map((iv) => ({ ...iv, warm: false }))).events).toEqual([]);
  });

  it('a PV meter exporting while it imports nothing is not frozen', () => {
    const noon = hourly([0, 0, 0, 0, 0, 0, 0, 0], 300).map((iv) => ({ ...iv, exportWh: 900 }));
    expect(run(noon, testMeter({ hasPv: true })).events).toEqual([]);
  });

  it('both registers frozen fires on a PV meter too, and export moving again clears it', () => {
    const series = hourly([0, 0, 0, 0, 0, 0, 0, 0], 300);
    const last = series[7];
    if (last !== undefined) series[7] = { ...last, exportWh: 400 };
    const r = run(series, testMeter({ hasPv: true }));
    expect(r.events.map((e) => `${e.status} ${(e.ts - T0) / H}h`)).toEqual(['firing 6h', 'firing 7h', 'clear 8h']);
    expect(r.events[2]?.reason).toBe('register moving again: 0.00 kWh imported, 0.40 kWh exported in 60 min');
  });
});

describe('reverseFlow', () => {
  it.each([
    { name: 'export on a meter without PV', m: meter, exportWh: [10, 25, 0], out: ['reverseFlow firing major 10', 'reverseFlow firing major 25', 'reverseFlow clear info 0'] },
    { name: 'below the threshold', m: meter, exportWh: [9, 0], out: [] },
    { name: 'a PV meter may export', m: testMeter({ hasPv: true }), exportWh: [500, 800], out: [] },
  ])('$name', ({ m, exportWh, out }) => {
    expect(run(exportWh.map((x, i) => facts({ at: i, exportWh: x })), m).brief).toEqual(out);
  });
});

describe('customerPeak', () => {
  // contract 10 kW: 2500 Wh in 15 min is exactly 10 kW
  it.each([
    { name: 'over the contract: warning', wh: [2501], out: ['customerPeak firing warning 10004'] },
    { name: '20% over: major', wh: [3000], out: ['customerPeak firing major 12000'] },
    { name: 'exactly at the contract', wh: [2500], out: [] },
    { name: 'fires then clears', wh: [2600, 2000], out: ['customerPeak firing warning 10400', 'customerPeak clear info 8000'] },
  ])('$name', ({ wh, out }) => {
    const series = wh.map((w, i) => facts({ at: i, wh: w, expectedWh: 2000, spreadWh: 500 }));
    expect(run(series).brief).toEqual(out);
  });

  it('ignores estimated intervals and meters without a contract', () => {
    expect(run([facts({ wh: 3000, estimated: true, expectedWh: 2000 })]).events).toEqual([]);
    expect(run([facts({ wh: 3000, expectedWh: 2000 })], testMeter({ contractKw: 0 })).events).toEqual([]);
  });
});

describe('voltage', () => {
  it('fires from the third consecutive out-of-band read and clears on the first good one', () => {
    let det = initialDetectors();
    const out: string[] = [];
    [230, 250, 254, 200, 262, 195, 231, 260].forEach((v, i) => {
      const r = evaluateVoltage(det, T0 + i * Q, v, meter, cfg);
      det = r.det;
      out.push(...r.events.map((e) => `${i} ${e.status} ${e.severity} ${e.value}`));
    });
    // 250 V is 8.7% off (in band); 254, 200, 262 are out; 195 V is 15.2% off: major
    expect(out).toEqual(['4 firing warning 262', '5 firing major 195', '6 clear info 231']);
    expect(det.vRun).toBe(1);
  });
});

describe('flatline needs a learned slot', () => {
  it('does not fire while the slot is new', () => {
    const H = HOUR_MS;
    const series = Array.from({ length: 8 }, (_, i) => facts({ start: T0 + i * H, end: T0 + (i + 1) * H, wh: 0, expectedWh: 300, spreadWh: 50, slotReady: false }));
    expect(run(series).events).toEqual([]);
  });
});
