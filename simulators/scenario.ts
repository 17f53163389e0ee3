import { readFileSync } from 'node:fs';
import { IANAZone } from 'luxon';
import { Type, type Static, type TProperties } from 'typebox';
import { Compile } from 'typebox/compile';
import { parse as parseYaml } from 'yaml';
import { CUSTOMER_CLASSES, type CustomerClass } from '../src/contracts/registry.js';
import { parseDuration, resolveTimePoint, TimeSpecError } from './time-spec.js';

/**
 * A scenario: fleet, profiles, date range, injected anomalies and transport faults.
 * YAML files under simulators/scenarios/ are deep-merged over DEFAULT_SCENARIO, so they only say what differs.
 */

const strict = { additionalProperties: false } as const;
/** [lo, hi]: a value is drawn uniformly from it (lo = hi for a fixed value). */
const Range = Type.Tuple([Type.Number(), Type.Number()]);
const Share = Type.Number({ minimum: 0, maximum: 1 });
const Count = Type.Integer({ minimum: 0, maximum: 100_000 });
/** When injections may start and end: `start` after the scenario's start; `end` before its end, or `+6h` after its start. */
const Window = Type.Object({ start: Type.String(), end: Type.String() }, strict);
const PerClass = <T extends Parameters<typeof Type.Optional>[0]>(t: T) => Type.Object({ residential: t, commercial: t, industrial: t, critical: t }, strict);

function anomalyConfig<P extends TProperties, X extends TProperties>(params: P, extra: X) {
  const Params = Type.Object(params, strict);
  return Type.Object({ count: Count, subtleShare: Share, window: Type.Optional(Window), clear: Params, subtle: Params, ...extra }, strict);
}

/** A moderate (collective) anomaly: one set of ranges, magnitude `moderate`. */
function moderateConfig<P extends TProperties>(params: P) {
  return Type.Object({ count: Count, window: Type.Optional(Window), ...params }, strict);
}

export const MALFORMED_VARIANTS = [
  'notJson',
  'notObject',
  'missingField',
  'wrongType',
  'negativeRegister',
  'fractionalRegister',
  'hugeRegister',
  'badTimestamp',
  'futureTimestamp',
  'badMeterId',
  'topicMismatch',
  'badElementInBatch',
  'oversize',
  'tooManyElements',
] as const;
export type MalformedVariant = (typeof MALFORMED_VARIANTS)[number];

/**
 * A demand-response event: in [start, end) the responders among its participants scale their load by (1 - cut).
 * `start` is a duration after the scenario's start (`38d`); `end` a duration before its end, or `+38.1d` after its
 * start, as anomaly windows say it; either may be ISO-8601 with a zone. Both on the 15-minute grid.
 */
const DrEventSchema = Type.Object(
  {
    /** Names the event in dr.jsonl; default `dr-01`, `dr-02` … by position. */
    id: Type.Optional(Type.String({ pattern: '^[A-Za-z0-9_.-]{1,64}$' })),
    start: Type.String(),
    end: Type.String(),
    /**
     * Who is called: `share` (default 1) of the customers whose class is in `classes` (default all) and, when given,
     * whose id is in `customers`, drawn from the seed.
     */
    participants: Type.Object(
      {
        share: Type.Optional(Share),
        classes: Type.Optional(Type.Array(Type.Enum(CUSTOMER_CLASSES), { minItems: 1 })),
        customers: Type.Optional(Type.Array(Type.String({ minLength: 1 }), { minItems: 1 })),
      },
      strict,
    ),
    /** Share of their load a responder sheds in the window, drawn per responder (0.4 = 40 % less). */
    cut: Range,
    /** Share of the participants that respond (exact count, rounded); the others ignore the call. */
    responders: Share,
    /** Share of each responder's cut energy consumed again, evenly, over the `reboundHours` after the event (default 0, 1 h). */
    rebound: Type.Optional(Share),
    reboundHours: Type.Optional(Type.Number({ exclusiveMinimum: 0, maximum: 24 })),
  },
  strict,
);

