import { describe, expect, it } from 'vitest';
import type { DetectionConfig } from '../../src/contracts/config-detection.js';
import type { DetectionEvent, IntervalMark } from '../../src/contracts/events.js';
import type { Reading } from '../../src/contracts/reading.js';
import { DAY_MS, HOUR_MS } from '../../src/domain/local-time.js';
import { type MeterState, processRead } from '../../src/domain/meter-state.js';
import { encodeMeterState } from '../../src/domain/meter-state-codec.js';
import { compileSettings } from '../../src/domain/stream-settings.js';
import { testDetectionConfig, testMeter } from '../helpers/detection-settings.js';

/**
 * The collective detectors through processRead on hourly meters with realistic, deterministic noise (±8 % around a
 * weekday/Saturday/Sunday profile): moderate shifts, drops, placeholders, holidays, level shifts, and scale.
 */

const base = testDetectionConfig();
const cfg: DetectionConfig = testDetectionConfig({
  baseline: {
    ...base.baseline,
    slots: 'hourWeekdaySatSun',
    minSlotSamples: 3,
    alphaMin: 0.01,
    memoryWeeks: 4,
    clipK: 3,
    spreadFloorShare: 0.15,
    meterSpreadFloorShare: 0.05,
    minSpreadWhPerHour: 5,
    weekendPoolShare: 0.7,
    levelDays: 4,
  },
  spike: { factor: 3, zScore: 6, minDemandW: 0, minExcessShare: 2, majorZScore: 12 },
  drop: { ratio: 0.5, minExpectedWh: 0 },
  collective: {
    zClip: 4,
    k: 1,
    h: 14,
    minRatio: 1.2,
    maxRatio: 0.7,
    dayDevK: 2.5,
    longRunHours: 24,
    longRunSlack: 0.1,
    holdZ: 0.5,
    holdHours: 3,
    reminderHours: 24,
  },
  stuck: { maxChance: 1e-6, resolutionWh: 1, minRun: 3, minHours: 3 },
  shape: { minDistance: 0.15, k: 4, minTotalRatio: 0.7, maxTotalRatio: 1.4, markShare: 0.4 },
  levelShift: { adoptDays: 14 },
  holidays: { region: 'T', calendars: { T: ['2026-12-08'] } },
});
const s = compileSettings(cfg, 'UTC');
const meter = testMeter({ intervalMinutes: 60, contractKw: 0 });
const T0 = Date.UTC(2026, 10, 2); // Monday 2026-11-02 00:00 UTC
const DAY28 = T0 + 28 * DAY_MS; // Monday 2026-11-30

/** Relative load of a local hour: nights 1, working hours 2, evenings 1.2; Saturday 0.8×, Sunday 0.6×. */
function profile(ts: number): number {
  const d = new Date(ts);
  const h = d.getUTCHours();
  const wd = (d.getUTCDay() + 6) % 7;
  const f = h < 7 ? 1 : h < 19 ? 2 : 1.2;
  return f * (wd === 5 ? 0.8 : wd === 6 ? 0.6 : 1);
}

/** Deterministic noise in [0.92, 1.08]. */
function noise(i: number): number {
  const x = Math.sin(i * 12.9898 + 78.233) * 43758.5453;
  return 0.92 + 0.16 * (x - Math.floor(x));
}

/** Hourly reads of a meter averaging ~`watts` on weekday nights; `factor(ts)` multiplies an hour, `fixed(ts)` replaces it. */
function series(days: number, watts: number, over: { factor?: (ts: number) => number; fixed?: (ts: number) => number | undefined } = {}): Reading[] {
  const out: Reading[] = [];
  let reg = 1_000_000;
  for (let i = 0; i <= days * 24; i++) {
    const ts = T0 + i * HOUR_MS;
    out.push({ meterId: 'M-1', ts, importWh: reg });
    reg += over.fixed?.(ts) ?? Math.round(watts * profile(ts) * noise(i) * (over.factor?.(ts) ?? 1));
  }
  return out;
}

function run(reads: Reading[], settings = s) {
  let st: MeterState | undefined;
  const events: DetectionEvent[] = [];
  const marks: IntervalMark[] = [];
  for (const r of reads) {
    const out = processRead(st, r, meter, settings);
    st = out.state;
    events.push(...out.events);
    marks.push(...out.marks);
  }
  return { st, events, marks };
}

