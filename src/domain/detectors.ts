import type { AnomalyType, DetectionEvent, IntervalMark, Severity, SubjectKind } from '../contracts/events.js';
import type { CustomerClass } from '../contracts/registry.js';
import { DETECTION_DEFAULTS, type DetectionConfig } from '../contracts/config-detection.js';
import { HOUR_MS, MINUTE_MS } from './local-time.js';

/**
 * Per-meter detectors: plain functions over a small state record. Each firing event is one anomalous
 * interval or read; one `clear` follows when the condition stops holding. Event ids are deterministic
 * (`type:subject:ts:status`), so a replay produces the same ids and the queue deduplicates them.
 */

export type DetectorSettings = Pick<
  DetectionConfig,
  'spike' | 'drop' | 'flatline' | 'reverseFlow' | 'voltage' | 'customerPeak' | 'collective' | 'stuck' | 'shape' | 'levelShift'
>;

/** Intervals kept for marking a run back to its start (a run that fires later than this is marked from here). */
export const RECENT_INTERVALS = 48;

export interface DetectorState {
  spike: boolean;
  reverse: boolean;
  peak: boolean;
  reset: boolean;
  silent: boolean;
  flat: boolean;
  /** Start of the current run of zero-energy intervals, -1 when none. */
  flatFrom: number;
  flatExpWh: number;
  /** Out-of-band voltage reads in a row. */
  vRun: number;
  voltage: boolean;
  /**
   * Collective detectors: a two-sided CUSUM of standardised residuals. Up side (`highUsage`): statistic, EWMA of z
   * while firing, start of the run (-1 when none), measured and expected Wh since then, next reminder, firing.
   */
  upS: number;
  upE: number;
  upFrom: number;
  upWh: number;
  upExpWh: number;
  upNextAt: number;
  high: boolean;
  /** Down side (`drop`), the same fields. */
  dnS: number;
  dnE: number;
  dnFrom: number;
  dropWh: number;
  dropExpWh: number;
  dropNextAt: number;
  drop: boolean;
  /** stuck: the repeated value (-1 when none), how many in a row, since when, log of their chance, firing. */
  stuckWh: number;
  stuckN: number;
  stuckFrom: number;
  stuckLogP: number;
  stuckNextAt: number;
  stuck: boolean;
  /** shape: local day being collected (-1 none), its start, intervals seen, intervals unusable or marked, Wh per local hour. */
  dayNo: number;
  dayStart: number;
  dayN: number;
  dayBad: number;
  dayHours: Float32Array;
  /** This meter's typical day-to-day variation: EWMA of |day total / expected − 1| over normal days. */
  dayDev: number;
  /** This meter's typical day-shape distance: EWMA mean and mean deviation, days judged; firing. */
  shapeMean: number;
  shapeDev: number;
  shapeDays: number;
  shape: boolean;
  /** Local hours (bits 0–23) in which this meter has exported: its import there follows the weather (PV). */
  exportHours: number;
  /** Measured Wh of the latest evaluated intervals (a ring, newest at recentN − 1 mod size), and the end of the newest. */
  recent: Float32Array;
  recentN: number;
  recentEnd: number;
}

export function initialDetectors(): DetectorState {
  return {
    spike: false,
    reverse: false,
    peak: false,
    reset: false,
    silent: false,
    flat: false,
    flatFrom: -1,
    flatExpWh: 0,
    vRun: 0,
    voltage: false,
    upS: 0,
    upE: 0,
    upFrom: -1,
    upWh: 0,
    upExpWh: 0,
    upNextAt: 0,
    high: false,
    dnS: 0,
    dnE: 0,
    dnFrom: -1,
    dropWh: 0,
    dropExpWh: 0,
    dropNextAt: 0,
    drop: false,
    stuckWh: -1,
    stuckN: 0,
    stuckFrom: -1,
    stuckLogP: 0,
    stuckNextAt: 0,
    stuck: false,
    dayNo: -1,
    dayStart: -1,
    dayN: 0,
    dayBad: 0,
    dayHours: new Float32Array(24),
    dayDev: 0,
    shapeMean: 0,
    shapeDev: 0,
    shapeDays: 0,
    shape: false,
    exportHours: 0,
    recent: new Float32Array(RECENT_INTERVALS),
    recentN: 0,
    recentEnd: -1,
  };
}

/** The registry facts an event carries (a CustomerRecord fits). */
export interface MeterRef {
  meterId: string;
  customerId: string;
  class: CustomerClass;
  transformerId: string;
  feederId: string;
  hasPv: boolean;
  contractKw: number;
}

export interface EventInput {
  type: AnomalyType;
  status: 'firing' | 'clear';
  subjectKind: SubjectKind;
  subject: string;
  ts: number;
  value: number;
  expected: number;
  score: number;
  severity: Severity;
  reason: string;
  meter?: MeterRef;
  transformerId?: string;
  feederId?: string;
}

