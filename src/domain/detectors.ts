import type { AnomalyType, DetectionEvent, Severity, SubjectKind } from '../contracts/events.js';
import type { CustomerClass } from '../contracts/registry.js';
import type { DetectionConfig } from '../contracts/config-detection.js';
import { localDayEnd, localDayStart, MINUTE_MS } from './local-time.js';

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
  /** Local day being summed for `drop` (its start, epoch ms), -1 before the first interval. */
  dayStart: number;
  dayWh: number;
  dayExpWh: number;
  lowDays: number;
  drop: boolean;
}

export function initialDetectors(): DetectorState {
  return {
    spike: false, reverse: false, peak: false, reset: false, silent: false, flat: false,
    flatFrom: -1, flatExpWh: 0, vRun: 0, voltage: false,
    dayStart: -1, dayWh: 0, dayExpWh: 0, lowDays: 0, drop: false,
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

/** Closes the summed local day for `drop` when the interval belongs to a later day, then adds it. */
function dropStep(det: DetectorState, iv: IntervalFacts, meter: MeterRef, s: DetectorSettings, zone: string, events: DetectionEvent[]): void {
  const day = localDayStart(zone, iv.start);
  if (det.dayStart !== day) {
    if (det.dayStart >= 0) {
      const end = localDayEnd(zone, det.dayStart);
      const judged = iv.warm && det.dayExpWh >= s.drop.minExpectedWh;
      const low = judged && det.dayWh < s.drop.ratio * det.dayExpWh;
      if (low) {
        det.lowDays += 1;
        if (det.lowDays >= s.drop.days) {
          det.drop = true;
          events.push(meterEvent(meter, 'drop', 'firing', end, {
            value: det.dayWh,
            expected: det.dayExpWh,
            score: 1 - det.dayWh / det.dayExpWh,
            severity: 'major',
            reason: `${det.lowDays} days below ${pct(s.drop.ratio)} of baseline: ${kwh(det.dayWh)} vs ${kwh(det.dayExpWh)} expected`,
          }));
        }
      } else {
        det.lowDays = 0;
        if (det.drop) {
          det.drop = false;
          events.push(meterEvent(meter, 'drop', 'clear', end, {
            value: det.dayWh, expected: det.dayExpWh, score: 0, severity: 'info',
            reason: `daily energy back to ${kwh(det.dayWh)} of ${kwh(det.dayExpWh)} expected`,
          }));
        }
      }
    }
    det.dayStart = day;
    det.dayWh = 0;
    det.dayExpWh = 0;
  }
  det.dayWh += iv.wh;
  det.dayExpWh += iv.expectedWh;
}

/** Runs the interval detectors (spike, drop, flatline, reverseFlow, customerPeak) on one new interval, in time order. */
export function evaluateInterval(prev: DetectorState, iv: IntervalFacts, meter: MeterRef, s: DetectorSettings, zone: string): Evaluation {
  const det: DetectorState = { ...prev };
  const events: DetectionEvent[] = [];
  const minutes = Math.round((iv.end - iv.start) / MINUTE_MS);
  dropStep(det, iv, meter, s, zone, events);

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

  // flatline: a zero register delta is real even across a gap, so estimated intervals count.
  let flatFiring = false;
  if (iv.warm && iv.slotReady && iv.wh === 0) {
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
    if (det.flat && iv.wh > 0) {
      det.flat = false;
      events.push(meterEvent(meter, 'flatline', 'clear', iv.end, {
        value: iv.wh, expected: iv.expectedWh, score: 0, severity: 'info', reason: `register moving again: ${kwh(iv.wh)} in ${minutes} min`,
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
