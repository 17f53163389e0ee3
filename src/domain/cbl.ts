import type { CblConfig } from '../contracts/config-dr.js';
import type { BillingInterval } from './billing.js';
import { dayNumberOf } from './holidays.js';
import { DAY_MS, HOUR_MS, localDay, localMs, localParts, MINUTE_MS, offsetMinutes } from './local-time.js';

/**
 * Demand-response settlement: a participant's customer baseline load (CBL, what it would have used without the
 * event) from its own like days, and its performance against it. Pure: the caller fetches the intervals.
 *
 * The method ("High X of Y", one family for all three conventions below):
 * 1. Day type. An event on a weekday is measured against weekdays that are not holidays; one on a weekend day or a
 *    holiday against weekend days and holidays (local dates in `timezone`, weekend = Saturday and Sunday).
 * 2. Like days. Walking back from the day before the event, up to `lookbackDays` calendar days, the y most recent
 *    days of that type that are not past event days and have at most `maxMissingShare` of their window intervals
 *    missing or estimated (a missing one is filled with the day's mean over the same window).
 * 3. Low-usage days. A like day whose event-window energy is below `lowUsageShare` × the average of the y like days
 *    is dropped and replaced by the next older one, until y days pass or the search window is exhausted.
 * 4. CBL. Per interval of the event window, at the same local wall-clock time (so DST changes keep 17:00 at 17:00),
 *    the average of the x like days with the highest event-window energy (ties: the more recent). x = y averages all.
 * 5. Same-day adjustment, from the `windowHours` ending `gapHours` before the event start, event day against CBL:
 *    additive (symmetric: adds the average difference per interval, up or down; not capped; the baseline is floored
 *    at 0) or multiplicative (the energy ratio, clamped to 1 ± capShare; 1 when the CBL there is 0).
 *
 * Conventions this follows, and where they are stated (checked) or only assumed (not checked):
 * - PJM's economic CBL lives in PJM Manual 11 (Energy & Ancillary Services Market Operations), section 10; its CBL
 *   days exclude emergency event days too (RTO Insider on an MRC endorsement: Manual 11 §10.4, OA 10.3A.2). PJM had
 *   KEMA compare 18 CBL calculations ("PJM Empirical Analysis of Demand Response Baseline Methods", 2011-04-20, MIC
 *   2011-05-10). Its "Same Day (3 + 2)" CBL averages the three hours before (and two after) an event, each after
 *   skipping one hour (RTO Insider, 2025-02-25): the window shape of the adjustment here. The High 4 of 5 selection,
 *   the 45-day search, the 25 % low-usage threshold and the symmetric additive adjustment over the 3 hours ending 1
 *   hour before the event are PJM's rules as issue 18 states them; the manual's own text was not at hand to check.
 * - "5 of 10": PG&E's event programmes use the 5 highest of the 10 previous weekdays, and for weekend or holiday
 *   events the 3 highest of the 5 previous weekend days or holidays, skipping event and outage days, adjusted from
 *   the hours around the event (powersaver.pge.com/faq). NYISO's CBL is of the same family; its text was not checked.
 * - "10 in 10": CAISO settles proxy and reliability demand response resources against a 10 of 10 baseline with a 20 %
 *   same-day adjustment ("California ISO Baseline Accuracy Work Group Proposal", draft, 2017-04-04, introduction).
 *
 * Definitions (all energies in Wh over the event window [startMs, endMs)):
 * - baselineWh: the adjusted CBL; actualWh: the metered energy; reductionWh = baselineWh − actualWh, netted over the
 *   event (an interval above its baseline offsets one below); adjustmentWh = adjusted − unadjusted CBL.
 * - performance = reductionWh / requestedWh when a requested reduction (> 0 kW) is given (requestedWh = kW × 1000 × event
 *   hours: 1 = delivered exactly what was asked), else reductionWh / baselineWh (the share of its baseline it cut);
 *   `performanceBasis` says which.
 * - quality: 'missing_event_data' when an event-window or event-day adjustment-window interval is missing or
 *   estimated (performance cannot be measured); else 'insufficient_history' when fewer than y like days were found;
 *   else 'ok'. Unless 'ok', reductionWh and performance are 0 (never NaN), and baselineWh is 0 without history.
 */