const iso = (ms: number): string => new Date(ms).toISOString().slice(5, 13);
const brief = (evs: DetectionEvent[]) => evs.map((e) => `${e.type} ${e.status} ${iso(e.ts)}`);
const spans = (marks: IntervalMark[]) => marks.map((m) => `${m.type} ${iso(m.start)}`);
const within = (from: number, to: number) => (ts: number) => (ts >= from && ts < to ? 1 : 0);

describe('a normal meter', () => {
  it('six weeks with noise, weekends and a flat week-on-week level: no event, no mark', () => {
    const r = run(series(42, 300));
    expect(r.events).toEqual([]);
    expect(r.marks).toEqual([]);
  });
});

describe('highUsage (CUSUM up)', () => {
  const shift = (watts: number) => series(30, watts, { factor: (ts) => (within(DAY28 + 10 * HOUR_MS, DAY28 + 16 * HOUR_MS)(ts) ? 1.6 : 1) });

  it('a moderate 6 h shift at 1.6× is flagged in its 6th hour and marked from its first', () => {
    const r = run(shift(300));
    expect(brief(r.events)).toEqual(['highUsage firing 11-30T16', 'highUsage clear 11-30T21']);
    expect(spans(r.marks)).toEqual(['10', '11', '12', '13', '14', '15'].map((h) => `highUsage 11-30T${h}`));
    expect(r.events[0]?.reason).toBe('1.6× the usual 3.64 kWh for the last 6.0 h');
    expect(r.events[0]?.severity).toBe('warning');
  });

  it('a single noisy hour at 2× is not', () => {
    const r = run(series(30, 300, { factor: (ts) => (ts === DAY28 + 11 * HOUR_MS ? 2 : 1) }));
    expect(r.events).toEqual([]);
    expect(r.marks).toEqual([]);
  });

  it('scale: a 300 W home and a 500 kW building behave the same', () => {
    const small = run(shift(300));
    const big = run(shift(500_000));
    expect(brief(big.events)).toEqual(brief(small.events));
    expect(spans(big.marks)).toEqual(spans(small.marks));
  });
});

describe('drop (CUSUM down)', () => {
  it('a week at 50 % is flagged from its first hour, reminded daily, marked every hour, and clears after', () => {
    const r = run(series(42, 300, { factor: (ts) => (within(DAY28, DAY28 + 7 * DAY_MS)(ts) ? 0.5 : 1) }));
    expect(brief(r.events)).toEqual([
      'drop firing 11-30T07',
      'drop firing 12-01T07',
      'drop firing 12-02T07',
      'drop firing 12-03T07',
      'drop firing 12-04T07',
      'drop firing 12-05T07',
      'drop firing 12-06T07',
      'drop clear 12-07T04',
    ]);
    expect(r.events[0]?.reason).toBe('import at 50 % of the usual 2.10 kWh for the last 7.0 h: 1.05 kWh');
    const drops = r.marks.filter((m) => m.type === 'drop');
    expect(drops.length).toBe(7 * 24);
    expect(drops[0]?.start).toBe(DAY28);
    expect(drops.at(-1)?.start).toBe(DAY28 + 7 * DAY_MS - HOUR_MS);
  });
});

describe('stuck', () => {
  it('a placeholder of exactly 1000 Wh every hour is stuck, the whole run marked', () => {
    const from = DAY28 + 8 * HOUR_MS;
    const r = run(series(30, 300, { fixed: (ts) => (ts >= from && ts < from + 8 * HOUR_MS ? 1000 : undefined) }));
    expect(brief(r.events)).toEqual(['stuck firing 11-30T12', 'stuck clear 11-30T17']);
    expect(r.events[0]?.reason).toBe('the same 1000 Wh every 60 min for 4.0 h (4 intervals in a row): a stuck or placeholder value');
    expect(spans(r.marks)).toEqual(['08', '09', '10', '11', '12', '13', '14', '15'].map((h) => `stuck 11-30T${h}`));
  });
});

