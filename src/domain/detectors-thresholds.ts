import { type Evaluation, type IntervalFacts, mark } from './detectors-evaluation.js';
import { kw, kwh, type MeterRef, meterEvent } from './detection-events.js';
import type { DetectorSettings, DetectorState } from './detectors-state.js';

/** Single-interval thresholds: spike, reverseFlow, customerPeak (each fires per interval, clears once). */

/** spike: one interval far above what the meter uses then. Estimated intervals carry the baseline shape, not a
 * measurement, so they neither fire nor clear (the caller judges only measured, warm intervals). */
export function spikeStep(
  det: DetectorState,
  iv: IntervalFacts,
  meter: MeterRef,
  s: DetectorSettings,
  out: Evaluation,
  solarHour: boolean,
  minutes: number,
): void {
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

/** reverseFlow: export on a meter the registry says has no PV (tamper or a wrong registry entry). */
export function reverseFlowStep(det: DetectorState, iv: IntervalFacts, meter: MeterRef, s: DetectorSettings, out: Evaluation, minutes: number): void {
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
export function customerPeakStep(det: DetectorState, iv: IntervalFacts, meter: MeterRef, s: DetectorSettings, out: Evaluation): void {
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
