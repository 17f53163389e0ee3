import { Compile } from 'typebox/compile';
import {
  MAX_REGISTER_WH,
  METER_EVENTS,
  METER_ID_RE,
  MeterEventPayload,
  ReadingPayload,
  type MeterEvent,
  type MeterEventName,
  type MeterExchangeEvent,
  type Reading,
  type RejectReason,
} from '../contracts/reading.js';

export interface Rejection {
  reason: RejectReason;
  /** Which field and why, for operators: "importWh: -5 is negative". */
  detail: string;
  /** Position in a batch; undefined when the whole message was rejected. */
  index?: number;
  meterId?: string;
  /** The offending element (whole-message rejections keep the raw payload instead). */
  item?: unknown;
}

export interface ParseLimits {
  maxPayloadBytes: number;
  maxBatch: number;
  maxFutureMs: number;
  maxAgeMs: number;
}

export type TopicKind =
  | { kind: 'meterReadings'; meterId: string }
  | { kind: 'meterEvents'; meterId: string }
  | { kind: 'concentratorReadings'; concentratorId: string };

export interface ParsedMessage {
  readings: Reading[];
  events: MeterEvent[];
  rejections: Rejection[];
  /** true when the whole message was rejected (no element could be read). */
  wholeRejected: boolean;
}

/** meters/{id}/readings, meters/{id}/events, concentrators/{id}/readings; anything else is not ours. */
export function parseTopic(topic: string): TopicKind | undefined {
  const parts = topic.split('/');
  if (parts.length !== 3) return undefined;
  const [root, id, leaf] = parts;
  if (id === undefined || !METER_ID_RE.test(id)) return undefined;
  if (root === 'meters' && leaf === 'readings') return { kind: 'meterReadings', meterId: id };
  if (root === 'meters' && leaf === 'events') return { kind: 'meterEvents', meterId: id };
  if (root === 'concentrators' && leaf === 'readings') return { kind: 'concentratorReadings', concentratorId: id };
  return undefined;
}

const ISO_RE = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d{1,9})?)?(Z|[+-]\d{2}:?\d{2})$/;
/** Epoch ms before 2000-01-01 is almost surely seconds or garbage. */
const MIN_EPOCH_MS = 946_684_800_000;

/** ISO-8601 with an explicit offset, or epoch milliseconds; undefined when unparsable. */
export function parseTimestamp(ts: unknown): number | undefined {
  if (typeof ts === 'number') return Number.isInteger(ts) && ts >= MIN_EPOCH_MS && ts <= 8.64e15 ? ts : undefined;
  if (typeof ts !== 'string' || !ISO_RE.test(ts)) return undefined;
  const ms = Date.parse(ts);
  return Number.isNaN(ms) || ms < MIN_EPOCH_MS ? undefined : ms;
}

const readingValidator = Compile(ReadingPayload);
const eventValidator = Compile(MeterEventPayload);

const isObject = (v: unknown): v is Record<string, unknown> => v !== null && typeof v === 'object' && !Array.isArray(v);

function registerProblem(field: string, v: unknown): Rejection | undefined {
  if (typeof v !== 'number') return { reason: 'bad_type', detail: `${field}: expected an integer number of Wh, got ${typeof v}` };
  if (v < 0) return { reason: 'register_negative', detail: `${field}: ${v} is negative` };
  if (!Number.isInteger(v)) return { reason: 'register_not_integer', detail: `${field}: ${v} is not an integer Wh` };
  if (v > MAX_REGISTER_WH) return { reason: 'register_too_large', detail: `${field}: ${v} is above 2^53-1` };
  return undefined;
}

function numberProblem(field: string, v: unknown, min?: number): Rejection | undefined {
  if (v === undefined) return undefined;
  if (typeof v !== 'number') return { reason: 'bad_type', detail: `${field}: expected a number, got ${typeof v}` };
  if (min !== undefined && v < min) return { reason: 'bad_value', detail: `${field}: ${v} is below ${min}` };
  return undefined;
}

