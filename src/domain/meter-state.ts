import type { DetectionEvent, IntervalMark } from '../contracts/events.js';
import type { Reading } from '../contracts/reading.js';
import { type Baseline, coldBaseline, type Expectation, expectedRate, expectSlot, learnSlot, rescale, slotOfParts } from './baseline.js';
import { evaluateInterval, mayTeach } from './detectors.js';
import type { Expectations, IntervalFacts } from './detectors-evaluation.js';
import { type MeterRef, meterEvent } from './detection-events.js';
import { evaluateRead, type ReadFacts, silentDeadlineAfter } from './detectors-reads.js';
import { type DetectorState, initialDetectors } from './detectors-state.js';
import { closeHoliday, holidayExpectation, NO_HOLIDAY } from './holiday-habit.js';
import {
  applyExchange,
  computeIntervals,
  type GapShape,
  insertRead,
  type Interval,
  type MeterExchange,
  newestRead,
  type RegisterRead,
  settle,
  type VeeSettings,
  type VeeState,
} from './intervals.js';
import { ceilGrid, floorGrid, HOUR_MS, type LocalParts, localDay, localDayEnd, localParts, MINUTE_MS } from './local-time.js';
import { intervalMsOf, type StreamSettings, veeSettings } from './stream-settings.js';

/**
 * One meter's whole stream state and the one function that advances it by a read. State in, state out:
 * the adapter persists it (meter-state-codec.ts) together with the stream position.
 */

/** What the state machine needs from the registry. */
export interface MeterInfo extends MeterRef {
  intervalMinutes: number;
}

export interface MeterState {
  vee: VeeState;
  /** First accepted read (warm-up clock), 0 before any. */
  firstTs: number;
  /** End of the last interval run through the detectors. */
  evaluatedUntil: number;
  /** End of the last final interval offered to the baseline. */
  learnedUntil: number;
  /** Starts of evaluated, not yet final intervals that must not teach the baseline (anomalous). */
  noTeach: number[];
  /** Last local hour a `baseline` point was emitted for. */
  baselineHour: number;
  baseline: Baseline;
  det: DetectorState;
  /** How this meter spends holidays (holiday-habit.ts). */
  holiday: number[];
}

export interface IntervalOut extends Interval {
  /** Average import demand over the interval, W. */
  demandW: number;
}

export interface BaselinePoint {
  /** Local hour start. */
  ts: number;
  /** Expected energy per interval of this meter, and its spread. */
  expectedWh: number;
  spreadWh: number;
}

export type ReadOutcome = 'accepted' | 'duplicate' | 'conflict' | 'late';

export interface ReadResult {
  state: MeterState;
  outcome: ReadOutcome;
  /** New or recomputed intervals (write them: same tags and time overwrite). */
  intervals: IntervalOut[];
  events: DetectionEvent[];
  /** Intervals judged anomalous by this read (some may be earlier ones, marked back to a run's start). */
  marks: IntervalMark[];
  /** Judged intervals as [local hour start, local hour of day, log(measured / expected)] triples, flat: the shard's common level learns from them. */
  ratios: number[];
  baselinePoints: BaselinePoint[];
}

export function initialMeterState(meter: MeterInfo, s: StreamSettings): MeterState {
  return {
    vee: { intervalMs: intervalMsOf(meter, s), reads: [] },
    firstTs: 0,
    evaluatedUntil: 0,
    learnedUntil: 0,
    noTeach: [],
    baselineHour: 0,
    baseline: coldBaseline(meter.class, s.baseline),
    holiday: [...NO_HOLIDAY],
    det: initialDetectors(),
  };
}

/** The baseline as a gap-fill shape and as the detectors' expectations (a class, not a closure: this runs once per read). */
class BaselineShape implements GapShape, Expectations {
  constructor(
    private readonly b: Baseline,
    private readonly s: StreamSettings,
    private readonly intervalMs: number = HOUR_MS,
  ) {}

  rateAt(ts: number): number {
    return expectedRate(this.b, this.s.baseline, this.s.zone, ts).rate;
  }

  intervalWh(start: number): number {
    const p = localParts(this.s.zone, start);
    return expectSlot(this.b, this.s.baseline, slotOfParts(this.s.baseline.slots, p.weekday, p.hour), this.intervalMs).wh;
  }

