import { Compile } from 'typebox/compile';
import type { IngestConfig } from '../contracts/config-ingest.js';
import { ConfigError } from '../shared/errors.js';
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

/** Inclusive bounds of a plausible value (config/ingest.yaml `ranges`). */
export interface ValueRange {
  min: number;
  max: number;
}

export interface ParseLimits {
  maxPayloadBytes: number;
  maxBatch: number;
  maxFutureMs: number;
  maxAgeMs: number;
  ranges: { powerW: ValueRange; voltageV: ValueRange; currentA: ValueRange };
}

export type TopicKind =
  | { kind: 'meterReadings'; meterId: string }
  | { kind: 'meterEvents'; meterId: string }
  | { kind: 'concentratorReadings'; concentratorId: string }
  /** headend/meters/{meterId}/exchange: meter-exchange work orders, which only the head-end account may publish (ACL). */
  | { kind: 'exchangeOrders'; meterId: string };

export interface ParsedMessage {
  readings: Reading[];
  events: MeterEvent[];
  rejections: Rejection[];
  /** true when the whole message was rejected (no element could be read). */
  wholeRejected: boolean;
}

/** The parse limits of config/ingest.yaml; a range with min above max fails at start, naming its key. */
export function parseLimits(cfg: IngestConfig): ParseLimits {
  for (const [field, r] of Object.entries(cfg.ranges)) {
    if (!(r.min <= r.max)) throw new ConfigError(`config/ingest.yaml: ingest.ranges.${field}`, `min <= max, got [${r.min}, ${r.max}]`);
  }
  return {
    maxPayloadBytes: cfg.maxPayloadBytes,
    maxBatch: cfg.maxBatch,
    maxFutureMs: cfg.maxFutureSeconds * 1000,
    maxAgeMs: cfg.maxAgeDays * 86_400_000,
    ranges: cfg.ranges,
  };
}

/** meters/{id}/readings, meters/{id}/events, concentrators/{id}/readings, headend/meters/{id}/exchange; anything else is not ours. */
export function parseTopic(topic: string): TopicKind | undefined {
  const parts = topic.split('/');
  if (parts.length === 4 && parts[0] === 'headend' && parts[1] === 'meters' && parts[3] === 'exchange') {
    const meterId = parts[2];
    return meterId !== undefined && METER_ID_RE.test(meterId) ? { kind: 'exchangeOrders', meterId } : undefined;
  }
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
  // Before the integer test: 1e999 (Infinity) is a register too large, not a fractional one.
  if (v > MAX_REGISTER_WH) return { reason: 'register_too_large', detail: `${field}: ${v} is above 2^53-1` };
  if (!Number.isInteger(v)) return { reason: 'register_not_integer', detail: `${field}: ${v} is not an integer Wh` };
  return undefined;
}

/**
 * An optional instantaneous value: a number inside its plausible range. A non-finite one can only come from JSON
 * text that overflows a double (`1e999`), and is as impossible as 1e308 V: both are `bad_value`.
 */
function numberProblem(field: string, v: unknown, range: ValueRange): Rejection | undefined {
  if (v === undefined) return undefined;
  if (typeof v !== 'number')
    return { reason: 'bad_type', detail: `${field}: expected a number, got ${v === null ? 'null' : Array.isArray(v) ? 'array' : typeof v}` };
  if (!Number.isFinite(v)) return { reason: 'bad_value', detail: `${field}: ${v} is not a finite number` };
  if (v < range.min || v > range.max) return { reason: 'bad_value', detail: `${field}: ${v} is outside the plausible range [${range.min}, ${range.max}]` };
  return undefined;
}

function seqProblem(v: unknown): Rejection | undefined {
  if (v === undefined) return undefined;
  if (typeof v !== 'number' || !Number.isInteger(v) || v < 0)
    return { reason: 'bad_type', detail: `seq: expected a non-negative integer, got ${(JSON.stringify(v) ?? String(v)).slice(0, 32)}` };
  // Not exact in a double past 2^53: no counter a meter keeps.
  if (v > Number.MAX_SAFE_INTEGER) return { reason: 'bad_value', detail: `seq: ${v} is above 2^53-1` };
  return undefined;
}

