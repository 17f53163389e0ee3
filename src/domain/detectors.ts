import type { AnomalyType, DetectionEvent, Severity, SubjectKind } from '../contracts/events.js';
import type { CustomerClass } from '../contracts/registry.js';
import type { DetectionConfig } from '../contracts/config-detection.js';
import { HOUR_MS, MINUTE_MS } from './local-time.js';

/**
 * Per-meter detectors: plain functions over a small state record. Each firing event is one anomalous
 * interval or read; one `clear` follows when the condition stops holding. Event ids are deterministic
 * (`type:subject:ts:status`), so a replay produces the same ids and the queue deduplicates them.
 */

export type DetectorSettings = Pick<DetectionConfig, 'spike' | 'drop' | 'flatline' | 'reverseFlow' | 'voltage' | 'customerPeak'>;

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
   * `drop`: measured and expected import, each an exponentially decayed sum over the recent past (time constant
   * drop.windowHours), up to the end of the interval last added (`dropUntil`, -1 before the first).
   */
  dropWh: number;
  dropExpWh: number;
  dropUntil: number;
  /** Event time of the next reminder firing while the drop holds (0 when not firing). */
  dropNextAt: number;
  drop: boolean;
}

export function initialDetectors(): DetectorState {
  return {
    spike: false, reverse: false, peak: false, reset: false, silent: false, flat: false,
    flatFrom: -1, flatExpWh: 0, vRun: 0, voltage: false,
    dropWh: 0, dropExpWh: 0, dropUntil: -1, dropNextAt: 0, drop: false,
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
}

export interface Evaluation {
  det: DetectorState;
  events: DetectionEvent[];
  /** Whether the interval may teach the baseline (not anomalous, not estimated). */
  teach: boolean;
}

/** A firing drop repeats once a day (alerts count repeats); the clear ends it. */
const DROP_REMINDER_MS = 24 * HOUR_MS;

/**
 * drop: measured import far below the baseline's expectation over a sliding window. Both are exponentially decayed
 * sums (a rolling window without a ring buffer), so a drop is judged at every interval, whatever hour it began, and
 * is seen after about one window instead of after whole calendar days. Estimated intervals (gap fill) and intervals
 * without any import (an outage or a frozen register: flatline's business) add nothing to either sum; time still
 * decays them. Fires below `ratio`, clears at `clearRatio` or above (hysteresis: no flapping near the threshold).
 */
function dropStep(det: DetectorState, iv: IntervalFacts, meter: MeterRef, s: DetectorSettings, events: DetectionEvent[]): void {
  const tau = s.drop.windowHours * HOUR_MS;
  const decay = det.dropUntil < 0 ? 0 : Math.exp(-Math.max(0, iv.end - Math.max(det.dropUntil, iv.start)) / tau);
  det.dropWh *= decay;
  det.dropExpWh *= decay;
  if (!iv.estimated && iv.wh > 0) {
    det.dropWh += iv.wh;
    det.dropExpWh += iv.expectedWh;
  }
  det.dropUntil = iv.end;
  if (!iv.warm || det.dropExpWh < s.drop.minExpectedWh) return;
  const share = det.dropWh / det.dropExpWh;
  const hours = `${s.drop.windowHours} h`;
  if (share < s.drop.ratio) {
    if (det.drop && iv.end < det.dropNextAt) return;
    det.drop = true;
    det.dropNextAt = iv.end + DROP_REMINDER_MS;
    events.push(meterEvent(meter, 'drop', 'firing', iv.end, {
      value: det.dropWh,
      expected: det.dropExpWh,
      score: 1 - share,
      severity: 'major',
      reason: `import at ${pct(share)} of baseline over the last ~${hours} (below ${pct(s.drop.ratio)}): ${kwh(det.dropWh)} vs ${kwh(det.dropExpWh)} expected`,
    }));
  } else if (det.drop && share >= s.drop.clearRatio) {
    det.drop = false;
    det.dropNextAt = 0;
    events.push(meterEvent(meter, 'drop', 'clear', iv.end, {
      value: det.dropWh, expected: det.dropExpWh, score: 0, severity: 'info',
      reason: `import back to ${pct(share)} of baseline over the last ~${hours}`,
    }));
  }
}

/** Runs the interval detectors (spike, drop, flatline, reverseFlow, customerPeak) on one new interval, in time order. */
export function evaluateInterval(prev: DetectorState, iv: IntervalFacts, meter: MeterRef, s: DetectorSettings): Evaluation {
  const det: DetectorState = { ...prev };
  const events: DetectionEvent[] = [];
  const minutes = Math.round((iv.end - iv.start) / MINUTE_MS);
  dropStep(det, iv, meter, s, events);

  // spike: estimated intervals carry the baseline shape, not a measurement, so they neither fire nor clear.
  let spiked = false;
  if (iv.warm && iv.slotReady && !iv.estimated) {
    const excess = iv.wh - iv.expectedWh;
    const z = excess / Math.max(iv.spreadWh, 1e-9);
    spiked = iv.wh >= s.spike.factor * iv.expectedWh && z >= s.spike.zScore && iv.demandW >= s.spike.minDemandW;
    if (spiked) {
      det.spike = true;
      const ratio = iv.expectedWh > 0 ? `${(iv.wh / iv.expectedWh).toFixed(1)}x` : 'far above';
      events.push(meterEvent(meter, 'spike', 'firing', iv.end, {
        value: iv.wh, expected: iv.expectedWh, score: z, severity: z >= s.spike.majorZScore ? 'major' : 'warning',
        reason: `${kwh(iv.wh)} in ${minutes} min, ${ratio} the usual ${kwh(iv.expectedWh)}`,
      }));
    } else if (det.spike) {
      det.spike = false;
      events.push(meterEvent(meter, 'spike', 'clear', iv.end, {
        value: iv.wh, expected: iv.expectedWh, score: z, severity: 'info',
        reason: `back to ${kwh(iv.wh)} in ${minutes} min (usual ${kwh(iv.expectedWh)})`,
      }));
    }
  }

  // flatline: a zero register delta is real even across a gap, so estimated intervals count. A meter is frozen only
  // when neither register moves: a PV meter exporting at noon imports nothing and is alive.
  let flatFiring = false;
  const frozen = iv.wh === 0 && iv.exportWh === 0;
  if (iv.warm && iv.slotReady && frozen) {
    if (det.flatFrom < 0) {
      det.flatFrom = iv.start;
      det.flatExpWh = 0;
    }
    det.flatExpWh += iv.expectedWh;
    const hours = (iv.end - det.flatFrom) / 3_600_000;
    if (hours >= s.flatline.minHours && det.flatExpWh >= s.flatline.minExpectedWh) {
      flatFiring = true;
      det.flat = true;
      events.push(meterEvent(meter, 'flatline', 'firing', iv.end, {
        value: 0, expected: det.flatExpWh, score: hours, severity: hours >= 24 ? 'major' : 'warning',
        reason: `register frozen for ${hours.toFixed(1)} h while ${kwh(det.flatExpWh)} was expected`,
      }));
    }
  } else {
    det.flatFrom = -1;
    det.flatExpWh = 0;
    if (det.flat && !frozen) {
      det.flat = false;
      events.push(meterEvent(meter, 'flatline', 'clear', iv.end, {
        value: iv.wh, expected: iv.expectedWh, score: 0, severity: 'info',
        reason: `register moving again: ${kwh(iv.wh)} imported${iv.exportWh > 0 ? `, ${kwh(iv.exportWh)} exported` : ''} in ${minutes} min`,
      }));
    }
  }

  // reverseFlow: export on a meter the registry says has no PV (tamper or a wrong registry entry).
  const exporting = !meter.hasPv && iv.exportWh >= s.reverseFlow.minExportWh;
  if (exporting) {
    det.reverse = true;
    events.push(meterEvent(meter, 'reverseFlow', 'firing', iv.end, {
      value: iv.exportWh, expected: 0, score: iv.exportWh / s.reverseFlow.minExportWh, severity: 'major',
      reason: `${iv.exportWh} Wh exported in ${minutes} min by a meter registered without PV`,
    }));
  } else if (det.reverse) {
    det.reverse = false;
    events.push(meterEvent(meter, 'reverseFlow', 'clear', iv.end, {
      value: iv.exportWh, expected: 0, score: 0, severity: 'info', reason: 'no more export',
    }));
  }

  // customerPeak: average interval demand over the contracted capacity; estimated demand proves nothing.
  if (meter.contractKw > 0 && !iv.estimated) {
    const contractW = meter.contractKw * 1000;
    if (iv.demandW > s.customerPeak.ratio * contractW) {
      det.peak = true;
      events.push(meterEvent(meter, 'customerPeak', 'firing', iv.end, {
        value: iv.demandW, expected: contractW, score: iv.demandW / contractW,
        severity: iv.demandW >= s.customerPeak.majorRatio * contractW ? 'major' : 'warning',
        reason: `${kw(iv.demandW)} average over the contracted ${kw(contractW)}`,
      }));
    } else if (det.peak) {
      det.peak = false;
      events.push(meterEvent(meter, 'customerPeak', 'clear', iv.end, {
        value: iv.demandW, expected: contractW, score: iv.demandW / contractW, severity: 'info',
        reason: `${kw(iv.demandW)} average, within the contracted ${kw(contractW)}`,
      }));
    }
  }

  const teach = !iv.estimated && !spiked && !flatFiring && !det.drop;
  return { det, events, teach };
}

/** voltage: outside nominal ± tolerance for `minConsecutive` reads in a row; one event per such read. */
export function evaluateVoltage(prev: DetectorState, ts: number, voltageV: number, meter: MeterRef, s: DetectorSettings): { det: DetectorState; events: DetectionEvent[] } {
  const det: DetectorState = { ...prev };
  const events: DetectionEvent[] = [];
  const nominal = s.voltage.nominalV;
  const dev = Math.abs(voltageV - nominal) / nominal;
  if (dev > s.voltage.tolerance) {
    det.vRun += 1;
    if (det.vRun >= s.voltage.minConsecutive) {
      det.voltage = true;
      events.push(meterEvent(meter, 'voltage', 'firing', ts, {
        value: voltageV, expected: nominal, score: dev / s.voltage.tolerance,
        severity: dev > s.voltage.majorTolerance ? 'major' : 'warning',
        reason: `${voltageV.toFixed(1)} V, ${pct(dev)} ${voltageV < nominal ? 'below' : 'above'} nominal ${nominal} V for ${det.vRun} reads`,
      }));
    }
  } else {
    det.vRun = 0;
    if (det.voltage) {
      det.voltage = false;
      events.push(meterEvent(meter, 'voltage', 'clear', ts, {
        value: voltageV, expected: nominal, score: dev / s.voltage.tolerance, severity: 'info', reason: `${voltageV.toFixed(1)} V, back within ±${pct(s.voltage.tolerance)}`,
      }));
    }
  }
  return { det, events };
}
