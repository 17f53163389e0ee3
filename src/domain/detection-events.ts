import type { AnomalyType, DetectionEvent, Severity, SubjectKind } from '../contracts/events.js';
import type { CustomerClass } from '../contracts/registry.js';

/**
 * Detection events as the detectors build them. Event ids are deterministic (`type:subject:ts:status`), so a replay
 * produces the same ids and the queue deduplicates them. The formatters below write the events' reasons.
 */

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
export const kw = (w: number): string => `${(w / 1000).toFixed(1)} kW`;
export const pct = (x: number): string => `${Math.round(x * 100)}%`;
export const fmtHours = (h: number): string => (h >= 10 ? h.toFixed(0) : h.toFixed(1));
export const pctOf = (x: number): string => `${Math.round(x * 100)} %`;
