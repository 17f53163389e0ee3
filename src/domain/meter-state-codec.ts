import { CHECKPOINT_DETECTOR_FIELDS, CHECKPOINT_FLAGS, checkMeterCheckpoint, type MeterCheckpoint } from '../contracts/meter-checkpoint.js';
import { decodeBaseline, encodeBaseline, slotCount } from './baseline.js';
import { type DetectorState, initialDetectors, RECENT_INTERVALS } from './detectors-state.js';
import { NO_HOLIDAY } from './holiday-habit.js';
import type { MeterExchange, RegisterRead, VeeState } from './intervals.js';
import { MINUTE_MS } from './local-time.js';
import type { MeterState } from './meter-state.js';
import type { StreamSettings } from './stream-settings.js';

/** A meter's state as its checkpoint (src/contracts/meter-checkpoint.ts): compact JSON, the arrays as base64 float32. */

// The contract names the checkpointed detector fields; these declarations check they are DetectorState's.
const FLAGS: ReadonlyArray<{ [K in keyof DetectorState]: DetectorState[K] extends boolean ? K : never }[keyof DetectorState]> = CHECKPOINT_FLAGS;
const DET_FIELDS: ReadonlyArray<{ [K in keyof DetectorState]: DetectorState[K] extends number ? K : never }[keyof DetectorState]> = CHECKPOINT_DETECTOR_FIELDS;

type Read = [number, number, number];

const f32base64 = (a: Float32Array): string => Buffer.from(a.buffer, a.byteOffset, a.byteLength).toString('base64');

/** A base64 float32 array of exactly `n` values, or undefined. */
function decodeF32(v: string, n: number): Float32Array | undefined {
  const buf = Buffer.from(v, 'base64');
  if (buf.length !== n * 4) return undefined;
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) out[i] = buf.readFloatLE(i * 4);
  return out;
}

export function encodeMeterState(st: MeterState): string {
  const d = st.det;
  let flags = 0;
  FLAGS.forEach((f, i) => {
    if (d[f]) flags |= 1 << i;
  });
  const checkpoint: MeterCheckpoint = {
    v: 1,
    i: st.vee.intervalMs / MINUTE_MS,
    r: st.vee.reads.map((r): Read => [r.ts, r.imp, r.exp]),
    f: st.firstTs,
    e: st.evaluatedUntil,
    l: st.learnedUntil,
    // as interval counts after `l` (short numbers); an older checkpoint's absolute times still decode
    n: st.noTeach.map((t) => Math.round((t - st.learnedUntil) / st.vee.intervalMs)),
    h: st.baselineHour,
    ...(st.holiday[0] !== -1 || st.holiday[1] !== -1 ? { o: st.holiday } : {}),
    b: encodeBaseline(st.baseline),
    // An older checkpoint (8 numbers: the former drop window after vRun) decodes with fresh collective detectors.
    d: [flags, d.flatFrom, d.flatExpWh, d.vRun, ...DET_FIELDS.map((k) => d[k])],
    ...(d.recentN > 0 ? { w: f32base64(d.recent) } : {}),
    ...(d.dayNo >= 0 ? { y: f32base64(d.dayHours) } : {}),
    ...encodeExchange(st.vee),
  };
  return JSON.stringify(checkpoint);
}

/** `x`: the exchange as [ts, installWh, removalWh, installExportWh] (-1 = not given); `z`: the traced reset's reads. */
function encodeExchange(vee: VeeState): Pick<MeterCheckpoint, 'x' | 'z'> {
  const out: Pick<MeterCheckpoint, 'x' | 'z'> = {};
  const ex = vee.exchange;
  if (ex !== undefined) out.x = [ex.ts, ex.installWh, ex.removalWh ?? -1, ex.installExportWh ?? -1];
  if (vee.lastReset !== undefined) out.z = vee.lastReset.map((r): Read => [r.ts, r.imp, r.exp]);
  return out;
}

/** Inverse of encodeExchange. */
function decodeExchange(c: MeterCheckpoint): { exchange?: MeterExchange; lastReset?: RegisterRead[] } {
  const out: { exchange?: MeterExchange; lastReset?: RegisterRead[] } = {};
  if (c.x !== undefined) {
    const [ts, installWh, removalWh, installExportWh] = c.x;
    const ex: MeterExchange = { ts, installWh };
    if (removalWh >= 0) ex.removalWh = removalWh;
    if (installExportWh >= 0) ex.installExportWh = installExportWh;
    out.exchange = ex;
  }
  if (c.z !== undefined) out.lastReset = c.z.map(registerRead);
  return out;
}

const registerRead = ([ts, imp, exp]: Read): RegisterRead => ({ ts, imp, exp });

/** The detector record of `d` (and the arrays `w`, `y`); undefined when an array is not one. */
function decodeDetectors(c: MeterCheckpoint): DetectorState | undefined {
  const d = c.d;
  const [flags = 0, flatFrom = -1, flatExpWh = 0, vRun = 0] = d;
  const det: DetectorState = { ...initialDetectors(), flatFrom, flatExpWh, vRun };
  if (d.length === 8) {
    // The former drop window has no run to continue: the collective detectors start afresh (and not firing).
    FLAGS.forEach((key, idx) => {
      det[key] = key !== 'drop' && (flags & (1 << idx)) !== 0;
    });
    return det;
  }
  DET_FIELDS.forEach((key, idx) => {
    det[key] = d[4 + idx] ?? 0;
  });
  FLAGS.forEach((key, idx) => {
    det[key] = (flags & (1 << idx)) !== 0;
  });
  if (c.w !== undefined) {
    const recent = decodeF32(c.w, RECENT_INTERVALS);
    if (recent === undefined) return undefined;
    det.recent = recent;
  } else det.recentN = 0;
  if (c.y !== undefined) {
    const hours = decodeF32(c.y, 24);
    if (hours === undefined) return undefined;
    det.dayHours = hours;
  } else det.dayNo = -1;
  return det;
}

/** Parses a checkpointed state; undefined when it is not one (the meter then starts afresh). */
export function decodeMeterState(raw: string, s: StreamSettings): MeterState | undefined {
  let c: unknown;
  try {
    c = JSON.parse(raw);
  } catch {
    return undefined;
  }
  if (!checkMeterCheckpoint.Check(c)) return undefined;
  const baseline = decodeBaseline(c.b, slotCount(s.baseline.slots));
  if (baseline === undefined) return undefined;
  const det = decodeDetectors(c);
  if (det === undefined) return undefined;
  const { i, l } = c;
  return {
    vee: { intervalMs: i * MINUTE_MS, reads: c.r.map(registerRead), ...decodeExchange(c) },
    firstTs: c.f,
    evaluatedUntil: c.e,
    learnedUntil: l,
    noTeach: c.n.map((k) => (Math.abs(k) > 1e9 ? k : l + k * i * MINUTE_MS)),
    baselineHour: c.h,
    baseline,
    det,
    holiday: c.o ?? [...NO_HOLIDAY],
  };
}
