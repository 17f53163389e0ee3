import { Compile } from 'typebox/compile';
import { describe, expect, it } from 'vitest';
import { CBL_DEFAULTS, type CblConfig, CblConfig as CblConfigSchema } from '../../src/contracts/config-dr.js';
import { type CblInput, type CblInterval, type CblResult, checkCblConfig, settleEvent, settleParticipant, settlementTotals } from '../../src/domain/cbl.js';
import { dayWindow, daysBetween, localDay, localParts } from '../../src/domain/local-time.js';
import { Rng } from '../../simulators/prng.js';

const ZONE = 'Europe/Madrid';
const H = 3_600_000;
const M15 = 15 * 60_000;
/** Jueves Santo (Comunidad de Madrid) and Viernes Santo 2026. */
const HOLIDAYS = ['2026-04-02', '2026-04-03'];
/** Europe/Madrid moves to CEST on Sunday 2026-03-29: history before it is CET. */
const FIRST_DAY = '2026-03-02';
const END_DAY = '2026-04-12';
/** Wednesday 2026-04-08, 17:00–19:00 CEST. */
const EVENT = { startMs: Date.parse('2026-04-08T17:00:00+02:00'), endMs: Date.parse('2026-04-08T19:00:00+02:00') };
/** Saturday 2026-04-11, 17:00–19:00 CEST. */
const WEEKEND_EVENT = { startMs: Date.parse('2026-04-11T17:00:00+02:00'), endMs: Date.parse('2026-04-11T19:00:00+02:00') };
/** Monday 2026-04-06 was an earlier event: the participants cut then too. */
const PAST_EVENT = { startMs: Date.parse('2026-04-06T17:00:00+02:00'), endMs: Date.parse('2026-04-06T19:00:00+02:00') };

const cfg = (over: Partial<CblConfig> = {}, adjustment: Partial<CblConfig['adjustment']> = {}): CblConfig => ({
  ...CBL_DEFAULTS,
  ...over,
  adjustment: { ...CBL_DEFAULTS.adjustment, ...adjustment },
});

// Load, W, at each local hour: morning and evening peaks on weekdays, a later and flatter day at weekends.
const WEEKDAY_W = [400, 380, 370, 360, 360, 380, 600, 1100, 1200, 800, 650, 650, 700, 700, 680, 700, 900, 1800, 2100, 2000, 1700, 1300, 900, 600];
const WEEKEND_W = [450, 420, 400, 380, 380, 390, 420, 550, 800, 1000, 1100, 1100, 1150, 1100, 1000, 950, 1000, 1500, 1800, 1800, 1600, 1300, 950, 650];

/** Load, W, at local hour `h` (fractional), linear between the hourly points. */
function profileW(h: number, weekend: boolean): number {
  const table = weekend ? WEEKEND_W : WEEKDAY_W;
  const i = Math.floor(h);
  const a = table[i % 24] ?? 0;
  const b = table[(i + 1) % 24] ?? 0;
  return a + (b - a) * (h - i);
}

interface Participant {
  /** What it would have used without any event. */
  counterfactual: CblInterval[];
  /** What the meter measured. */
  measured: CblInterval[];
}

interface ParticipantSpec {
  seed: number;
  /** Share cut in this event's window (0: does not respond). */
  cut?: number;
  /** The event day's counterfactual load, W, from the ordinary one (weather: a hotter day). */
  eventDay?: (w: number) => number;
  event?: { startMs: number; endMs: number };
  firstDay?: string;
  /** Standard deviation of the day-level factor (weather, occupancy) and of each interval's factor. */
  noise?: { day: number; interval: number };
}

/** A commercial site's aggregate load: steady from day to day (1 %), a little ragged per quarter hour (2.5 %). */
const SITE_NOISE = { day: 0.01, interval: 0.025 };
/** A single household is noisier: 2 % from day to day at the same hours, 4 % per quarter hour. */
const HOUSEHOLD_NOISE = { day: 0.02, interval: 0.04 };

