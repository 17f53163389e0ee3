import { ceilGrid, floorGrid, HOUR_MS } from './local-time.js';

/**
 * Interval VEE (validation, estimation, editing) from cumulative integer registers.
 *
 * Model: between two consecutive reads a and b the register delta d = b − a (for a reset, b itself: a
 * replacement meter starts at 0 Wh, so its first read is what it measured since the exchange)
 * is apportioned over time by a monotone integer function F with F(a.ts) = 0 and F(b.ts) = d; an
 * interval's energy is the sum over the read pairs it overlaps of F(end) − F(start). Within a pair the
 * differences telescope, so the intervals always sum exactly to the register delta, whatever the rounding.
 * F is linear for pairs up to `linearGapMaxMs` apart and follows the baseline shape beyond.
 */

export interface RegisterRead {
  ts: number;
  /** Import register, integer Wh. */
  imp: number;
  /** Export register, integer Wh (carried forward when a read has none). */
  exp: number;
}

export interface VeeState {
  intervalMs: number;
  /** Recent reads, ascending and distinct ts. The first one precedes every interval that can still change. */
  reads: RegisterRead[];
}

export interface VeeSettings {
  /** A read older than the meter's newest read minus this is too late (dead-lettered). */
  toleranceMs: number;
  /** Gaps up to this long are filled linearly, longer ones by the baseline shape. */
  linearGapMaxMs: number;
  /** A read pair more than gapFactor × interval apart means reads are missing: its intervals are estimated. */
  gapFactor: number;
  /** Offset of this meter's interval grid from the UTC grid (local :00 alignment). */
  gridOffsetMs: number;
  /** Offset of the local hour grid from the UTC hour grid. */
  hourGridOffsetMs: number;
}

/** Expected consumption rate (Wh per hour) at an instant; constant within a local hour. */
export interface GapShape {
  rateAt(tsMs: number): number;
}

export interface Interval {
  start: number;
  end: number;
  /** Import energy, integer Wh. */
  wh: number;
  exportWh: number;
  /** Import register at `end`, interpolated when no read falls on it. */
  registerWh: number;
  estimated: boolean;
}

export interface ResetSeen {
  /** The read at which the register was found lower than the one before it. */
  ts: number;
  beforeWh: number;
  afterWh: number;
}

export type InsertResult =
  | { kind: 'duplicate'; conflict: boolean }
  | { kind: 'late'; newestTs: number }
  | {
      kind: 'accepted';
      state: VeeState;
      /** true when the read is the meter's newest. */
      appended: boolean;
      /** Intervals overlapping (from, to) changed or became computable. */
      from: number;
      to: number;
      resets: ResetSeen[];
    };

export function newestRead(state: VeeState): RegisterRead | undefined {
  return state.reads[state.reads.length - 1];
}

