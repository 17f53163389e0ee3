import type { CustomerClass } from '../contracts/registry.js';
import { HOUR_MS, localParts } from './local-time.js';

/**
 * Per-meter baseline: expected consumption rate (Wh per hour) and its spread per local time-of-week slot.
 * Robust streaming estimate: a decayed mean and mean absolute deviation per slot, each sample clipped
 * to mean ± clipK × spread before it teaches (Huber), and the caller keeps anomalous and estimated
 * intervals out entirely. Values are float32 at rest and after every update, so the in-memory state
 * equals the checkpointed one bit for bit (a restarted worker continues exactly).
 */

export type SlotScheme = 'hourOfWeek' | 'hourDaytype';

export interface ClassProfile {
  weekday: readonly number[];
  weekend: readonly number[];
}

export interface BaselineSettings {
  slots: SlotScheme;
  /** A slot judges (spike, flatline) only after this many samples: a warm meter's first weekend is still new. */
  minSlotSamples: number;
  alphaMin: number;
  clipK: number;
  minSpreadWhPerHour: number;
  priorSpreadRatio: number;
  classProfiles: Readonly<Record<CustomerClass, ClassProfile>>;
}

export interface Baseline {
  /** Expected Wh per hour per slot. */
  mean: Float32Array;
  /** Mean absolute deviation, Wh per hour per slot. */
  spread: Float32Array;
  /** Samples learned per slot, saturating at 255 (drives the learning rate while young). */
  count: Uint8Array;
}

export function slotCount(scheme: SlotScheme): number {
  return scheme === 'hourOfWeek' ? 168 : 48;
}

/** Slot of instant `tsMs` in local time. */
export function slotOf(scheme: SlotScheme, zone: string, tsMs: number): number {
  const p = localParts(zone, tsMs);
  if (scheme === 'hourOfWeek') return p.weekday * 24 + p.hour;
  return p.weekday >= 5 ? 24 + p.hour : p.hour;
}

function slotHourAndWeekend(scheme: SlotScheme, slot: number): { hour: number; weekend: boolean } {
  if (scheme === 'hourOfWeek') return { hour: slot % 24, weekend: Math.floor(slot / 24) >= 5 };
  return { hour: slot % 24, weekend: slot >= 24 };
}

/** Cold start: the customer class profile, with a generous spread and no samples. */
export function coldBaseline(cls: CustomerClass, s: BaselineSettings): Baseline {
  const n = slotCount(s.slots);
  const b: Baseline = { mean: new Float32Array(n), spread: new Float32Array(n), count: new Uint8Array(n) };
  const profile = s.classProfiles[cls];
  for (let slot = 0; slot < n; slot++) {
    const { hour, weekend } = slotHourAndWeekend(s.slots, slot);
    const m = (weekend ? profile.weekend : profile.weekday)[hour] ?? 0;
    b.mean[slot] = m;
    b.spread[slot] = m * s.priorSpreadRatio;
  }
  return b;
}

/** Expected rate and spread (Wh per hour) at `tsMs`; the spread is floored. */
export function expectedRate(b: Baseline, s: BaselineSettings, zone: string, tsMs: number): { rate: number; spread: number } {
  const slot = slotOf(s.slots, zone, tsMs);
  return { rate: b.mean[slot] ?? 0, spread: Math.max(b.spread[slot] ?? 0, s.minSpreadWhPerHour) };
}

/** Expected energy and spread (Wh) of the interval [start, start + intervalMs). */
export function expectedInterval(
  b: Baseline, s: BaselineSettings, zone: string, start: number, intervalMs: number,
): { wh: number; spreadWh: number; samples: number } {
  const slot = slotOf(s.slots, zone, start);
  const h = intervalMs / HOUR_MS;
  return { wh: (b.mean[slot] ?? 0) * h, spreadWh: Math.max(b.spread[slot] ?? 0, s.minSpreadWhPerHour) * h, samples: b.count[slot] ?? 0 };
}

/** Teaches the slot of `start` one interval of `wh` (returns a new baseline; the input is not changed). */
export function learn(b: Baseline, s: BaselineSettings, zone: string, start: number, intervalMs: number, wh: number): Baseline {
  const slot = slotOf(s.slots, zone, start);
  const x = (wh * HOUR_MS) / intervalMs;
  const n = b.count[slot] ?? 0;
  const m = b.mean[slot] ?? 0;
  const sp = b.spread[slot] ?? 0;
  // Clip only once the slot has seen real samples: the class prior may be far off for this customer.
  const band = s.clipK * Math.max(sp, s.minSpreadWhPerHour);
  const xc = n >= 3 ? Math.min(Math.max(x, m - band), m + band) : x;
  const alpha = Math.max(s.alphaMin, 1 / (n + 2));
  const next: Baseline = { mean: b.mean.slice(), spread: b.spread.slice(), count: b.count.slice() };
  next.mean[slot] = Math.max(0, m + alpha * (xc - m));
  next.spread[slot] = Math.max(0, sp + alpha * (Math.abs(xc - m) - sp));
  next.count[slot] = Math.min(255, n + 1);
  return next;
}

/** Compact serialisation: base64 of mean (f32) ‖ spread (f32) ‖ count (u8). */
export function encodeBaseline(b: Baseline): string {
  const n = b.mean.length;
  const buf = Buffer.alloc(n * 9);
  for (let i = 0; i < n; i++) {
    buf.writeFloatLE(b.mean[i] ?? 0, i * 4);
    buf.writeFloatLE(b.spread[i] ?? 0, n * 4 + i * 4);
    buf.writeUInt8(b.count[i] ?? 0, n * 8 + i);
  }
  return buf.toString('base64');
}

export function decodeBaseline(s: string, slots: number): Baseline | undefined {
  const buf = Buffer.from(s, 'base64');
  if (buf.length !== slots * 9) return undefined;
  const b: Baseline = { mean: new Float32Array(slots), spread: new Float32Array(slots), count: new Uint8Array(slots) };
  for (let i = 0; i < slots; i++) {
    b.mean[i] = buf.readFloatLE(i * 4);
    b.spread[i] = buf.readFloatLE(slots * 4 + i * 4);
    b.count[i] = buf.readUInt8(slots * 8 + i);
  }
  return b;
}
