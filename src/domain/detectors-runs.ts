import { DETECTION_DEFAULTS } from '../contracts/config-detection.js';
import { HOUR_MS, MINUTE_MS } from './local-time.js';
import { type Evaluation, type Expectations, type IntervalFacts, mark, markBack } from './detectors-evaluation.js';
import { fmtHours, kwh, type MeterRef, meterEvent } from './detection-events.js';
import { type DetectorSettings, type DetectorState, r4 } from './detectors-state.js';

/** Run detectors: the same value for too long (stuck), a frozen register (flatline). Both mark the whole run. */

/**
 * stuck: the same non-zero value interval after interval, for longer than chance explains. The chance that an
 * interval repeats the previous value is about resolution / (2.5 × spread) (a value of that spread falling on the
 * same register step); the run fires once the product of those chances is below maxChance, with at least minRun
 * values over minHours. The whole run is marked. Placeholders after a data fault (exactly 1000 Wh every hour) are
 * one case.
 */
export function stuckStep(det: DetectorState, iv: IntervalFacts, meter: MeterRef, s: DetectorSettings, src: Expectations, out: Evaluation): void {
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
 * flatline: a zero register delta is real even across a gap, so estimated intervals count. A meter is frozen only
 * when neither register moves: a PV meter exporting at noon imports nothing and is alive. Returns whether it fires.
 */
export function flatlineStep(
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
