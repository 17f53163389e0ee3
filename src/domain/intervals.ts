import { ceilGrid, floorGrid, HOUR_MS } from './local-time.js';

/**
 * Interval VEE (validation, estimation, editing) from cumulative integer registers.
 *
 * Model: between two consecutive reads a and b the register delta d = b − a is apportioned over time by a
 * monotone integer function F with F(a.ts) = 0 and F(b.ts) = d; an interval's energy is the sum over the read
 * pairs it overlaps of F(end) − F(start). Within a pair the differences telescope, so the intervals always sum
 * exactly to the register delta, whatever the rounding.
 * F is linear for pairs up to `linearGapMaxMs` apart and follows the baseline shape beyond.
 *
 * A register decrease (b < a) is a replaced meter. When the meter's exchange work order is known and its time
 * falls in [a.ts, b.ts], d = (removalWh − a, the old meter's last stretch, when given and not negative)
 * + (b − installWh, what the new meter measured); otherwise d = b (as if the new meter started at 0 Wh) and
 * the pair's intervals are flagged estimated. An exchange that arrives after its decrease was computed
 * corrects it (applyExchange), from the window or, once the window has moved on, from `lastReset`.
 */

export interface RegisterRead {
  ts: number;
  /** Import register, integer Wh. */
  imp: number;
  /** Export register, integer Wh (carried forward when a read has none). */
  exp: number;
}

/** A meter exchange work order: the new meter's install read at `ts`, the old meter's removal read. */
export interface MeterExchange {
  /** Install time, epoch ms. */
  ts: number;
  /** New meter's import register at `ts`, integer Wh. */
  installWh: number;
  /** Old meter's final import register, integer Wh. */
  removalWh?: number;
  /** New meter's export register at `ts`, integer Wh. */
  installExportWh?: number;
}

export interface VeeState {
  intervalMs: number;
  /** Recent reads, ascending and distinct ts. The first one precedes every interval that can still change. */
  reads: RegisterRead[];
  /** The meter's latest exchange (only one is kept): applied to the register decrease around its time. */
  exchange?: MeterExchange;
  /**
   * The reads the intervals of the latest register decrease are computed from (the decrease pair, widened to
   * the interval grid), kept once `reads` has moved on so that a late exchange can still correct them.
   */
  lastReset?: RegisterRead[];
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

/** Index of the first read with ts ≥ tsMs, or with ts > tsMs when `past` (reads.length if none). */
function firstRead(reads: readonly RegisterRead[], tsMs: number, past = false): number {
  let lo = 0;
  let hi = reads.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    const ts = reads[mid]?.ts ?? Infinity;
    if (ts < tsMs || (past && ts === tsMs)) lo = mid + 1;
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
    const next = { ...state, reads: [...reads, read] };
    return { kind: 'accepted', state: resets.length > 0 ? traceReset(next, s) : next, appended: true, from: newest.ts, to: read.ts, resets };
  }
  const i = firstRead(reads, read.ts);
  const at = reads[i];
  if (at !== undefined && at.ts === read.ts) return { kind: 'duplicate', conflict: at.imp !== read.imp || at.exp !== read.exp };
  if (read.ts <= newest.ts - s.toleranceMs) return { kind: 'late', newestTs: newest.ts };
  const prev = reads[i - 1];
  const next = at ?? newest;
  const resets: ResetSeen[] = [];
  if (prev !== undefined && read.imp < prev.imp) resets.push({ ts: read.ts, beforeWh: prev.imp, afterWh: read.imp });
  if (next.imp < read.imp) resets.push({ ts: next.ts, beforeWh: read.imp, afterWh: next.imp });
  const nextState = { ...state, reads: [...reads.slice(0, i), read, ...reads.slice(i)] };
  return {
    kind: 'accepted',
    state: resets.length > 0 || tracing(state) ? traceReset(nextState, s) : nextState,
    appended: false,
    from: prev?.ts ?? read.ts,
    to: next.ts,
    resets,
  };
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
  /** The exchange that explains a register decrease between a and b. */
  ex?: MeterExchange;
  dx: number;
  span: number;
  estimated: boolean;
  /** Baseline-shape apportioning: segment starts, cumulative weight at each, rate in each, total weight. */
  shape?: { points: number[]; cum: number[]; rates: number[]; total: number };
}