/** An interval as the billing store returns it (BillingInterval and the VEE Interval both fit). */
export type CblInterval = Pick<BillingInterval, 'start' | 'wh'> & { estimated?: boolean | undefined };

export type CblQuality = 'ok' | 'insufficient_history' | 'missing_event_data';
export type CblDayType = 'weekday' | 'weekend';

export interface CblInput {
  /** The participant's intervals around the event and its history, any order; starts on the meter's grid. */
  intervals: readonly CblInterval[];
  intervalMs: number;
  /** The event window [startMs, endMs), on the interval grid. */
  event: { startMs: number; endMs: number };
  timezone: string;
  /** Local dates (YYYY-MM-DD) of the holiday calendar. */
  holidays: readonly string[];
  /** Local dates of past events this participant was called in: never like days. */
  pastEventDays: readonly string[];
  /** What the participant was asked to cut, kW over the whole event; absent: performance is against its baseline. */
  requestedReductionKw?: number | undefined;
}

export interface CblExclusion {
  day: string;
  reason: 'holiday' | 'event' | 'missing_data' | 'low_usage';
}

export interface CblIntervalResult {
  start: number;
  /** Adjusted CBL of the interval. */
  baselineWh: number;
  /** Metered energy (0 when not measured). */
  actualWh: number;
  /** False when the interval is missing or estimated. */
  measured: boolean;
}

export interface CblResult {
  quality: CblQuality;
  dayType: CblDayType;
  baselineWh: number;
  actualWh: number;
  reductionWh: number;
  /** requestedReductionKw × event hours, Wh; null when none was given. */
  requestedWh: number | null;
  performance: number;
  performanceBasis: 'requested' | 'baseline';
  /** The x days averaged, in calendar order. */
  selectedDays: string[];
  /** The y like days considered, in calendar order. */
  candidateDays: string[];
  /** Days of the search window left out, and why (days of the other type are not listed, holidays excepted). */
  excludedDays: CblExclusion[];
  adjustmentWh: number;
  intervals: CblIntervalResult[];
}

/** Throws RangeError naming the key when `cfg` is inconsistent with itself or with `intervalMs`. */
export function checkCblConfig(cfg: CblConfig, intervalMs: number): void {
  for (const kind of ['weekday', 'weekend'] as const) {
    const { x, y } = cfg[kind];
    if (!(Number.isInteger(x) && Number.isInteger(y) && x >= 1 && x <= y)) throw new RangeError(`cbl.${kind}: need 1 ≤ x ≤ y, got x=${x} y=${y}`);
  }
  if (!(Number.isInteger(intervalMs) && intervalMs > 0)) throw new RangeError(`intervalMs: expected a positive integer, got ${intervalMs}`);
  for (const key of ['windowHours', 'gapHours'] as const) {
    const ms = cfg.adjustment[key] * HOUR_MS;
    if (Math.round(ms) % intervalMs !== 0)
      throw new RangeError(`cbl.adjustment.${key}: ${cfg.adjustment[key]} h is not a whole number of ${intervalMs / MINUTE_MS}-min intervals`);
  }
}

interface Slots {
  /** Event-window interval starts on the event day (UTC). */
  event: number[];
  /** Adjustment-window interval starts on the event day (UTC); empty without adjustment. */
  adjust: number[];
}

interface DayWindows {
  day: number;
  date: string;
  /** Per event slot; missing ones filled with the day's window mean. */
  event: number[];
  adjust: number[];
  eventWh: number;
}