  hourWh(weekday: number, hour: number): number {
    return expectSlot(this.b, this.s.baseline, slotOfParts(this.s.baseline.slots, weekday, hour), HOUR_MS).wh;
  }
}

/** The registry changed the meter's interval length: restart the grid from the newest read. */
function switchInterval(st: MeterState, intervalMs: number): MeterState {
  const newest = newestRead(st.vee);
  const from = newest?.ts ?? 0;
  // The exchange stays (a decrease may still come); the traced reset belongs to the old grid.
  const vee: VeeState = { intervalMs, reads: newest === undefined ? [] : [newest] };
  if (st.vee.exchange !== undefined) vee.exchange = st.vee.exchange;
  return {
    ...st,
    vee,
    evaluatedUntil: Math.max(st.evaluatedUntil, from),
    learnedUntil: Math.max(st.learnedUntil, from),
    noTeach: [],
  };
}

/** One read's work in progress: what processRead's steps share and extend. */
interface ReadWork {
  readonly meter: MeterInfo;
  readonly s: StreamSettings;
  readonly intervalMs: number;
  /** The level common to the shard's meters (see processRead). */
  readonly common: number;
  readonly shape: BaselineShape;
  /** Updated in place (rescaled, taught). */
  readonly baseline: Baseline;
  readonly firstTs: number;
  /** learnedUntil before this read. */
  readonly learnedFrom: number;
  det: DetectorState;
  evaluatedUntil: number;
  baselineHour: number;
  noTeach: number[];
  holiday: number[];
  intervals: IntervalOut[];
  events: DetectionEvent[];
  marks: IntervalMark[];
  ratios: number[];
  baselinePoints: BaselinePoint[];
}

/**
 * Advances a meter by one validated reading (event time only: replaying the same reads gives the same result).
 * `common`: the level common to the shard's meters right now (src/domain/common-level.ts), multiplying every
 * expectation the detectors judge by.
 */
export function processRead(prev: MeterState | undefined, read: Reading, meter: MeterInfo, s: StreamSettings, common = 1): ReadResult {
  const intervalMs = intervalMsOf(meter, s);
  let st = prev ?? initialMeterState(meter, s);
  if (st.vee.intervalMs !== intervalMs) st = switchInterval(st, intervalMs);
  const vs = veeSettings(s, intervalMs);

  const before = newestRead(st.vee);
  const ins = insertRead(st.vee, registerReadOf(read, st.vee.reads), vs);
  if (ins.kind === 'duplicate') return unchanged(st, ins.conflict ? 'conflict' : 'duplicate');
  if (ins.kind === 'late') return unchanged(st, 'late');

  // One copy per read; the detectors and the baseline then update their state in place (their typed arrays are
  // shared with `prev`: the caller continues from the returned state only).
  const det: DetectorState = { ...st.det };
  const facts: ReadFacts = {
    ts: read.ts,
    importWh: read.importWh,
    voltageV: read.voltageV,
    appended: ins.appended,
    resets: ins.resets,
    previousTs: before?.ts,
  };
  const events = evaluateRead(det, facts, meter, s.detectors, { intervalMs, silentIntervals: s.silentIntervals, silentLatenessMs: s.silentLatenessMs });
  const w = startWork(st, det, events, read.ts, meter, s, intervalMs, common);
  const from = floorGrid(ins.from, intervalMs, vs.gridOffsetMs);
  const to = ceilGrid(ins.to, intervalMs, vs.gridOffsetMs);
  for (const iv of computeIntervals(ins.state, from, to, vs, w.shape)) judgeInterval(w, iv);

  const settled = settle(ins.state, vs);
  const learnedUntil = learnFinal(w, ins.state, settled.finalUntil, vs);
  return {
    state: {
      vee: settled.state,
      firstTs: w.firstTs,
      evaluatedUntil: w.evaluatedUntil,
      learnedUntil,
      noTeach: keepFrom(w.noTeach, learnedUntil),
      baselineHour: w.baselineHour,
      baseline: w.baseline,
      det: w.det,
      holiday: w.holiday,
    },
    outcome: 'accepted',
    intervals: w.intervals,
    events: w.events,
    marks: w.marks,
    ratios: w.ratios,
    baselinePoints: w.baselinePoints,
  };
}

