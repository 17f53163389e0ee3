import { Type, type Static } from 'typebox';

/** Inclusive bounds of a plausible value; a reading outside them is dead-lettered as `bad_value`. */
const Range = Type.Object({ min: Type.Number(), max: Type.Number() }, { additionalProperties: false });

/** config/ingest.yaml: limits at the MQTT edge. */
export const IngestConfig = Type.Object({
  maxPayloadBytes: Type.Integer({ minimum: 1024 }),
  maxBatch: Type.Integer({ minimum: 1 }),
  maxFutureSeconds: Type.Integer({ minimum: 0 }),
  /** Oldest accepted reading, as days before the newest wall-clock time (backfills of history are fine). */
  maxAgeDays: Type.Integer({ minimum: 1 }),
  /** Physically plausible instantaneous values per reading field (registers have their own checks). */
  ranges: Type.Object({ powerW: Range, voltageV: Range, currentA: Range }, { additionalProperties: false }),
  dedup: Type.Object({
    /** Span of event time remembered per meter (readings and events), back from its newest one. */
    windowHours: Type.Number({ exclusiveMinimum: 0 }),
    /** A meter's seen-set is dropped after this long without a write (refreshed on every write). */
    ttlHours: Type.Number({ exclusiveMinimum: 0 }),
  }),
  dlqMaxLen: Type.Integer({ minimum: 100 }),
  /** Copy of a rejected payload kept in the DLQ entry. */
  dlqPayloadBytes: Type.Integer({ minimum: 64 }),
  /**
   * Hand-offs in flight per connection (messages, payload bytes) at which the ingest stops reading from the broker
   * until half of them are done: bounds its memory and what a reconnect redelivers, whatever the broker sends.
   */
  inFlight: Type.Object({ messages: Type.Integer({ minimum: 1 }), bytes: Type.Integer({ minimum: 65536 }) }),
  /** MQTT connections of one ingest process (shared subscription when > 1). */
  connections: Type.Integer({ minimum: 1, maximum: 64 }),
  influx: Type.Object({
    batchSize: Type.Integer({ minimum: 1 }),
    flushMs: Type.Integer({ minimum: 1 }),
    /** The writer of the ingest's health counters (raw readings are the stream worker's to write): its buffer bound. */
    highWater: Type.Integer({ minimum: 1000 }),
  }),
  statsIntervalSeconds: Type.Integer({ minimum: 1 }),
});
export type IngestConfig = Static<typeof IngestConfig>;