export const ScenarioSchema = Type.Object(
  {
    name: Type.String({ minLength: 1 }),
    seed: Type.Union([Type.Integer(), Type.String({ minLength: 1 })]),
    timezone: Type.String(),
    from: Type.String(),
    to: Type.String(),
    /** When set, runs are live at this speed (simulated seconds per real second) unless told to backfill. */
    speed: Type.Optional(Type.Number({ exclusiveMinimum: 0 })),
    /**
     * Live runs only: the part before this time point (`-3h`, `+20h` after `from`, ISO) is published as fast as the
     * broker takes it (the past, backfilled), the rest at `speed` from there. Unset: all of it at `speed`.
     */
    liveFrom: Type.Optional(Type.String()),
    /** Concentrator batch size; 0 or 1 = each reading alone on its meter's topic. */
    batch: Type.Integer({ minimum: 0, maximum: 10_000 }),
    /** Backlog arrays (late batches without concentrator batching) hold at most this many readings of one meter. */
    backlogChunk: Type.Integer({ minimum: 1, maximum: 10_000 }),
    fleet: Type.Object(
      {
        meters: Type.Integer({ minimum: 1, maximum: 10_000_000 }),
        idDigits: Type.Integer({ minimum: 1, maximum: 12 }),
        prefixes: Type.Object({ meter: Type.String(), customer: Type.String(), transformer: Type.String(), feeder: Type.String() }, strict),
        classMix: PerClass(Share),
        /** Share of residential and commercial customers with rooftop PV. */
        pvShare: Share,
        intervalMix: Type.Object({ '15': Type.Optional(Share), '30': Type.Optional(Share), '60': Type.Optional(Share) }, strict),
        feeders: Type.Integer({ minimum: 1, maximum: 100_000 }),
        metersPerTransformer: Range,
        metersPerIndustrialTransformer: Range,
        /** Normal coincident peak over rating, before rounding up to a standard size. */
        peakUtilization: Range,
        /** Contracted kW over the customer's noise-free peak. */
        contractMargin: Range,
        tariffs: PerClass(Type.String({ minLength: 1, maxLength: 64 })),
        dailyKwh: PerClass(Range),
        pvKwp: Type.Object({ residential: Range, commercial: Range }, strict),
      },
      strict,
    ),
    profile: Type.Object(
      {
        /** Log-normal sigma of the per-interval noise. */
        noise: Type.Number({ minimum: 0, maximum: 1 }),
        /** AR(1) coefficient of that noise between consecutive intervals. */
        noiseCorrelation: Type.Number({ minimum: 0, maximum: 0.99 }),
        /** Log-normal sigma of a per-meter, per-day factor. */
        dailyNoise: Type.Number({ minimum: 0, maximum: 1 }),
        /** Scales the seasonal amplitude of every class (0 = flat year). */
        seasonal: Type.Number({ minimum: 0, maximum: 3 }),
        voltage: Type.Object({ nominal: Type.Number({ exclusiveMinimum: 0 }), noise: Type.Number({ minimum: 0 }) }, strict),
        /**
         * Weather: the daily mean temperature departs from the seasonal normal by an AR(1) anomaly (sd `sigmaC` °C,
         * day-to-day correlation `persistence`); heating and cooling load follow it. sigmaC 0 = normal temperatures.
         */
        weather: Type.Object({ sigmaC: Type.Number({ minimum: 0, maximum: 10 }), persistence: Type.Number({ minimum: 0, maximum: 0.99 }) }, strict),
        /** Per-meter sensitivity to heating and cooling, drawn in [1 - x, 1 + x] (0 = the class's own). */
        hvacSpread: Type.Number({ minimum: 0, maximum: 1 }),
        /** Degrees of freedom of the Student-t noise innovations (heavier tails than Gaussian); 0 = Gaussian. */
        tailDf: Type.Integer({ minimum: 0, maximum: 30 }),
        /** Short bursts (a machine, a kettle, a lift): `perDay` per meter and day on average, `factor` × load for `steps` 15-minute steps. */
        bursts: Type.Object({ perDay: Type.Number({ minimum: 0, maximum: 20 }), factor: Range, steps: Range }, strict),
        /** Per-meter Saturday and Sunday (and holiday) levels, drawn in [1 - x, 1 + x] of the profile's. */
        weekendSpread: Type.Number({ minimum: 0, maximum: 0.9 }),
        /** Log-normal sigma of a per-day occupancy factor on the load above the day's base (business activity). */
        occupancy: Type.Number({ minimum: 0, maximum: 1 }),
        /** Per-meter gradual growth per year (0.05 = +5 % a year), drawn from the range. */
        growthPerYear: Range,
      },
      strict,
    ),
    /** Public holidays in the scenario's region, local dates: every profile runs its Sunday there. */
    calendar: Type.Object(
      {
        region: Type.String({ minLength: 1 }),
        holidays: Type.Array(Type.String({ pattern: '^\\d{4}-\\d{2}-\\d{2}$' })),
      },
      strict,
    ),
    anomalies: Type.Object(
      {
        window: Window,
        spike: anomalyConfig({ intervals: Range, factor: Range, floorW: Range }, { contractCap: Share }),
        /** `moderate`: a building half shut, consumption 30–70 % below for hours to days (`moderateShare` of `count`). */
        drop: anomalyConfig({ hours: Range, bypass: Range }, { moderateShare: Share, moderate: Type.Object({ hours: Range, bypass: Range }, strict) }),
        flatline: anomalyConfig({ hours: Range }, {}),
        reverseFlow: anomalyConfig({ hours: Range, fraction: Range }, {}),
        voltage: anomalyConfig({ intervals: Range, sag: Range, swell: Range }, { swellShare: Share }),
        silent: anomalyConfig({ intervals: Range }, {}),
        outage: anomalyConfig({ hours: Range, lastGaspShare: Range }, {}),
        customerPeak: anomalyConfig({ intervals: Range, factor: Range }, {}),
        feederOverload: anomalyConfig({ hours: Range, factor: Range }, { startLocalHour: Range }),
        registerReset: anomalyConfig({ newStartWh: Range }, {}),
        /**
         * Sustained excess, `factor` × load: all day for `hours`, or only at night and over the weekend (HVAC left on;
         * `hours` rounded up to whole days), or a night shift that should not be there (22–06).
         */
        highUsage: moderateConfig({ hours: Range, factor: Range, variants: Type.Object({ allDay: Share, nights: Share, nightShift: Share }, strict) }),
        /** Moderate injections a meter may carry (≥ 2 days apart; never with a clear one, nor with a level shift). */
        moderatePerMeter: Type.Integer({ minimum: 1, maximum: 50 }),
        /** A persistent step (`factor`, `upShare` of them up) from some hour to the end of the run; truth until `adoptDays` later. */
        levelShift: moderateConfig({ up: Range, down: Range, upShare: Share, adoptDays: Type.Number({ exclusiveMinimum: 0 }) }),
        /** The same non-zero value (the meter's usual energy at the start) interval after interval. */
        stuck: moderateConfig({ hours: Range }),
        /** A constant filler after a data fault: one of `whPerHour` (e.g. exactly 1 kWh an hour) for `hours`. */
        placeholder: moderateConfig({ hours: Range, whPerHour: Type.Array(Type.Integer({ minimum: 4 }), { minItems: 1 }) }),
        /** A working day (Monday–Friday, not a holiday) at `share` of its usual consumption. */
        lowDay: moderateConfig({ share: Range }),
        /** The day profile moved by `shiftHours` (either way) for `days` whole local days, at a normal daily total. */
        shape: moderateConfig({ days: Range, shiftHours: Range }),
      },
      strict,
    ),
    /** Demand-response events the simulated customers answer (or ignore); absent: none. Truth in dr.jsonl. */
    demandResponse: Type.Optional(Type.Object({ events: Type.Array(DrEventSchema, { maxItems: 1000 }) }, strict)),
    transport: Type.Object(
      {
        duplicates: Type.Object({ count: Count, maxDelayIntervals: Type.Integer({ minimum: 0, maximum: 96 }), batchShare: Share }, strict),
        outOfOrder: Type.Object({ count: Count, delayIntervals: Range }, strict),
        lateBatches: Type.Object({ count: Count, hours: Range, window: Type.Optional(Window) }, strict),
        malformed: Type.Object({ count: Count, variants: Type.Array(Type.Enum(MALFORMED_VARIANTS)), oversizeBytes: Type.Integer({ minimum: 1 }) }, strict),
        clockSkew: Type.Object({ count: Count, seconds: Range, hours: Range }, strict),
      },
      strict,
    ),
  },
  strict,
);
export type Scenario = Static<typeof ScenarioSchema>;
export type Range = [number, number];
export type IntervalMinutes = 15 | 30 | 60;

