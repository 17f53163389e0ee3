import type { DetectionConfig } from '../contracts/config-detection.js';
import type { DetectionEvent, Severity } from '../contracts/events.js';
import { HOUR_MS, MINUTE_MS } from './local-time.js';
import { makeEvent } from './detection-events.js';

/**
 * Load peaks over many meters: transformer load (feederOverload) and fleet load (systemPeak), per
 * aggregation interval. The adapter sums the meters' interval demand idempotently (one field per meter);
 * these functions judge a sum.
 */

export type PeakSettings = Pick<DetectionConfig, 'feederOverload' | 'systemPeak'>;

/** Average net demand (import − export), W, that one meter interval contributes to the aggregation intervals it covers. */
export function netDemandW(wh: number, exportWh: number, intervalMs: number): number {
  return ((wh - exportWh) * HOUR_MS) / intervalMs;
}

/** Aggregation-interval starts covered by the meter interval [start, end) (a 60-min meter covers four 15-min ones). */
export function aggregationSlots(start: number, end: number, aggMs: number): number[] {
  const out: number[] = [];
  for (let t = Math.floor(start / aggMs) * aggMs; t < end; t += aggMs) out.push(t);
  return out;
}

export interface LoadJudgement {
  demandKw: number;
  ratingKw: number;
  utilization: number;
  /** Severity while over a threshold, else undefined. */
  severity?: Severity;
  /** Firing while over; one clear when it drops back after firing. */
  event?: DetectionEvent;
  active: boolean;
}

function severityFor(util: number, levels: Array<[number, Severity]>): Severity | undefined {
  let sev: Severity | undefined;
  for (const [ratio, s] of levels) if (util >= ratio) sev = s;
  return sev;
}

/** feederOverload: the sum of net demand of the meters on a transformer against its rating (kVA × power factor). */
export function judgeTransformer(
  input: { transformerId: string; feederId: string; start: number; aggMs: number; netW: number; ratingKva: number },
  wasActive: boolean,
  s: PeakSettings,
): LoadJudgement {
  const f = s.feederOverload;
  const ratingKw = input.ratingKva * f.powerFactor;
  const demandKw = input.netW / 1000;
  const utilization = ratingKw > 0 ? Math.abs(demandKw) / ratingKw : 0;
  const severity = severityFor(utilization, [
    [f.warningRatio, 'warning'],
    [f.majorRatio, 'major'],
    [f.criticalRatio, 'critical'],
  ]);
  const ts = input.start + input.aggMs;
  const minutes = Math.round(input.aggMs / MINUTE_MS);
  const base = { subjectKind: 'transformer' as const, subject: input.transformerId, ts, transformerId: input.transformerId, feederId: input.feederId };
  if (severity !== undefined) {
    const event = makeEvent({
      ...base,
      type: 'feederOverload',
      status: 'firing',
      value: demandKw,
      expected: ratingKw,
      score: utilization,
      severity,
      reason: `transformer ${input.transformerId} at ${Math.round(utilization * 100)}% of ${ratingKw.toFixed(0)} kW (${demandKw.toFixed(1)} kW over ${minutes} min)`,
    });
    return { demandKw, ratingKw, utilization, severity, event, active: true };
  }
  if (wasActive) {
    const event = makeEvent({
      ...base,
      type: 'feederOverload',
      status: 'clear',
      value: demandKw,
      expected: ratingKw,
      score: utilization,
      severity: 'info',
      reason: `transformer ${input.transformerId} back to ${Math.round(utilization * 100)}% of rating`,
    });
    return { demandKw, ratingKw, utilization, event, active: false };
  }
  return { demandKw, ratingKw, utilization, active: false };
}

/** systemPeak: fleet net demand against the configured threshold (0 = off). */
export function judgeSystem(input: { start: number; aggMs: number; netW: number }, wasActive: boolean, s: PeakSettings): LoadJudgement {
  const p = s.systemPeak;
  const demandKw = input.netW / 1000;
  const utilization = p.thresholdKw > 0 ? demandKw / p.thresholdKw : 0;
  const severity =
    p.thresholdKw > 0
      ? severityFor(utilization, [
          [p.warningRatio, 'warning'],
          [1, 'major'],
        ])
      : undefined;
  const ts = input.start + input.aggMs;
  const base = { subjectKind: 'system' as const, subject: 'system', ts };
  if (severity !== undefined) {
    const event = makeEvent({
      ...base,
      type: 'systemPeak',
      status: 'firing',
      value: demandKw,
      expected: p.thresholdKw,
      score: utilization,
      severity,
      reason: `fleet demand ${demandKw.toFixed(0)} kW, ${Math.round(utilization * 100)}% of the ${p.thresholdKw} kW threshold`,
    });
    return { demandKw, ratingKw: p.thresholdKw, utilization, severity, event, active: true };
  }
  if (wasActive) {
    const event = makeEvent({
      ...base,
      type: 'systemPeak',
      status: 'clear',
      value: demandKw,
      expected: p.thresholdKw,
      score: utilization,
      severity: 'info',
      reason: `fleet demand back to ${demandKw.toFixed(0)} kW`,
    });
    return { demandKw, ratingKw: p.thresholdKw, utilization, event, active: false };
  }
  return { demandKw, ratingKw: p.thresholdKw, utilization, active: false };
}