/**
 * 15-min history in Europe/Madrid from `firstDay` to 2026-04-11: the profile above, a day-level factor and an interval
 * factor (`noise`, default SITE_NOISE) from a seeded generator, integer Wh like the billing store's. On the past event day the
 * participant cut 50 % in the window; on the event day it cuts `cut`.
 */
function participant(spec: ParticipantSpec): Participant {
  // Generated once per spec: the tables below settle the same participants under several methods and modes.
  const key = spec.eventDay === undefined ? JSON.stringify(spec) : undefined;
  const hit = key === undefined ? undefined : generated.get(key);
  if (hit !== undefined) return hit;
  const made = generate(spec);
  if (key !== undefined) generated.set(key, made);
  return made;
}

const generated = new Map<string, Participant>();

function generate(spec: ParticipantSpec): Participant {
  const rng = new Rng(spec.seed, 'cbl-test');
  const event = spec.event ?? EVENT;
  const noise = spec.noise ?? SITE_NOISE;
  const eventDay = localParts(ZONE, event.startMs).dayNumber;
  const counterfactual: CblInterval[] = [];
  const measured: CblInterval[] = [];
  // One pass over the quarter hours (23 h and 25 h days included); a new local day draws a new day factor.
  let day = -1;
  let dayFactor = 1;
  let holiday = false;
  const end = dayWindow(ZONE, END_DAY).startMs;
  for (let t = dayWindow(ZONE, spec.firstDay ?? FIRST_DAY).startMs; t < end; t += M15) {
    const p = localParts(ZONE, t);
    if (p.dayNumber !== day) {
      day = p.dayNumber;
      dayFactor = 1 + noise.day * rng.normal();
      holiday = HOLIDAYS.includes(localDay(ZONE, t));
    }
    let load = profileW(p.msOfDay / H + 0.125, p.weekday >= 5 || holiday) * dayFactor * (1 + noise.interval * rng.normal());
    if (day === eventDay && spec.eventDay !== undefined) load = spec.eventDay(load);
    const wh = Math.round(load / 4);
    let cut = 0;
    if (t >= PAST_EVENT.startMs && t < PAST_EVENT.endMs) cut = 0.5;
    if (t >= event.startMs && t < event.endMs) cut = spec.cut ?? 0;
    counterfactual.push({ start: t, wh, estimated: false });
    measured.push({ start: t, wh: Math.round(wh * (1 - cut)), estimated: false });
  }
  return { counterfactual, measured };
}

function input(p: Participant, over: Partial<CblInput> = {}): CblInput {
  return { intervals: p.measured, intervalMs: M15, event: EVENT, timezone: ZONE, holidays: HOLIDAYS, pastEventDays: ['2026-04-06'], ...over };
}

/** What the participant would have used minus what it used, over the event window. */
function trueCut(p: Participant, event = EVENT): number {
  let cut = 0;
  for (let i = 0; i < p.measured.length; i++) {
    const m = p.measured[i];
    const c = p.counterfactual[i];
    if (m !== undefined && c !== undefined && m.start >= event.startMs && m.start < event.endMs) cut += c.wh - m.wh;
  }
  return cut;
}

function numbersIn(v: unknown): number[] {
  if (typeof v === 'number') return [v];
  if (Array.isArray(v)) return v.flatMap(numbersIn);
  if (v !== null && typeof v === 'object') return Object.values(v).flatMap(numbersIn);
  return [];
}

const METHODS: [string, Partial<CblConfig>][] = [
  ['High 4 of 5', {}],
  ['High 5 of 10', { weekday: { x: 5, y: 10 } }],
  ['10 in 10', { weekday: { x: 10, y: 10 } }],
];
const MODES = ['none', 'additive', 'multiplicative'] as const;
const GRID = METHODS.flatMap(([name, over]) => MODES.map((mode) => [`${name}, ${mode}`, over, mode] as const));