const round3 = (n: number): number => (Number.isFinite(n) ? Math.round(n * 1000) / 1000 : 0);

export function makeEvent(e: EventInput): DetectionEvent {
  const ev: DetectionEvent = {
    id: `${e.type}:${e.subject}:${e.ts}:${e.status}`,
    type: e.type,
    status: e.status,
    subjectKind: e.subjectKind,
    subject: e.subject,
    ts: e.ts,
    value: round3(e.value),
    expected: round3(e.expected),
    score: round3(e.score),
    severity: e.severity,
    reason: e.reason,
  };
  if (e.meter !== undefined) {
    ev.meterId = e.meter.meterId;
    ev.customerId = e.meter.customerId;
    ev.customerClass = e.meter.class;
    ev.transformerId = e.meter.transformerId;
    ev.feederId = e.meter.feederId;
  }
  if (e.transformerId !== undefined) ev.transformerId = e.transformerId;
  if (e.feederId !== undefined) ev.feederId = e.feederId;
  return ev;
}

export function meterEvent(
  meter: MeterRef,
  type: AnomalyType,
  status: 'firing' | 'clear',
  ts: number,
  fields: { value: number; expected: number; score: number; severity: Severity; reason: string },
): DetectionEvent {
  return makeEvent({ type, status, subjectKind: 'meter', subject: meter.meterId, ts, meter, ...fields });
}

export const kwh = (wh: number): string => `${(wh / 1000).toFixed(2)} kWh`;
const kw = (w: number): string => `${(w / 1000).toFixed(1)} kW`;
const pct = (x: number): string => `${Math.round(x * 100)}%`;

/** One computed interval as the detectors see it. */
export interface IntervalFacts {
  start: number;
  end: number;
  wh: number;
  exportWh: number;
  estimated: boolean;
  /** Average import demand over the interval, W. */
  demandW: number;
  expectedWh: number;
  spreadWh: number;
  /** Past the warm-up: the statistical detectors may fire. */
  warm: boolean;
  /** The interval's baseline slot has learned enough samples to judge a single interval (spike, flatline). */
  slotReady: boolean;
  /** The meter's mean expected energy per interval (scale of the scale-free floors); 0: unknown. */
  meterWh?: number;
  /** Expected energy per interval of the meter's busiest slot; 0: unknown. */
  peakWh?: number;
  /** A holiday of the meter's region: neither fires nor teaches. */
  holiday?: boolean;
  /** Local day number (days since 1970-01-01 local) and hour: the day-shape check; absent: no shape check. */
  dayNumber?: number;
  hour?: number;
}

/** What the baseline expects elsewhere: for marking a run back and for the day shape. */
export interface Expectations {
  /** Expected Wh of this meter's interval starting at `start`. */
  intervalWh(start: number): number;
  /** Expected Wh per hour at a local weekday (0 = Monday) and hour. */
  hourWh(weekday: number, hour: number): number;
}

const NO_EXPECTATIONS: Expectations = { intervalWh: () => 0, hourWh: () => 0 };

export interface Evaluation {
  det: DetectorState;
  events: DetectionEvent[];
  /** Every interval judged anomalous by this step: the current one and any marked back to a run's start. */
  marks: IntervalMark[];
  /** Whether the interval may teach the baseline (not anomalous, not estimated, not a holiday). */
  teach: boolean;
  /** A level shift was adopted: multiply the baseline by this. */
  rescale?: number;
}

const fmtHours = (h: number): string => (h >= 10 ? h.toFixed(0) : h.toFixed(1));
const pctOf = (x: number): string => `${Math.round(x * 100)} %`;

/**
 * Marks the intervals of a run back to `from` (those before `iv`, from the ring of recent values). A collective run
 * marks only those that point its way (`up`: above what was expected, `down`: below and not zero): intervals it
 * passed over without evidence (solar hours, a zero import) are not its extent. Stuck and flatline runs mark all.
 */
function markBack(
  det: DetectorState,
  iv: IntervalFacts,
  from: number,
  meterId: string,
  type: AnomalyType,
  way: 'up' | 'down' | 'all',
  score: number,
  src: Expectations,
  marks: IntervalMark[],
): void {
  const len = iv.end - iv.start;
  if (len <= 0 || from < 0 || det.recentEnd !== iv.start) return;
  const back = Math.min(Math.round((iv.start - from) / len), det.recentN, RECENT_INTERVALS);
  for (let j = back; j >= 1; j--) {
    const start = iv.start - j * len;
    const idx = (((det.recentN - j) % RECENT_INTERVALS) + RECENT_INTERVALS) % RECENT_INTERVALS;
    const wh = det.recent[idx] ?? 0;
    const expectedWh = src.intervalWh(start);
    // (An expectation of 0 is none known: nothing to compare with, the run's extent stands.)
    if (expectedWh > 0 && ((way === 'up' && !(wh > expectedWh)) || (way === 'down' && !(wh < expectedWh && wh > 0)))) continue;
    marks.push({ meterId, start, end: start + len, type, wh, expectedWh, score });
  }
}