/** Epoch ms of local wall-clock time `wall` (local ms on the UTC axis); undefined when the clock skips it (DST gap). */
export function instantOfWall(zone: string, wall: number): number | undefined {
  let t = wall - offsetMinutes(zone, wall) * MINUTE_MS;
  t = wall - offsetMinutes(zone, t) * MINUTE_MS;
  return localMs(zone, t) === wall ? t : undefined;
}

/** Local date YYYY-MM-DD of a local day number. */
function dateOf(day: number): string {
  return localDay('UTC', day * DAY_MS);
}

function weekdayOf(day: number): number {
  return localParts('UTC', day * DAY_MS).weekday;
}

function dayNumbers(dates: readonly string[]): Set<number> {
  const out = new Set<number>();
  for (const d of dates) {
    const n = dayNumberOf(d);
    if (n !== undefined) out.add(n);
  }
  return out;
}

/**
 * The values of `starts` shifted by `shiftDays` local days at the same wall-clock time, from `byStart`. A missing
 * or estimated interval is filled with the mean of the others; undefined when more than `maxMissing` are missing.
 */
function windowOf(
  zone: string,
  starts: readonly number[],
  shiftDays: number,
  byStart: ReadonlyMap<number, CblInterval>,
  maxMissing: number,
): number[] | undefined {
  const values: (number | undefined)[] = [];
  let sum = 0;
  let n = 0;
  for (const s of starts) {
    const at = instantOfWall(zone, localMs(zone, s) + shiftDays * DAY_MS);
    const iv = at === undefined ? undefined : byStart.get(at);
    const v = iv === undefined || iv.estimated === true || !Number.isFinite(iv.wh) ? undefined : iv.wh;
    values.push(v);
    if (v !== undefined) {
      sum += v;
      n++;
    }
  }
  if (starts.length - n > maxMissing || (n === 0 && starts.length > 0)) return undefined;
  const mean = n > 0 ? sum / n : 0;
  return values.map((v) => v ?? mean);
}

function sum(values: readonly number[]): number {
  let s = 0;
  for (const v of values) s += v;
  return s;
}

/** Event-window energy of the event day: per slot the metered value, or undefined when missing or estimated. */
function measured(starts: readonly number[], byStart: ReadonlyMap<number, CblInterval>): (number | undefined)[] {
  return starts.map((s) => {
    const iv = byStart.get(s);
    return iv === undefined || iv.estimated === true || !Number.isFinite(iv.wh) ? undefined : iv.wh;
  });
}