describe('a participant that cuts 40 % settles within 10 % of its true cut', () => {
  it.each(GRID)('%s', (_name, over, mode) => {
    for (const seed of [1, 2, 3]) {
      const p = participant({ seed, cut: 0.4 });
      const truth = trueCut(p);
      const r = settleParticipant(input(p), cfg(over, { mode }));
      expect(r.quality).toBe('ok');
      expect(truth).toBeGreaterThan(1000);
      expect(Math.abs(r.reductionWh - truth)).toBeLessThanOrEqual(0.1 * truth);
      expect(r.performanceBasis).toBe('baseline');
      expect(r.performance).toBeCloseTo(r.reductionWh / r.baselineWh, 12);
    }
  });
});

describe('over a population of noisier households (default High 4 of 5)', () => {
  // A participant's error is mostly its event day's own deviation (sd 2 % of load here), which no baseline can know:
  // within 10 % of the cut holds for most households, not all; High X of Y also leans high (it keeps the busiest days).
  const households = Array.from({ length: 40 }, (_, i) => participant({ seed: 101 + i, cut: 0.4, noise: HOUSEHOLD_NOISE }));

  it.each(MODES)('%s: at least 80 % settle within 10 % of their cut, and the mean error is within ±5 %', (mode) => {
    const errors = households.map((p) => {
      const truth = trueCut(p);
      return (settleParticipant(input(p), cfg({}, { mode })).reductionWh - truth) / truth;
    });
    const within = errors.filter((e) => Math.abs(e) <= 0.1).length / errors.length;
    const bias = errors.reduce((a, b) => a + b, 0) / errors.length;
    expect(within).toBeGreaterThanOrEqual(0.8);
    expect(Math.abs(bias)).toBeLessThanOrEqual(0.05);
  });
});

describe('a participant that does not cut settles near zero', () => {
  it.each(GRID)('%s', (_name, over, mode) => {
    for (const seed of [11, 12, 13]) {
      const r = settleParticipant(input(participant({ seed })), cfg(over, { mode }));
      expect(r.quality).toBe('ok');
      expect(Math.abs(r.reductionWh)).toBeLessThanOrEqual(0.05 * r.baselineWh);
    }
  });
});

describe('a hotter event day: the same-day adjustment is what keeps a non-responder near zero', () => {
  it.each([
    // Air conditioning adds about the same load all day: the additive adjustment measures it before the event.
    ['+300 W all day, additive', (w: number) => w + 300, 'additive'],
    // A day 15 % busier at every hour: the multiplicative adjustment (within its ±20 % cap) scales the CBL.
    ['×1.15 all day, multiplicative', (w: number) => w * 1.15, 'multiplicative'],
  ] as const)('%s', (_name, eventDay, mode) => {
    for (const seed of [21, 22, 23]) {
      const p = participant({ seed, eventDay });
      const without = settleParticipant(input(p), cfg({}, { mode: 'none' }));
      const withAdj = settleParticipant(input(p), cfg({}, { mode }));
      // Without it, the extra load reads as a negative reduction outside the ±5 % band (about −13 % here).
      expect(without.reductionWh).toBeLessThan(-0.05 * without.baselineWh);
      expect(Math.abs(withAdj.reductionWh)).toBeLessThanOrEqual(0.05 * withAdj.baselineWh);
      expect(withAdj.adjustmentWh).toBeGreaterThan(0.1 * without.baselineWh);
      expect(withAdj.selectedDays).toEqual(without.selectedDays);
    }
  });
});