function mark(iv: IntervalFacts, meterId: string, type: AnomalyType, score: number, marks: IntervalMark[]): void {
  marks.push({ meterId, start: iv.start, end: iv.end, type, wh: iv.wh, expectedWh: iv.expectedWh, score });
}

interface Side {
  s: number;
  e: number;
  from: number;
  wh: number;
  exp: number;
  nextAt: number;
  on: boolean;
}

function readSide(det: DetectorState, up: boolean): Side {
  return up
    ? { s: det.upS, e: det.upE, from: det.upFrom, wh: det.upWh, exp: det.upExpWh, nextAt: det.upNextAt, on: det.high }
    : { s: det.dnS, e: det.dnE, from: det.dnFrom, wh: det.dropWh, exp: det.dropExpWh, nextAt: det.dropNextAt, on: det.drop };
}

/** Rounded as checkpointed (short JSON numbers; the state in memory equals the decoded one). */
const r4 = (x: number): number => Math.round(x * 1e4) / 1e4;

function writeSide(det: DetectorState, up: boolean, v: Side): void {
  v.s = r4(v.s);
  v.e = r4(v.e);
  v.wh = r4(v.wh);
  v.exp = r4(v.exp);
  if (up) {
    det.upS = v.s;
    det.upE = v.e;
    det.upFrom = v.from;
    det.upWh = v.wh;
    det.upExpWh = v.exp;
    det.upNextAt = v.nextAt;
    det.high = v.on;
  } else {
    det.dnS = v.s;
    det.dnE = v.e;
    det.dnFrom = v.from;
    det.dropWh = v.wh;
    det.dropExpWh = v.exp;
    det.dropNextAt = v.nextAt;
    det.drop = v.on;
  }
}

function resetSide(v: Side): void {
  v.s = 0;
  v.e = 0;
  v.from = -1;
  v.wh = 0;
  v.exp = 0;
  v.nextAt = 0;
  v.on = false;
}

/**
 * One side of the collective detector (up: highUsage, down: drop). A CUSUM of clipped standardised residuals in
 * spread-hours: a moderate shift that persists adds up, one noisy interval does not. When it fires, the run is
 * marked back to where it began (the statistic's last zero: the change-point estimate); while it holds (the EWMA of
 * z stays above holdZ) every further interval is marked; the episode then clears. An episode that holds
 * levelShift.adoptDays is adopted as the new level.
 */
