import type { CustomerClass } from '../contracts/registry.js';
import { HOUR_MS, localParts } from './local-time.js';

/**
 * Per-meter baseline: expected consumption rate (Wh per hour) and its spread per local time slot, times a slow
 * per-meter level factor.
 *
 * - Slot level and spread: a decayed mean and mean absolute deviation per slot, each sample clipped to
 *   level ± clipK × spread before it teaches (Huber), so one outlier moves a settled slot by at most
 *   alpha × clipK × spread. The learning rate follows a memory in weeks, so a slot seen once a week (Saturday 10:00)
 *   learns as fast in calendar time as one seen five times (a weekday hour). The first sample replaces the class
 *   prior (a 500 kW building is not judged against a home's profile).
 * - Level factor: decayed sums of measured and slot-expected energy (time constant levelDays), so seasons and
 *   weather move the expectation within days while each slot keeps its shape. Anomalous intervals never teach
 *   (the caller keeps them out), so a multi-day anomaly freezes the factor instead of being learned.
 * - Spread floors are relative (to the slot level and to the meter's mean level) plus a small absolute floor:
 *   the same configuration fits a 300 W home and a 500 kW building.
 *
 * Values are float32 at rest and after every update, so the in-memory state equals the checkpointed one bit for
 * bit. `learn` updates the baseline in place (it runs once per interval): callers own the baseline they pass.
 */

export type SlotScheme = 'hourOfWeek' | 'hourDaytype' | 'hourWeekdaySatSun';

export interface ClassProfile {
  weekday: readonly number[];
  weekend: readonly number[];
}

export interface BaselineSettings {
  slots: SlotScheme;
  /** A slot judges only after this many samples: a warm meter's first weekend is still new. */
  minSlotSamples: number;
  alphaMin: number;
  clipK: number;
  minSpreadWhPerHour: number;
  priorSpreadRatio: number;
  classProfiles: Readonly<Record<CustomerClass, ClassProfile>>;
  /** Memory of a slot in weeks (sets its learning rate from how often it is seen); absent: alphaMin alone. */
  memoryWeeks?: number | undefined;
  /** Spread floor as a share of the slot's expected level. */
  spreadFloorShare?: number | undefined;
  /** Spread floor as a share of the meter's mean level over all slots (quiet hours of a busy meter). */
  meterSpreadFloorShare?: number | undefined;
  /** Weekend slots' spread floor as a share of the same weekday hour's spread (weekday/weekend schemes). */
  weekendPoolShare?: number | undefined;
  /** Time constant of the per-meter level factor, days; absent or 0: no factor (always 1). */
  levelDays?: number | undefined;
}

export interface Baseline {
  /** Slot level, Wh per hour, before the level factor. */
  mean: Float32Array;
  /** Mean absolute deviation, Wh per hour per slot, before the level factor. */
  spread: Float32Array;
  /** Samples learned per slot, saturating at 255 (drives the learning rate while young). */
  count: Uint8Array;
  /** Level factor = level[0] / level[1]: decayed sums of measured and slot-expected energy (1 while level[1] = 0). */
  level: Float32Array;
}

export function slotCount(scheme: SlotScheme): number {
  if (scheme === 'hourOfWeek') return 168;
  return scheme === 'hourWeekdaySatSun' ? 72 : 48;
}

/** Slot of a local weekday (0 = Monday) and hour. */
export function slotOfParts(scheme: SlotScheme, weekday: number, hour: number): number {
  if (scheme === 'hourOfWeek') return weekday * 24 + hour;
  if (scheme === 'hourWeekdaySatSun') return weekday >= 5 ? (weekday - 4) * 24 + hour : hour;
  return weekday >= 5 ? 24 + hour : hour;
}

/** Slot of instant `tsMs` in local time. */
export function slotOf(scheme: SlotScheme, zone: string, tsMs: number): number {
  const p = localParts(zone, tsMs);
  return slotOfParts(scheme, p.weekday, p.hour);
}

/** Days per week a slot is seen. */
function slotDaysPerWeek(scheme: SlotScheme, slot: number): number {
  if (scheme === 'hourOfWeek') return 1;
  if (slot < 24) return 5;
  return scheme === 'hourWeekdaySatSun' ? 1 : 2;
}

function slotHourAndWeekend(scheme: SlotScheme, slot: number): { hour: number; weekend: boolean } {
  if (scheme === 'hourOfWeek') return { hour: slot % 24, weekend: Math.floor(slot / 24) >= 5 };
  return { hour: slot % 24, weekend: slot >= 24 };
}

/** Cold start: the customer class profile, with a generous spread and no samples. */
export function coldBaseline(cls: CustomerClass, s: BaselineSettings): Baseline {
  const n = slotCount(s.slots);
  const b: Baseline = { mean: new Float32Array(n), spread: new Float32Array(n), count: new Uint8Array(n), level: new Float32Array(2) };
  const profile = s.classProfiles[cls];
  for (let slot = 0; slot < n; slot++) {
    const { hour, weekend } = slotHourAndWeekend(s.slots, slot);
    const m = (weekend ? profile.weekend : profile.weekday)[hour] ?? 0;
    b.mean[slot] = m;
    b.spread[slot] = m * s.priorSpreadRatio;
  }
  return b;
}