describe('like days', () => {
  const p = participant({ seed: 31 });

  it('skip past event days and holidays; a weekday event uses weekdays, across the DST change', () => {
    const r = settleParticipant(input(p), cfg());
    expect(r.dayType).toBe('weekday');
    expect(r.candidateDays).toEqual(['2026-03-27', '2026-03-30', '2026-03-31', '2026-04-01', '2026-04-07']);
    expect(r.excludedDays).toEqual([
      { day: '2026-04-02', reason: 'holiday' },
      { day: '2026-04-03', reason: 'holiday' },
      { day: '2026-04-06', reason: 'event' },
    ]);
    expect(r.selectedDays).toHaveLength(4);
    for (const d of r.selectedDays) expect(r.candidateDays).toContain(d);
  });

  it('count the past event day when it is not declared', () => {
    const r = settleParticipant(input(p, { pastEventDays: [] }), cfg());
    expect(r.candidateDays).toEqual(['2026-03-30', '2026-03-31', '2026-04-01', '2026-04-06', '2026-04-07']);
    // Its 50 % cut makes it the lowest of the five: High 4 of 5 leaves it out.
    expect(r.selectedDays).toEqual(['2026-03-30', '2026-03-31', '2026-04-01', '2026-04-07']);
  });

  it.each([
    ['High 2 of 3', { x: 2, y: 3 }, ['2026-04-03', '2026-04-04', '2026-04-05']],
    // The DST day (23 h) is a Sunday like any other: 17:00 local is found on it.
    ['High 4 of 5', { x: 4, y: 5 }, ['2026-03-29', '2026-04-02', '2026-04-03', '2026-04-04', '2026-04-05']],
  ] as const)('a weekend event uses weekend days and holidays (%s)', (_name, weekend, expected) => {
    const r = settleParticipant(input(participant({ seed: 32, event: WEEKEND_EVENT }), { event: WEEKEND_EVENT }), cfg({ weekend }));
    expect(r.dayType).toBe('weekend');
    expect(r.quality).toBe('ok');
    expect(r.candidateDays).toEqual(expected);
    expect(r.excludedDays).toEqual([]);
    expect(Math.abs(r.reductionWh)).toBeLessThanOrEqual(0.05 * r.baselineWh);
  });

  it('a holiday event is measured like a weekend', () => {
    const holidayEvent = { startMs: Date.parse('2026-04-03T17:00:00+02:00'), endMs: Date.parse('2026-04-03T19:00:00+02:00') };
    const r = settleParticipant(input(p, { event: holidayEvent, pastEventDays: [] }), cfg());
    expect(r.dayType).toBe('weekend');
    // Back from Thursday 04-02 (a holiday too): the weekend before, no weekday.
    expect(r.candidateDays).toEqual(['2026-03-28', '2026-03-29', '2026-04-02']);
    expect(r.quality).toBe('ok');
  });
});

/** Weekdays at a flat level per day (Wh per 15 min), every interval of the day; 2026-04-08 is the event day. */
function flat(levels: Record<string, number>, eventDay: { before: number; during: number }): CblInterval[] {
  const out: CblInterval[] = [];
  for (const day of daysBetween('2026-03-01', '2026-04-09')) {
    const w = dayWindow(ZONE, day);
    for (let t = w.startMs; t < w.endMs; t += M15) {
      let wh = levels[day] ?? 100;
      if (day === '2026-04-08') wh = t >= EVENT.startMs && t < EVENT.endMs ? eventDay.during : eventDay.before;
      out.push({ start: t, wh, estimated: false });
    }
  }
  return out;
}

const LEVELS = { '2026-03-27': 80, '2026-03-30': 100, '2026-03-31': 110, '2026-04-01': 120, '2026-04-06': 150, '2026-04-07': 90 };

