import { describe, expect, it } from 'vitest';
import type { DetectionEvent } from '../../src/contracts/events.js';
import { evaluateInterval } from '../../src/domain/detectors.js';
import type { IntervalFacts } from '../../src/domain/detectors-evaluation.js';
import { evaluateVoltage } from '../../src/domain/detectors-reads.js';
import { type DetectorState, initialDetectors } from '../../src/domain/detectors-state.js';
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
    start,
    end,
    wh,
    exportWh: 0,
    estimated: false,
    demandW: (wh * HOUR_MS) / (end - start),
    expectedWh: 100,
    spreadWh: 12.5,
    warm: true,
    slotReady: true,
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
      id: `spike:M-1:${T0 + Q}:firing`,
      subjectKind: 'meter',
      subject: 'M-1',
      ts: T0 + Q,
      meterId: 'M-1',
      customerId: 'C-1',
      customerClass: 'residential',
      transformerId: 'T-1',
      feederId: 'F-1',
      expected: 100,
      score: 40,
      reason: '0.60 kWh in 15 min, 6.0x the usual 0.10 kWh',
    });
  });
});

describe('spike, scale-free (minExcessShare instead of an absolute demand floor)', () => {
  const free = { ...cfg, spike: { factor: 3, zScore: 6, minDemandW: 0, minExcessShare: 2, majorZScore: 12 } };
  // A quarter hour of a meter whose mean is `meanWh` a quarter hour, in a quiet slot expecting a fifth of it.
  const quiet = (meanWh: number, wh: number) => facts({ wh, expectedWh: meanWh / 5, spreadWh: meanWh / 50, meterWh: meanWh });
  it.each([
    { name: 'a 300 W home', meanWh: 75 },
    { name: 'a 500 kW building', meanWh: 125_000 },
  ])('$name: 2.4× the mean fires (excess 2.2× the mean), 2.1× the mean (10.5× the quiet slot, excess 1.9×) does not', ({ meanWh }) => {
    const m = testMeter({ contractKw: 0 });
    const fire = runFree([quiet(meanWh, 2.4 * meanWh)], m, initialDetectors()).events.map((e) => `${e.type} ${e.status}`);
    const none = runFree([quiet(meanWh, 2.1 * meanWh)], m, initialDetectors()).events;
    expect(fire).toEqual(['spike firing']);
    expect(none).toEqual([]);
  });

  function runFree(series: IntervalFacts[], m: typeof meter, det: DetectorState) {
    const events: DetectionEvent[] = [];
    for (const iv of series) events.push(...evaluateInterval(det, iv, m, free).events);
    return { events };
  }
});