/** Index of the first read with ts ≥ tsMs (reads.length if none). */
function lowerBound(reads: readonly RegisterRead[], tsMs: number): number {
  let lo = 0;
  let hi = reads.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if ((reads[mid]?.ts ?? Infinity) < tsMs) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

/** Index of the first read with ts > tsMs (reads.length if none). */
function upperBound(reads: readonly RegisterRead[], tsMs: number): number {
  let lo = 0;
  let hi = reads.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if ((reads[mid]?.ts ?? Infinity) <= tsMs) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

/** Places one read in the window: appended, inserted out of order, a duplicate, or too late. */
export function insertRead(state: VeeState, read: RegisterRead, s: VeeSettings): InsertResult {
  const reads = state.reads;
  const newest = newestRead(state);
  if (newest === undefined) {
    return { kind: 'accepted', state: { ...state, reads: [read] }, appended: true, from: read.ts, to: read.ts, resets: [] };
  }
  if (read.ts > newest.ts) {
    const resets: ResetSeen[] = read.imp < newest.imp ? [{ ts: read.ts, beforeWh: newest.imp, afterWh: read.imp }] : [];
    return { kind: 'accepted', state: { ...state, reads: [...reads, read] }, appended: true, from: newest.ts, to: read.ts, resets };
  }
  const i = lowerBound(reads, read.ts);
  const at = reads[i];
  if (at !== undefined && at.ts === read.ts) return { kind: 'duplicate', conflict: at.imp !== read.imp || at.exp !== read.exp };
  if (read.ts <= newest.ts - s.toleranceMs) return { kind: 'late', newestTs: newest.ts };
  const prev = reads[i - 1];
  const next = at ?? newest;
  const resets: ResetSeen[] = [];
  if (prev !== undefined && read.imp < prev.imp) resets.push({ ts: read.ts, beforeWh: prev.imp, afterWh: read.imp });
  if (next.imp < read.imp) resets.push({ ts: next.ts, beforeWh: read.imp, afterWh: next.imp });
  const nextReads = [...reads.slice(0, i), read, ...reads.slice(i)];
  return { kind: 'accepted', state: { ...state, reads: nextReads }, appended: false, from: prev?.ts ?? read.ts, to: next.ts, resets };
}

/** round(n / m) for integers n ≥ 0, m > 0, exact beyond 2^53 (ties up). */
function roundDiv(n: number, m: number): number {
  const twice = 2 * n + m;
  if (Number.isSafeInteger(twice) && Number.isSafeInteger(2 * m)) return Math.floor(twice / (2 * m));
  return Number((2n * BigInt(n) + BigInt(m)) / (2n * BigInt(m)));
}

interface Pair {
  a: RegisterRead;
  b: RegisterRead;
  d: number;
  dx: number;
  span: number;
  estimated: boolean;
  /** Baseline-shape apportioning: segment starts, cumulative weight at each, rate in each, total weight. */
  shape?: { points: number[]; cum: number[]; rates: number[]; total: number };
}

function makePair(a: RegisterRead, b: RegisterRead, intervalMs: number, s: VeeSettings, shape: GapShape | undefined): Pair {
  const span = b.ts - a.ts;
  const reset = b.imp < a.imp;
  const pair: Pair = {
    a,
    b,
    d: reset ? b.imp : b.imp - a.imp,
    dx: Math.max(0, b.exp - a.exp),
    span,
    estimated: reset || span > s.gapFactor * intervalMs,
  };
  if (span > s.linearGapMaxMs && shape !== undefined && pair.d > 0) {
    // Weights per local-hour segment, summed in one fixed order from a.ts so every call agrees to the bit.
    const points: number[] = [];
    const cum: number[] = [];
    const rates: number[] = [];
    let t = a.ts;
    let total = 0;
    while (t < b.ts) {
      const next = Math.min(floorGrid(t, HOUR_MS, s.hourGridOffsetMs) + HOUR_MS, b.ts);
      const raw = shape.rateAt(t);
      const rate = Number.isFinite(raw) && raw > 0 ? raw : 0;
      points.push(t);
      cum.push(total);
      rates.push(rate);
      total += (rate * (next - t)) / HOUR_MS;
      t = next;
    }
    if (total > 0 && Number.isFinite(total)) pair.shape = { points, cum, rates, total };
  }
  return pair;
}

/** Import energy apportioned to [a.ts, t]: integer, monotone in t, 0 at a.ts and d at b.ts. */
function importUpTo(p: Pair, t: number): number {
  if (t <= p.a.ts) return 0;
  if (t >= p.b.ts) return p.d;
  if (p.d === 0) return 0;
  const sh = p.shape;
  if (sh === undefined) return roundDiv(p.d * (t - p.a.ts), p.span);
  let lo = 0;
  let hi = sh.points.length - 1;
  while (lo < hi) {
    const mid = (lo + hi + 1) >>> 1;
    if ((sh.points[mid] ?? Infinity) <= t) lo = mid;
    else hi = mid - 1;
  }
  const w = (sh.cum[lo] ?? 0) + ((sh.rates[lo] ?? 0) * (t - (sh.points[lo] ?? t))) / HOUR_MS;
  return Math.min(p.d, Math.round((p.d * w) / sh.total));
}

function exportUpTo(p: Pair, t: number): number {
  if (t <= p.a.ts) return 0;
  if (t >= p.b.ts) return p.dx;
  return p.dx === 0 ? 0 : roundDiv(p.dx * (t - p.a.ts), p.span);
}

function pairAt(reads: readonly RegisterRead[], k: number, intervalMs: number, s: VeeSettings, shape: GapShape | undefined, cache: Array<Pair | undefined>): Pair | undefined {
  const a = reads[k];
  const b = reads[k + 1];
  if (a === undefined || b === undefined) return undefined;
  const p = makePair(a, b, intervalMs, s, shape);
  cache[k] = p;
  return p;
}

/**
 * Intervals with start ≥ startMin and end ≤ endMax that the window can compute (a read at or before the
 * start and one at or after the end), in time order.
 */
export function computeIntervals(state: VeeState, startMin: number, endMax: number, s: VeeSettings, shape?: GapShape): Interval[] {
  const reads = state.reads;
  const first = reads[0];
  const last = newestRead(state);
  if (first === undefined || last === undefined || reads.length < 2) return [];
  const I = state.intervalMs;
  const from = Math.max(ceilGrid(startMin, I, s.gridOffsetMs), ceilGrid(first.ts, I, s.gridOffsetMs));
  const to = Math.min(endMax, last.ts);
  const out: Interval[] = [];
  const pairs: Array<Pair | undefined> = [];
  // Index of the last read at or before the current interval start; advances monotonically.
  let k = Math.max(0, upperBound(reads, from) - 1);
  for (let start = from; start + I <= to; start += I) {
    const end = start + I;
    while ((reads[k + 1]?.ts ?? Infinity) <= start) k++;
    let wh = 0;
    let exportWh = 0;
    let estimated = false;
    let registerWh = 0;
    for (let j = k; ; j++) {
      const p = pairs[j] ?? pairAt(reads, j, I, s, shape, pairs);
      if (p === undefined || p.a.ts >= end) break;
      const lo = Math.max(start, p.a.ts);
      const hi = Math.min(end, p.b.ts);
      if (hi > lo) {
        wh += importUpTo(p, hi) - importUpTo(p, lo);
        exportWh += exportUpTo(p, hi) - exportUpTo(p, lo);
        estimated ||= p.estimated;
      }
      if (p.a.ts < end && end <= p.b.ts) {
        registerWh = end === p.b.ts ? p.b.imp : p.a.imp + importUpTo(p, end);
        break;
      }
    }
    out.push({ start, end, wh, exportWh, registerWh, estimated });
  }
  return out;
}

export interface Settled {
  state: VeeState;
  /** Intervals ending at or before this can no longer change (-Infinity when none is final yet). */
  finalUntil: number;
}

/**
 * Drops reads that no accepted read can need any more. Accepted reads are newer than newest − tolerance,
 * so the last read at or before that cut (the anchor) is the earliest neighbour a future read can have;
 * intervals ending by the anchor are final, and the window keeps one read at or before the anchor's
 * interval start so the interval straddling the anchor stays computable.
 */
export function settle(state: VeeState, s: VeeSettings): Settled {
  const reads = state.reads;
  const newest = newestRead(state);
  if (newest === undefined) return { state, finalUntil: -Infinity };
  const anchorIdx = upperBound(reads, newest.ts - s.toleranceMs) - 1;
  const anchor = reads[anchorIdx];
  if (anchor === undefined) return { state, finalUntil: -Infinity };
  const g = floorGrid(anchor.ts, state.intervalMs, s.gridOffsetMs);
  const keepFrom = Math.max(0, upperBound(reads, g) - 1);
  return { state: keepFrom === 0 ? state : { ...state, reads: reads.slice(keepFrom) }, finalUntil: anchor.ts };
}