/** Settles one participant of an event against its CBL (see the module comment for every definition). */
export function settleParticipant(input: CblInput, cfg: CblConfig): CblResult {
  const { intervalMs, event, timezone: zone } = input;
  checkCblConfig(cfg, intervalMs);
  const len = event.endMs - event.startMs;
  if (!(len > 0) || len % intervalMs !== 0) throw new RangeError(`event: [${event.startMs}, ${event.endMs}) is not a whole number of intervals`);

  const byStart = new Map<number, CblInterval>();
  for (const iv of input.intervals) byStart.set(iv.start, iv);

  const adj = cfg.adjustment;
  const slots: Slots = { event: [], adjust: [] };
  for (let t = event.startMs; t < event.endMs; t += intervalMs) slots.event.push(t);
  if (adj.mode !== 'none') {
    const end = event.startMs - Math.round(adj.gapHours * HOUR_MS);
    for (let t = end - Math.round(adj.windowHours * HOUR_MS); t < end; t += intervalMs) slots.adjust.push(t);
  }

  const eventDay = localParts(zone, event.startMs).dayNumber;
  const holidays = dayNumbers(input.holidays);
  const pastEvents = dayNumbers(input.pastEventDays);
  const nonBusiness = (d: number): boolean => holidays.has(d) || weekdayOf(d) >= 5;
  const dayType: CblDayType = nonBusiness(eventDay) ? 'weekend' : 'weekday';
  const { x, y } = cfg[dayType];

  // Like days, most recent first; low-usage days are dropped and replaced from further back.
  const excludedDays: CblExclusion[] = [];
  const like: DayWindows[] = [];
  const maxMissingEvent = Math.floor(cfg.maxMissingShare * slots.event.length);
  const maxMissingAdjust = Math.floor(cfg.maxMissingShare * slots.adjust.length);
  let back = 1;
  for (;;) {
    while (like.length < y && back <= cfg.lookbackDays) {
      const d = eventDay - back++;
      const date = dateOf(d);
      if (nonBusiness(d) !== (dayType === 'weekend')) {
        if (holidays.has(d)) excludedDays.push({ day: date, reason: 'holiday' });
        continue;
      }
      if (pastEvents.has(d)) {
        excludedDays.push({ day: date, reason: 'event' });
        continue;
      }
      const ev = windowOf(zone, slots.event, d - eventDay, byStart, maxMissingEvent);
      const ad = windowOf(zone, slots.adjust, d - eventDay, byStart, maxMissingAdjust);
      if (ev === undefined || ad === undefined) {
        excludedDays.push({ day: date, reason: 'missing_data' });
        continue;
      }
      like.push({ day: d, date, event: ev, adjust: ad, eventWh: sum(ev) });
    }
    const threshold = like.length > 0 ? (cfg.lowUsageShare * sum(like.map((l) => l.eventWh))) / like.length : 0;
    const low = like.filter((l) => l.eventWh < threshold);
    if (low.length === 0) break;
    for (const l of low) {
      excludedDays.push({ day: l.date, reason: 'low_usage' });
      like.splice(like.indexOf(l), 1);
    }
  }
  excludedDays.sort((a, b) => (a.day < b.day ? -1 : a.day > b.day ? 1 : 0));

  // The x highest by event-window energy; a stable sort keeps the more recent first among equals.
  const selected = [...like].sort((a, b) => b.eventWh - a.eventWh).slice(0, x);
  const byCalendar = (days: readonly DayWindows[]): string[] => [...days].sort((a, b) => a.day - b.day).map((l) => l.date);
  const enough = like.length >= y;

  const avgAt = (pick: (l: DayWindows) => readonly number[], i: number): number =>
    selected.length > 0 ? selected.reduce((s, l) => s + (pick(l)[i] ?? 0), 0) / selected.length : 0;
  const cbl = slots.event.map((_, i) => (enough ? avgAt((l) => l.event, i) : 0));
  const cblAdjust = slots.adjust.map((_, i) => avgAt((l) => l.adjust, i));

  const actual = measured(slots.event, byStart);
  const actualAdjust = measured(slots.adjust, byStart);
  const eventComplete = actual.every((v) => v !== undefined) && actualAdjust.every((v) => v !== undefined);

  let baseline = cbl;
  if (enough && eventComplete && adj.mode !== 'none') {
    const actualSum = sum(actualAdjust.map((v) => v ?? 0));
    const cblSum = sum(cblAdjust);
    if (adj.mode === 'additive') {
      const perInterval = (actualSum - cblSum) / slots.adjust.length;
      baseline = cbl.map((v) => Math.max(0, v + perInterval));
    } else {
      const ratio = cblSum > 0 ? Math.min(1 + adj.capShare, Math.max(1 - adj.capShare, actualSum / cblSum)) : 1;
      baseline = cbl.map((v) => v * ratio);
    }
  }

  const quality: CblQuality = !eventComplete ? 'missing_event_data' : enough ? 'ok' : 'insufficient_history';
  const baselineWh = sum(baseline);
  const actualWh = sum(actual.map((v) => v ?? 0));
  const requested = input.requestedReductionKw;
  const requestedWh = requested !== undefined && requested > 0 ? (requested * 1000 * len) / HOUR_MS : null;
  const reductionWh = quality === 'ok' ? baselineWh - actualWh : 0;
  const denominator = requestedWh ?? baselineWh;
  return {
    quality,
    dayType,
    baselineWh,
    actualWh,
    reductionWh,
    requestedWh,
    performance: quality === 'ok' && denominator > 0 ? reductionWh / denominator : 0,
    performanceBasis: requestedWh === null ? 'baseline' : 'requested',
    selectedDays: enough ? byCalendar(selected) : [],
    candidateDays: byCalendar(like),
    excludedDays,
    adjustmentWh: baselineWh - sum(cbl),
    intervals: slots.event.map((start, i) => ({
      start,
      baselineWh: baseline[i] ?? 0,
      actualWh: actual[i] ?? 0,
      measured: actual[i] !== undefined,
    })),
  };
}

