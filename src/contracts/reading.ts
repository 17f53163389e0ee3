import { Type, type Static } from 'typebox';

/**
 * meterId as it may appear in topics, keys, tags and URL paths: 1-64 of [A-Za-z0-9_.:-], starting with a letter or
 * digit, so `.`, `..` (a path segment a URL or file path resolves away) and `-x` (an option) are never ids.
 */
export const METER_ID_PATTERN = '^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$';
export const METER_ID_RE = new RegExp(METER_ID_PATTERN);

/** Largest register value that a JS number holds exactly (2^53 - 1). */
export const MAX_REGISTER_WH = Number.MAX_SAFE_INTEGER;

const Register = Type.Integer({ minimum: 0, maximum: MAX_REGISTER_WH });

/** Reading version 1, as published on meters/{meterId}/readings (DESIGN.md). */
export const ReadingPayload = Type.Object({
  meterId: Type.String({ pattern: METER_ID_PATTERN }),
  ts: Type.Union([Type.String({ minLength: 1, maxLength: 64 }), Type.Number()]),
  seq: Type.Optional(Type.Integer({ minimum: 0 })),
  importWh: Register,
  exportWh: Type.Optional(Register),
  powerW: Type.Optional(Type.Number()),
  voltageV: Type.Optional(Type.Number({ minimum: 0 })),
  currentA: Type.Optional(Type.Number()),
});
export type ReadingPayload = Static<typeof ReadingPayload>;

/** A validated reading past the ingest edge: ts normalised to epoch milliseconds. */
export interface Reading {
  meterId: string;
  /** End of the measured interval, epoch ms UTC. */
  ts: number;
  seq?: number;
  importWh: number;
  exportWh?: number;
  powerW?: number;
  voltageV?: number;
  currentA?: number;
}

export const METER_EVENTS = ['lastGasp', 'powerRestored', 'tamper', 'coverOpen', 'clockReset', 'meterExchange'] as const;
export type MeterEventName = (typeof METER_EVENTS)[number];

/**
 * Meter event, as published on meters/{meterId}/events. `meterExchange` is the work order of a meter
 * replacement, published by the head end on headend/meters/{meterId}/exchange (never by the meter), and carries the reads that make billing across it exact: `installWh` (required for it), the new
 * meter's import register at `ts`, and optionally `removalWh` (the old meter's final import register) and
 * `installExportWh` (the new meter's export register at `ts`).
 */
export const MeterEventPayload = Type.Object({
  meterId: Type.String({ pattern: METER_ID_PATTERN }),
  ts: Type.Union([Type.String({ minLength: 1, maxLength: 64 }), Type.Number()]),
  event: Type.Enum(METER_EVENTS),
  installWh: Type.Optional(Register),
  removalWh: Type.Optional(Register),
  installExportWh: Type.Optional(Register),
});

/** A validated meter event without a payload of its own. */
export interface PlainMeterEvent {
  meterId: string;
  ts: number;
  event: Exclude<MeterEventName, 'meterExchange'>;
}

/** A validated meter exchange: `ts` is the install time, registers are integer Wh. */
export interface MeterExchangeEvent {
  meterId: string;
  ts: number;
  event: 'meterExchange';
  installWh: number;
  removalWh?: number;
  installExportWh?: number;
}

export type MeterEvent = PlainMeterEvent | MeterExchangeEvent;

/** Why the ingest refused input: the `reason` of its dead letters (`mf:dlq`) and of `meterflow_ingest_rejected_total`. */
export const REJECT_REASONS = [
  'payload_too_large',
  'not_json',
  'not_object',
  'batch_too_large',
  'empty_batch',
  'bad_topic',
  'missing_field',
  'bad_type',
  'bad_value',
  'bad_meter_id',
  'meter_mismatch',
  'register_negative',
  'register_not_integer',
  'register_too_large',
  'bad_timestamp',
  'future_timestamp',
  'too_old',
  'bad_event',
  // A meterExchange on meters/{id}/events: work orders come only from the head end, on headend/meters/{id}/exchange.
  'exchange_not_from_headend',
  // The message was readable, but handing it on kept failing (a defect, not bad input): kept whole for a person.
  'handoff_failed',
] as const;
export type RejectReason = (typeof REJECT_REASONS)[number];
