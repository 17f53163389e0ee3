import type { AnomalyType } from '../src/contracts/events.js';
import type { CustomerClass } from '../src/contracts/registry.js';
import type { MalformedVariant } from './scenario.js';

/**
 * Ground truth: one JSON line per injected anomaly or transport fault, written before the first message.
 * Shaped for scoring: `type` is the detector's AnomalyType name, `subject` is what an alert would be keyed on,
 * [startMs, endMs] is event time, `magnitude` splits clear injections from subtle ones.
 */

export const INJECTED_ANOMALIES = [
  'spike', 'drop', 'flatline', 'reverseFlow', 'voltage', 'silent', 'outage', 'customerPeak', 'feederOverload', 'registerReset',
] as const satisfies readonly AnomalyType[];
export type InjectedAnomaly = (typeof INJECTED_ANOMALIES)[number];

export const TRANSPORT_FAULTS = ['duplicate', 'outOfOrder', 'lateBatch', 'malformed', 'clockSkew'] as const;
export type TransportFault = (typeof TRANSPORT_FAULTS)[number];

export type Magnitude = 'clear' | 'subtle';

export interface TruthRecord {
  id: string;
  kind: 'anomaly' | 'transport';
  type: InjectedAnomaly | TransportFault;
  /** voltage: sag | swell; duplicate: single | batch; malformed: the variant. */
  variant?: string;
  magnitude: Magnitude;
  subjectKind: 'meter' | 'transformer';
  subject: string;
  meterId?: string;
  customerId?: string;
  customerClass?: CustomerClass;
  transformerId: string;
  feederId: string;
  /** Every meter the injection touches (one for meter subjects, the transformer's meters otherwise). */
  meters: string[];
  /** Event time: the first affected interval starts at `start`, the last ends at `end`. */
  start: string;
  end: string;
  startMs: number;
  endMs: number;
  params: Record<string, number | string | boolean>;
  /** Other detections the pipeline may rightly raise on `meters` during [start, end] (not false positives). */
  expectedAlso: AnomalyType[];
}

/** What each injection may legitimately also trigger. */
export const EXPECTED_ALSO: Record<InjectedAnomaly | TransportFault, AnomalyType[]> = {
  spike: [],
  drop: [],
  flatline: ['drop'],
  reverseFlow: ['drop', 'flatline', 'tamper'],
  voltage: [],
  silent: [],
  outage: ['silent', 'lastGasp', 'powerRestored', 'drop', 'flatline'],
  customerPeak: ['spike'],
  feederOverload: ['spike', 'customerPeak', 'systemPeak'],
  registerReset: [],
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