/** A scenario's share of meters on an interval length. */
export function intervalShare(s: Scenario, minutes: IntervalMinutes): number {
  const mix = s.fleet.intervalMix;
  return (minutes === 15 ? mix['15'] : minutes === 30 ? mix['30'] : mix['60']) ?? 0;
}

/** A plain fleet of 100 meters over the last day, no injections: what `meterflow simulate` does without --scenario. */
export const DEFAULT_SCENARIO: Scenario = {
  name: 'default',
  seed: 1,
  timezone: 'Europe/Madrid',
  from: '-1d',
  to: 'now',
  batch: 0,
  backlogChunk: 96,
  fleet: {
    meters: 100,
    idDigits: 6,
    prefixes: { meter: 'M-', customer: 'C-', transformer: 'T-', feeder: 'F-' },
    classMix: { residential: 0.82, commercial: 0.12, industrial: 0.02, critical: 0.04 },
    pvShare: 0.15,
    intervalMix: { '15': 1 },
    feeders: 4,
    metersPerTransformer: [20, 50],
    metersPerIndustrialTransformer: [1, 2],
    peakUtilization: [0.6, 0.8],
    contractMargin: [2.1, 2.6],
    // Names from config/tariffs.yaml (a name it does not list bills on its `default` tariff).
    tariffs: { residential: 'us-tou', commercial: 'cn-tou', industrial: 'cn-tou', critical: 'default' },
    dailyKwh: { residential: [5, 14], commercial: [40, 400], industrial: [1500, 12000], critical: [300, 2000] },
    pvKwp: { residential: [2.5, 6], commercial: [10, 60] },
  },
  profile: {
    noise: 0.12,
    noiseCorrelation: 0.7,
    dailyNoise: 0.06,
    seasonal: 1,
    voltage: { nominal: 230, noise: 0.7 },
    // Off by default (the plain fleet and the older scenarios); realistic.yaml and ci.yaml switch them on.
    weather: { sigmaC: 0, persistence: 0.8 },
    hvacSpread: 0,
    tailDf: 0,
    bursts: { perDay: 0, factor: [1.15, 1.4], steps: [1, 2] },
    weekendSpread: 0,
    occupancy: 0,
    growthPerYear: [0, 0],
  },
  calendar: { region: 'none', holidays: [] },
  anomalies: {
    window: { start: '22d', end: '1d' },
    spike: {
      count: 0,
      subtleShare: 0.25,
      contractCap: 0.8,
      clear: { intervals: [1, 3], factor: [5, 8], floorW: [2500, 4000] },
      subtle: { intervals: [1, 2], factor: [1.4, 1.8], floorW: [0, 0] },
    },
    drop: {
      count: 0,
      subtleShare: 0.25,
      moderateShare: 0,
      clear: { hours: [100, 168], bypass: [0.65, 0.85] },
      subtle: { hours: [100, 168], bypass: [0.3, 0.45] },
      moderate: { hours: [6, 168], bypass: [0.3, 0.7] },
    },
    flatline: { count: 0, subtleShare: 0.25, clear: { hours: [12, 36] }, subtle: { hours: [2, 4] } },
    reverseFlow: { count: 0, subtleShare: 0.25, clear: { hours: [6, 24], fraction: [0.8, 1] }, subtle: { hours: [6, 24], fraction: [0.01, 0.03] } },
    voltage: {
      count: 0,
      subtleShare: 0.25,
      swellShare: 0.5,
      clear: { intervals: [4, 12], sag: [0.8, 0.86], swell: [1.13, 1.17] },
      subtle: { intervals: [4, 12], sag: [0.92, 0.94], swell: [1.06, 1.08] },
    },
    silent: { count: 0, subtleShare: 0.25, clear: { intervals: [8, 48] }, subtle: { intervals: [1, 2] } },
    outage: { count: 0, subtleShare: 0.25, clear: { hours: [1, 4], lastGaspShare: [1, 1] }, subtle: { hours: [0.25, 0.5], lastGaspShare: [0.1, 0.3] } },
    customerPeak: { count: 0, subtleShare: 0.25, clear: { intervals: [2, 6], factor: [1.3, 1.6] }, subtle: { intervals: [1, 2], factor: [1.02, 1.06] } },
    feederOverload: {
      count: 0,
      subtleShare: 0.25,
      startLocalHour: [18, 19.5],
      clear: { hours: [2, 3], factor: [1.25, 1.5] },
      subtle: { hours: [1, 2], factor: [1.02, 1.06] },
    },
    registerReset: { count: 0, subtleShare: 0, clear: { newStartWh: [0, 50] }, subtle: { newStartWh: [0, 50] } },
    highUsage: { count: 0, hours: [6, 96], factor: [1.3, 2.5], variants: { allDay: 0.4, nights: 0.4, nightShift: 0.2 } },
    moderatePerMeter: 1,
    levelShift: { count: 0, up: [1.3, 1.6], down: [0.55, 0.75], upShare: 0.5, adoptDays: 14 },
    stuck: { count: 0, hours: [4, 48] },
    placeholder: { count: 0, hours: [6, 72], whPerHour: [1000, 500, 100] },
    lowDay: { count: 0, share: [0.2, 0.5] },
    shape: { count: 0, days: [1, 3], shiftHours: [3, 8] },
  },
  transport: {
    duplicates: { count: 0, maxDelayIntervals: 2, batchShare: 0.3 },
    outOfOrder: { count: 0, delayIntervals: [1, 3] },
    lateBatches: { count: 0, hours: [2, 8] },
    malformed: { count: 0, variants: [...MALFORMED_VARIANTS], oversizeBytes: 300_000 },
    clockSkew: { count: 0, seconds: [30, 180], hours: [12, 48] },
  },
};