function timeProblem(raw: unknown, nowMs: number, limits: ParseLimits): { ts?: number; problem?: Rejection } {
  if (typeof raw !== 'string' && typeof raw !== 'number')
    return { problem: { reason: 'bad_type', detail: `ts: expected an ISO-8601 string or epoch ms, got ${typeof raw}` } };
  const ts = parseTimestamp(raw);
  if (ts === undefined)
    return { problem: { reason: 'bad_timestamp', detail: `ts: ${JSON.stringify(raw).slice(0, 64)} is not ISO-8601 with an offset nor epoch ms` } };
  if (ts > nowMs + limits.maxFutureMs)
    return { problem: { reason: 'future_timestamp', detail: `ts: ${new Date(ts).toISOString()} is more than ${limits.maxFutureMs / 1000} s ahead` } };
  if (ts < nowMs - limits.maxAgeMs) return { problem: { reason: 'too_old', detail: `ts: ${new Date(ts).toISOString()} is older than the accepted history` } };
  return { ts };
}

/** Checks one reading element; the compiled contract schema is the final word on shape. */
export function checkReading(item: unknown, expectedMeterId: string | undefined, nowMs: number, limits: ParseLimits): Reading | Rejection {
  if (!isObject(item))
    return { reason: 'not_object', detail: `expected a reading object, got ${Array.isArray(item) ? 'array' : item === null ? 'null' : typeof item}` };
  for (const f of ['meterId', 'ts', 'importWh'] as const) {
    if (item[f] === undefined) return { reason: 'missing_field', detail: `${f}: required` };
  }
  const meterId = item.meterId;
  if (typeof meterId !== 'string') return { reason: 'bad_type', detail: `meterId: expected a string, got ${typeof meterId}` };
  if (!METER_ID_RE.test(meterId)) return { reason: 'bad_meter_id', detail: `meterId: ${JSON.stringify(meterId).slice(0, 80)} is not 1-64 of [A-Za-z0-9_.:-]` };
  if (expectedMeterId !== undefined && meterId !== expectedMeterId) {
    return { reason: 'meter_mismatch', meterId, detail: `meterId: payload says ${meterId}, topic says ${expectedMeterId}` };
  }
  const problem =
    registerProblem('importWh', item.importWh) ??
    (item.exportWh === undefined ? undefined : registerProblem('exportWh', item.exportWh)) ??
    numberProblem('powerW', item.powerW) ??
    numberProblem('voltageV', item.voltageV, 0) ??
    numberProblem('currentA', item.currentA) ??
    (item.seq === undefined || (typeof item.seq === 'number' && Number.isInteger(item.seq) && item.seq >= 0)
      ? undefined
      : { reason: 'bad_type' as const, detail: `seq: expected a non-negative integer, got ${JSON.stringify(item.seq).slice(0, 32)}` });
  if (problem) return { ...problem, meterId };
  const { ts, problem: tp } = timeProblem(item.ts, nowMs, limits);
  if (tp || ts === undefined) return { ...(tp ?? { reason: 'bad_timestamp', detail: 'ts' }), meterId };
  if (!readingValidator.Check(item)) {
    const e = readingValidator.Errors(item)[0];
    return {
      reason: 'bad_type',
      meterId,
      detail: `${e?.instancePath.replace(/^\//, '') || 'reading'}: ${e?.message ?? 'does not match the reading contract'}`,
    };
  }
  const r: Reading = { meterId, ts, importWh: item.importWh };
  if (item.seq !== undefined) r.seq = item.seq;
  if (item.exportWh !== undefined) r.exportWh = item.exportWh;
  if (item.powerW !== undefined) r.powerW = item.powerW;
  if (item.voltageV !== undefined) r.voltageV = item.voltageV;
  if (item.currentA !== undefined) r.currentA = item.currentA;
  return r;
}

const isRejection = (v: Reading | MeterEvent | Rejection): v is Rejection => 'reason' in v && 'detail' in v;