describe('highUsage and drop (two-sided CUSUM of standardised residuals, the default collective settings)', () => {
  const H = HOUR_MS;
  /**
   * Hourly intervals, `n` of them at about `wh` each (+0, +1 or +2 Wh: a real meter never repeats itself for long,
   * that would be `stuck`) against 400 Wh expected (spread 50 Wh), from `fromHour`.
   */
  function hours(fromHour: number, n: number, wh: number, over: Partial<IntervalFacts> = {}): IntervalFacts[] {
    return Array.from({ length: n }, (_, h) => {
      const start = T0 + (fromHour + h) * H;
      const x = wh === 0 ? 0 : wh + ((fromHour + h) % 3);
      return facts({ start, end: start + H, wh: x, expectedWh: 400, spreadWh: 50, demandW: x, ...over });
    });
  }
  /** Runs the series; events as "type status hour severity", marks as "type hour". */
  function judge(series: IntervalFacts[]) {
    let det = initialDetectors();
    const events: string[] = [];
    const marks: string[] = [];
    const teach: boolean[] = [];
    for (const iv of series) {
      const r = evaluateInterval(det, iv, meter, cfg);
      det = r.det;
      events.push(...r.events.map((e) => `${e.type} ${e.status} ${(e.ts - T0) / H}h ${e.severity}`));
      marks.push(...r.marks.map((m) => `${m.type} ${(m.start - T0) / H}`));
      teach.push(r.teach);
    }
    return { events, marks, teach, det };
  }
  const range = (type: string, from: number, n: number) => Array.from({ length: n }, (_, i) => `${type} ${from + i}`);

  // z = (180 − 400) / 50 = −4.4, clipped to −4: each hour adds 4 − k = 3 spread-hours; h = 14 is passed in the 5th hour.
  it('a drop to 45 % fires in its 5th hour, marks back to its first, reminds daily, and clears once z recovers', () => {
    const r = judge([...hours(0, 48, 400), ...hours(48, 30, 180), ...hours(78, 12, 400)]);
    expect(r.events).toEqual(['drop firing 53h major', 'drop firing 77h major', 'drop clear 85h info']);
    expect(r.marks).toEqual(range('drop', 48, 30));
    // from the firing on nothing teaches; the hours marked back are kept out by processRead (their marks), and while
    // the episode fires mayTeach refuses every interval since its start
    expect(r.teach.slice(52, 78).every((t) => !t)).toBe(true);
    expect(r.det.drop).toBe(false);
    expect(r.teach[84]).toBe(true);
  });

  it('the reason says how far below the usual and for how long', () => {
    let det = initialDetectors();
    const reasons: string[] = [];
    for (const iv of [...hours(0, 48, 400), ...hours(48, 5, 200)]) {
      const r = evaluateInterval(det, iv, meter, cfg);
      det = r.det;
      reasons.push(...r.events.map((e) => e.reason));
    }
    expect(reasons).toEqual(['import at 50 % of the usual 2.00 kWh for the last 5.0 h: 1.00 kWh']);
  });

  it('highUsage mirrors it: 1.5× fires in the 5th hour, marked from the first', () => {
    const r = judge([...hours(0, 48, 400), ...hours(48, 6, 600), ...hours(54, 12, 400)]);
    expect(r.events).toEqual(['highUsage firing 53h warning', 'highUsage clear 61h info']);
    expect(r.marks).toEqual(range('highUsage', 48, 6));
  });

  it.each([
    { name: 'one hour at 50 %', series: [...hours(0, 48, 400), ...hours(48, 1, 200), ...hours(49, 24, 400)] },
    { name: 'one hour at 2×', series: [...hours(0, 48, 400), ...hours(48, 1, 800), ...hours(49, 24, 400)] },
    { name: 'a steady 90 % (within k spreads)', series: [...hours(0, 48, 400), ...hours(48, 96, 360)] },
    { name: "no import at all (outage or frozen register: flatline's business)", series: [...hours(0, 48, 400), ...hours(48, 48, 0)] },
    { name: 'estimated intervals (gap fill)', series: [...hours(0, 48, 400), ...hours(48, 48, 100, { estimated: true })] },
    { name: 'during warm-up', series: [...hours(0, 48, 400, { warm: false }), ...hours(48, 48, 100, { warm: false })] },
    { name: 'a holiday', series: [...hours(0, 48, 400), ...hours(48, 24, 100, { holiday: true })] },
    { name: 'a meter exporting (its import follows the sun)', series: [...hours(0, 48, 400), ...hours(48, 24, 100, { exportWh: 300 })] },
  ])('no episode: $name', ({ series }) => {
    const r = judge(series);
    expect(r.events.filter((e) => e.startsWith('drop') || e.startsWith('highUsage'))).toEqual([]);
    expect(r.marks).toEqual(
      series.some((iv) => iv.wh === 0)
        ? ['flatline 48', 'flatline 49', 'flatline 50', 'flatline 51', 'flatline 52', 'flatline 53'].concat(range('flatline', 54, 42))
        : [],
    );
  });
});

describe('flatline', () => {
  const H = HOUR_MS;
  const hourly = (wh: number[], expectedWh: number): IntervalFacts[] =>
    wh.map((w, i) => facts({ start: T0 + i * H, end: T0 + (i + 1) * H, wh: w, expectedWh, spreadWh: 50, demandW: w }));

  it('fires once the register has been frozen 6 h with ≥ 1.5 kWh expected, then clears', () => {
    const r = run(hourly([50, 0, 0, 0, 0, 0, 0, 0, 40], 300));
    expect(r.events.map((e) => `${e.status} ${(e.ts - T0) / H}h ${e.expected} ${e.score}`)).toEqual(['firing 7h 1800 6', 'firing 8h 2100 7', 'clear 9h 300 0']);
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
    {
      name: 'export on a meter without PV',
      m: meter,
      exportWh: [10, 25, 0],
      out: ['reverseFlow firing major 10', 'reverseFlow firing major 25', 'reverseFlow clear info 0'],
    },
    { name: 'below the threshold', m: meter, exportWh: [9, 0], out: [] },
    { name: 'a PV meter may export', m: testMeter({ hasPv: true }), exportWh: [500, 800], out: [] },
  ])('$name', ({ m, exportWh, out }) => {
    expect(
      run(
        exportWh.map((x, i) => facts({ at: i, exportWh: x })),
        m,
      ).brief,
    ).toEqual(out);
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
    const series = Array.from({ length: 8 }, (_, i) =>
      facts({ start: T0 + i * H, end: T0 + (i + 1) * H, wh: 0, expectedWh: 300, spreadWh: 50, slotReady: false }),
    );
    expect(run(series).events).toEqual([]);
  });
});