function collectiveSide(
  det: DetectorState,
  up: boolean,
  iv: IntervalFacts,
  z: number,
  meter: MeterRef,
  s: DetectorSettings,
  src: Expectations,
  out: Evaluation,
): void {
  const c = s.collective ?? DETECTION_DEFAULTS.collective;
  const adoptDays = (s.levelShift ?? DETECTION_DEFAULTS.levelShift).adoptDays;
  const type: AnomalyType = up ? 'highUsage' : 'drop';
  const zd = up ? z : -z;
  const w = (iv.end - iv.start) / HOUR_MS;
  const v = readSide(det, up);
  if (!v.on) {
    if (v.s === 0) {
      if (zd <= c.k) return;
      v.from = iv.start;
      v.wh = 0;
      v.exp = 0;
    }
    v.s = Math.max(0, v.s + w * (zd - c.k));
    v.wh += iv.wh;
    v.exp += iv.expectedWh;
    if (v.s === 0) {
      resetSide(v);
      writeSide(det, up, v);
      return;
    }
    // Effect size: beyond minRatio / maxRatio and beyond this meter's own day-to-day variation (a home whose days
    // vary by 20 % is not abnormal at 80 % for an afternoon; a building whose days vary by 3 % is).
    const ratio = v.exp > 0 ? v.wh / v.exp : up ? Infinity : 0;
    // A run that has lasted longRunHours shows a smaller effect as plainly: the ratio bounds relax by longRunSlack.
    const spread = (c.dayDevK ?? 0) * det.dayDev;
    const slack = (iv.end - v.from) / HOUR_MS >= (c.longRunHours ?? Infinity) ? (c.longRunSlack ?? 0) : 0;
    const big = up ? ratio >= Math.max(c.minRatio - slack, 1 + spread) : ratio <= Math.min(c.maxRatio + slack, 1 - spread);
    if (v.s >= c.h && big && (up || v.exp >= s.drop.minExpectedWh)) {
      const hours = (iv.end - v.from) / HOUR_MS;
      v.on = true;
      v.e = v.s / hours + c.k; // the run's mean z
      v.nextAt = iv.end + c.reminderHours * HOUR_MS;
      v.s = Math.min(v.s, c.h);
      markBack(det, iv, v.from, meter.meterId, type, up ? 'up' : 'down', c.h, src, out.marks);
      mark(iv, meter.meterId, type, c.h, out.marks);
      out.events.push(meterEvent(meter, type, 'firing', iv.end, sideFields(up, v, hours, s)));
    }
    writeSide(det, up, v);
    return;
  }
  // Firing: holds while the recent z (EWMA) stays in its direction.
  v.e += (1 - Math.exp(-w / c.holdHours)) * (zd - v.e);
  v.s = Math.min(c.h, Math.max(0, v.s + w * (zd - c.k)));
  const hours = (iv.end - v.from) / HOUR_MS;
  if (v.e < c.holdZ) {
    out.events.push(
      meterEvent(meter, type, 'clear', iv.end, {
        value: iv.wh,
        expected: iv.expectedWh,
        score: 0,
        severity: 'info',
        reason: `back to the usual level: ${kwh(iv.wh)} vs ${kwh(iv.expectedWh)} expected (after ${fmtHours(hours)} h)`,
      }),
    );
    resetSide(v);
    writeSide(det, up, v);
    return;
  }
  v.wh += iv.wh;
  v.exp += iv.expectedWh;
  if (hours >= adoptDays * 24) {
    const ratio = v.exp > 0 ? v.wh / v.exp : 1;
    out.rescale = ratio;
    out.events.push(
      meterEvent(meter, type, 'clear', iv.end, {
        value: v.wh,
        expected: v.exp,
        score: 0,
        severity: 'info',
        reason: `adopted as the new level after ${fmtHours(hours / 24)} days`,
      }),
    );
    out.events.push(
      meterEvent(meter, 'levelShift', 'firing', iv.end, {
        value: v.wh,
        expected: v.exp,
        score: ratio,
        severity: 'info',
        reason: `consumption has stayed at ${ratio.toFixed(2)}× the former level for ${fmtHours(hours / 24)} days: the baseline now expects the new level`,
      }),
    );
    resetSide(v);
    writeSide(det, up, v);
    return;
  }
  // Only the intervals that still point the episode's way are marked: the hold's lag is not the anomaly's extent.
  if (zd > c.k) mark(iv, meter.meterId, type, v.s, out.marks);
  if (iv.end >= v.nextAt) {
    v.nextAt = iv.end + c.reminderHours * HOUR_MS;
    out.events.push(meterEvent(meter, type, 'firing', iv.end, sideFields(up, v, hours, s)));
  }
  writeSide(det, up, v);
}

function sideFields(
  up: boolean,
  v: Side,
  hours: number,
  s: DetectorSettings,
): { value: number; expected: number; score: number; severity: Severity; reason: string } {
  const ratio = v.exp > 0 ? v.wh / v.exp : 0;
  if (up) {
    return {
      value: v.wh,
      expected: v.exp,
      score: ratio,
      severity: ratio >= 2 ? 'major' : 'warning',
      reason: `${ratio.toFixed(1)}× the usual ${kwh(v.exp)} for the last ${fmtHours(hours)} h`,
    };
  }
  return {
    value: v.wh,
    expected: v.exp,
    score: 1 - ratio,
    severity: ratio < s.drop.ratio ? 'major' : 'warning',
    reason: `import at ${pctOf(ratio)} of the usual ${kwh(v.exp)} for the last ${fmtHours(hours)} h: ${kwh(v.wh)}`,
  };
}

/**
 * stuck: the same non-zero value interval after interval, for longer than chance explains. The chance that an
 * interval repeats the previous value is about resolution / (2.5 × spread) (a value of that spread falling on the
 * same register step); the run fires once the product of those chances is below maxChance, with at least minRun
 * values over minHours. The whole run is marked. Placeholders after a data fault (exactly 1000 Wh every hour) are
 * one case.
 */