describe('crafted levels: exact CBL, adjustment and performance', () => {
  const intervals = flat(LEVELS, { before: 200, during: 50 });
  // High 4 of 5 of {80, 100, 110, 120, 90}: 105 Wh per interval, 840 Wh over the 8 intervals; actual 8 × 50 = 400 Wh.
  it.each([
    ['none', 840, 0, 440],
    // 13:00–16:00: event day 200, CBL 105 → +95 Wh per interval, +760 Wh over the event.
    ['additive', 1600, 760, 1200],
    // 200 / 105 = 1.90, capped at 1.2 → 1008 Wh.
    ['multiplicative', 1008, 168, 608],
  ] as const)('%s', (mode, baselineWh, adjustmentWh, reductionWh) => {
    const r = settleParticipant(
      { intervals, intervalMs: M15, event: EVENT, timezone: ZONE, holidays: HOLIDAYS, pastEventDays: ['2026-04-06'] },
      cfg({}, { mode }),
    );
    expect(r.quality).toBe('ok');
    expect(r.selectedDays).toEqual(['2026-03-30', '2026-03-31', '2026-04-01', '2026-04-07']);
    expect(r.baselineWh).toBeCloseTo(baselineWh, 9);
    expect(r.adjustmentWh).toBeCloseTo(adjustmentWh, 9);
    expect(r.actualWh).toBe(400);
    expect(r.reductionWh).toBeCloseTo(reductionWh, 9);
    expect(r.performance).toBeCloseTo(reductionWh / baselineWh, 12);
    expect(r.intervals.map((i) => i.start)).toEqual([0, 1, 2, 3, 4, 5, 6, 7].map((k) => EVENT.startMs + k * M15));
    expect(r.intervals.every((i) => i.actualWh === 50 && i.measured)).toBe(true);
    expect(r.intervals[0]?.baselineWh).toBeCloseTo(baselineWh / 8, 9);
  });

  it('matches like days by local wall-clock time across the DST change', () => {
    // 300 Wh per interval from 17:00 to 19:00 local every day, 100 otherwise. Six of the ten like days are CET
    // (UTC+1), the event day CEST (UTC+2): matched by UTC instead, those six would contribute 18:00–20:00.
    const evening: CblInterval[] = [];
    for (const day of daysBetween('2026-03-01', '2026-04-09')) {
      const w = dayWindow(ZONE, day);
      for (let t = w.startMs; t < w.endMs; t += M15) {
        const hour = localParts(ZONE, t).hour;
        evening.push({ start: t, wh: hour >= 17 && hour < 19 ? 300 : 100, estimated: false });
      }
    }
    const r = settleParticipant(
      { intervals: evening, intervalMs: M15, event: EVENT, timezone: ZONE, holidays: HOLIDAYS, pastEventDays: ['2026-04-06'] },
      cfg({ weekday: { x: 10, y: 10 } }, { mode: 'additive' }),
    );
    expect(r.selectedDays.filter((d) => d < '2026-03-29')).toHaveLength(6);
    expect(r.baselineWh).toBe(2400);
    expect(r.adjustmentWh).toBe(0);
    expect(r.reductionWh).toBe(0);
    expect(r.intervals.map((i) => i.baselineWh)).toEqual(Array(8).fill(300));
  });

  it('10 in 10 averages all ten like days', () => {
    // Back from 2026-04-07: 04-07, 04-01, 03-31, 03-30, 03-27, then 03-26 … 03-20 (100 each).
    const r = settleParticipant(
      { intervals, intervalMs: M15, event: EVENT, timezone: ZONE, holidays: HOLIDAYS, pastEventDays: ['2026-04-06'] },
      cfg({ weekday: { x: 10, y: 10 } }, { mode: 'none' }),
    );
    expect(r.selectedDays).toEqual([
      '2026-03-20',
      '2026-03-23',
      '2026-03-24',
      '2026-03-25',
      '2026-03-26',
      '2026-03-27',
      '2026-03-30',
      '2026-03-31',
      '2026-04-01',
      '2026-04-07',
    ]);
    expect(r.baselineWh).toBeCloseTo(((80 + 100 + 110 + 120 + 90 + 5 * 100) / 10) * 8, 9);
  });

  it('performance against the requested reduction: 1 kW for 2 h is 2000 Wh', () => {
    const r = settleParticipant(
      { intervals, intervalMs: M15, event: EVENT, timezone: ZONE, holidays: HOLIDAYS, pastEventDays: ['2026-04-06'], requestedReductionKw: 1 },
      cfg({}, { mode: 'none' }),
    );
    expect(r.requestedWh).toBe(2000);
    expect(r.performanceBasis).toBe('requested');
    expect(r.performance).toBeCloseTo(440 / 2000, 12);
  });

  it.each([
    // 2026-03-31 at 10 Wh is below 25 % of the five's average (80 → 20): dropped, and 2026-03-26 (100) joins.
    ['a low-usage day is replaced by an older one', { '2026-03-31': 10 }, 'low_usage', ['2026-03-26', '2026-03-27', '2026-03-30', '2026-04-01', '2026-04-07']],
  ] as const)('%s', (_name, change, reason, candidates) => {
    const r = settleParticipant(
      {
        intervals: flat({ ...LEVELS, ...change }, { before: 200, during: 50 }),
        intervalMs: M15,
        event: EVENT,
        timezone: ZONE,
        holidays: HOLIDAYS,
        pastEventDays: ['2026-04-06'],
      },
      cfg({}, { mode: 'none' }),
    );
    expect(r.excludedDays).toContainEqual({ day: '2026-03-31', reason });
    expect(r.candidateDays).toEqual(candidates);
    expect(r.selectedDays).toEqual(['2026-03-26', '2026-03-30', '2026-04-01', '2026-04-07']);
    expect(r.baselineWh).toBeCloseTo(((100 + 100 + 120 + 90) / 4) * 8, 9);
  });

  it.each([
    // 2 of 8 event-window intervals missing (> 10 %): the day is not a like day.
    ['two event-window intervals missing', ['2026-03-31T17:00:00+02:00', '2026-03-31T17:15:00+02:00'], true],
    // An estimated interval counts as missing.
    ['one estimated event-window interval', ['2026-03-31T18:00:00+02:00'], true],
    // 1 of 12 adjustment-window intervals (≤ 10 %) is tolerated and filled with the window's mean.
    ['one adjustment-window interval missing', ['2026-03-31T14:00:00+02:00'], false],
  ] as const)('%s', (name, starts, excluded) => {
    const drop = new Set(starts.map((s) => Date.parse(s)));
    const estimate = name.includes('estimated');
    const intervals2 = flat(LEVELS, { before: 200, during: 50 }).flatMap((iv) => {
      if (!drop.has(iv.start)) return [iv];
      return estimate ? [{ ...iv, estimated: true }] : [];
    });
    const r = settleParticipant(
      { intervals: intervals2, intervalMs: M15, event: EVENT, timezone: ZONE, holidays: HOLIDAYS, pastEventDays: ['2026-04-06'] },
      cfg(),
    );
    expect(r.quality).toBe('ok');
    if (excluded) {
      expect(r.excludedDays).toContainEqual({ day: '2026-03-31', reason: 'missing_data' });
      expect(r.candidateDays).toEqual(['2026-03-26', '2026-03-27', '2026-03-30', '2026-04-01', '2026-04-07']);
    } else {
      expect(r.candidateDays).toEqual(['2026-03-27', '2026-03-30', '2026-03-31', '2026-04-01', '2026-04-07']);
      expect(r.baselineWh).toBeCloseTo(1600, 9);
    }
  });
});