/** A scenario with its time points resolved: what the generators use. */
export interface ResolvedScenario extends Scenario {
  fromMs: number;
  toMs: number;
  /** `liveFrom` resolved, when the scenario sets it. */
  liveFromMs?: number;
  /** Interval lengths present in the fleet, minutes, ascending. */
  intervals: IntervalMinutes[];
}

export class ScenarioError extends Error {
  override name = 'ScenarioError';
}

export interface ScenarioOverrides {
  meters?: number;
  /** `15m`, `30m`, `1h`: every meter on this interval. */
  interval?: string;
  from?: string;
  to?: string;
  seed?: string | number;
  batch?: number;
  timezone?: string;
}

const check = Compile(ScenarioSchema);
/** Anomaly windows and the start of the range align to this, so 15-, 30- and 60-minute meters all share boundaries. */
export const ALIGN_MS = 3_600_000;

type Plain = Record<string, unknown>;
const isPlain = (v: unknown): v is Plain => v !== null && typeof v === 'object' && !Array.isArray(v);

function merge(base: unknown, over: unknown): unknown {
  if (!isPlain(base) || !isPlain(over)) return over === undefined ? base : over;
  const out: Plain = { ...base };
  for (const [k, v] of Object.entries(over)) out[k] = merge(base[k], v);
  return out;
}