function stuckStep(det: DetectorState, iv: IntervalFacts, meter: MeterRef, s: DetectorSettings, src: Expectations, out: Evaluation): void {
  const c = s.stuck ?? DETECTION_DEFAULTS.stuck;
  const minutes = Math.round((iv.end - iv.start) / MINUTE_MS);
  if (iv.estimated || iv.wh <= 0 || iv.wh !== det.stuckWh) {
    if (det.stuck) {
      out.events.push(
        meterEvent(meter, 'stuck', 'clear', iv.end, {
          value: iv.wh,
          expected: iv.expectedWh,
          score: 0,
          severity: 'info',
          reason: `values moving again: ${kwh(iv.wh)} in ${minutes} min`,
        }),
      );
    }
    det.stuck = false;
    det.stuckNextAt = 0;
    det.stuckLogP = 0;
    if (iv.estimated || iv.wh <= 0) {
      det.stuckWh = -1;
      det.stuckN = 0;
      det.stuckFrom = -1;
    } else {
      det.stuckWh = iv.wh;
      det.stuckN = 1;
      det.stuckFrom = iv.start;
    }
    return;
  }
  det.stuckN += 1;
  det.stuckLogP = r4(det.stuckLogP + Math.log(Math.min(0.5, c.resolutionWh / (2.5 * Math.max(iv.spreadWh, 1e-9)))));
  const hours = (iv.end - det.stuckFrom) / HOUR_MS;
  const score = -det.stuckLogP / Math.LN10;
  if (!det.stuck) {
    if (!iv.warm || det.stuckN < c.minRun || hours < c.minHours || det.stuckLogP > Math.log(c.maxChance)) return;
    det.stuck = true;
    markBack(det, iv, det.stuckFrom, meter.meterId, 'stuck', 'all', score, src, out.marks);
    // The run is stuck's: evidence the collective detectors gathered from it is void.
    if (!det.high) Object.assign(det, { upS: 0, upFrom: -1, upWh: 0, upExpWh: 0 });
    if (!det.drop) Object.assign(det, { dnS: 0, dnFrom: -1, dropWh: 0, dropExpWh: 0 });
  } else if (iv.end < det.stuckNextAt) {
    mark(iv, meter.meterId, 'stuck', score, out.marks);
    return;
  }
  mark(iv, meter.meterId, 'stuck', score, out.marks);
  det.stuckNextAt = iv.end + (s.collective ?? DETECTION_DEFAULTS.collective).reminderHours * HOUR_MS;
  out.events.push(
    meterEvent(meter, 'stuck', 'firing', iv.end, {
      value: iv.wh,
      expected: iv.expectedWh,
      score,
      severity: 'warning',
      reason: `the same ${iv.wh} Wh every ${minutes} min for ${fmtHours(hours)} h (${det.stuckN} intervals in a row): a stuck or placeholder value`,
    }),
  );
}

/**
 * shape: at the end of each local day, the day's normalised profile against the expected one (L1 distance of the
 * hourly shares, 0–2) at a normal daily total; fires when far above this meter's typical distance. The hours whose
 * share is off most are marked. Weekends, days with gaps, holidays, DST changes or another anomaly are not judged.
 */
function shapeDayEnd(det: DetectorState, iv: IntervalFacts, meter: MeterRef, s: DetectorSettings, src: Expectations, out: Evaluation): void {
  const c = s.shape ?? DETECTION_DEFAULTS.shape;
  const len = iv.end - iv.start;
  const perDay = Math.round((24 * HOUR_MS) / len);
  if (det.dayNo < 0 || det.dayN !== perDay || det.dayBad > 0) return;
  const weekday = (((det.dayNo + 3) % 7) + 7) % 7;
  let total = 0;
  let expTotal = 0;
  for (let h = 0; h < 24; h++) {
    total += det.dayHours[h] ?? 0;
    expTotal += src.hourWh(weekday, h);
  }
  if (!(expTotal > 0) || !(total > 0)) return;
  const ratio = total / expTotal;
  // The meter's day-to-day variation, from its normal days (clipped at 0.5: one odd day barely moves it).
  det.dayDev = r4(det.dayDev + 0.1 * (Math.min(0.5, Math.abs(ratio - 1)) - det.dayDev));
  if (!iv.warm) return;
  // Weekdays only: a weekend slot learns one sample a week, and homes keep no schedule on Saturdays, so a weekend
  // profile against its expectation is mostly noise (measured: nearly every weekend shape flag was false).
  if (weekday >= 5) return;
  if (ratio < c.minTotalRatio || ratio > c.maxTotalRatio) return;
  let d = 0;
  for (let h = 0; h < 24; h++) d += Math.abs((det.dayHours[h] ?? 0) / total - src.hourWh(weekday, h) / expTotal);
  const threshold = Math.max(c.minDistance, det.shapeMean + c.k * det.shapeDev);
  // One working week of normal days (weekdays only) before a day is judged.
  const judged = det.shapeDays >= 5;
  if (judged && d > threshold) {
    const perHour = HOUR_MS / len;
    for (let h = 0; h < 24; h++) {
      const x = det.dayHours[h] ?? 0;
      const e = (src.hourWh(weekday, h) * total) / expTotal;
      if (Math.abs(x - e) / total <= c.markShare / 24) continue;
      for (let q = 0; q < perHour; q++) {
        const start = det.dayStart + h * HOUR_MS + q * len;
        out.marks.push({ meterId: meter.meterId, start, end: start + len, type: 'shape', wh: x / perHour, expectedWh: e / perHour, score: d });
      }
    }
    det.shape = true;
    out.events.push(
      meterEvent(meter, 'shape', 'firing', iv.start, {
        value: d,
        expected: det.shapeMean,
        score: d,
        severity: 'warning',
        reason: `the day's profile is off by ${pctOf(d / 2)} of its energy at a normal total (${kwh(total)} vs ${kwh(expTotal)} expected)`,
      }),
    );
    return;
  }
  if (det.shape) {
    det.shape = false;
    out.events.push(
      meterEvent(meter, 'shape', 'clear', iv.start, {
        value: d,
        expected: det.shapeMean,
        score: d,
        severity: 'info',
        reason: 'the day followed its usual profile',
      }),
    );
  }
  // Learn the typical distance from normal days only (clipped, so one odd day barely moves it).
  const a = det.shapeDays < 10 ? 1 / (det.shapeDays + 1) : 0.1;
  const dc = det.shapeDays < 3 ? d : Math.min(d, det.shapeMean + 3 * Math.max(det.shapeDev, 0.02));
  const dev = Math.abs(dc - det.shapeMean);
  det.shapeMean = r4(det.shapeMean + a * (dc - det.shapeMean));
  det.shapeDev = det.shapeDays === 0 ? 0.05 : r4(det.shapeDev + a * (dev - det.shapeDev));
  det.shapeDays = Math.min(255, det.shapeDays + 1);
}

