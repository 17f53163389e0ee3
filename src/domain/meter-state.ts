import type { DetectionConfig } from '../contracts/config-detection.js';
import type { DetectionEvent, IntervalMark } from '../contracts/events.js';
import type { Reading } from '../contracts/reading.js';
import {
  type Baseline,
  type BaselineSettings,
  coldBaseline,
  decodeBaseline,
  encodeBaseline,
  expectedRate,
  expectSlot,
  learnSlot,
  rescale,
  slotCount,
  slotOfParts,
} from './baseline.js';
import {
  type DetectorSettings,
  type DetectorState,
  evaluateInterval,
  evaluateVoltage,
  type Expectations,
  initialDetectors,
  mayTeach,
  meterEvent,
  type MeterRef,
  RECENT_INTERVALS,
} from './detectors.js';
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
import type { CommonLevelSettings } from './common-level.js';
import { holidayDays } from './holidays.js';
import { ceilGrid, DAY_MS, floorGrid, gridOffsetMs, HOUR_MS, localDay, localDayEnd, localParts, MINUTE_MS } from './local-time.js';

/**
 * One meter's whole stream state and the one function that advances it by a read. State in, state out:
 * the adapter persists it (encodeMeterState) together with the stream position.
 */

export interface StreamSettings {
  zone: string;
  defaultIntervalMs: number;
  toleranceMs: number;
  linearGapMaxMs: number;
  gapFactor: number;
  hourGridOffsetMs: number;
  warmupMs: number;
  silentIntervals: number;
  /** The watermark's lateness: a gap in a meter's own reads longer than silentIntervals plus this was silence. */
  silentLatenessMs: number;
  baseline: BaselineSettings;
  detectors: DetectorSettings;
  /** Local day numbers (days since 1970-01-01, local) of the deployment region's holidays. */
  holidays: ReadonlySet<number>;
  /** Holidays are judged against what the meter does on holidays (true) or not at all (false); they never teach. */
  judgeHolidays: boolean;
  /** The level common to a shard's meters (weather): see common-level.ts. */
  common: CommonLevelSettings;
  /** VEE settings per interval length, computed once. */
  vee: ReadonlyMap<number, VeeSettings>;
}

export function compileSettings(cfg: DetectionConfig, zone: string): StreamSettings {
  const vee = new Map<number, VeeSettings>();
  const hourGridOffsetMs = gridOffsetMs(zone, HOUR_MS);
  for (const minutes of [15, 30, 60, cfg.intervals.defaultMinutes]) {
    const intervalMs = minutes * MINUTE_MS;
    vee.set(intervalMs, {
      toleranceMs: cfg.intervals.lateToleranceMinutes * MINUTE_MS,
      linearGapMaxMs: cfg.intervals.linearGapMaxMinutes * MINUTE_MS,
      gapFactor: cfg.intervals.gapFactor,
      gridOffsetMs: gridOffsetMs(zone, intervalMs),
      hourGridOffsetMs,
    });
  }
  return {
    vee,
    zone,
    defaultIntervalMs: cfg.intervals.defaultMinutes * MINUTE_MS,
    toleranceMs: cfg.intervals.lateToleranceMinutes * MINUTE_MS,
    linearGapMaxMs: cfg.intervals.linearGapMaxMinutes * MINUTE_MS,
    gapFactor: cfg.intervals.gapFactor,
    hourGridOffsetMs: gridOffsetMs(zone, HOUR_MS),
    warmupMs: cfg.baseline.warmupDays * DAY_MS,
    silentIntervals: cfg.silent.intervals,
    silentLatenessMs: cfg.watermark.latenessMinutes * MINUTE_MS,
    baseline: cfg.baseline,
    detectors: cfg,
    holidays: holidayDays(cfg.holidays),
    judgeHolidays: (cfg.holidays?.judgeAs ?? 'learn') === 'learn',
    common: { hours: cfg.collective?.commonHours ?? 0, minSamples: cfg.collective?.commonMinSamples ?? 1 },
  };
}

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
  /**
   * How this meter spends holidays: [closed share (0 = as on a weekday, 1 = as on a Sunday; -1 = no holiday seen
   * yet), the holiday being collected (local day number, -1 none), its measured, weekday-expected and
   * Sunday-expected Wh].
   */
  holiday: number[];
}

const NO_HOLIDAY = [-1, -1, 0, 0, 0];