describe('holidays', () => {
  // Tuesday 2026-12-08 at a Sunday level (0.6 × of the weekday) would be a drop on an ordinary Tuesday.
  const holiday = Date.UTC(2026, 11, 8);
  const reads = series(40, 300, { factor: (ts) => (within(holiday, holiday + DAY_MS)(ts) ? 0.45 : 1) });

  it('neither fire nor teach', () => {
    const r = run(reads);
    expect(r.events).toEqual([]);
    expect(r.marks).toEqual([]);
  });

  it('the same day without the calendar is a drop', () => {
    const plain = compileSettings({ ...cfg, holidays: { region: 'T', calendars: {} } }, 'UTC');
    expect(brief(run(reads, plain).events).slice(0, 1)).toEqual(['drop firing 12-08T06']);
  });
});

describe('holidays: what the meter does on them is learnt', () => {
  const dec1 = Date.UTC(2026, 11, 1);
  const dec8 = Date.UTC(2026, 11, 8);
  const two = compileSettings({ ...cfg, holidays: { region: 'T', calendars: { T: ['2026-12-01', '2026-12-08'] } } }, 'UTC');
  /** Both Tuesdays are holidays: at `first` and `second` × the weekday level (a Sunday is 0.6 ×). */
  const reads = (first: number, second: number) =>
    series(40, 300, { factor: (ts) => (within(dec1, dec1 + DAY_MS)(ts) ? first : within(dec8, dec8 + DAY_MS)(ts) ? second : 1) });

  it('a building open on holidays as on any weekday: nothing fires', () => {
    expect(run(reads(1, 1), two).events).toEqual([]);
  });

  it('a building closed on holidays (as on a Sunday): nothing fires', () => {
    expect(run(reads(0.6, 0.6), two).events).toEqual([]);
  });

  it('closed on the first holiday, running at the weekday level through the second: highUsage', () => {
    expect(brief(run(reads(0.6, 1), two).events)).toEqual(['highUsage firing 12-08T09', 'highUsage clear 12-09T05']);
  });
});

describe('level shift', () => {
  it('a shift that persists 14 days is adopted once, with a levelShift event that says so', () => {
    const r = run(series(60, 300, { factor: (ts) => (ts >= DAY28 ? 1.4 : 1) }));
    const types = r.events.map((e) => `${e.type} ${e.status}`);
    expect(types.filter((t) => t === 'levelShift firing')).toHaveLength(1);
    const shift = r.events.find((e) => e.type === 'levelShift');
    expect(shift?.ts).toBe(DAY28 + 14 * DAY_MS);
    expect(shift?.severity).toBe('info');
    expect(shift?.reason).toBe('consumption has stayed at 1.37× the former level for 14 days: the baseline now expects the new level');
    // after the adoption the new level is normal: nothing more fires
    expect(r.events.filter((e) => e.ts > (shift?.ts ?? 0) && e.status === 'firing')).toEqual([]);
    expect(brief(r.events.filter((e) => e.type === 'highUsage' && e.status === 'clear'))).toEqual(['highUsage clear 12-14T00']);
  });
});

describe('state budget', () => {
  it('stays under 2 KiB per meter', () => {
    const r = run(series(30, 300));
    const enc = encodeMeterState(r.st ?? expect.fail('no state'));
    expect(enc.length).toBeLessThanOrEqual(2048);
  });
});

describe('shape', () => {
  it('a day whose profile moved by 3 hours at a normal total fires at its end and marks the hours that moved', () => {
    // Monday 30 Nov runs 3 hours early: the working hours are 04:00–16:00 instead of 07:00–19:00
    const early = (ts: number): number | undefined => {
      if (!within(DAY28, DAY28 + DAY_MS)(ts)) return undefined;
      const h = new Date(ts).getUTCHours();
      const f = h < 4 ? 1 : h < 16 ? 2 : 1.2;
      return Math.round(300 * f * noise((ts - T0) / HOUR_MS));
    };
    const r = run(series(31, 300, { fixed: early }));
    expect(brief(r.events)).toEqual(['shape firing 12-01T00', 'shape clear 12-02T00']);
    expect(spans(r.marks)).toEqual(['04', '05', '06', '16', '17', '18'].map((h) => `shape 11-30T${h}`));
    expect(r.events[0]?.reason).toMatch(/^the day's profile is off by \d+ % of its energy at a normal total \(\d+\.\d\d kWh vs \d+\.\d\d kWh expected\)$/);
  });
});