/** Collects the interval into its local day (after judging the finished one). */
function shapeStep(det: DetectorState, iv: IntervalFacts, meter: MeterRef, s: DetectorSettings, src: Expectations, out: Evaluation, anomalous: boolean): void {
  if (iv.dayNumber === undefined || iv.hour === undefined) return;
  if (iv.dayNumber !== det.dayNo) {
    shapeDayEnd(det, iv, meter, s, src, out);
    det.dayNo = iv.dayNumber;
    det.dayStart = iv.start;
    det.dayN = 0;
    det.dayBad = 0;
    det.dayHours.fill(0);
  }
  det.dayN += 1;
  if (iv.estimated || iv.holiday === true || anomalous || !iv.slotReady) det.dayBad += 1;
  det.dayHours[iv.hour] = (det.dayHours[iv.hour] ?? 0) + iv.wh;
}

function remember(det: DetectorState, iv: IntervalFacts): void {
  if (det.recentEnd !== iv.start) det.recentN = 0;
  det.recent[det.recentN % RECENT_INTERVALS] = iv.wh;
  det.recentN = det.recentN + 1 >= 2 * RECENT_INTERVALS ? RECENT_INTERVALS + ((det.recentN + 1) % RECENT_INTERVALS) : det.recentN + 1;
  det.recentEnd = iv.end;
}

/** spike: one interval far above what the meter uses then. Estimated intervals carry the baseline shape, not a
 * measurement, so they neither fire nor clear (the caller judges only measured, warm intervals). */
function spikeStep(det: DetectorState, iv: IntervalFacts, meter: MeterRef, s: DetectorSettings, out: Evaluation, solarHour: boolean, minutes: number): void {
  const events = out.events;
  const base = solarHour ? Math.max(iv.expectedWh, iv.peakWh ?? 0) : iv.expectedWh;
  const excess = iv.wh - base;
  const z = excess / Math.max(iv.spreadWh, 1e-9);
  const spiked =
    iv.wh >= s.spike.factor * base && z >= s.spike.zScore && iv.demandW >= s.spike.minDemandW && excess >= (s.spike.minExcessShare ?? 0) * (iv.meterWh ?? 0);
  if (spiked) {
    det.spike = true;
    mark(iv, meter.meterId, 'spike', z, out.marks);
    const ratio = iv.expectedWh > 0 ? `${(iv.wh / iv.expectedWh).toFixed(1)}x` : 'far above';
    events.push(
      meterEvent(meter, 'spike', 'firing', iv.end, {
        value: iv.wh,
        expected: iv.expectedWh,
        score: z,
        severity: z >= s.spike.majorZScore ? 'major' : 'warning',
        reason: `${kwh(iv.wh)} in ${minutes} min, ${ratio} the usual ${kwh(iv.expectedWh)}`,
      }),
    );
  } else if (det.spike) {
    det.spike = false;
    events.push(
      meterEvent(meter, 'spike', 'clear', iv.end, {
        value: iv.wh,
        expected: iv.expectedWh,
        score: z,
        severity: 'info',
        reason: `back to ${kwh(iv.wh)} in ${minutes} min (usual ${kwh(iv.expectedWh)})`,
      }),
    );
  }
}

