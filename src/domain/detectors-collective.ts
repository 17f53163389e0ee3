import type { AnomalyType, Severity } from '../contracts/events.js';
import { DETECTION_DEFAULTS } from '../contracts/config-detection.js';
import { HOUR_MS } from './local-time.js';
import { type Evaluation, type Expectations, type IntervalFacts, mark, markBack } from './detectors-evaluation.js';
import { fmtHours, kwh, type MeterRef, meterEvent, pctOf } from './detection-events.js';
import { type DetectorSettings, type DetectorState, r4 } from './detectors-state.js';

/**
 * highUsage / drop: the collective detectors, a two-sided CUSUM of clipped standardised residuals (one side each,
 * the same code), and levelShift, an episode that has held long enough to be adopted as the new level.
 */

/** One side's fields of DetectorState, under common names. */
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

/** Both sides on one judged interval: its residual in spreads, clipped, is the evidence. */
export function collectiveStep(det: DetectorState, iv: IntervalFacts, meter: MeterRef, s: DetectorSettings, src: Expectations, out: Evaluation): void {
  const zClip = (s.collective ?? DETECTION_DEFAULTS.collective).zClip;
  const z = Math.max(-zClip, Math.min(zClip, (iv.wh - iv.expectedWh) / Math.max(iv.spreadWh, 1e-9)));
  collectiveSide(det, true, iv, z, meter, s, src, out);
  collectiveSide(det, false, iv, z, meter, s, src, out);
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
  const zd = up ? z : -z;
  const v = readSide(det, up);
  // No run and no evidence for one: nothing changes.
  if (!v.on && v.s === 0 && zd <= (s.collective ?? DETECTION_DEFAULTS.collective).k) return;
  if (v.on) holdSide(up, v, iv, zd, meter, s, out);
  else buildSide(det, up, v, iv, zd, meter, s, src, out);
  writeSide(det, up, v);
}

/** Not firing: the statistic sums the evidence; it fires at h with an effect large enough, marking the run back. */
function buildSide(
  det: DetectorState,
  up: boolean,
  v: Side,
  iv: IntervalFacts,
  zd: number,
  meter: MeterRef,
  s: DetectorSettings,
  src: Expectations,
  out: Evaluation,
): void {
  const c = s.collective ?? DETECTION_DEFAULTS.collective;
  const type: AnomalyType = up ? 'highUsage' : 'drop';
  if (v.s === 0) {
    v.from = iv.start;
    v.wh = 0;
    v.exp = 0;
  }
  v.s = Math.max(0, v.s + ((iv.end - iv.start) / HOUR_MS) * (zd - c.k));
  v.wh += iv.wh;
  v.exp += iv.expectedWh;
  if (v.s === 0) {
    resetSide(v);
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
}

/** Firing: holds while the recent z (EWMA) stays in its direction; clears, or is adopted as the new level. */
function holdSide(up: boolean, v: Side, iv: IntervalFacts, zd: number, meter: MeterRef, s: DetectorSettings, out: Evaluation): void {
  const c = s.collective ?? DETECTION_DEFAULTS.collective;
  const adoptDays = (s.levelShift ?? DETECTION_DEFAULTS.levelShift).adoptDays;
  const type: AnomalyType = up ? 'highUsage' : 'drop';
  const w = (iv.end - iv.start) / HOUR_MS;
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
    return;
  }
  v.wh += iv.wh;
  v.exp += iv.expectedWh;
  if (hours >= adoptDays * 24) {
    adoptLevel(v, type, iv, hours, meter, out);
    resetSide(v);
    return;
  }
  // Only the intervals that still point the episode's way are marked: the hold's lag is not the anomaly's extent.
  if (zd > c.k) mark(iv, meter.meterId, type, v.s, out.marks);
  if (iv.end >= v.nextAt) {
    v.nextAt = iv.end + c.reminderHours * HOUR_MS;
    out.events.push(meterEvent(meter, type, 'firing', iv.end, sideFields(up, v, hours, s)));
  }
}

/** levelShift: the episode has held adoptDays: it clears, and the baseline is rescaled to the level it has kept. */
function adoptLevel(v: Side, type: AnomalyType, iv: IntervalFacts, hours: number, meter: MeterRef, out: Evaluation): void {
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
