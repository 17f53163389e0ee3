import type { AnomalyType } from '../src/contracts/events.js';
import type { CustomerClass } from '../src/contracts/registry.js';
import type { MalformedVariant } from './scenario.js';

/**
 * Ground truth: one JSON line per injected anomaly or transport fault, written before the first message.
 * Shaped for scoring: `type` is the injection's name (the detector's AnomalyType for the clear ones, see DETECTED_BY
 * for the others), `subject` is what an alert would be keyed on, [startMs, endMs] is event time, `magnitude` splits
 * clear injections from subtle and moderate ones, and `spans` (when present) are the intervals actually touched.
 */

/** The clear injections: each is detected by the AnomalyType of the same name (the CI gate checks every one). */
export const INJECTED_ANOMALIES = [
  'spike',
  'drop',
  'flatline',
  'reverseFlow',
  'voltage',
  'silent',
  'outage',
  'customerPeak',
  'feederOverload',
  'registerReset',
] as const satisfies readonly AnomalyType[];
export type InjectedAnomaly = (typeof INJECTED_ANOMALIES)[number];

/** Moderate and collective anomalies as real meters show them (always magnitude `moderate`). */
export const MODERATE_ANOMALIES = ['highUsage', 'levelShift', 'stuck', 'placeholder', 'lowDay', 'shape'] as const;
export type ModerateAnomaly = (typeof MODERATE_ANOMALIES)[number];

export const TRUTH_ANOMALIES = [...INJECTED_ANOMALIES, ...MODERATE_ANOMALIES] as const;
export type TruthAnomaly = InjectedAnomaly | ModerateAnomaly;

export const TRANSPORT_FAULTS = ['duplicate', 'outOfOrder', 'lateBatch', 'malformed', 'clockSkew'] as const;
export type TransportFault = (typeof TRANSPORT_FAULTS)[number];

export const MAGNITUDES = ['clear', 'subtle', 'moderate'] as const;
export type Magnitude = (typeof MAGNITUDES)[number];

export interface TruthRecord {
  id: string;
  kind: 'anomaly' | 'transport';
  type: TruthAnomaly | TransportFault;
  /** voltage: sag | swell; highUsage: allDay | nights | nightShift; levelShift: up | down; duplicate: single | batch; malformed: the variant. */
  variant?: string;
  magnitude: Magnitude;
  subjectKind: 'meter' | 'transformer';
  subject: string;
  meterId?: string;
  customerId?: string;
  customerClass?: CustomerClass;
  /** The meter's interval length (meter subjects): interval-level scoring counts the span in these. */
  intervalMinutes?: number;
  transformerId: string;
  feederId: string;
  /** Every meter the injection touches (one for meter subjects, the transformer's meters otherwise). */
  meters: string[];
  /** Event time: the first affected interval starts at `start`, the last ends at `end`. */
  start: string;
  end: string;
  startMs: number;
  endMs: number;
  /**
   * The affected stretches inside [startMs, endMs], ms, when the injection touches only some hours of it (a
   * highUsage at night only): interval-level scoring labels these. Absent: the whole [startMs, endMs].
   */
  spans?: Array<[number, number]>;
  params: Record<string, number | string | boolean>;
  /** Other detections the pipeline may rightly raise on `meters` during [start, end] (not false positives). */
  expectedAlso: AnomalyType[];
}

/**
 * Which detector types count as detecting each injection (event level). A moderate injection is a truth type of
 * its own; the detectors report it under the AnomalyType that sees it.
 */
export const DETECTED_BY: Record<TruthAnomaly, readonly AnomalyType[]> = {
  spike: ['spike'],
  drop: ['drop'],
  flatline: ['flatline'],
  reverseFlow: ['reverseFlow'],
  voltage: ['voltage'],
  silent: ['silent'],
  outage: ['outage'],
  customerPeak: ['customerPeak'],
  feederOverload: ['feederOverload'],
  registerReset: ['registerReset'],
  highUsage: ['highUsage', 'spike'],
  levelShift: ['levelShift', 'highUsage', 'drop'],
  stuck: ['stuck', 'flatline'],
  placeholder: ['stuck', 'flatline'],
  lowDay: ['drop'],
  shape: ['shape', 'highUsage', 'drop'],
};

/**
 * Truth types scored interval by interval: what changes a meter's consumption as its intervals show it
 * (reverseFlow is judged on the export register by its own event, so its intervals are excused instead).
 */
export const INTERVAL_SCORED: ReadonlySet<string> = new Set<TruthAnomaly>(['spike', 'drop', 'flatline', 'customerPeak', ...MODERATE_ANOMALIES]);

/** What each injection may legitimately also trigger. */
export const EXPECTED_ALSO: Record<TruthAnomaly | TransportFault, AnomalyType[]> = {
  spike: [],
  drop: [],
  flatline: ['drop'],
  reverseFlow: ['drop', 'flatline', 'tamper'],
  voltage: [],
  silent: [],
  outage: ['silent', 'lastGasp', 'powerRestored', 'drop', 'flatline'],
  customerPeak: ['spike', 'highUsage'],
  feederOverload: ['spike', 'customerPeak', 'systemPeak', 'highUsage'],
  registerReset: [],
  // A moderate excess can cross the contract on a large meter, or load its transformer.
  highUsage: ['customerPeak', 'feederOverload', 'levelShift'],
  levelShift: ['spike', 'customerPeak', 'feederOverload', 'shape'],
  stuck: ['drop', 'highUsage', 'spike', 'shape'],
  // A constant filler sits above or below the meter's own level, and its start and end look like steps.
  placeholder: ['drop', 'highUsage', 'spike', 'shape', 'levelShift', 'customerPeak'],
  lowDay: ['flatline', 'shape'],
  shape: ['spike', 'customerPeak'],
  duplicate: [],
  outOfOrder: [],
  // Until the backlog arrives, a disconnected concentrator looks exactly like silent meters.
  lateBatch: ['silent', 'outage'],
  malformed: [],
  clockSkew: [],
};

export type { MalformedVariant };

export function truthJsonl(records: readonly TruthRecord[]): string {
  return records.map((r) => JSON.stringify(r)).join('\n') + (records.length > 0 ? '\n' : '');
}