describe('insufficient history', () => {
  it.each([
    ['five days of history', '2026-04-03'],
    ['no history at all', '2026-04-08'],
  ])('%s: insufficient_history, zeros and no NaN', (_name, firstDay) => {
    const p = participant({ seed: 41, cut: 0.4, firstDay });
    for (const mode of MODES) {
      const r = settleParticipant(input(p), cfg({}, { mode }));
      expect(r.quality).toBe('insufficient_history');
      expect(r.selectedDays).toEqual([]);
      expect(r.baselineWh).toBe(0);
      expect(r.reductionWh).toBe(0);
      expect(r.performance).toBe(0);
      expect(r.adjustmentWh).toBe(0);
      expect(r.actualWh).toBe(r.intervals.reduce((s, i) => s + i.actualWh, 0));
      expect(numbersIn(r).every(Number.isFinite)).toBe(true);
    }
  });
});

describe('missing event data', () => {
  const p = participant({ seed: 51, cut: 0.4 });

  it.each([
    ['a gap in the event window', 'missing_event_data', 'additive', ['2026-04-08T17:30:00+02:00', '2026-04-08T17:45:00+02:00'], false, 6],
    ['an estimated interval in the event window', 'missing_event_data', 'none', ['2026-04-08T18:30:00+02:00'], true, 7],
    ['a gap in the adjustment window, adjusted', 'missing_event_data', 'additive', ['2026-04-08T14:00:00+02:00'], false, 8],
    ['a gap in the adjustment window, not adjusted', 'ok', 'none', ['2026-04-08T14:00:00+02:00'], false, 8],
  ] as const)('%s: %s', (_name, quality, mode, drop, estimated, measuredCount) => {
    const set = new Set(drop.map((s) => Date.parse(s)));
    const intervals = p.measured.flatMap((iv) => (set.has(iv.start) ? (estimated ? [{ ...iv, estimated: true }] : []) : [iv]));
    const r = settleParticipant(input(p, { intervals }), cfg({}, { mode }));
    expect(r.quality).toBe(quality);
    expect(r.intervals.filter((i) => i.measured)).toHaveLength(measuredCount);
    expect(numbersIn(r).every(Number.isFinite)).toBe(true);
    if (quality === 'missing_event_data') {
      expect(r.reductionWh).toBe(0);
      expect(r.performance).toBe(0);
      // The unadjusted CBL is still reported.
      expect(r.baselineWh).toBeGreaterThan(0);
      expect(r.adjustmentWh).toBe(0);
    }
  });
});