/** The meter's level factor (1 until it has learned). */
export function levelFactor(b: Baseline): number {
  const num = b.level[0] ?? 0;
  const den = b.level[1] ?? 0;
  return den > 0 && num > 0 ? num / den : 1;
}

/** Mean slot level (Wh per hour, before the level factor). */
export function meanLevel(b: Baseline): number {
  let sum = 0;
  const m = b.mean;
  for (let i = 0; i < m.length; i++) sum += m[i] ?? 0;
  return m.length > 0 ? sum / m.length : 0;
}

/** Highest slot level (Wh per hour, before the level factor): the meter's busiest hour. */
function peakLevel(b: Baseline): number {
  let max = 0;
  const m = b.mean;
  for (let i = 0; i < m.length; i++) max = Math.max(max, m[i] ?? 0);
  return max;
}

/** Floored spread of a slot, Wh per hour before the level factor. */
function flooredSpread(b: Baseline, s: BaselineSettings, slot: number, meterLevel: number): number {
  const m = b.mean[slot] ?? 0;
  // Weekend slots learn from one or two days a week: their spread borrows from the same weekday hour's, which has
  // seen five times as many days (weather, clouds on a PV roof).
  const pooled = slot >= 24 && s.slots !== 'hourOfWeek' ? (s.weekendPoolShare ?? 0) * (b.spread[slot % 24] ?? 0) : 0;
  return Math.max(b.spread[slot] ?? 0, (s.spreadFloorShare ?? 0) * m, (s.meterSpreadFloorShare ?? 0) * meterLevel, pooled);
}

/** Expected rate and spread (Wh per hour) at `tsMs`; the spread is floored. */
export function expectedRate(b: Baseline, s: BaselineSettings, zone: string, tsMs: number): { rate: number; spread: number } {
  const slot = slotOf(s.slots, zone, tsMs);
  const g = levelFactor(b);
  const floorLevel = s.meterSpreadFloorShare === undefined ? 0 : meanLevel(b);
  return { rate: (b.mean[slot] ?? 0) * g, spread: Math.max(flooredSpread(b, s, slot, floorLevel) * g, s.minSpreadWhPerHour) };
}

export interface Expectation {
  /** Expected energy of the interval, Wh. */
  wh: number;
  /** Its floored spread, Wh. */
  spreadWh: number;
  /** Samples its slot has learned. */
  samples: number;
  /** The meter's mean expected energy per interval over all slots, Wh (scale for scale-free floors). */
  meterWh: number;
  /** Expected energy per interval of the meter's busiest slot, Wh. */
  peakWh: number;
}

/** Expected energy and spread (Wh) of an interval of length `intervalMs` in `slot`. */
export function expectSlot(b: Baseline, s: BaselineSettings, slot: number, intervalMs: number): Expectation {
  const h = intervalMs / HOUR_MS;
  const g = levelFactor(b);
  const ml = meanLevel(b);
  // A level learnt from few days is itself uncertain: the spread of a new value around it is wider by √(1 + 1/days).
  const n = b.count[slot] ?? 0;
  const days = n * h;
  const young = days > 0 ? Math.sqrt(1 + 1 / days) : 1;
  return {
    wh: (b.mean[slot] ?? 0) * g * h,
    spreadWh: Math.max(flooredSpread(b, s, slot, ml) * g * young, s.minSpreadWhPerHour) * h,
    samples: b.count[slot] ?? 0,
    meterWh: ml * g * h,
    peakWh: peakLevel(b) * g * h,
  };
}

/** Expected energy and spread (Wh) of the interval [start, start + intervalMs). */
export function expectedInterval(
  b: Baseline,
  s: BaselineSettings,
  zone: string,
  start: number,
  intervalMs: number,
): { wh: number; spreadWh: number; samples: number } {
  const e = expectSlot(b, s, slotOf(s.slots, zone, start), intervalMs);
  return { wh: e.wh, spreadWh: e.spreadWh, samples: e.samples };
}

/** Learning rate of a slot that has seen `n` samples. */
function alphaOf(s: BaselineSettings, slot: number, n: number, intervalMs: number): number {
  const young = 1 / (n + 1);
  const memory = s.memoryWeeks === undefined ? 0 : 1 / (s.memoryWeeks * slotDaysPerWeek(s.slots, slot) * (HOUR_MS / intervalMs));
  return Math.max(young, s.alphaMin, memory);
}