function checkEvent(item: unknown, expectedMeterId: string, nowMs: number, limits: ParseLimits): MeterEvent | Rejection {
  if (!isObject(item)) return { reason: 'not_object', detail: 'expected an event object' };
  for (const f of ['meterId', 'ts', 'event'] as const) if (item[f] === undefined) return { reason: 'missing_field', detail: `${f}: required` };
  if (typeof item.meterId !== 'string' || !METER_ID_RE.test(item.meterId)) return { reason: 'bad_meter_id', detail: 'meterId: not 1-64 of [A-Za-z0-9_.:-]' };
  if (item.meterId !== expectedMeterId)
    return { reason: 'meter_mismatch', meterId: item.meterId, detail: `meterId: payload says ${item.meterId}, topic says ${expectedMeterId}` };
  const event = METER_EVENTS.find((e): e is MeterEventName => e === item.event);
  if (event === undefined) return { reason: 'bad_event', meterId: item.meterId, detail: `event: expected one of ${METER_EVENTS.join(', ')}` };
  const { ts, problem } = timeProblem(item.ts, nowMs, limits);
  if (problem || ts === undefined) return { ...(problem ?? { reason: 'bad_timestamp', detail: 'ts' }), meterId: item.meterId };
  if (event === 'meterExchange') {
    const problem = exchangeProblem(item);
    if (problem) return { ...problem, meterId: item.meterId };
  }
  if (!eventValidator.Check(item)) return { reason: 'bad_type', meterId: item.meterId, detail: 'does not match the event contract' };
  if (event !== 'meterExchange') return { meterId: item.meterId, ts, event };
  // exchangeProblem checked the registers; the validator the rest of the shape.
  const { installWh, removalWh, installExportWh } = item;
  if (installWh === undefined) return { reason: 'missing_field', meterId: item.meterId, detail: 'installWh: required for meterExchange' };
  const ex: MeterExchangeEvent = { meterId: item.meterId, ts, event, installWh };
  if (removalWh !== undefined) ex.removalWh = removalWh;
  if (installExportWh !== undefined) ex.installExportWh = installExportWh;
  return ex;
}

/** A meter exchange needs the new meter's install read; the removal and export reads are optional. */
function exchangeProblem(item: Record<string, unknown>): Rejection | undefined {
  if (item.installWh === undefined) return { reason: 'missing_field', detail: 'installWh: required for meterExchange' };
  return (
    registerProblem('installWh', item.installWh) ??
    (item.removalWh === undefined ? undefined : registerProblem('removalWh', item.removalWh)) ??
    (item.installExportWh === undefined ? undefined : registerProblem('installExportWh', item.installExportWh))
  );
}

/**
 * One MQTT message → good readings/events and rejections. A bad element of an array never rejects its
 * good neighbours; only an unreadable message is rejected whole.
 */
export function parseMessage(topic: TopicKind, payload: Buffer, nowMs: number, limits: ParseLimits): ParsedMessage {
  const out: ParsedMessage = { readings: [], events: [], rejections: [], wholeRejected: false };
  const whole = (reason: RejectReason, detail: string): ParsedMessage => {
    out.rejections.push({ reason, detail });
    out.wholeRejected = true;
    return out;
  };
  if (payload.length > limits.maxPayloadBytes) return whole('payload_too_large', `payload of ${payload.length} bytes is over ${limits.maxPayloadBytes}`);
  let doc: unknown;
  try {
    doc = JSON.parse(payload.toString('utf8'));
  } catch (err) {
    return whole('not_json', `payload is not JSON: ${err instanceof Error ? err.message.slice(0, 120) : 'parse error'}`);
  }
  const items = Array.isArray(doc) ? doc : isObject(doc) ? [doc] : undefined;
  if (items === undefined) return whole('not_object', `payload is ${doc === null ? 'null' : typeof doc}, expected an object or an array`);
  if (items.length === 0) return whole('empty_batch', 'payload is an empty array');
  if (items.length > limits.maxBatch) return whole('batch_too_large', `array of ${items.length} elements is over ${limits.maxBatch}`);
  const batch = Array.isArray(doc);
  items.forEach((item: unknown, i) => {
    const res =
      topic.kind === 'meterEvents'
        ? checkEvent(item, topic.meterId, nowMs, limits)
        : checkReading(item, topic.kind === 'meterReadings' ? topic.meterId : undefined, nowMs, limits);
    if (isRejection(res)) out.rejections.push({ ...res, ...(batch ? { index: i } : {}), item });
    else if ('event' in res) out.events.push(res);
    else out.readings.push(res);
  });
  return out;
}