/** Reads a scenario YAML file (or takes a parsed object), merges it over the defaults and checks it. */
export function loadScenario(source?: string | Plain, overrides: ScenarioOverrides = {}, opts: { now?: number } = {}): ResolvedScenario {
  let doc: unknown = {};
  if (typeof source === 'string') {
    let text: string;
    try {
      text = readFileSync(source, 'utf8');
    } catch (err) {
      throw new ScenarioError(`cannot read scenario ${source}: ${err instanceof Error ? err.message : String(err)}`, { cause: err });
    }
    try {
      doc = parseYaml(text) ?? {};
    } catch (err) {
      throw new ScenarioError(`scenario ${source} is not valid YAML: ${err instanceof Error ? err.message : String(err)}`, { cause: err });
    }
    if (!isPlain(doc)) throw new ScenarioError(`scenario ${source} must be a YAML mapping`);
  } else if (source !== undefined) {
    doc = source;
  }
  const merged = merge(DEFAULT_SCENARIO, doc);
  if (!check.Check(merged)) {
    const first = check.Errors(merged)[0];
    const at = first ? first.instancePath.replace(/^\//, '').replaceAll('/', '.') : '';
    // An unknown key fails as "schema is false" (additionalProperties: false): say it plainly, it is usually a typo.
    const what = first === undefined ? 'does not match the schema' : first.message === 'schema is false' ? 'unknown key' : first.message;
    throw new ScenarioError(`scenario${typeof source === 'string' ? ` ${source}` : ''}: ${at || '(root)'}: ${what}`);
  }
  const scenario: Scenario = structuredClone(merged);
  applyOverrides(scenario, overrides);
  return resolve(scenario, opts.now ?? Date.now());
}

function applyOverrides(s: Scenario, o: ScenarioOverrides): void {
  if (o.meters !== undefined) s.fleet.meters = o.meters;
  if (o.interval !== undefined) {
    const minutes = parseDuration(o.interval) / 60_000;
    if (minutes !== 15 && minutes !== 30 && minutes !== 60) throw new ScenarioError(`interval must be 15m, 30m or 1h, got ${o.interval}`);
    s.fleet.intervalMix = { [String(minutes)]: 1 };
  }
  if (o.from !== undefined) s.from = o.from;
  if (o.to !== undefined) s.to = o.to;
  if (o.seed !== undefined) s.seed = o.seed;
  if (o.batch !== undefined) s.batch = o.batch;
  if (o.timezone !== undefined) s.timezone = o.timezone;
}

function resolve(s: Scenario, now: number): ResolvedScenario {
  if (!IANAZone.isValidZone(s.timezone)) throw new ScenarioError(`timezone: expected an IANA zone such as Europe/Madrid, got "${s.timezone}"`);
  let fromMs: number;
  let toMs: number;
  let liveFromMs: number | undefined;
  try {
    fromMs = Math.floor(resolveTimePoint(s.from, { now }) / ALIGN_MS) * ALIGN_MS;
    toMs = resolveTimePoint(s.to, { now, base: fromMs });
    if (s.liveFrom !== undefined) liveFromMs = resolveTimePoint(s.liveFrom, { now, base: fromMs });
  } catch (err) {
    if (err instanceof TimeSpecError) throw new ScenarioError(`from/to: ${err.message}`, { cause: err });
    throw err;
  }
  // Whole base steps only: the last reading is at the last 15-minute boundary not after `to`.
  toMs = Math.floor(toMs / 900_000) * 900_000;
  if (toMs <= fromMs) throw new ScenarioError(`to (${new Date(toMs).toISOString()}) must be after from (${new Date(fromMs).toISOString()})`);
  if (liveFromMs !== undefined && !(liveFromMs >= fromMs && liveFromMs <= toMs)) {
    throw new ScenarioError(`liveFrom (${new Date(liveFromMs).toISOString()}) must be between from and to`);
  }
  const intervals = ([15, 30, 60] as const).filter((m) => intervalShare(s, m) > 0);
  if (intervals.length === 0) throw new ScenarioError('fleet.intervalMix: at least one of 15, 30, 60 needs a share above 0');
  if (CUSTOMER_CLASSES.every((c: CustomerClass) => s.fleet.classMix[c] === 0)) throw new ScenarioError('fleet.classMix: all shares are 0');
  if (s.profile.tailDf > 0 && s.profile.tailDf < 3)
    throw new ScenarioError(`profile.tailDf: 0 (Gaussian) or at least 3 (finite variance), got ${s.profile.tailDf}`);
  for (const d of s.calendar.holidays) {
    if (Number.isNaN(Date.parse(`${d}T00:00:00Z`))) throw new ScenarioError(`calendar.holidays: "${d}" is not a date`);
  }
  for (const [path, r] of rangesOf(s)) {
    if (!(r[0] <= r[1])) throw new ScenarioError(`${path}: range [${r[0]}, ${r[1]}] must have lo ≤ hi`);
  }
  drWindows(s, fromMs, toMs);
  return { ...s, fromMs, toMs, ...(liveFromMs === undefined ? {} : { liveFromMs }), intervals: [...intervals] };
}

function* rangesOf(v: unknown, path = ''): Generator<[string, Range]> {
  if (Array.isArray(v) && v.length === 2 && typeof v[0] === 'number' && typeof v[1] === 'number') {
    yield [path, [v[0], v[1]]];
    return;
  }
  if (isPlain(v)) for (const [k, x] of Object.entries(v)) yield* rangesOf(x, path ? `${path}.${k}` : k);
}

/** The 15-minute grid demand-response windows keep to: every interval length is a multiple of it. */
const DR_GRID_MS = 900_000;

export interface DrWindow {
  id: string;
  startMs: number;
  endMs: number;
  /** End of the rebound after it (= endMs without one). */
  reboundEndMs: number;
}

/** A demand-response time: ISO-8601, or relative like an anomaly window's start or end. */
function drTime(spec: string, which: 'start' | 'end', fromMs: number, toMs: number): number {
  if (/^\d{4}-/.test(spec)) return resolveTimePoint(spec, { now: fromMs });
  if (spec.startsWith('+')) return fromMs + parseDuration(spec.slice(1));
  return which === 'start' ? fromMs + parseDuration(spec) : toMs - parseDuration(spec);
}

/**
 * Each demand-response event's window, checked: on the 15-minute grid, inside the scenario's range, end after start,
 * ids unique, and no two events (rebound included) overlapping, so a customer is never in two at once.
 */
export function drWindows(s: Scenario, fromMs: number, toMs: number): DrWindow[] {
  const events = s.demandResponse?.events ?? [];
  const out = events.map((e, i): DrWindow => {
    const at = `demandResponse.events.${i}`;
    let startMs: number;
    let endMs: number;
    try {
      startMs = drTime(e.start, 'start', fromMs, toMs);
      endMs = drTime(e.end, 'end', fromMs, toMs);
    } catch (err) {
      if (err instanceof TimeSpecError) throw new ScenarioError(`${at}: ${err.message}`, { cause: err });
      throw err;
    }
    const iso = (ms: number) => new Date(ms).toISOString();
    if (startMs % DR_GRID_MS !== 0 || endMs % DR_GRID_MS !== 0) throw new ScenarioError(`${at}: start and end must be on the 15-minute grid`);
    if (!(endMs > startMs)) throw new ScenarioError(`${at}: end (${iso(endMs)}) must be after start (${iso(startMs)})`);
    if (startMs < fromMs || endMs > toMs) throw new ScenarioError(`${at}: [${iso(startMs)}, ${iso(endMs)}) is outside the scenario's range`);
    if (!(e.cut[0] >= 0 && e.cut[0] <= e.cut[1] && e.cut[1] <= 1))
      throw new ScenarioError(`${at}.cut: expected 0 ≤ lo ≤ hi ≤ 1, got [${e.cut[0]}, ${e.cut[1]}]`);
    const reboundMs = Math.round((e.reboundHours ?? 1) * 3_600_000);
    if (reboundMs % DR_GRID_MS !== 0) throw new ScenarioError(`${at}.reboundHours: a whole number of quarter hours, got ${e.reboundHours}`);
    const id = e.id ?? `dr-${String(i + 1).padStart(2, '0')}`;
    return { id, startMs, endMs, reboundEndMs: (e.rebound ?? 0) > 0 ? endMs + reboundMs : endMs };
  });
  const ids = new Set<string>();
  for (const w of out) {
    if (ids.has(w.id)) throw new ScenarioError(`demandResponse.events: id "${w.id}" is used twice`);
    ids.add(w.id);
  }
  const sorted = [...out].sort((a, b) => a.startMs - b.startMs);
  for (let i = 1; i < sorted.length; i++) {
    const a = sorted[i - 1];
    const b = sorted[i];
    if (a !== undefined && b !== undefined && b.startMs < a.reboundEndMs)
      throw new ScenarioError(`demandResponse.events: ${a.id} and ${b.id} overlap (rebound included); one event at a time`);
  }
  return out;
}
