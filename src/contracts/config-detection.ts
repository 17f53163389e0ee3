import { Type, type Static } from 'typebox';

/** config/detection.yaml: interval VEE, baselines, detector thresholds and stream-worker tuning. Every key has a default there. */

// Spelled out: a Union over a mapped array loses its literal types in TypeBox's Static.
const IntervalMinutes = Type.Union([Type.Literal(15), Type.Literal(30), Type.Literal(60)]);
const Hours24 = Type.Array(Type.Number({ minimum: 0 }), { minItems: 24, maxItems: 24 });
const ClassProfile = Type.Object(
  {
    /** Typical consumption, Wh per hour, for local hours 0–23. */
    weekday: Hours24,
    weekend: Hours24,
  },
  { additionalProperties: false },
);

const Pos = (o: object = {}) => Type.Number({ exclusiveMinimum: 0, ...o });
const NonNeg = (o: object = {}) => Type.Number({ minimum: 0, ...o });

export const DetectionConfig = Type.Object(
  {
    intervals: Type.Object(
      {
        /** Interval length for meters whose registry entry gives none that fits. */
        defaultMinutes: IntervalMinutes,
        /** Out-of-order reads newer than the meter's newest read minus this are accepted; older ones are dead-lettered. */
        lateToleranceMinutes: NonNeg(),
        /** Gaps up to this long are filled linearly; longer ones follow the baseline shape. */
        linearGapMaxMinutes: NonNeg(),
        /** Reads more than this many intervals apart mean reads are missing: the intervals between are estimated. */
        gapFactor: Type.Number({ minimum: 1 }),
        /** Reads stamped more than this after their ingest time are rejected (a meter clock in the future). */
        maxFutureMinutes: NonNeg(),
      },
      { additionalProperties: false },
    ),
    watermark: Type.Object(
      {
        /** Shard watermark = newest event time on the shard minus this; drives `silent` and day closing. */
        latenessMinutes: NonNeg(),
      },
      { additionalProperties: false },
    ),
    baseline: Type.Object(
      {
        /** hourOfWeek: 168 slots; hourDaytype: 24 hours × weekday/weekend (48 slots). */
        slots: Type.Union([Type.Literal('hourOfWeek'), Type.Literal('hourDaytype')]),
        /** Days of history before the statistical detectors (spike, drop, flatline) fire. */
        warmupDays: NonNeg(),
        /** Spike and flatline also wait until the interval's own slot has learned this many samples. */
        minSlotSamples: Type.Integer({ minimum: 0, maximum: 255 }),
        /** Smallest learning rate of the per-slot decayed mean/deviation (memory ≈ 1/alpha samples). */
        alphaMin: Pos({ maximum: 1 }),
        /** Samples are clipped to mean ± clipK × spread before they teach the slot (robust to anomalies). */
        clipK: Pos(),
        /** Spread floor, Wh per hour, so quiet meters do not make every blip an outlier. */
        minSpreadWhPerHour: NonNeg(),
        /** Cold-start spread as a share of the class profile's mean. */
        priorSpreadRatio: NonNeg(),
        classProfiles: Type.Object(
          { residential: ClassProfile, commercial: ClassProfile, industrial: ClassProfile, critical: ClassProfile },
          { additionalProperties: false },
        ),
      },
      { additionalProperties: false },
    ),
    spike: Type.Object(
      {
        /** Interval energy at least factor × expected … */
        factor: Type.Number({ minimum: 1 }),
        /** … and at least zScore spreads above it … */
        zScore: Pos(),
        /** … and an average demand of at least this (absolute floor). */
        minDemandW: NonNeg(),
        /** Severity major from this z-score up. */
        majorZScore: Pos(),
      },
      { additionalProperties: false },
    ),
    drop: Type.Object(
      {
        /** Time constant of the sliding window (exponentially decayed sums of measured and expected import). */
        windowHours: Pos(),
        /** Fires while the window's measured import is below ratio × its expected import … */
        ratio: Pos({ maximum: 1 }),
        /** … and clears once it is back at clearRatio × expected or above (≥ ratio: hysteresis). */
        clearRatio: Pos({ maximum: 1 }),
        /** A window expecting less than this (decayed Wh) is not judged. */
        minExpectedWh: NonNeg(),
      },
      { additionalProperties: false },
    ),
    flatline: Type.Object(
      {
        /** Register not moving for at least this long … */
        minHours: Pos(),
        /** … while the baseline expected at least this much energy in that time. */
        minExpectedWh: NonNeg(),
      },
      { additionalProperties: false },
    ),
    reverseFlow: Type.Object(
      {
        /** Export per interval on a meter without PV that counts as reverse flow. */
        minExportWh: Pos(),
      },
      { additionalProperties: false },
    ),
    voltage: Type.Object(
      {
        nominalV: Pos(),
        /** Outside nominal ± tolerance (share) … */
        tolerance: Pos({ maximum: 1 }),
        /** … for this many reads in a row fires; severity major beyond majorTolerance. */
        minConsecutive: Type.Integer({ minimum: 1 }),
        majorTolerance: Pos({ maximum: 1 }),
      },
      { additionalProperties: false },
    ),
    silent: Type.Object(
      {
        /** No read for this many of the meter's intervals (by the shard watermark). */
        intervals: Type.Integer({ minimum: 1 }),
      },
      { additionalProperties: false },
    ),
    customerPeak: Type.Object(
      {
        /** Interval demand above ratio × contracted kW fires; major from majorRatio. */
        ratio: Pos(),
        majorRatio: Pos(),
      },
      { additionalProperties: false },
    ),
    feederOverload: Type.Object(
      {
        /** Transformer kVA rating × powerFactor = kW rating. */
        powerFactor: Pos({ maximum: 1 }),
        warningRatio: Pos(),
        majorRatio: Pos(),
        criticalRatio: Pos(),
        /** Aggregation grid for transformer and fleet load. */
        intervalMinutes: IntervalMinutes,
        /** Per-interval load state is dropped this long (event time) after the interval is judged. */
        retainHours: Pos(),
      },
      { additionalProperties: false },
    ),
    systemPeak: Type.Object(
      {
        /** Fleet demand above this fires (major); 0 disables. */
        thresholdKw: NonNeg(),
        /** Warning from warningRatio × threshold. */
        warningRatio: Pos({ maximum: 1 }),
      },
      { additionalProperties: false },
    ),
    worker: Type.Object(
      {
        /** At most this many stream entries per shard per read … */
        batchEntries: Type.Integer({ minimum: 1 }),
        /** … and about this many readings per read over all owned shards (entries are concentrator batches of any size). */
        batchReadings: Type.Integer({ minimum: 1 }),
        blockMs: Type.Integer({ minimum: 1 }),
        /** Entries pending on another consumer longer than this are claimed (XAUTOCLAIM). */
        claimIdleMs: Type.Integer({ minimum: 0 }),
        /** Completed `events` jobs are kept this long so a replay's identical jobId is still deduplicated. */
        eventsKeepSeconds: Type.Integer({ minimum: 60 }),
        /** Dead-letter stream cap (approximate). */
        dlqMaxLen: Type.Integer({ minimum: 1 }),
        /** Seconds between `pipeline` counter points. */
        statsSeconds: Pos(),
      },
      { additionalProperties: false },
    ),
  },
  { additionalProperties: false },
);
export type DetectionConfig = Static<typeof DetectionConfig>;
