import { DETECTION_DEFAULTS } from '../contracts/config-detection.js';
import type { IntervalMark } from '../contracts/events.js';
import { HOUR_MS } from './local-time.js';
import type { Evaluation, Expectations, IntervalFacts } from './detectors-evaluation.js';
import { kwh, type MeterRef, meterEvent, pctOf } from './detection-events.js';
import { type DetectorSettings, type DetectorState, r4 } from './detectors-state.js';

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
    markOffHours(det, meter.meterId, weekday, total, expTotal, d, len, c.markShare, src, out.marks);
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
  learnDistance(det, d);
}

/** Marks the intervals of the hours whose share of the day is off by more than markShare / 24 of it. */
function markOffHours(
  det: DetectorState,
  meterId: string,
  weekday: number,
  total: number,
  expTotal: number,
  d: number,
  len: number,
  markShare: number,
  src: Expectations,
  marks: IntervalMark[],
): void {
  const perHour = HOUR_MS / len;
  for (let h = 0; h < 24; h++) {
    const x = det.dayHours[h] ?? 0;
    const e = (src.hourWh(weekday, h) * total) / expTotal;
    if (Math.abs(x - e) / total <= markShare / 24) continue;
    for (let q = 0; q < perHour; q++) {
      const start = det.dayStart + h * HOUR_MS + q * len;
      marks.push({ meterId, start, end: start + len, type: 'shape', wh: x / perHour, expectedWh: e / perHour, score: d });
    }
  }
}

/** Learns the typical distance from normal days only (clipped, so one odd day barely moves it). */
function learnDistance(det: DetectorState, d: number): void {
  const a = det.shapeDays < 10 ? 1 / (det.shapeDays + 1) : 0.1;
  const dc = det.shapeDays < 3 ? d : Math.min(d, det.shapeMean + 3 * Math.max(det.shapeDev, 0.02));
  const dev = Math.abs(dc - det.shapeMean);
  det.shapeMean = r4(det.shapeMean + a * (dc - det.shapeMean));
  det.shapeDev = det.shapeDays === 0 ? 0.05 : r4(det.shapeDev + a * (dev - det.shapeDev));
  det.shapeDays = Math.min(255, det.shapeDays + 1);
}

/** Collects the interval into its local day (after judging the finished one). */
export function shapeStep(
  det: DetectorState,
  iv: IntervalFacts,
  meter: MeterRef,
  s: DetectorSettings,
  src: Expectations,
  out: Evaluation,
  anomalous: boolean,
): void {
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