/** Teaches `slot` one interval of `wh`, in place (returns the same baseline). */
export function learnSlot(b: Baseline, s: BaselineSettings, slot: number, intervalMs: number, wh: number): Baseline {
  const x = (wh * HOUR_MS) / intervalMs;
  const n = b.count[slot] ?? 0;
  const g = levelFactor(b);
  const y = x / g;
  const m = b.mean[slot] ?? 0;
  const sp = b.spread[slot] ?? 0;
  if (n === 0) {
    // The first sample replaces the class prior; the prior's relative spread stays until real deviations come.
    b.mean[slot] = y;
    b.spread[slot] = y * s.priorSpreadRatio;
    b.count[slot] = 1;
  } else {
    // Clip only once the slot has seen a few samples: the first ones may be far from each other.
    const band = s.clipK * Math.max(flooredSpread(b, s, slot, s.meterSpreadFloorShare === undefined ? 0 : meanLevel(b)), s.minSpreadWhPerHour / g);
    const yc = n >= 3 ? Math.min(Math.max(y, m - band), m + band) : y;
    const alpha = alphaOf(s, slot, n, intervalMs);
    b.mean[slot] = Math.max(0, m + alpha * (yc - m));
    b.spread[slot] = Math.max(0, sp + alpha * (Math.abs(yc - m) - sp));
    b.count[slot] = Math.min(255, n + 1);
    if (s.levelDays !== undefined && s.levelDays > 0 && n >= 3) {
      // Energy-weighted ratio of measured to slot-expected: near-empty hours barely move it.
      const d = Math.exp(-intervalMs / (s.levelDays * 24 * HOUR_MS));
      b.level[0] = (b.level[0] ?? 0) * d + yc * g;
      b.level[1] = (b.level[1] ?? 0) * d + m;
    }
  }
  return b;
}

/** Teaches the slot of `start` one interval of `wh`, in place (returns the same baseline). */
export function learn(b: Baseline, s: BaselineSettings, zone: string, start: number, intervalMs: number, wh: number): Baseline {
  return learnSlot(b, s, slotOf(s.slots, zone, start), intervalMs, wh);
}

/** Adopts a new level: every expectation is multiplied by `ratio` (a level shift that persisted). */
export function rescale(b: Baseline, ratio: number): void {
  if (!(ratio > 0) || !Number.isFinite(ratio)) return;
  if ((b.level[1] ?? 0) > 0 && (b.level[0] ?? 0) > 0) {
    b.level[0] = (b.level[0] ?? 0) * ratio;
    return;
  }
  for (let i = 0; i < b.mean.length; i++) {
    b.mean[i] = (b.mean[i] ?? 0) * ratio;
    b.spread[i] = (b.spread[i] ?? 0) * ratio;
  }
}

/** Compact serialisation: base64 of mean (f32) ‖ spread (f32) ‖ count (u8) ‖ level (2 × f32). */
export function encodeBaseline(b: Baseline): string {
  const n = b.mean.length;
  const buf = Buffer.alloc(n * 9 + 8);
  for (let i = 0; i < n; i++) {
    buf.writeFloatLE(b.mean[i] ?? 0, i * 4);
    buf.writeFloatLE(b.spread[i] ?? 0, n * 4 + i * 4);
    buf.writeUInt8(b.count[i] ?? 0, n * 8 + i);
  }
  buf.writeFloatLE(b.level[0] ?? 0, n * 9);
  buf.writeFloatLE(b.level[1] ?? 0, n * 9 + 4);
  return buf.toString('base64');
}

/**
 * Inverse of encodeBaseline. An older checkpoint without the level factor decodes with factor 1; one of the
 * weekday/weekend scheme (48 slots) decodes into weekday/Saturday/Sunday (72) with both weekend days its weekend.
 */
export function decodeBaseline(s: string, slots: number): Baseline | undefined {
  const buf = Buffer.from(s, 'base64');
  if (slots === 72 && (buf.length === 48 * 9 || buf.length === 48 * 9 + 8)) {
    const b48 = decodeBaseline(s, 48);
    if (b48 === undefined) return undefined;
    const b: Baseline = { mean: new Float32Array(72), spread: new Float32Array(72), count: new Uint8Array(72), level: b48.level };
    for (let i = 0; i < 72; i++) {
      const from = i < 48 ? i : i - 24;
      b.mean[i] = b48.mean[from] ?? 0;
      b.spread[i] = b48.spread[from] ?? 0;
      b.count[i] = b48.count[from] ?? 0;
    }
    return b;
  }
  if (buf.length !== slots * 9 && buf.length !== slots * 9 + 8) return undefined;
  const b: Baseline = { mean: new Float32Array(slots), spread: new Float32Array(slots), count: new Uint8Array(slots), level: new Float32Array(2) };
  for (let i = 0; i < slots; i++) {
    b.mean[i] = buf.readFloatLE(i * 4);
    b.spread[i] = buf.readFloatLE(slots * 4 + i * 4);
    b.count[i] = buf.readUInt8(slots * 8 + i);
  }
  if (buf.length === slots * 9 + 8) {
    b.level[0] = buf.readFloatLE(slots * 9);
    b.level[1] = buf.readFloatLE(slots * 9 + 4);
  }
  return b;
}