/**
 * flatline: a zero register delta is real even across a gap, so estimated intervals count. A meter is frozen only
 * when neither register moves: a PV meter exporting at noon imports nothing and is alive. Returns whether it fires.
 */
function flatlineStep(
  det: DetectorState,
  iv: IntervalFacts,
  meter: MeterRef,
  s: DetectorSettings,
  src: Expectations,
  out: Evaluation,
  minutes: number,
): boolean {
  const events = out.events;
  const holiday = iv.holiday === true;
  const frozen = iv.wh === 0 && iv.exportWh === 0;
  let flatFiring = false;
  if (iv.warm && iv.slotReady && frozen && !holiday) {
    if (det.flatFrom < 0) {
      det.flatFrom = iv.start;
      det.flatExpWh = 0;
    }
    det.flatExpWh += iv.expectedWh;
    const hours = (iv.end - det.flatFrom) / 3_600_000;
    if (hours >= s.flatline.minHours && det.flatExpWh >= s.flatline.minExpectedWh) {
      flatFiring = true;
      if (!det.flat) markBack(det, iv, det.flatFrom, meter.meterId, 'flatline', 'all', hours, src, out.marks);
      mark(iv, meter.meterId, 'flatline', hours, out.marks);
      det.flat = true;
      events.push(
        meterEvent(meter, 'flatline', 'firing', iv.end, {
          value: 0,
          expected: det.flatExpWh,
          score: hours,
          severity: hours >= 24 ? 'major' : 'warning',
          reason: `register frozen for ${hours.toFixed(1)} h while ${kwh(det.flatExpWh)} was expected`,
        }),
      );
    }
  } else {
    det.flatFrom = -1;
    det.flatExpWh = 0;
    if (det.flat && !frozen) {
      det.flat = false;
      events.push(
        meterEvent(meter, 'flatline', 'clear', iv.end, {
          value: iv.wh,
          expected: iv.expectedWh,
          score: 0,
          severity: 'info',
          reason: `register moving again: ${kwh(iv.wh)} imported${iv.exportWh > 0 ? `, ${kwh(iv.exportWh)} exported` : ''} in ${minutes} min`,
        }),
      );
    }
  }
  return flatFiring;
}

/** reverseFlow: export on a meter the registry says has no PV (tamper or a wrong registry entry). */
function reverseFlowStep(det: DetectorState, iv: IntervalFacts, meter: MeterRef, s: DetectorSettings, out: Evaluation, minutes: number): void {
  const events = out.events;
  const exporting = !meter.hasPv && iv.exportWh >= s.reverseFlow.minExportWh;
  if (exporting) {
    det.reverse = true;
    events.push(
      meterEvent(meter, 'reverseFlow', 'firing', iv.end, {
        value: iv.exportWh,
        expected: 0,
        score: iv.exportWh / s.reverseFlow.minExportWh,
        severity: 'major',
        reason: `${iv.exportWh} Wh exported in ${minutes} min by a meter registered without PV`,
      }),
    );
  } else if (det.reverse) {
    det.reverse = false;
    events.push(
      meterEvent(meter, 'reverseFlow', 'clear', iv.end, {
        value: iv.exportWh,
        expected: 0,
        score: 0,
        severity: 'info',
        reason: 'no more export',
      }),
    );
  }
}

/** customerPeak: average interval demand over the contracted capacity; estimated demand proves nothing. */
function customerPeakStep(det: DetectorState, iv: IntervalFacts, meter: MeterRef, s: DetectorSettings, out: Evaluation): void {
  const events = out.events;
  if (meter.contractKw > 0 && !iv.estimated) {
    const contractW = meter.contractKw * 1000;
    if (iv.demandW > s.customerPeak.ratio * contractW) {
      det.peak = true;
      events.push(
        meterEvent(meter, 'customerPeak', 'firing', iv.end, {
          value: iv.demandW,
          expected: contractW,
          score: iv.demandW / contractW,
          severity: iv.demandW >= s.customerPeak.majorRatio * contractW ? 'major' : 'warning',
          reason: `${kw(iv.demandW)} average over the contracted ${kw(contractW)}`,
        }),
      );
    } else if (det.peak) {
      det.peak = false;
      events.push(
        meterEvent(meter, 'customerPeak', 'clear', iv.end, {
          value: iv.demandW,
          expected: contractW,
          score: iv.demandW / contractW,
          severity: 'info',
          reason: `${kw(iv.demandW)} average, within the contracted ${kw(contractW)}`,
        }),
      );
    }
  }
}

/**
 * Runs the interval detectors (spike, highUsage/drop, stuck, flatline, shape, reverseFlow, customerPeak) on one new
 * interval, in time order. `prev` is updated in place and returned as `det` (this runs once per interval: the
 * caller owns the state it passes).
 */