export interface DrEvent {
  startMs: number;
  endMs: number;
  timezone: string;
  holidays: readonly string[];
  /** Local dates of earlier events (every participant's like days skip them). */
  pastEventDays: readonly string[];
  /** What the operator asked of all participants together, kW; absent: event performance is against the baselines. */
  requestedReductionKw?: number | undefined;
}

export interface DrParticipant {
  customerId: string;
  intervals: readonly CblInterval[];
  intervalMs: number;
  requestedReductionKw?: number | undefined;
  /** Events this participant alone was called in, besides the event-wide list. */
  pastEventDays?: readonly string[] | undefined;
  /** The zone its days are cut in (its tariff's); default the event's. */
  timezone?: string | undefined;
}

export interface DrSettlement {
  participants: (CblResult & { customerId: string })[];
  /** Sums over the participants whose quality is 'ok'. */
  totals: {
    participants: number;
    settled: number;
    insufficientHistory: number;
    missingEventData: number;
    baselineWh: number;
    actualWh: number;
    reductionWh: number;
    requestedWh: number | null;
    performance: number;
    performanceBasis: 'requested' | 'baseline';
  };
}

/** Settles every participant of one event, in input order, and the event's totals. */
export function settleEvent(event: DrEvent, participants: readonly DrParticipant[], cfg: CblConfig): DrSettlement {
  const results = participants.map((p) => ({
    customerId: p.customerId,
    ...settleParticipant(
      {
        intervals: p.intervals,
        intervalMs: p.intervalMs,
        event: { startMs: event.startMs, endMs: event.endMs },
        timezone: p.timezone ?? event.timezone,
        holidays: event.holidays,
        pastEventDays: [...event.pastEventDays, ...(p.pastEventDays ?? [])],
        requestedReductionKw: p.requestedReductionKw,
      },
      cfg,
    ),
  }));
  return { participants: results, totals: settlementTotals(event, results) };
}

/**
 * An event's totals over its participants' results (settled in one call or in several, e.g. in chunks): sums over
 * those whose quality is 'ok', performance against the requested kW × hours, or against the baselines.
 */
export function settlementTotals(event: Pick<DrEvent, 'startMs' | 'endMs' | 'requestedReductionKw'>, results: readonly CblResult[]): DrSettlement['totals'] {
  const ok = results.filter((r) => r.quality === 'ok');
  const baselineWh = sum(ok.map((r) => r.baselineWh));
  const reductionWh = sum(ok.map((r) => r.reductionWh));
  const kw = event.requestedReductionKw;
  const requestedWh = kw !== undefined && kw > 0 ? (kw * 1000 * (event.endMs - event.startMs)) / HOUR_MS : null;
  const denominator = requestedWh ?? baselineWh;
  return {
    participants: results.length,
    settled: ok.length,
    insufficientHistory: results.filter((r) => r.quality === 'insufficient_history').length,
    missingEventData: results.filter((r) => r.quality === 'missing_event_data').length,
    baselineWh,
    actualWh: sum(ok.map((r) => r.actualWh)),
    reductionWh,
    requestedWh,
    performance: denominator > 0 ? reductionWh / denominator : 0,
    performanceBasis: requestedWh === null ? 'baseline' : 'requested',
  };
}