/** The exchange explains the decrease a → b: its time lies in [a.ts, b.ts] and the new meter read no less since. */
export function exchangeFits(a: RegisterRead, b: RegisterRead, ex: MeterExchange | undefined): ex is MeterExchange {
  return ex !== undefined && b.imp < a.imp && a.ts <= ex.ts && ex.ts <= b.ts && ex.installWh <= b.imp;
}

/**
 * Register deltas of a pair. A decrease with a fitting exchange: the old meter's stretch (removal − a, when
 * given and not negative) plus the new meter's (b − install); `exact` unless the old meter's stretch is unknown.
 */
export function pairDelta(a: RegisterRead, b: RegisterRead, ex: MeterExchange | undefined): { d: number; dx: number; exact: boolean } {
  if (b.imp >= a.imp) return { d: b.imp - a.imp, dx: Math.max(0, b.exp - a.exp), exact: true };
  if (!exchangeFits(a, b, ex)) return { d: b.imp, dx: Math.max(0, b.exp - a.exp), exact: false };
  const removal = ex.removalWh !== undefined && ex.removalWh >= a.imp ? ex.removalWh - a.imp : undefined;
  return {
    d: (removal ?? 0) + (b.imp - ex.installWh),
    dx: ex.installExportWh === undefined ? Math.max(0, b.exp - a.exp) : Math.max(0, b.exp - ex.installExportWh),
    // Read at the exchange instant, a is the removal read itself.
    exact: removal !== undefined || ex.ts === a.ts,
  };
}