export function evaluateInterval(
  prev: DetectorState,
  iv: IntervalFacts,
  meter: MeterRef,
  s: DetectorSettings,
  src: Expectations = NO_EXPECTATIONS,
): Evaluation {
  const det = prev;
  const out: Evaluation = { det, events: [], marks: [], teach: true };
  const minutes = Math.round((iv.end - iv.start) / MINUTE_MS);
  const holiday = iv.holiday === true;
  const judge = iv.warm && iv.slotReady && !iv.estimated && !holiday;
  const frozen = iv.wh === 0 && iv.exportWh === 0;

  stuckStep(det, iv, meter, s, src, out);
  // Hours in which the meter exports: its import there is consumption minus generation (PV), and a sunny or a cloudy
  // day is no anomaly. Spike judges them against the meter's busiest hour (what it imports without the sun at
  // most); highUsage/drop skip them.
  if (iv.exportWh > 0 && iv.hour !== undefined) det.exportHours |= 1 << iv.hour;
  const solarHour = iv.exportWh > 0 || (iv.hour !== undefined && (det.exportHours & (1 << iv.hour)) !== 0);

  // spike: estimated intervals carry the baseline shape, not a measurement, so they neither fire nor clear.
  if (judge) spikeStep(det, iv, meter, s, out, solarHour, minutes);

  // highUsage / drop: intervals without any import (outage, frozen register) are flatline's business, a stuck
  // value is stuck's, solar hours are the weather's; none adds evidence.
  if (judge && !frozen && !det.stuck && !solarHour) {
    const zClip = (s.collective ?? DETECTION_DEFAULTS.collective).zClip;
    const z = Math.max(-zClip, Math.min(zClip, (iv.wh - iv.expectedWh) / Math.max(iv.spreadWh, 1e-9)));
    collectiveSide(det, true, iv, z, meter, s, src, out);
    collectiveSide(det, false, iv, z, meter, s, src, out);
  }

  const flatFiring = flatlineStep(det, iv, meter, s, src, out, minutes);

  const anomalous = out.marks.length > 0 || det.high || det.drop || det.stuck || flatFiring;
  shapeStep(det, iv, meter, s, src, out, anomalous);
  remember(det, iv);

  reverseFlowStep(det, iv, meter, s, out, minutes);
  customerPeakStep(det, iv, meter, s, out);

  out.teach = !iv.estimated && !holiday && !anomalous;
  return out;
}

/**
 * Whether an interval starting at `start`, evaluated already, may still teach the baseline now: not while it sits in
 * a firing highUsage/drop episode or a stuck run. A run that is only building evidence still teaches (clipped):
 * holding back every low-ish run would censor one side and drag the baseline up.
 */
export function mayTeach(det: DetectorState, start: number): boolean {
  if (det.high && det.upFrom >= 0 && start >= det.upFrom) return false;
  if (det.drop && det.dnFrom >= 0 && start >= det.dnFrom) return false;
  if (det.stuck && start >= det.stuckFrom) return false;
  return true;
}

/**
 * voltage: outside nominal ± tolerance for `minConsecutive` reads in a row; one event per such read. `prev` is updated
 * in place and returned as `det`, like evaluateInterval (this runs once per read: the caller owns the state).
 */
export function evaluateVoltage(
  prev: DetectorState,
  ts: number,
  voltageV: number,
  meter: MeterRef,
  s: DetectorSettings,
): { det: DetectorState; events: DetectionEvent[] } {
  const det = prev;
  const events: DetectionEvent[] = [];
  const nominal = s.voltage.nominalV;
  const dev = Math.abs(voltageV - nominal) / nominal;
  if (dev > s.voltage.tolerance) {
    det.vRun += 1;
    if (det.vRun >= s.voltage.minConsecutive) {
      det.voltage = true;
      events.push(
        meterEvent(meter, 'voltage', 'firing', ts, {
          value: voltageV,
          expected: nominal,
          score: dev / s.voltage.tolerance,
          severity: dev > s.voltage.majorTolerance ? 'major' : 'warning',
          reason: `${voltageV.toFixed(1)} V, ${pct(dev)} ${voltageV < nominal ? 'below' : 'above'} nominal ${nominal} V for ${det.vRun} reads`,
        }),
      );
    }
  } else {
    det.vRun = 0;
    if (det.voltage) {
      det.voltage = false;
      events.push(
        meterEvent(meter, 'voltage', 'clear', ts, {
          value: voltageV,
          expected: nominal,
          score: dev / s.voltage.tolerance,
          severity: 'info',
          reason: `${voltageV.toFixed(1)} V, back within ±${pct(s.voltage.tolerance)}`,
        }),
      );
    }
  }
  return { det, events };
}