/** The interval steps' work, from the state before the read, the read's detector state and its events so far. */
function startWork(
  st: MeterState,
  det: DetectorState,
  events: DetectionEvent[],
  ts: number,
  meter: MeterInfo,
  s: StreamSettings,
  intervalMs: number,
  common: number,
): ReadWork {
  return {
    meter,
    s,
    intervalMs,
    common,
    shape: new BaselineShape(st.baseline, s, intervalMs),
    baseline: st.baseline,
    firstTs: st.firstTs === 0 ? ts : Math.min(st.firstTs, ts),
    learnedFrom: st.learnedUntil,
    det,
    evaluatedUntil: st.evaluatedUntil,
    baselineHour: st.baselineHour,
    noTeach: [...st.noTeach],
    holiday: st.holiday.length === 5 ? [...st.holiday] : [...NO_HOLIDAY],
    intervals: [],
    events,
    marks: [],
    ratios: [],
    baselinePoints: [],
  };
}

/** The read as a register read; a read without an export register carries the one of the read before it. */
function registerReadOf(read: Reading, reads: readonly RegisterRead[]): RegisterRead {
  let carried = 0;
  for (const r of reads) if (r.ts < read.ts) carried = r.exp;
  return { ts: read.ts, imp: read.importWh, exp: read.exportWh ?? carried };
}

/** A read that changes nothing (a duplicate, a conflicting duplicate, or too late). */
function unchanged(state: MeterState, outcome: Exclude<ReadOutcome, 'accepted'>): ReadResult {
  return { state, outcome, intervals: [], events: [], marks: [], ratios: [], baselinePoints: [] };
}

/** One new or recomputed interval: written always, judged once, when it first appears. */
function judgeInterval(w: ReadWork, iv: Interval): void {
  const { s } = w;
  const demandW = (iv.wh * HOUR_MS) / w.intervalMs;
  w.intervals.push({ ...iv, demandW });
  if (iv.end <= w.evaluatedUntil) return; // recomputed: judged once, when it first appeared
  const p = localParts(s.zone, iv.start);
  const holiday = s.holidays.has(p.dayNumber);
  closeHoliday(w.holiday, p.dayNumber);
  // A judged holiday: what this meter does on holidays (between its weekday and its Sunday level), and no day-shape
  // collection (its day is not a normal one).
  const asHoliday = holiday && s.judgeHolidays;
  const exp = expectationOf(w, iv, p, asHoliday);
  const slotReady = exp.samples >= s.baseline.minSlotSamples;
  if (slotReady && !iv.estimated && !holiday && iv.wh > 0 && iv.exportWh === 0 && exp.wh > 0) {
    w.ratios.push(floorGrid(iv.start, HOUR_MS, s.hourGridOffsetMs), p.hour, Math.log(iv.wh / exp.wh));
  }
  const facts: IntervalFacts = {
    start: iv.start,
    end: iv.end,
    wh: iv.wh,
    exportWh: iv.exportWh,
    estimated: iv.estimated,
    demandW,
    expectedWh: exp.wh * w.common,
    spreadWh: exp.spreadWh * w.common,
    warm: iv.end - w.firstTs >= s.warmupMs,
    slotReady,
    meterWh: exp.meterWh,
    peakWh: exp.peakWh,
    holiday: holiday && !asHoliday,
    ...(asHoliday ? {} : { dayNumber: p.dayNumber }),
    hour: p.hour,
  };
  const ev = evaluateInterval(w.det, facts, w.meter, s.detectors, w.shape);
  w.det = ev.det;
  w.events.push(...ev.events);
  for (const m of ev.marks) {
    w.marks.push(m);
    if (m.start >= w.learnedFrom && m.start !== iv.start) w.noTeach.push(m.start);
  }
  if (!ev.teach) w.noTeach.push(iv.start);
  if (ev.rescale !== undefined) rescale(w.baseline, ev.rescale);
  w.evaluatedUntil = iv.end;
  const hour = floorGrid(iv.start, HOUR_MS, s.hourGridOffsetMs);
  if (hour > w.baselineHour) {
    w.baselineHour = hour;
    w.baselinePoints.push({ ts: hour, expectedWh: exp.wh, spreadWh: exp.spreadWh });
  }
}