describe('settleEvent', () => {
  const cutter = participant({ seed: 61, cut: 0.4 });
  const idle = participant({ seed: 62 });
  const gap = participant({ seed: 63, cut: 0.4 });
  const gapped = gap.measured.filter((iv) => iv.start !== Date.parse('2026-04-08T18:00:00+02:00'));
  const young = participant({ seed: 64, firstDay: '2026-04-06' });
  const event = { ...EVENT, timezone: ZONE, holidays: HOLIDAYS, pastEventDays: ['2026-04-06'], requestedReductionKw: 2 };
  const s = settleEvent(
    event,
    [
      { customerId: 'C-1', intervals: cutter.measured, intervalMs: M15, requestedReductionKw: 1 },
      { customerId: 'C-2', intervals: idle.measured, intervalMs: M15 },
      { customerId: 'C-3', intervals: gapped, intervalMs: M15 },
      { customerId: 'C-4', intervals: young.measured, intervalMs: M15 },
    ],
    cfg(),
  );

  it('settles each participant as settleParticipant does, in input order', () => {
    expect(s.participants.map((p) => [p.customerId, p.quality])).toEqual([
      ['C-1', 'ok'],
      ['C-2', 'ok'],
      ['C-3', 'missing_event_data'],
      ['C-4', 'insufficient_history'],
    ]);
    const alone: CblResult = settleParticipant(input(cutter, { requestedReductionKw: 1 }), cfg());
    expect(s.participants[0]).toEqual({ customerId: 'C-1', ...alone });
    expect(s.participants[0]?.performanceBasis).toBe('requested');
    expect(s.participants[0]?.performance).toBeCloseTo(alone.reductionWh / 2000, 12);
  });

  it('totals the settled participants against the requested 2 kW × 2 h', () => {
    const [c1, c2] = s.participants;
    const reduction = (c1?.reductionWh ?? 0) + (c2?.reductionWh ?? 0);
    expect(s.totals).toEqual({
      participants: 4,
      settled: 2,
      insufficientHistory: 1,
      missingEventData: 1,
      baselineWh: (c1?.baselineWh ?? 0) + (c2?.baselineWh ?? 0),
      actualWh: (c1?.actualWh ?? 0) + (c2?.actualWh ?? 0),
      reductionWh: reduction,
      requestedWh: 4000,
      performance: reduction / 4000,
      performanceBasis: 'requested',
    });
    expect(Math.abs(reduction - trueCut(cutter))).toBeLessThanOrEqual(0.1 * trueCut(cutter) + 0.05 * (c2?.baselineWh ?? 0));
  });

  it('totals of participants settled in separate calls (chunks) equal those of one call', () => {
    const chunks = [
      [{ customerId: 'C-1', intervals: cutter.measured, intervalMs: M15, requestedReductionKw: 1 }],
      [
        { customerId: 'C-2', intervals: idle.measured, intervalMs: M15 },
        { customerId: 'C-3', intervals: gapped, intervalMs: M15 },
      ],
      [{ customerId: 'C-4', intervals: young.measured, intervalMs: M15 }],
    ];
    const results = chunks.flatMap((c) => settleEvent(event, c, cfg()).participants);
    expect(settlementTotals(event, results)).toEqual(s.totals);
  });

  it('a participant-only past event is skipped for that participant alone', () => {
    const one = settleEvent(
      { ...event, pastEventDays: [] },
      [{ customerId: 'C-2', intervals: idle.measured, intervalMs: M15, pastEventDays: ['2026-04-06'] }],
      cfg(),
    );
    expect(one.participants[0]?.excludedDays).toContainEqual({ day: '2026-04-06', reason: 'event' });
  });

  it("a participant's own zone cuts its days: a Friday evening in Madrid is a Saturday morning in Shanghai", () => {
    const friday = { startMs: Date.parse('2026-04-10T22:00:00+02:00'), endMs: Date.parse('2026-04-10T23:00:00+02:00') };
    const both = settleEvent(
      { ...friday, timezone: ZONE, holidays: HOLIDAYS, pastEventDays: [] },
      [
        { customerId: 'C-MAD', intervals: idle.measured, intervalMs: M15 },
        { customerId: 'C-SHA', intervals: idle.measured, intervalMs: M15, timezone: 'Asia/Shanghai' },
      ],
      cfg(),
    );
    expect(both.participants.map((p) => [p.customerId, p.dayType])).toEqual([
      ['C-MAD', 'weekday'],
      ['C-SHA', 'weekend'],
    ]);
  });
});

describe('config', () => {
  it('the defaults pass the schema', () => {
    expect(Compile(CblConfigSchema).Check(CBL_DEFAULTS)).toBe(true);
    expect(() => checkCblConfig(CBL_DEFAULTS, M15)).not.toThrow();
  });

  it.each([
    ['x above y', cfg({ weekday: { x: 6, y: 5 } }), M15, 'cbl.weekday'],
    ['a window off the interval grid', cfg({}, { windowHours: 0.5 }), H, 'cbl.adjustment.windowHours'],
    ['a gap off the interval grid', cfg({}, { gapHours: 0.1 }), M15, 'cbl.adjustment.gapHours'],
  ] as const)('rejects %s', (_name, bad, intervalMs, key) => {
    expect(() => checkCblConfig(bad, intervalMs)).toThrow(key);
  });

  it('rejects an event that is not whole intervals', () => {
    const p = participant({ seed: 71 });
    expect(() => settleParticipant(input(p, { event: { startMs: EVENT.startMs, endMs: EVENT.startMs + 10 * 60_000 } }), cfg())).toThrow(RangeError);
  });
});
