import { Type, type Static } from 'typebox';
import { Compile } from 'typebox/compile';

/**
 * One meter's stream state as the stream worker checkpoints it (Redis hash `mf:state:{shard}`, meterId → this JSON;
 * written and read by src/domain/meter-state-codec.ts). Every meter is stored at every checkpoint and read back on
 * every worker start, so the keys are one letter and the numbers short. Older checkpoints still decode: `d` of 8
 * numbers (the former drop window after vRun), `n` as absolute times.
 */

/** Bit i of `d[0]`: the detectors' on/off flags. */
export const CHECKPOINT_FLAGS = ['spike', 'reverse', 'peak', 'reset', 'silent', 'flat', 'voltage', 'drop', 'high', 'stuck', 'shape'] as const;

/** The detector numbers in `d` after [flags, flatFrom, flatExpWh, vRun], in this order. */
export const CHECKPOINT_DETECTOR_FIELDS = [
  'upS',
  'upE',
  'upFrom',
  'upWh',
  'upExpWh',
  'upNextAt',
  'dnS',
  'dnE',
  'dnFrom',
  'dropWh',
  'dropExpWh',
  'dropNextAt',
  'stuckWh',
  'stuckN',
  'stuckFrom',
  'stuckLogP',
  'stuckNextAt',
  'dayNo',
  'dayStart',
  'dayN',
  'dayBad',
  'dayDev',
  'shapeMean',
  'shapeDev',
  'shapeDays',
  'exportHours',
  'recentN',
  'recentEnd',
] as const;

const Num = Type.Number();
/** Exactly n numbers. */
const Numbers = (n: number) => Type.Array(Num, { minItems: n, maxItems: n });
/** A register read: [ts, import Wh, export Wh]. */
const Read = Type.Tuple([Num, Num, Num]);

export const MeterCheckpoint = Type.Object({
  v: Type.Literal(1),
  /** Interval length, minutes. */
  i: Num,
  /** The VEE window's reads. */
  r: Type.Array(Read),
  /** First accepted read, end of the last evaluated interval, end of the last learned one. */
  f: Num,
  e: Num,
  l: Num,
  /** Intervals that must not teach: interval counts after `l` (an older checkpoint: absolute times, |t| > 1e9). */
  n: Type.Array(Num),
  /** Last local hour a baseline point was emitted for. */
  h: Num,
  /** Holiday habit [closed share, day collected, measured, weekday-expected, Sunday-expected Wh]; absent: none yet. */
  o: Type.Optional(Numbers(5)),
  /** The baseline: base64 (src/domain/baseline.ts encodeBaseline). */
  b: Type.String(),
  /** Detectors: [flags, flatFrom, flatExpWh, vRun, ...CHECKPOINT_DETECTOR_FIELDS], or the 8 numbers of an older one. */
  d: Type.Union([Numbers(8), Numbers(4 + CHECKPOINT_DETECTOR_FIELDS.length)]),
  /** Ring of recent interval Wh (base64 float32); absent while it is empty. */
  w: Type.Optional(Type.String()),
  /** Wh per local hour of the day being collected (base64 float32); absent while none is. */
  y: Type.Optional(Type.String()),
  /** The meter exchange: [ts, installWh, removalWh, installExportWh], -1 = not given. */
  x: Type.Optional(Type.Tuple([Num, Num, Num, Num])),
  /** The reads behind the latest register decrease. */
  z: Type.Optional(Type.Array(Read)),
});
export type MeterCheckpoint = Static<typeof MeterCheckpoint>;

/** Compiled once: this runs for every meter on every worker start. */
export const checkMeterCheckpoint = Compile(MeterCheckpoint);