/** What the baseline expects of the interval: its slot's level, or on a judged holiday this meter's holiday level. */
function expectationOf(w: ReadWork, iv: Interval, p: LocalParts, asHoliday: boolean): Expectation {
  const { s, baseline, intervalMs } = w;
  const wd = expectSlot(baseline, s.baseline, slotOfParts(s.baseline.slots, p.weekday, p.hour), intervalMs);
  if (!asHoliday) return wd;
  const sun = expectSlot(baseline, s.baseline, slotOfParts(s.baseline.slots, 6, p.hour), intervalMs);
  return holidayExpectation(w.holiday, p.dayNumber, iv, wd, sun);
}

/**
 * Intervals that no accepted read can change any more teach the baseline, with their final values: not when
 * anomalous, estimated, on a holiday, or in a firing episode. Returns the new learnedUntil.
 */
function learnFinal(w: ReadWork, vee: VeeState, finalUntil: number, vs: VeeSettings): number {
  const { s } = w;
  let learnedUntil = w.learnedFrom;
  if (finalUntil <= learnedUntil) return learnedUntil;
  for (const f of computeIntervals(vee, learnedUntil, finalUntil, vs, w.shape)) {
    if (f.end > w.evaluatedUntil) break;
    if (!f.estimated && !w.noTeach.includes(f.start) && mayTeach(w.det, f.start)) {
      const p = localParts(s.zone, f.start);
      if (!s.holidays.has(p.dayNumber)) learnSlot(w.baseline, s.baseline, slotOfParts(s.baseline.slots, p.weekday, p.hour), w.intervalMs, f.wh);
    }
    learnedUntil = f.end;
  }
  return learnedUntil;
}

/**
 * Records a meter exchange work order and returns the intervals it corrects (a register decrease it explains,
 * already computed): write them, they overwrite the ones booked without it. Detectors judged those intervals
 * when they first appeared and are not run again.
 */
export function processExchange(
  prev: MeterState | undefined,
  ex: MeterExchange,
  meter: MeterInfo,
  s: StreamSettings,
): { state: MeterState; intervals: IntervalOut[] } {
  const intervalMs = intervalMsOf(meter, s);
  let st = prev ?? initialMeterState(meter, s);
  if (st.vee.intervalMs !== intervalMs) st = switchInterval(st, intervalMs);
  const r = applyExchange(st.vee, ex, veeSettings(s, intervalMs), new BaselineShape(st.baseline, s));
  return {
    state: { ...st, vee: r.state },
    intervals: r.intervals.map((iv) => ({ ...iv, demandW: (iv.wh * HOUR_MS) / intervalMs })),
  };
}

function keepFrom(starts: number[], from: number): number[] {
  const out: number[] = [];
  for (const t of starts) if (t >= from) out.push(t);
  return out;
}

/** Event time after which the meter counts as silent: its newest read plus N of its intervals. */
export function silentDeadline(st: MeterState, s: StreamSettings): number | undefined {
  const newest = newestRead(st.vee);
  return newest === undefined ? undefined : silentDeadlineAfter(newest.ts, s.silentIntervals, st.vee.intervalMs);
}

/** `silent` fires once when the shard watermark passes the deadline; the next newer read clears it. */
export function checkSilent(st: MeterState, watermark: number, meter: MeterInfo, s: StreamSettings): { state: MeterState; events: DetectionEvent[] } {
  const deadline = silentDeadline(st, s);
  if (deadline === undefined || st.det.silent || watermark < deadline) return { state: st, events: [] };
  const newest = newestRead(st.vee);
  const minutes = Math.round((s.silentIntervals * st.vee.intervalMs) / MINUTE_MS);
  const ev = meterEvent(meter, 'silent', 'firing', deadline, {
    value: s.silentIntervals,
    expected: 0,
    score: (watermark - (newest?.ts ?? deadline)) / st.vee.intervalMs,
    severity: 'warning',
    reason: `no read for ${minutes} min since ${new Date(newest?.ts ?? 0).toISOString()}`,
  });
  return { state: { ...st, det: { ...st.det, silent: true } }, events: [ev] };
}

/** Local dates (YYYY-MM-DD) of intervals whose day the watermark has already closed: late data to recompute. */
export function closedDays(intervals: readonly Interval[], watermark: number, zone: string): string[] {
  const days = new Set<string>();
  for (const iv of intervals) {
    if (iv.start >= watermark) continue;
    if (localDayEnd(zone, iv.start) <= watermark) days.add(localDay(zone, iv.start));
  }
  return [...days];
}
