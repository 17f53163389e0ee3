import { collectiveStep } from './detectors-collective.js';
import { type Evaluation, type Expectations, type IntervalFacts, NO_EXPECTATIONS, remember } from './detectors-evaluation.js';
import type { MeterRef } from './detection-events.js';
import { flatlineStep, stuckStep } from './detectors-runs.js';
import { shapeStep } from './detectors-shape.js';
import type { DetectorSettings, DetectorState } from './detectors-state.js';
import { customerPeakStep, reverseFlowStep, spikeStep } from './detectors-thresholds.js';
import { MINUTE_MS } from './local-time.js';

/**
 * Per-meter detectors: plain functions over a small state record (detectors-state.ts), one module per family:
 * detectors-thresholds (spike, reverseFlow, customerPeak), detectors-collective (highUsage, drop, levelShift),
 * detectors-runs (stuck, flatline), detectors-shape, detectors-reads (registerReset, silent, voltage: per read).
 * Each firing event is one anomalous interval or read; one `clear` follows when the condition stops holding. This
 * module orders the interval detectors.
 */

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
  if (judge && !frozen && !det.stuck && !solarHour) collectiveStep(det, iv, meter, s, src, out);

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