/** -0 (valid JSON) is stored as 0: one value, one representation, whatever JSON.stringify or a comparison makes of it. */
const plus0 = (n: number): number => n + 0;

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
  if (!METER_ID_RE.test(meterId))
    return {
      reason: 'bad_meter_id',
      detail: `meterId: ${JSON.stringify(meterId).slice(0, 80)} is not 1-64 of [A-Za-z0-9_.:-] starting with a letter or digit`,
    };
  if (expectedMeterId !== undefined && meterId !== expectedMeterId) {
    return { reason: 'meter_mismatch', meterId, detail: `meterId: payload says ${meterId}, topic says ${expectedMeterId}` };
  }
  const problem =
    registerProblem('importWh', item.importWh) ??
    (item.exportWh === undefined ? undefined : registerProblem('exportWh', item.exportWh)) ??
    numberProblem('powerW', item.powerW, limits.ranges.powerW) ??
    numberProblem('voltageV', item.voltageV, limits.ranges.voltageV) ??
    numberProblem('currentA', item.currentA, limits.ranges.currentA) ??
    seqProblem(item.seq);
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
  const r: Reading = { meterId, ts, importWh: plus0(item.importWh) };
  if (item.seq !== undefined) r.seq = plus0(item.seq);
  if (item.exportWh !== undefined) r.exportWh = plus0(item.exportWh);
  if (item.powerW !== undefined) r.powerW = plus0(item.powerW);
  if (item.voltageV !== undefined) r.voltageV = plus0(item.voltageV);
  if (item.currentA !== undefined) r.currentA = plus0(item.currentA);
  return r;
}

const isRejection = (v: Reading | MeterEvent | Rejection): v is Rejection => 'reason' in v && 'detail' in v;

/** `workOrder`: the message came on the head-end's exchange topic, the only place a meterExchange is believed. */
function checkEvent(item: unknown, expectedMeterId: string, nowMs: number, limits: ParseLimits, workOrder: boolean): MeterEvent | Rejection {
  if (!isObject(item)) return { reason: 'not_object', detail: 'expected an event object' };
  for (const f of ['meterId', 'ts', 'event'] as const) if (item[f] === undefined) return { reason: 'missing_field', detail: `${f}: required` };
  if (typeof item.meterId !== 'string' || !METER_ID_RE.test(item.meterId))
    return { reason: 'bad_meter_id', detail: 'meterId: not 1-64 of [A-Za-z0-9_.:-] starting with a letter or digit' };
  if (item.meterId !== expectedMeterId)
    return { reason: 'meter_mismatch', meterId: item.meterId, detail: `meterId: payload says ${item.meterId}, topic says ${expectedMeterId}` };
  const event = METER_EVENTS.find((e): e is MeterEventName => e === item.event);
  if (event === undefined) return { reason: 'bad_event', meterId: item.meterId, detail: `event: expected one of ${METER_EVENTS.join(', ')}` };
  // A meter (or whoever holds its password) must not be able to rebase its own billing with a fake replacement.
  if (event === 'meterExchange' && !workOrder) {
    return {
      reason: 'exchange_not_from_headend',
      meterId: item.meterId,
      detail: `event: meterExchange is a head-end work order, accepted only on headend/meters/${item.meterId}/exchange`,
    };
  }
  if (event !== 'meterExchange' && workOrder) {
    return { reason: 'bad_event', meterId: item.meterId, detail: `event: only meterExchange work orders go on headend/meters/{meterId}/exchange` };
  }
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
  const ex: MeterExchangeEvent = { meterId: item.meterId, ts, event, installWh: plus0(installWh) };
  if (removalWh !== undefined) ex.removalWh = plus0(removalWh);
  if (installExportWh !== undefined) ex.installExportWh = plus0(installExportWh);
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

/** Strict: invalid UTF-8 is refused, never silently turned into U+FFFD; a BOM is kept, so JSON.parse refuses it. */
const UTF8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

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
  let text: string;
  try {
    text = UTF8.decode(payload);
  } catch {
    return whole('not_json', 'payload is not valid UTF-8 (JSON text must be)');
  }
  let doc: unknown;
  try {
    doc = JSON.parse(text);
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
      topic.kind === 'meterEvents' || topic.kind === 'exchangeOrders'
        ? checkEvent(item, topic.meterId, nowMs, limits, topic.kind === 'exchangeOrders')
        : checkReading(item, topic.kind === 'meterReadings' ? topic.meterId : undefined, nowMs, limits);
    if (isRejection(res)) out.rejections.push({ ...res, ...(batch ? { index: i } : {}), item });
    else if ('event' in res) out.events.push(res);
    else out.readings.push(res);
  });
  return out;
}
