/**
 * Detection events: what the stream worker hands to the alert service through the BullMQ `events` queue.
 * One job per event, jobId = `jobIdOf(event.id)` (src/stream/main.ts: the id with `:` turned into `|`, since BullMQ
 * rejects custom ids with more than two colons) — deterministic, so a replay never enqueues twice.
 */
export const ANOMALY_TYPES = [
  'spike',
  'drop',
  'flatline',
  'reverseFlow',
  'voltage',
  'silent',
  'registerReset',
  'highUsage',
  'stuck',
  'shape',
  'levelShift',
  'customerPeak',
  'feederOverload',
  'systemPeak',
  'outage',
  'lastGasp',
  'powerRestored',
  'tamper',
] as const;
export type AnomalyType = (typeof ANOMALY_TYPES)[number];

export const SEVERITIES = ['info', 'warning', 'major', 'critical'] as const;
export type Severity = (typeof SEVERITIES)[number];

export type SubjectKind = 'meter' | 'customer' | 'transformer' | 'system';

export interface DetectionEvent {
  /** Deterministic: `${type}:${subject}:${ts}:${status}` (the BullMQ jobId is derived from it). */
  id: string;
  type: AnomalyType;
  /** `firing` while the condition holds (one per anomalous interval or read); `clear` once when it stops holding. */
  status: 'firing' | 'clear';
  subjectKind: SubjectKind;
  subject: string;
  /** Event time, epoch ms (end of the interval or the read that showed it). */
  ts: number;
  meterId?: string;
  customerId?: string;
  transformerId?: string;
  feederId?: string;
  customerClass?: string;
  value: number;
  expected: number;
  score: number;
  /** Severity suggested by the rule; the alert service adjusts it for the customer class. */
  severity: Severity;
  /** Short human-readable reason, e.g. "1.8 kWh in 15 min, 6.2x the usual 0.29 kWh". */
  reason: string;
}

/**
 * One interval a meter-level detector judged anomalous (its extent, not only its start). Written to InfluxDB as
 * fields on that meter's `interval` point (same tags and time: the interval start): `anomaly` (type),
 * `anomaly_score`, `expected_wh`. A collective detector that fires after evidence has accumulated marks the run
 * back to where it began.
 */
export interface IntervalMark {
  meterId: string;
  /** Interval start and end, epoch ms (the `interval` point's time is `start`). */
  start: number;
  end: number;
  type: AnomalyType;
  /** Measured import of the interval, Wh. */
  wh: number;
  /** What the baseline expected for it, Wh. */
  expectedWh: number;
  /** Strength of the evidence (detector-specific, larger is stronger). */
  score: number;
}
