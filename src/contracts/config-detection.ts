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
        /** hourOfWeek: 168 slots; hourDaytype: 24 hours × weekday/weekend (48); hourWeekdaySatSun: 24 hours × weekday/Saturday/Sunday (72). */
        slots: Type.Union([Type.Literal('hourOfWeek'), Type.Literal('hourDaytype'), Type.Literal('hourWeekdaySatSun')]),
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
        /** Cold-start spread as a share of the class profile's mean (and of a slot's first sample). */
        priorSpreadRatio: NonNeg(),
        /** Memory of a slot in weeks: its learning rate follows how often it is seen (absent: alphaMin alone). */
        memoryWeeks: Type.Optional(Pos()),
        /** Spread floor as a share of the slot's expected level (scale-free). */
        spreadFloorShare: Type.Optional(NonNeg()),
        /** Spread floor as a share of the meter's mean level over all slots (its quiet hours). */
        meterSpreadFloorShare: Type.Optional(NonNeg()),
        /** Weekend slots' spread floor as a share of the same weekday hour's spread (they see fewer days). */
        weekendPoolShare: Type.Optional(NonNeg()),
        /** Time constant, days, of the per-meter level factor (seasons, weather); 0 or absent: none. */
        levelDays: Type.Optional(NonNeg()),
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
        /** … and an average demand of at least this (absolute floor; 0 = none) … */
        minDemandW: NonNeg(),
        /** … and an excess over expected of at least this share of the meter's mean interval energy (scale-free). */
        minExcessShare: Type.Optional(NonNeg()),
        /** Severity major from this z-score up. */
        majorZScore: Pos(),
      },
      { additionalProperties: false },
    ),
    drop: Type.Object(
      {
        /** A drop episode is major while the run's measured import is below ratio × expected, else a warning. */
        ratio: Pos({ maximum: 1 }),
        /** Ignored: the former sliding-window drop rule (replaced by `collective`). */
        windowHours: Type.Optional(Pos()),
        /** Ignored: the former sliding-window drop rule. */
        clearRatio: Type.Optional(Pos({ maximum: 1 })),
        /** A drop run expecting less than this (Wh) is not judged (0 = any). */
        minExpectedWh: NonNeg(),
      },
      { additionalProperties: false },
    ),
    collective: Type.Optional(
      Type.Object(
        {
          /** Two-sided CUSUM of standardised residuals z = (measured − expected) / spread, clipped to ±zClip … */
          zClip: Pos(),
          /** … each interval adds (|z| − k) × its length in hours (k: the slack, in spreads) … */
          k: NonNeg(),
          /** … and the run fires at h spread-hours. */
          h: Pos(),
          /** highUsage only when the run's measured import is at least minRatio × expected (effect size, scale-free). */
          minRatio: Type.Number({ minimum: 1 }),
          /** drop only when the run's measured import is at most maxRatio × expected. */
          maxRatio: Pos({ maximum: 1 }),
          /** … and beyond 1 ± dayDevK × the meter's typical day-to-day variation (mean |day total / expected − 1|). */
          dayDevK: Type.Optional(NonNeg()),
          /** A run that has lasted longRunHours fires at minRatio − longRunSlack / maxRatio + longRunSlack. */
          longRunHours: Type.Optional(Pos()),
          longRunSlack: Type.Optional(NonNeg()),
          /** A firing episode holds while the EWMA of its z (time constant holdHours) stays above holdZ. */
          holdZ: NonNeg(),
          holdHours: Pos(),
          /** A firing episode repeats its event this often (alerts count repeats); marks cover every interval. */
          reminderHours: Pos(),
          /**
           * The level common to a stream shard's meters (weather): per hour the median over its meters of
           * log(measured / expected), an EWMA with this time constant (hours; 0 = off), multiplies every expectation.
           */
          commonHours: Type.Optional(NonNeg()),
          /** An hour with fewer judged intervals than this on the shard teaches the common level nothing. */
          commonMinSamples: Type.Optional(Type.Integer({ minimum: 1 })),
        },
        { additionalProperties: false },
      ),
    ),
    stuck: Type.Optional(
      Type.Object(
        {
          /** Identical non-zero values in a row: P(identical by chance) ≈ resolutionWh / (2.5 × spread); fires when P^(n−1) < maxChance … */
          maxChance: Pos({ maximum: 1 }),
          resolutionWh: Pos(),
          /** … with at least minRun values … */
          minRun: Type.Integer({ minimum: 2 }),
          /** … spanning at least minHours. */
          minHours: NonNeg(),
        },
        { additionalProperties: false },
      ),
    ),
    shape: Type.Optional(
      Type.Object(
        {
          /** A local day whose normalised profile is more than minDistance (L1, 0–2) from the expected one … */
          minDistance: Pos(),
          /** … and more than k typical deviations above this meter's typical distance … */
          k: Pos(),
          /** … at a normal daily total (between these shares of the expected total) fires. */
          minTotalRatio: Pos(),
          maxTotalRatio: Pos(),
          /** Hours whose share of the day is off by more than markShare of the day's mean hourly share are marked. */
          markShare: Pos(),
        },
        { additionalProperties: false },
      ),
    ),
    levelShift: Type.Optional(
      Type.Object(
        {
          /** A highUsage or drop episode that holds this long is adopted as the new level (event levelShift). */
          adoptDays: Pos(),
        },
        { additionalProperties: false },
      ),
    ),
    holidays: Type.Optional(
      Type.Object(
        {
          /** The deployment's region (the registry has none per meter yet). */
          region: Type.String(),
          /**
           * learn: a holiday is judged against what this meter does on holidays, learnt from its past ones (between
           * its Sunday and its weekday level; before the first, whichever of the two is closer): closed like a Sunday
           * or open like a weekday is normal, the HVAC left on over a closed holiday is not. skip: holidays are not
           * judged at all. Either way they never teach the slots.
           */
          judgeAs: Type.Optional(Type.Union([Type.Literal('learn'), Type.Literal('skip')])),
          /** Holiday dates (local, YYYY-MM-DD) per region. */
          calendars: Type.Record(Type.String(), Type.Array(Type.String({ pattern: '^\\d{4}-\\d{2}-\\d{2}$' }))),
        },
        { additionalProperties: false },
      ),
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
        /** Wait between reads while every owned stream is empty. */
        idleMs: Type.Integer({ minimum: 1 }),
        /** At most this long between checkpoints (states, watermark, XACK) while entries are processed. */
        checkpointMs: Type.Integer({ minimum: 0 }),
        /**
         * Shard lease TTL (src/stream/leases.ts): renewed every third of it; a worker that stops renewing loses its
         * shards to the others this long after its last renewal.
         */
        leaseMs: Type.Integer({ minimum: 300 }),
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

type Req<T> = Exclude<T, undefined>;
export type CollectiveConfig = Req<DetectionConfig['collective']>;
export type StuckConfig = Req<DetectionConfig['stuck']>;
export type ShapeConfig = Req<DetectionConfig['shape']>;

/** What an absent optional section means (config/detection.yaml spells every one out). */
export const DETECTION_DEFAULTS: {
  collective: CollectiveConfig;
  stuck: StuckConfig;
  shape: ShapeConfig;
  levelShift: Req<DetectionConfig['levelShift']>;
} = {
  collective: {
    zClip: 4,
    k: 1,
    h: 14,
    minRatio: 1.2,
    maxRatio: 0.7,
    dayDevK: 2.5,
    longRunHours: 24,
    longRunSlack: 0.1,
    holdZ: 0.5,
    holdHours: 3,
    reminderHours: 24,
  },
  stuck: { maxChance: 1e-6, resolutionWh: 1, minRun: 3, minHours: 3 },
  shape: { minDistance: 0.15, k: 4, minTotalRatio: 0.7, maxTotalRatio: 1.4, markShare: 0.4 },
  levelShift: { adoptDays: 14 },
};