function makePair(
  a: RegisterRead,
  b: RegisterRead,
  intervalMs: number,
  s: VeeSettings,
  shape: GapShape | undefined,
  exchange: MeterExchange | undefined,
): Pair {
  const span = b.ts - a.ts;
  const { d, dx, exact } = pairDelta(a, b, exchange);
  const pair: Pair = { a, b, d, dx, span, estimated: !exact || span > s.gapFactor * intervalMs };
  if (exchangeFits(a, b, exchange)) pair.ex = exchange;
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

/**
 * Import register at t inside the pair. Across an exchange: the old meter's before it, the new meter's from it
 * on (b minus what is still to come), so the register chain breaks where the meter was changed.
 */
function registerAt(p: Pair, t: number): number {
  if (t === p.b.ts) return p.b.imp;
  if (p.ex !== undefined && t >= p.ex.ts) return p.b.imp - (p.d - importUpTo(p, t));
  return p.a.imp + importUpTo(p, t);
}

function pairAt(state: VeeState, k: number, s: VeeSettings, shape: GapShape | undefined, cache: Array<Pair | undefined>): Pair | undefined {
  const a = state.reads[k];
  const b = state.reads[k + 1];
  if (a === undefined || b === undefined) return undefined;
  const p = makePair(a, b, state.intervalMs, s, shape, state.exchange);
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
  let k = Math.max(0, firstRead(reads, from, true) - 1);
  for (let start = from; start + I <= to; start += I) {
    const end = start + I;
    while ((reads[k + 1]?.ts ?? Infinity) <= start) k++;
    let wh = 0;
    let exportWh = 0;
    let estimated = false;
    let registerWh = 0;
    for (let j = k; ; j++) {
      const p = pairs[j] ?? pairAt(state, j, s, shape, pairs);
      if (p === undefined || p.a.ts >= end) break;
      const lo = Math.max(start, p.a.ts);
      const hi = Math.min(end, p.b.ts);
      if (hi > lo) {
        wh += importUpTo(p, hi) - importUpTo(p, lo);
        exportWh += exportUpTo(p, hi) - exportUpTo(p, lo);
        estimated ||= p.estimated;
      }
      if (p.a.ts < end && end <= p.b.ts) {
        registerWh = registerAt(p, end);
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
  const anchorIdx = firstRead(reads, newest.ts - s.toleranceMs, true) - 1;
  const anchor = reads[anchorIdx];
  if (anchor === undefined) return { state, finalUntil: -Infinity };
  const g = floorGrid(anchor.ts, state.intervalMs, s.gridOffsetMs);
  const keepFrom = Math.max(0, firstRead(reads, g, true) - 1);
  const traced = tracing(state) ? traceReset(state, s) : state;
  return { state: keepFrom === 0 ? traced : { ...traced, reads: reads.slice(keepFrom) }, finalUntil: anchor.ts };
}

/** Index k of the first pair (reads[k], reads[k + 1]) whose register decrease the exchange explains, or -1. */
function decreaseFor(reads: readonly RegisterRead[], ex: MeterExchange): number {
  for (let k = Math.max(0, firstRead(reads, ex.ts) - 1); k + 1 < reads.length; k++) {
    const a = reads[k];
    const b = reads[k + 1];
    if (a === undefined || b === undefined || a.ts > ex.ts) break;
    if (exchangeFits(a, b, ex)) return k;
  }
  return -1;
}

/** The traced decrease still overlaps the window, where reads may still change: keep its copy current. */
function tracing(state: VeeState): boolean {
  const last = state.lastReset?.[state.lastReset.length - 1];
  const first = state.reads[0];
  return last !== undefined && first !== undefined && last.ts >= first.ts;
}

/**
 * Copies the reads behind the newest register decrease of the window into `lastReset`: the pair plus the reads
 * out to the interval grid around it (what its intervals are computed from). The window drops old reads; a head
 * it has already dropped is kept from the previous copy of the same decrease.
 */
function traceReset(state: VeeState, s: VeeSettings): VeeState {
  const reads = state.reads;
  let k = reads.length - 2;
  for (; k >= 0; k--) if ((reads[k + 1]?.imp ?? Infinity) < (reads[k]?.imp ?? -Infinity)) break;
  const a = reads[k];
  const b = reads[k + 1];
  if (a === undefined || b === undefined) return state;
  const lo = Math.max(0, firstRead(reads, floorGrid(a.ts, state.intervalMs, s.gridOffsetMs), true) - 1);
  const hi = Math.min(reads.length, firstRead(reads, ceilGrid(b.ts, state.intervalMs, s.gridOffsetMs)) + 1);
  const slice = reads.slice(lo, hi);
  const prev = state.lastReset;
  const first = slice[0];
  const samePair = prev !== undefined && prev.some((r) => r.ts === a.ts) && prev.some((r) => r.ts === b.ts);
  const head = samePair && first !== undefined ? prev.filter((r) => r.ts < first.ts) : [];
  return { ...state, lastReset: head.length > 0 ? [...head, ...slice] : slice };
}

/**
 * Records the meter's exchange and recomputes the intervals of the register decrease it explains: still in the
 * window, or the latest one traced in `lastReset`. No decrease yet: the exchange waits for it (applied when the
 * pair is computed). The recomputed intervals overwrite the ones written before.
 */
export function applyExchange(state: VeeState, ex: MeterExchange, s: VeeSettings, shape?: GapShape): { state: VeeState; intervals: Interval[] } {
  const next: VeeState = { ...state, exchange: ex };
  for (const reads of [state.reads, state.lastReset ?? []]) {
    const k = decreaseFor(reads, ex);
    const a = reads[k];
    const b = reads[k + 1];
    if (a === undefined || b === undefined) continue;
    const I = state.intervalMs;
    const from = floorGrid(a.ts, I, s.gridOffsetMs);
    const to = ceilGrid(b.ts, I, s.gridOffsetMs);
    return { state: next, intervals: computeIntervals({ intervalMs: I, reads, exchange: ex }, from, to, s, shape) };
  }
  return { state: next, intervals: [] };
}