/** Folds a finished holiday into the closed share (when its weekday and Sunday levels differ enough to tell). */
function closeHoliday(h: number[]): void {
  const [closed = -1, day = -1, act = 0, wd = 0, sun = 0] = h;
  if (day >= 0 && wd > 0 && Math.abs(wd - sun) > 0.1 * wd) {
    const share = Math.min(1, Math.max(0, (wd - act) / (wd - sun)));
    h[0] = Math.round((closed < 0 ? share : closed + 0.5 * (share - closed)) * 1e4) / 1e4;
  }
  h[1] = -1;
  h[2] = 0;
  h[3] = 0;
  h[4] = 0;
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

export function intervalMsOf(meter: { intervalMinutes: number }, s: StreamSettings): number {
  const m = meter.intervalMinutes;
  return m === 15 || m === 30 || m === 60 ? m * MINUTE_MS : s.defaultIntervalMs;
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

export function veeSettings(s: StreamSettings, intervalMs: number): VeeSettings {
  const cached = s.vee.get(intervalMs);
  if (cached !== undefined) return cached;
  return {
    toleranceMs: s.toleranceMs,
    linearGapMaxMs: s.linearGapMaxMs,
    gapFactor: s.gapFactor,
    gridOffsetMs: gridOffsetMs(s.zone, intervalMs),
    hourGridOffsetMs: s.hourGridOffsetMs,
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

  const reads = st.vee.reads;
  let carried = 0;
  for (const r of reads) if (r.ts < read.ts) carried = r.exp;
  const point: RegisterRead = { ts: read.ts, imp: read.importWh, exp: read.exportWh ?? carried };
  const ins = insertRead(st.vee, point, vs);
  if (ins.kind === 'duplicate')
    return { state: st, outcome: ins.conflict ? 'conflict' : 'duplicate', intervals: [], events: [], marks: [], ratios: [], baselinePoints: [] };
  if (ins.kind === 'late') return { state: st, outcome: 'late', intervals: [], events: [], marks: [], ratios: [], baselinePoints: [] };

  const events: DetectionEvent[] = [];
  const marks: IntervalMark[] = [];
  const ratios: number[] = [];
  // One copy per read; the detectors and the baseline then update their state in place (their typed arrays are
  // shared with `prev`: the caller continues from the returned state only).
  let det: DetectorState = { ...st.det };
  const hadReads = reads.length > 0;

  for (const r of ins.resets) {
    det = { ...det, reset: true };
    events.push(
      meterEvent(meter, 'registerReset', 'firing', r.ts, {
        value: r.afterWh,
        expected: r.beforeWh,
        score: r.beforeWh - r.afterWh,
        severity: 'warning',
        reason: `import register fell from ${r.beforeWh} to ${r.afterWh} Wh`,
      }),
    );
  }
  if (ins.appended && hadReads && ins.resets.length === 0 && det.reset) {
    det = { ...det, reset: false };
    events.push(
      meterEvent(meter, 'registerReset', 'clear', read.ts, {
        value: read.importWh,
        expected: read.importWh,
        score: 0,
        severity: 'info',
        reason: 'import register advancing again',
      }),
    );
  }
  // Silence seen in the meter's own reads: a replay or a big backfill entry can deliver the meter's next read before
  // the shard's watermark ever passed its deadline, so judging by the watermark alone would depend on arrival order.
  // A gap the live watermark would have caught (silentIntervals, plus its lateness) fires and clears here.
  const before = hadReads ? newestRead(st.vee) : undefined;
  if (ins.appended && !det.silent && before !== undefined && read.ts - before.ts > s.silentIntervals * intervalMs + s.silentLatenessMs) {
    det = { ...det, silent: true };
    const minutes = Math.round((s.silentIntervals * intervalMs) / MINUTE_MS);
    events.push(
      meterEvent(meter, 'silent', 'firing', before.ts + s.silentIntervals * intervalMs, {
        value: s.silentIntervals,
        expected: 0,
        score: (read.ts - before.ts) / intervalMs,
        severity: 'warning',
        reason: `no read for ${minutes} min since ${new Date(before.ts).toISOString()} (next read ${new Date(read.ts).toISOString()})`,
      }),
    );
  }
  if (ins.appended && det.silent) {
    det = { ...det, silent: false };
    // A backlog flushed late can resume before the deadline that fired: the clear never precedes the firing.
    const fired = silentDeadline(st, s) ?? read.ts;
    events.push(
      meterEvent(meter, 'silent', 'clear', Math.max(read.ts, fired), {
        value: 0,
        expected: 0,
        score: 0,
        severity: 'info',
        reason: 'reads resumed',
      }),
    );
  }
  if (read.voltageV !== undefined) {
    const v = evaluateVoltage(det, read.ts, read.voltageV, meter, s.detectors);
    det = v.det;
    events.push(...v.events);
  }

  const baseline = st.baseline;
  let evaluatedUntil = st.evaluatedUntil;
  let baselineHour = st.baselineHour;
  const noTeach = [...st.noTeach];
  const firstTs = st.firstTs === 0 ? read.ts : Math.min(st.firstTs, read.ts);
  const baselinePoints: BaselinePoint[] = [];

  const hol = st.holiday.length === 5 ? [...st.holiday] : [...NO_HOLIDAY];
  const shape = new BaselineShape(baseline, s, intervalMs);
  const changed = computeIntervals(ins.state, floorGrid(ins.from, intervalMs, vs.gridOffsetMs), ceilGrid(ins.to, intervalMs, vs.gridOffsetMs), vs, shape);
  const intervals: IntervalOut[] = [];
  for (const iv of changed) {
    const demandW = (iv.wh * HOUR_MS) / intervalMs;
    intervals.push({ ...iv, demandW });
    if (iv.end <= evaluatedUntil) continue; // recomputed: judged once, when it first appeared
    const p = localParts(s.zone, iv.start);
    const holiday = s.holidays.has(p.dayNumber);
    if ((hol[1] ?? -1) >= 0 && hol[1] !== p.dayNumber) closeHoliday(hol);
    // A judged holiday: what this meter does on holidays (between its weekday and its Sunday level), and no day-shape
    // collection (its day is not a normal one).
    const asHoliday = holiday && s.judgeHolidays;
    let exp = expectSlot(baseline, s.baseline, slotOfParts(s.baseline.slots, p.weekday, p.hour), intervalMs);
    if (asHoliday) {
      const sun = expectSlot(baseline, s.baseline, slotOfParts(s.baseline.slots, 6, p.hour), intervalMs);
      if (!iv.estimated) {
        if ((hol[1] ?? -1) < 0) hol[1] = p.dayNumber;
        hol[2] = (hol[2] ?? 0) + iv.wh;
        hol[3] = (hol[3] ?? 0) + exp.wh;
        hol[4] = (hol[4] ?? 0) + sun.wh;
      }
      const closed = hol[0] ?? -1;
      const wd = exp;
      if (closed < 0) exp = Math.abs(iv.wh - sun.wh) / sun.spreadWh < Math.abs(iv.wh - wd.wh) / wd.spreadWh ? sun : wd;
      else exp = { ...wd, wh: wd.wh - closed * (wd.wh - sun.wh), spreadWh: Math.max(wd.spreadWh, sun.spreadWh), samples: Math.min(wd.samples, sun.samples) };
    }
    const slotReady = exp.samples >= s.baseline.minSlotSamples;
    if (slotReady && !iv.estimated && !holiday && iv.wh > 0 && iv.exportWh === 0 && exp.wh > 0) {
      ratios.push(floorGrid(iv.start, HOUR_MS, s.hourGridOffsetMs), p.hour, Math.log(iv.wh / exp.wh));
    }
    const ev = evaluateInterval(
      det,
      {
        start: iv.start,
        end: iv.end,
        wh: iv.wh,
        exportWh: iv.exportWh,
        estimated: iv.estimated,
        demandW,
        expectedWh: exp.wh * common,
        spreadWh: exp.spreadWh * common,
        warm: iv.end - firstTs >= s.warmupMs,
        slotReady,
        meterWh: exp.meterWh,
        peakWh: exp.peakWh,
        holiday: holiday && !asHoliday,
        ...(asHoliday ? {} : { dayNumber: p.dayNumber }),
        hour: p.hour,
      },
      meter,
      s.detectors,
      shape,
    );
    det = ev.det;
    events.push(...ev.events);
    for (const m of ev.marks) {
      marks.push(m);
      if (m.start >= st.learnedUntil && m.start !== iv.start) noTeach.push(m.start);
    }
    if (!ev.teach) noTeach.push(iv.start);
    if (ev.rescale !== undefined) rescale(baseline, ev.rescale);
    evaluatedUntil = iv.end;
    const hour = floorGrid(iv.start, HOUR_MS, s.hourGridOffsetMs);
    if (hour > baselineHour) {
      baselineHour = hour;
      baselinePoints.push({ ts: hour, expectedWh: exp.wh, spreadWh: exp.spreadWh });
    }
  }

  // Intervals that no accepted read can change any more teach the baseline, with their final values: not when
  // anomalous, estimated, on a holiday, or in a firing episode.
  const settled = settle(ins.state, vs);
  let learnedUntil = st.learnedUntil;
  if (settled.finalUntil > learnedUntil) {
    const finals = computeIntervals(ins.state, learnedUntil, settled.finalUntil, vs, shape);
    for (const f of finals) {
      if (f.end > evaluatedUntil) break;
      if (!f.estimated && !noTeach.includes(f.start) && mayTeach(det, f.start)) {
        const p = localParts(s.zone, f.start);
        if (!s.holidays.has(p.dayNumber)) learnSlot(baseline, s.baseline, slotOfParts(s.baseline.slots, p.weekday, p.hour), intervalMs, f.wh);
      }
      learnedUntil = f.end;
    }
  }

  return {
    state: {
      vee: settled.state,
      firstTs,
      evaluatedUntil,
      learnedUntil,
      noTeach: keepFrom(noTeach, learnedUntil),
      baselineHour,
      baseline,
      det,
      holiday: hol,
    },
    outcome: 'accepted',
    intervals,
    events,
    marks,
    ratios,
    baselinePoints,
  };
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
  return newest === undefined ? undefined : newest.ts + s.silentIntervals * st.vee.intervalMs;
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

// ---- serialisation: compact JSON, the baseline as base64 float32 ----

const FLAGS = ['spike', 'reverse', 'peak', 'reset', 'silent', 'flat', 'voltage', 'drop', 'high', 'stuck', 'shape'] as const;

/** Detector numbers after [flags, flatFrom, flatExpWh, vRun], in this order (`d`). */
const DET_FIELDS = [
  'upS',
  'upE',
  'upFrom',
  'upWh',
  'upExpWh',
  'upNextAt',
  'dnS',
  'dnE',
  'dnFrom',
  'dropWh',
  'dropExpWh',
  'dropNextAt',
  'stuckWh',
  'stuckN',
  'stuckFrom',
  'stuckLogP',
  'stuckNextAt',
  'dayNo',
  'dayStart',
  'dayN',
  'dayBad',
  'dayDev',
  'shapeMean',
  'shapeDev',
  'shapeDays',
  'exportHours',
  'recentN',
  'recentEnd',
] as const satisfies ReadonlyArray<keyof DetectorState>;

const f32base64 = (a: Float32Array): string => Buffer.from(a.buffer, a.byteOffset, a.byteLength).toString('base64');

/** A base64 float32 array of exactly `n` values, or undefined. */
function decodeF32(v: unknown, n: number): Float32Array | undefined {
  if (typeof v !== 'string') return undefined;
  const buf = Buffer.from(v, 'base64');
  if (buf.length !== n * 4) return undefined;
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) out[i] = buf.readFloatLE(i * 4);
  return out;
}

export function encodeMeterState(st: MeterState): string {
  const d = st.det;
  let flags = 0;
  FLAGS.forEach((f, i) => {
    if (d[f]) flags |= 1 << i;
  });
  return JSON.stringify({
    v: 1,
    i: st.vee.intervalMs / MINUTE_MS,
    r: st.vee.reads.map((r) => [r.ts, r.imp, r.exp]),
    f: st.firstTs,
    e: st.evaluatedUntil,
    l: st.learnedUntil,
    // as interval counts after `l` (short numbers); an older checkpoint's absolute times still decode
    n: st.noTeach.map((t) => Math.round((t - st.learnedUntil) / st.vee.intervalMs)),
    h: st.baselineHour,
    ...(st.holiday[0] !== -1 || st.holiday[1] !== -1 ? { o: st.holiday } : {}),
    b: encodeBaseline(st.baseline),
    // An older checkpoint (8 numbers: the former drop window after vRun) decodes with fresh collective detectors.
    d: [flags, d.flatFrom, d.flatExpWh, d.vRun, ...DET_FIELDS.map((k) => d[k])],
    ...(d.recentN > 0 ? { w: f32base64(d.recent) } : {}),
    ...(d.dayNo >= 0 ? { y: f32base64(d.dayHours) } : {}),
    ...encodeExchange(st.vee),
  });
}

/** `x`: the exchange as [ts, installWh, removalWh, installExportWh] (-1 = not given); `z`: the traced reset's reads. */
function encodeExchange(vee: VeeState): { x?: number[]; z?: number[][] } {
  const out: { x?: number[]; z?: number[][] } = {};
  const ex = vee.exchange;
  if (ex !== undefined) out.x = [ex.ts, ex.installWh, ex.removalWh ?? -1, ex.installExportWh ?? -1];
  if (vee.lastReset !== undefined) out.z = vee.lastReset.map((r) => [r.ts, r.imp, r.exp]);
  return out;
}

/** Inverse of encodeExchange; undefined when present but not one. */
function decodeExchange(x: unknown, z: unknown): { exchange?: MeterExchange; lastReset?: RegisterRead[] } | undefined {
  const out: { exchange?: MeterExchange; lastReset?: RegisterRead[] } = {};
  if (x !== undefined) {
    if (!isNumArray(x) || x.length !== 4) return undefined;
    const [ts = 0, installWh = 0, removalWh = -1, installExportWh = -1] = x;
    const ex: MeterExchange = { ts, installWh };
    if (removalWh >= 0) ex.removalWh = removalWh;
    if (installExportWh >= 0) ex.installExportWh = installExportWh;
    out.exchange = ex;
  }
  if (z !== undefined) {
    if (!Array.isArray(z)) return undefined;
    const reads: RegisterRead[] = [];
    for (const r of z) {
      if (!isNumArray(r) || r.length !== 3) return undefined;
      const [ts = 0, imp = 0, exp = 0] = r;
      reads.push({ ts, imp, exp });
    }
    out.lastReset = reads;
  }
  return out;
}

const isNum = (v: unknown): v is number => typeof v === 'number' && Number.isFinite(v);
const isNumArray = (v: unknown): v is number[] => Array.isArray(v) && v.every(isNum);

/** Parses a checkpointed state; undefined when it is not one (the meter then starts afresh). */
export function decodeMeterState(raw: string, s: StreamSettings): MeterState | undefined {
  let o: unknown;
  try {
    o = JSON.parse(raw);
  } catch {
    return undefined;
  }
  if (o === null || typeof o !== 'object') return undefined;
  const obj = o;
  const get = (k: string): unknown => (k in obj ? Reflect.get(obj, k) : undefined);
  const [v, i, r, f, e, l, n, h, b, d, x, z, w, y, hd] = ['v', 'i', 'r', 'f', 'e', 'l', 'n', 'h', 'b', 'd', 'x', 'z', 'w', 'y', 'o'].map(get);
  if (hd !== undefined && (!isNumArray(hd) || hd.length !== 5)) return undefined;
  const holiday = hd === undefined ? [...NO_HOLIDAY] : hd;
  if (v !== 1 || !isNum(i) || !isNum(f) || !isNum(e) || !isNum(l) || !isNum(h) || typeof b !== 'string' || !isNumArray(n)) return undefined;
  if (!Array.isArray(r) || !r.every((x) => isNumArray(x) && x.length === 3)) return undefined;
  if (!isNumArray(d) || (d.length !== 8 && d.length !== 4 + DET_FIELDS.length)) return undefined;
  const baseline = decodeBaseline(b, slotCount(s.baseline.slots));
  if (baseline === undefined) return undefined;
  const reads: RegisterRead[] = [];
  for (const x of r) {
    if (!isNumArray(x)) return undefined;
    const [ts = 0, imp = 0, exp = 0] = x;
    reads.push({ ts, imp, exp });
  }
  const [flags = 0, flatFrom = -1, flatExpWh = 0, vRun = 0] = d;
  const det: DetectorState = { ...initialDetectors(), flatFrom, flatExpWh, vRun };
  if (d.length === 8) {
    // The former drop window has no run to continue: the collective detectors start afresh (and not firing).
    FLAGS.forEach((key, idx) => {
      det[key] = key !== 'drop' && (flags & (1 << idx)) !== 0;
    });
  } else {
    DET_FIELDS.forEach((key, idx) => {
      det[key] = d[4 + idx] ?? 0;
    });
    FLAGS.forEach((key, idx) => {
      det[key] = (flags & (1 << idx)) !== 0;
    });
    if (w !== undefined) {
      const recent = decodeF32(w, RECENT_INTERVALS);
      if (recent === undefined) return undefined;
      det.recent = recent;
    } else det.recentN = 0;
    if (y !== undefined) {
      const hours = decodeF32(y, 24);
      if (hours === undefined) return undefined;
      det.dayHours = hours;
    } else det.dayNo = -1;
  }
  const exchange = decodeExchange(x, z);
  if (exchange === undefined) return undefined;
  const noTeach = n.map((k) => (Math.abs(k) > 1e9 ? k : l + k * i * MINUTE_MS));
  return {
    vee: { intervalMs: i * MINUTE_MS, reads, ...exchange },
    firstTs: f,
    evaluatedUntil: e,
    learnedUntil: l,
    noTeach,
    baselineHour: h,
    baseline,
    det,
    holiday,
  };
}
